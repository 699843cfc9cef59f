package deferred

// This file owns Then and ThenDeferred, the stages that change the type of
// the result: they hand d's chain over to a new Deferred[U].

import "unsafe"

// Then adds cb as the last stage of d and returns a new Deferred[U] that
// carries the chain on with cb's result: cb's (u, nil) gives u, its
// (_, err) and any failure reaching this point fail the new Deferred. Go
// methods cannot have type parameters, which is why Then is a function.
//
// d's chain is handed over: adding stages to d afterwards, or calling Then
// on it again, panics. The producer may still fire d. Cancelling either
// Deferred is cancelling d, as if they were one Deferred: before d fires it
// runs d's canceller and the failure reaches the new Deferred through cb's
// place in the chain; after, it cancels the Deferred d's chain waits for, if
// any, and otherwise does nothing, and the result still arrives. Then panics
// if d or cb is nil, or if another Deferred is waiting for d.
func Then[T, U any](d *Deferred[T], cb func(T) (U, error)) *Deferred[U] {
	if cb == nil {
		panic("deferred: Then called with a nil function")
	}
	if d == nil {
		panic("deferred: Then called with a nil *Deferred")
	}
	l := &thenLink[T, U]{cb: cb}
	l.init(d, l)
	if tracking.Load() && l.u.trackedLocked() != nil { // u is not shared yet
		l.u.fedBy(d, "Then")
	}
	d.handOver("Then", &l.target)
	return &l.u
}

// ThenDeferred is Then for a cb that returns a Deferred: the new Deferred
// fires with that Deferred's result. A returned Deferred it cannot wait for
// (nil, or one whose chain Then handed over, say) fails it with an error
// matching ErrInvalidReturn. ThenDeferred panics if d or cb is nil, or if
// d's chain was already handed over or another Deferred is waiting for d.
func ThenDeferred[T, U any](d *Deferred[T], cb func(T) *Deferred[U]) *Deferred[U] {
	if cb == nil {
		panic("deferred: ThenDeferred called with a nil function")
	}
	if d == nil {
		panic("deferred: ThenDeferred called with a nil *Deferred")
	}
	l := &thenDeferredLink[T, U]{cb: cb}
	l.init(d, l)
	if tracking.Load() && l.u.trackedLocked() != nil { // u is not shared yet
		l.u.fedBy(d, "ThenDeferred")
	}
	d.handOver("ThenDeferred", &l.target)
	return &l.u
}

// A thenTarget is what the last stage of a handed-over Deferred points to:
// the link to the Deferred that Then or ThenDeferred returned.
type thenTarget[T any] interface {
	// takeOver moves the result (v, f) to the new Deferred and returns
	// that one, to be driven on.
	takeOver(v T, f *Failure) node
}

// thenBase is what Then and ThenDeferred allocate, in one piece with the
// function they were given: the Deferred they return, and the two ties to
// the source d. d's last stage points at target; u's Cancel goes to up.
type thenBase[T, U any] struct {
	u      Deferred[U]
	target thenTarget[T]  // the link itself
	up     cancelUpstream // d
}

// init ties u to d, t being the link that embeds b. What New does for a
// Deferred it makes is done here for u.
func (b *thenBase[T, U]) init(d *Deferred[T], t thenTarget[T]) {
	if tracking.Load() {
		if track, sampled := sampleNew(); track {
			b.u.track(3, sampled)
		}
	}
	b.target, b.up = t, d
	b.u.aux = unsafe.Pointer(&b.up) // see cancelsSource
	b.u.set(cancelsSource, true)
}

type thenLink[T, U any] struct {
	thenBase[T, U]
	cb func(T) (U, error)
}

// takeOver runs once; it drops cb, so that the link, which lives as long as
// the Deferred it returned, does not keep what cb holds. One deferred call
// covers both ways cb can fail to return: a panic, whose Failure fires u,
// and a Goexit (see fireAfterGoexit).
func (l *thenLink[T, U]) takeOver(v T, f *Failure) (next node) {
	cb := l.cb
	l.cb = nil
	if f != nil {
		return l.u.fireOrReport(zeroOf[U](), f)
	}
	returned := false
	defer func() {
		if !returned {
			if p := recover(); p != nil {
				f := panicFailure(p)
				f.stage = entry(funcPtr(cb))
				next = l.u.fireOrReport(zeroOf[U](), f)
			} else {
				l.u.fireAfterGoexit(goexitFailure())
			}
		}
	}()
	u, err := cb(v)
	returned = true
	var uf *Failure
	if err != nil {
		u, uf = stageFailed(u, err, entry(funcPtr(cb)))
	}
	return l.u.fireOrReport(u, uf)
}

type thenDeferredLink[T, U any] struct {
	thenBase[T, U]
	cb func(T) *Deferred[U]
}

// takeOver runs once, and drops cb and recovers as thenLink's does.
func (l *thenDeferredLink[T, U]) takeOver(v T, f *Failure) (next node) {
	cb := l.cb
	l.cb = nil
	if f != nil {
		return l.u.fireOrReport(zeroOf[U](), f)
	}
	returned := false
	defer func() {
		if !returned {
			if p := recover(); p != nil {
				next = l.u.fireOrReport(zeroOf[U](), panicFailure(p))
			} else {
				l.u.fireAfterGoexit(goexitFailure())
			}
		}
	}()
	inner := cb(v)
	returned = true
	if inner == nil {
		return l.u.fireOrReport(zeroOf[U](), failureOf(errNilDeferred))
	}
	return l.u.fireWhenDone(inner)
}

// fireOrReport is fireByLibrary for Then's hand-over. If somebody fired d
// by hand first, a failure arriving now has nowhere to go: it is reported
// as unhandled rather than lost.
func (d *Deferred[T]) fireOrReport(v T, f *Failure) node {
	n, err := d.fireByLibrary(v, f)
	if err != nil && f != nil {
		reportUnhandled(f)
	}
	return n
}

// fireWhenDone fires d, ThenDeferred's Deferred, with the result of inner
// once inner has one: d fires at once and waits for inner.
func (d *Deferred[T]) fireWhenDone(inner *Deferred[T]) node {
	d.mu.Lock()
	if d.is(called) {
		// Fired by its user or cancelled meanwhile: inner keeps its result,
		// and reports it if it is a failure nobody handles.
		d.set(suppressAlreadyCalled, false)
		d.mu.Unlock()
		return nil
	}
	d.fireLocked(zeroOf[T](), nil, 1)
	d.setWaitingLocked(inner)
	d.mu.Unlock()
	return link(d, inner)
}

// handOver marks d as handed over and adds t, which carries the result to
// the Deferred that takes over, as d's last stage.
func (d *Deferred[T]) handOver(method string, t *thenTarget[T]) {
	d.mu.Lock()
	switch {
	case d.is(handedOver):
		d.mu.Unlock()
		panic(handedOverMessage(method))
	case d.is(waitedFor):
		d.mu.Unlock()
		panic("deferred: " + method + " on a Deferred that another Deferred is waiting for")
	}
	d.set(handedOver, true)
	d.pushLocked(stage[T]{p: unsafe.Pointer(t), k: kindThen})
	d.runAndUnlockIfIdle()
}
