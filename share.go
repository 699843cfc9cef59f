package deferred

// This file owns sharing one result: looking at it without taking it
// (Done, Peek), and branches that get a copy of it (Observe), on which
// Await is built.

import "unsafe"

// Done returns a channel that is closed once d holds its result: d has
// fired, is not paused, does not wait for another Deferred, and has no
// stage left to run. If d holds its result already, the channel is closed
// already. Done changes nothing, so it fits in a select beside other
// channels; read the result with Peek.
//
// The channel is made on the first call that needs one: a Deferred nobody
// asks costs nothing. A stage added after the channel was closed may make
// d wait again (for a Deferred it returns, say): Peek then reports no
// result, and a later Done returns a new channel. Done panics if d's chain
// was handed over by Then or ThenDeferred: use the Deferred Then returned.
func (d *Deferred[T]) Done() <-chan struct{} {
	mustNotBeNil(d, "Done")
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.is(handedOver) {
		panic(handedOverMessage("Done"))
	}
	if d.holdsResultLocked() {
		return closedChan
	}
	r := d.rareLocked()
	if r.done == nil {
		r.done = make(chan struct{})
	}
	return r.done
}

// closedChan is the channel Done returns for a Deferred that holds its
// result already.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Peek returns the result d holds, and true, if Done is closed: the value,
// or the failure, that the next stage added would get. Otherwise it returns
// the zero Outcome and false. Peek changes nothing: a failure it returns is
// not marked handled, and is still reported if nothing handles it. A value
// is returned as is, so the caller shares whatever it points to with d's
// chain. Peek panics if d's chain was handed over by Then or ThenDeferred.
func (d *Deferred[T]) Peek() (Outcome[T], bool) {
	mustNotBeNil(d, "Peek")
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.is(handedOver) {
		panic(handedOverMessage("Peek"))
	}
	if !d.holdsResultLocked() {
		return Outcome[T]{}, false
	}
	return Outcome[T]{Value: d.value, Failure: d.failure}, true
}

// holdsResultLocked reports whether d holds its result: it has fired, its
// chain was not handed over, and nothing is left to run, resume or wait
// for.
func (d *Deferred[T]) holdsResultLocked() bool {
	return d.flags&(called|running|handedOver) == called && d.paused.Load() == 0 && d.head == d.n &&
		d.waitingLocked() == nil
}

// noteDoneLocked closes the channel Done gave out once d holds its result.
// d.x.rare is not nil.
func (d *Deferred[T]) noteDoneLocked() {
	if r := d.x.rare; r.done != nil && d.holdsResultLocked() {
		close(r.done)
		r.done = nil
	}
}

// Observe returns a branch of d: a new Deferred that fires with d's result
// as it stands at this point of d's chain, while d's chain goes on
// unchanged, with the same result. It is the way to let several parts of a
// program wait for one Deferred: each takes its own branch, adds its own
// stages to it, combines it, or cancels it, and d does not notice.
//
// The branch's chain runs when d's chain reaches this point, before the
// rest of d's chain, on the goroutine running d's (at once if d holds its
// result already). The branch gets the same value (shared, if it points to
// anything) or the same *Failure as d.
//
// Cancelling the branch never cancels d: before the branch fires it is
// taken off d's chain, leaving nothing on d, and it fails with ErrCancelled;
// after, Cancel acts on the branch alone, as on any Deferred. So
// Race(work, shutdown.Observe()) leaves shutdown alone when work wins.
//
// A failure shared by d and its branches is one failure: it is reported
// once if nothing handles it (by whichever Deferred holding it is collected
// first), and not at all once any of them handles it — an errback that
// recovers from it or returns another error, an Await or a combinator that
// consumes it.
//
// Observe panics if d's chain was handed over by Then or ThenDeferred.
func (d *Deferred[T]) Observe() *Deferred[T] {
	mustNotBeNil(d, "Observe")
	b := new(Deferred[T])
	if tracking.Load() {
		if track, sampled := sampleNew(); track {
			b.track(2, sampled)
			b.fedBy(d, "Observe")
		}
	}
	b.aux = funcPtr(func(b *Deferred[T]) { d.detach(b) }) // b's canceller
	d.add(stage[T]{p: unsafe.Pointer(b), k: kindBranch}, "Observe")
	return b
}

// detach takes branch b's stage off d's queue, if it is there and nobody
// is running d's chain. While the chain runs, the stage stays: the runner
// gets to it soon, and b, cancelled, refuses the result.
func (d *Deferred[T]) detach(b *Deferred[T]) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.is(running) {
		return
	}
	p := unsafe.Pointer(b)
	for i := d.n - 1; i >= d.head; i-- { // from the end: most often the last one
		if st := d.stageLocked(i); st.p == p && st.k == kindBranch {
			d.removeLocked(i)
			return
		}
	}
}
