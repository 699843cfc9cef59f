package deferred

// This file owns nesting: a chain that waits for a Deferred one of its
// stages returned, and Chain, which fires another Deferred with d's
// result. Both move from one Deferred to the next through the driver
// (chain.go), never by recursion.

import (
	"errors"
	"unsafe"
)

// ErrInvalidReturn is matched (errors.Is) by the failure of a chain whose
// …Deferred stage returned a Deferred it cannot wait for: nil, the
// Deferred the stage belongs to, one whose chain Then handed over, one that
// another Deferred already waits for, or one that waits for this one.
var ErrInvalidReturn = errors.New("deferred: a stage returned a Deferred the chain cannot wait for")

// invalidReturn is an ErrInvalidReturn that says which case it is.
type invalidReturn string

func (e invalidReturn) Error() string        { return string(e) }
func (e invalidReturn) Is(target error) bool { return target == ErrInvalidReturn }

var errNilDeferred error = invalidReturn("deferred: a stage returned a nil *Deferred")

// Chain makes other fire with d's result at this point of d's chain, like
// Twisted's chainDeferred: other's chain runs, then d's chain goes on with
// the zero value (the result now belongs to other, which also reports it if
// it is a failure nobody handles). If other has already fired, d's chain
// fails from here with an ErrAlreadyCalled error. Chains of any length fire
// in a loop, not by recursion. Chain returns d. It panics if other is nil
// or is d, or if d's chain was handed over by Then or ThenDeferred.
func (d *Deferred[T]) Chain(other *Deferred[T]) *Deferred[T] {
	if other == nil {
		panic("deferred: Chain called with a nil *Deferred")
	}
	if other == d {
		panic("deferred: Chain called with the Deferred itself")
	}
	d.add(stage[T]{p: unsafe.Pointer(other), k: kindChain}, "Chain")
	if !other.Called() {
		other.fedBy(d, "Chain") // for String, as Twisted's repr says it
	}
	return d
}

// fireByLibrary fires d with (v, f) on behalf of the library (Chain, Then)
// and returns d, to be driven. If d has already fired it returns nil and,
// unless the firing was expected after a Cancel, an ErrAlreadyCalled error.
func (d *Deferred[T]) fireByLibrary(v T, f *Failure) (node, error) {
	d.mu.Lock()
	if d.is(called) {
		return nil, d.calledAgainUnlock()
	}
	d.fireLocked(v, f, 1)
	d.mu.Unlock()
	return d, nil
}

// link makes outer, which is marked as waiting for inner and not running,
// go on with inner's result once inner's chain has run: it queues on inner
// a stage of kindWaiter, which gives the result to outer, as Twisted's
// continuation callback does (stages added to inner later see the zero
// value). It returns the node to drive next.
func link[T any](outer, inner *Deferred[T]) node {
	if inner == outer {
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned the Deferred it belongs to; its chain would wait for itself forever")))
	}
	if waitsFor(inner, outer) {
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred that waits for this one; both would wait forever")))
	}
	if v, f, took := outer.takeFired(inner); took {
		return outer.deliver(v, f)
	}
	inner.mu.Lock()
	switch {
	case inner.is(handedOver):
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred whose chain was handed over by Then")))
	case inner.is(waitedFor):
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred that another Deferred already waits for")))
	}
	inner.set(waitedFor, true)
	inner.pushLocked(stage[T]{p: unsafe.Pointer(outer), k: kindWaiter})
	inner.mu.Unlock()
	return inner
}

// takeFired takes the result of inner, a Deferred that a stage of d
// returned, if inner has fired and is idle (the common case of a stage
// returning Succeed or Fail), as Twisted does: inner is left holding the
// zero value, where Twisted leaves None. d's chain can then go on at once,
// without waiting. In every other case it changes nothing and reports
// false, and link decides. An idle fired inner waits for nothing, so it
// cannot wait for d; d itself is never taken from.
func (d *Deferred[T]) takeFired(inner *Deferred[T]) (v T, f *Failure, took bool) {
	if inner == d {
		return v, nil, false
	}
	inner.mu.Lock()
	if inner.flags&(called|running|handedOver|waitedFor) != called || inner.paused.Load() != 0 ||
		inner.head != inner.n || inner.waitingLocked() != nil {
		inner.mu.Unlock()
		return v, nil, false
	}
	if inner.is(cleanupArmed) {
		inner.disarmCleanupLocked()
	}
	v, f = inner.takeResultLocked()
	inner.mu.Unlock()
	return v, f, true
}

// waitsFor reports whether inner's chain waits, directly or through
// others, for outer's: whether letting outer wait for inner would close a
// cycle. A Deferred waits for at most one other and is waited for by at
// most one, so those inner waits for form a line down from inner, and
// those that wait for outer a line up from outer. There is a cycle if and
// only if the line down from inner reaches outer, in k steps; inner is
// then k steps up from outer. So the walk goes down from inner and up from
// outer a step at a time each, and stops at the end of the shorter line:
// joining two lines costs the length of the shorter, and building a nest
// of n Deferreds in any order costs O(n log n) steps in all, never the
// O(n²) of walking down the whole nest at every link.
func waitsFor[T any](inner, outer *Deferred[T]) bool {
	down, up := inner, outer
	for {
		if testHookCycleStep != nil {
			testHookCycleStep()
		}
		if down = down.waiting(); down == nil {
			return false
		}
		if down == outer {
			return true
		}
		if up = up.waiter(); up == nil {
			return false // the line up from outer ends before reaching inner
		}
	}
}

// testHookCycleStep, set by tests only, is called at each step of
// waitsFor, so that a test can count them.
var testHookCycleStep func()

// waiting returns the Deferred d's chain waits for, or nil.
func (d *Deferred[T]) waiting() *Deferred[T] {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waitingLocked()
}

// waiter returns the Deferred that waits for d's result, or nil: the
// target of d's waiter stage, which stages added after it follow.
func (d *Deferred[T]) waiter() *Deferred[T] {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.is(waitedFor) {
		return nil
	}
	for i := d.n - 1; i >= d.head; i-- {
		if st := d.stageLocked(i); st.k == kindWaiter {
			return (*Deferred[T])(st.p)
		}
	}
	return nil // the runner has taken the stage: d is handing its result over
}

// deliver gives a waiting Deferred the result it waited for and returns it,
// to be driven on.
func (d *Deferred[T]) deliver(v T, f *Failure) node {
	d.mu.Lock()
	d.value, d.failure = v, f
	d.setWaitingLocked(nil)
	d.mu.Unlock()
	return d
}
