package deferred

// This file owns the controls a consumer has over a Deferred besides its
// stages: Pause, Unpause, Cancel and Called.

// Pause stops d's chain before its next stage until a matching Unpause.
// Pauses count: n Pauses need n Unpauses.
func (d *Deferred[T]) Pause() {
	mustNotBeNil(d, "Pause")
	d.mu.Lock()
	d.paused.Add(1)
	d.mu.Unlock()
}

// Unpause undoes one Pause and, when none is left, runs the rest of the
// chain on the calling goroutine if d has fired. Unpause on a Deferred that
// is not paused does nothing (Twisted would count below zero and never run
// the chain again).
func (d *Deferred[T]) Unpause() {
	mustNotBeNil(d, "Unpause")
	d.mu.Lock()
	if d.paused.Load() > 0 {
		d.paused.Add(-1)
	}
	d.runAndUnlockIfIdle()
}

// Cancel asks for d's result to be abandoned. If d has not fired, Cancel
// calls its canceller (once, however often Cancel is called); if the
// canceller does not fire d, or there is none, d fails with a Failure
// matching ErrCancelled. Without a canceller, the producer's first later
// Callback or Errback is then ignored; a canceller is expected to have
// stopped the producer, so after one a later firing returns
// ErrAlreadyCalled as usual. If d has fired and its chain waits for a
// Deferred returned by a stage, that Deferred is cancelled instead.
// Otherwise Cancel does nothing — also when it comes while one of d's
// stages runs, before the chain waits for a Deferred that stage returns, as
// in Twisted: cancel that Deferred, or the context of the work, instead. A
// panicking canceller does not make Cancel panic: d fails with the panic's
// Failure.
func (d *Deferred[T]) Cancel() {
	mustNotBeNil(d, "Cancel")
	// A Then chain crosses types: each step returns the upstream Deferred
	// to cancel next, so a chain of any length is cancelled in a loop.
	for next := d.cancelStep(); next != nil; {
		next = next.cancelStep()
	}
}

// A cancelUpstream is the source a Then or ThenDeferred Deferred cancels:
// a *Deferred of another type.
type cancelUpstream interface {
	// cancelStep cancels this Deferred unless it is Then's, and returns
	// the source to cancel next if it is.
	cancelStep() cancelUpstream
}

// cancelStep is Cancel for d alone: it does what Cancel's doc says, except
// that for a Deferred made by Then or ThenDeferred it returns the source,
// which the caller cancels next.
func (d *Deferred[T]) cancelStep() cancelUpstream {
	d.mu.Lock()
	for d.is(called) {
		// Fired: cancel what the chain waits for, down a nest of any depth.
		w := d.waitingLocked()
		d.mu.Unlock()
		if w == nil {
			return nil
		}
		d = w
		d.mu.Lock()
	}
	if d.is(cancelsSource) {
		// Then's Deferred: cancelling it is cancelling the source, whose
		// result, cancelled or not, arrives through the hand-over. A
		// source that has fired ignores the Cancel, as in Twisted.
		up := *(*cancelUpstream)(d.aux)
		d.mu.Unlock()
		return up
	}
	if d.is(cancelled) {
		d.mu.Unlock()
		return nil
	}
	d.set(cancelled, true)
	c := d.cancellerLocked()
	d.aux = nil
	d.mu.Unlock()

	var f *Failure
	if c != nil {
		f = callCanceller(c, d)
	}
	d.mu.Lock()
	if d.is(called) {
		d.mu.Unlock()
		return nil
	}
	if f == nil {
		f = withStack(3)
		f.err = ErrCancelled
	}
	if c == nil {
		// Nobody told the producer: let its eventual firing pass quietly.
		d.set(suppressAlreadyCalled, true)
	}
	d.fireLocked(zeroOf[T](), f, 3)
	d.runAndUnlockIfIdle()
	return nil
}

// callCanceller calls c, turning a panic into the Failure returned. If c
// calls runtime.Goexit, d fails with ErrGoexit, unless c fired it, before
// the goroutine leaves.
func callCanceller[T any](c func(*Deferred[T]), d *Deferred[T]) (f *Failure) {
	returned := false
	defer func() {
		if returned {
			return
		}
		if p := recover(); p != nil {
			f = panicFailure(p)
			return
		}
		d.mu.Lock()
		if d.is(called) {
			d.mu.Unlock()
			return
		}
		d.fireLocked(zeroOf[T](), goexitFailure(), 2)
		d.runAndUnlockIfIdle()
	}()
	c(d)
	returned = true
	return nil
}

// Called reports whether d has fired (Callback, Errback or Cancel).
func (d *Deferred[T]) Called() bool {
	mustNotBeNil(d, "Called")
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.is(called)
}
