package deferred

import (
	"errors"
	"fmt"
	"time"
)

// AddTimeout cancels d if its chain has not reached this point when timeout
// has passed, and turns the failure of that cancellation, if it matches
// ErrCancelled, into one that matches ErrTimeout and
// context.DeadlineExceeded: a [*TimeoutError] whose message says
// "deferred: AddTimeout: timed out after" timeout, and whose Timeout
// method, like the Failure's, reports true. It is Twisted's addTimeout: it
// adds a stage at this point of the chain, so a result that gets here in
// time stops the timer and passes unchanged (even a failure matching
// ErrCancelled that the timer did not cause), and the timeout also covers a
// Deferred that an earlier stage waits for, which Cancel cancels. If d's
// canceller fires d with a value, or with another failure, that result
// passes unchanged.
//
// When the timeout passes first, Cancel and the chain after it run on the
// timer's goroutine. A zero timeout times d out at once, on the calling
// goroutine, unless its chain has already reached this point. AddTimeout
// returns d. It panics if timeout is negative, or if d's chain was handed
// over by Then or ThenDeferred.
//
// In tests, run code that uses AddTimeout inside a testing/synctest bubble,
// where time is fake: AddTimeout(time.Hour) fires as soon as every
// goroutine in the bubble is blocked, at exactly one hour of the bubble's
// time (TestAddTimeoutFiresInstantlyInABubble in package deferredtest,
// deferredtest/synctest_test.go).
func (d *Deferred[T]) AddTimeout(timeout time.Duration) *Deferred[T] {
	if timeout < 0 {
		panic(fmt.Sprintf("deferred: AddTimeout called with a negative timeout (%v)", timeout))
	}
	return d.addTimeout(timeout, nil, "AddTimeout")
}

// AddTimeoutFunc is AddTimeout with a say in what a timeout becomes: when
// the timeout has cancelled d, onTimeout is called with the failure
// AddTimeout would pass on (a [*TimeoutError] matching ErrTimeout, its Op
// "deferred: AddTimeoutFunc"), and its result replaces that failure: a
// value recovers the chain with a fallback, an error fails it with that
// error instead, and returning the failure keeps the timeout. It is
// Twisted's addTimeout with onTimeoutCancel, in one stage.
//
// onTimeout runs only for a timeout: never when d's result gets here in
// time, whatever it is, and never for a cancellation that did not come
// from the timer. Unlike Twisted's onTimeoutCancel, it does not see a
// value or a failure other than the cancellation's that d's canceller
// fired d with; those pass unchanged, as with AddTimeout, so that
// onTimeout only ever decides about a timeout. A panic in onTimeout
// becomes the chain's failure, as in any stage. onTimeout runs on the
// timer's goroutine, or on the calling one for a zero timeout.
//
// AddTimeoutFunc returns d. It panics if timeout is negative or onTimeout
// is nil, or if d's chain was handed over by Then or ThenDeferred.
func (d *Deferred[T]) AddTimeoutFunc(timeout time.Duration, onTimeout func(*Failure) (T, error)) *Deferred[T] {
	switch {
	case timeout < 0:
		panic(fmt.Sprintf("deferred: AddTimeoutFunc called with a negative timeout (%v)", timeout))
	case onTimeout == nil:
		panic("deferred: AddTimeoutFunc called with a nil function")
	}
	return d.addTimeout(timeout, onTimeout, "AddTimeoutFunc")
}

// addTimeout is AddTimeout and AddTimeoutFunc, fn naming the caller; a nil
// onTimeout passes the timeout's failure on.
func (d *Deferred[T]) addTimeout(timeout time.Duration, onTimeout func(*Failure) (T, error), fn string) *Deferred[T] {
	t := &cancelGuard[T]{d: d}
	// The stage goes in first: if d has fired, it runs now and there is no
	// timer to start.
	d.add(bothStage(func(v T, f *Failure) (T, error) {
		timedOut := t.reached()
		switch {
		case f == nil:
			return v, nil
		case timedOut && errors.Is(f, ErrCancelled):
			tf := NewFailure(&TimeoutError{Op: "deferred: " + fn, After: timeout})
			if onTimeout != nil {
				return onTimeout(tf)
			}
			return zeroOf[T](), tf
		}
		return v, f
	}), fn)

	t.mu.Lock()
	if t.state != guardPending {
		t.mu.Unlock()
		return d
	}
	if timeout == 0 {
		t.mu.Unlock()
		t.cancel()
		return d
	}
	t.stop = afterFunc(timeout, t.cancel).Stop
	t.mu.Unlock()
	return d
}

// afterFunc is time.AfterFunc; tests replace it to check that timers stop.
var afterFunc = time.AfterFunc

// Later returns a Deferred that fires with f's result once delay has
// passed: f's value, its error as a Failure, or the Failure of its panic.
// It is Twisted's deferLater: f runs as the Deferred's first stage, on the
// timer's goroutine, which then runs the rest of the chain. A zero delay
// runs f as soon as possible, on a timer goroutine, never on the calling
// one.
//
// Cancelling the Deferred before the delay has passed stops the timer: f
// never runs and the Deferred fails with ErrCancelled. Cancel has no effect
// once f has started. Later panics if delay is negative or f is nil.
//
// In tests, call Later inside a testing/synctest bubble, where time is
// fake: its timer follows the bubble's clock, so Later(time.Hour, f) runs f
// as soon as every goroutine in the bubble is blocked, as
// AddTimeout(time.Hour) fires there
// (TestAddTimeoutFiresInstantlyInABubble in package deferredtest,
// deferredtest/synctest_test.go).
func Later[T any](delay time.Duration, f func() (T, error)) *Deferred[T] {
	if delay < 0 {
		panic(fmt.Sprintf("deferred: Later called with a negative delay (%v)", delay))
	}
	if f == nil {
		panic("deferred: Later called with a nil function")
	}
	var timer *time.Timer
	d := NewWithCanceller(func(*Deferred[T]) { timer.Stop() })
	d.AddCallback(func(T) (T, error) { return f() })
	// If Cancel wins a race with the timer, this Callback is refused and f
	// does not run.
	timer = afterFunc(delay, func() { _ = d.Callback(zeroOf[T]()) })
	return d
}
