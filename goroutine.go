package deferred

import (
	"context"
	"sync/atomic"
)

// Go calls f in a new goroutine with a child context of ctx and returns a
// Deferred that fires with f's result: its value, its error as a Failure,
// or the Failure of its panic. When f returns, the Deferred's chain runs on
// f's goroutine, which then ends.
//
// Cancelling the Deferred cancels f's context and fails the Deferred with
// ErrCancelled at once, running the chain on the goroutine that called
// Cancel; the result f returns afterwards is dropped. Go does not wait for
// f: f should return soon after its context is done. Go panics if ctx or f
// is nil.
//
// In tests, call Go inside a testing/synctest bubble, where time is fake:
// f's goroutine joins the bubble, so f's timers and a timeout added to the
// Deferred follow the bubble's clock, and AddTimeout(time.Hour) fires as
// soon as every goroutine in the bubble is blocked
// (TestAddTimeoutFiresInstantlyInABubble in package deferredtest,
// deferredtest/synctest_test.go).
func Go[T any](ctx context.Context, f func(context.Context) (T, error)) *Deferred[T] {
	if ctx == nil {
		panic("deferred: Go called with a nil context.Context")
	}
	if f == nil {
		panic("deferred: Go called with a nil function")
	}
	ctx, cancel := context.WithCancel(ctx)
	var cancelled atomic.Bool
	d := NewWithCanceller(func(*Deferred[T]) {
		// Set before cancel: f's result, once f has seen its context end,
		// must not beat Cancel's ErrCancelled to d.
		cancelled.Store(true)
		cancel()
	})
	go func() {
		defer cancel()
		v, fl := callContext(ctx, f)
		if !cancelled.Load() {
			settleResult(d, v, fl)
		}
	}()
	return d
}

// callContext calls f, turning a panic into a Failure.
func callContext[T any](ctx context.Context, f func(context.Context) (T, error)) (T, *Failure) {
	return callRecovering(func() (T, error) { return f(ctx) })
}

// settleResult fires d with f's result. If a Cancel got there first, d
// refuses it and the result is dropped.
func settleResult[T any](d *Deferred[T], v T, fl *Failure) {
	if fl != nil {
		_ = d.Errback(fl)
		return
	}
	_ = d.Callback(v)
}
