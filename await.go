package deferred

import "context"

// Await blocks until d's chain has a result at this point and returns it:
// the value and nil, or the zero value and the *Failure itself (so that
// errors.Is and errors.As see what it wraps). Await consumes the result: it
// adds a last stage that takes it, so a failure returned by Await counts as
// handled, and the chain goes on with the zero value and no failure.
//
// If ctx ends first, Await cancels d and returns the zero value and
// ctx.Err() without waiting further; the stage still consumes whatever d's
// chain gets, so the cancellation's failure is not reported as unhandled.
// If the result and the end of ctx are both there, Await returns the result.
//
// Await is how a goroutine waits for a Deferred, the Go counterpart of
// yielding one in Twisted's inlineCallbacks. It must not be called from one
// of d's stages, whose chain cannot go on before the stage returns. Await
// panics if ctx is nil or if d's chain was handed over by Then or
// ThenDeferred.
func (d *Deferred[T]) Await(ctx context.Context) (T, error) {
	if ctx == nil {
		panic("deferred: Await called with a nil context.Context")
	}
	var (
		value   T
		failure *Failure
		done    = make(chan struct{})
	)
	d.add(bothStage(func(v T, f *Failure) (T, error) {
		value, failure = v, f
		close(done)
		return zeroOf[T](), nil
	}), "Await")

	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		default:
			d.Cancel()
			return zeroOf[T](), ctx.Err()
		}
	}
	if failure != nil {
		return zeroOf[T](), failure
	}
	return value, nil
}
