package deferred

import "context"

// Await blocks until d's chain has a result at this point and returns it:
// the value and nil, or the zero value and the *Failure itself (so that
// errors.Is and errors.As see what it wraps). Await takes nothing: d's
// chain goes on with the same result, and every Await — from any
// goroutine, before or after the firing, any number of them — returns the
// same value or the same failure, as long as no stage added meanwhile
// changes it. A failure returned by Await counts as handled: it is not
// reported as unhandled, by d or by any branch holding it.
//
// If ctx ends first, Await cancels d and returns the zero value and
// ctx.Err() without waiting further. The result that later reaches this
// point of d's chain — most often the cancellation's failure — counts as
// handled, as the Await that gave up caused it. If the result and the end
// of ctx are both there, Await returns the result.
//
// Cancelling d is right when the caller alone waits for d. When d is
// shared, wait on a branch instead, d.Observe().Await(ctx): ctx ending then
// cancels the branch, which leaves d alone.
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
	mustNotBeNil(d, "Await")
	d.mu.Lock()
	if d.is(handedOver) {
		d.mu.Unlock()
		panic(handedOverMessage("Await"))
	}
	if d.holdsResultLocked() {
		// The result is there: no branch, no channel.
		v, f := d.value, d.failure
		d.mu.Unlock()
		return awaited(v, f)
	}
	d.mu.Unlock()

	w := &awaiter[T]{done: make(chan struct{})}
	d.Observe().AddBoth(w.take)
	if testHookAwaitWaits != nil {
		testHookAwaitWaits()
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		select {
		case <-w.done:
		default:
			d.Cancel()
			return zeroOf[T](), ctx.Err()
		}
	}
	return awaited(w.v, w.f)
}

// awaited is what Await returns for the result (v, f).
func awaited[T any](v T, f *Failure) (T, error) {
	if f != nil {
		f.marks.Or(markHandled)
		return zeroOf[T](), f
	}
	return v, nil
}

// An awaiter is the stage at the end of an Await's branch.
type awaiter[T any] struct {
	done chan struct{}
	v    T
	f    *Failure
}

// take keeps the result for Await and takes it off the branch. A failure
// counts as handled even if Await gave up before it came: see Await.
func (w *awaiter[T]) take(v T, f *Failure) (T, error) {
	if f != nil {
		f.marks.Or(markHandled)
	}
	w.v, w.f = v, f
	close(w.done)
	return zeroOf[T](), nil
}

// testHookAwaitWaits, if set, runs in Await just before it waits: tests
// use it to have the result and the end of ctx both there when it looks.
var testHookAwaitWaits func()
