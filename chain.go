package deferred

import (
	"errors"
	"fmt"
)

// This file holds the stage list and the firing loop: the only place that
// runs stages. The rules it keeps:
//
//   - Whoever sets d.running runs d's stages; everybody else only queues
//     stages and leaves. d.mu is never held while user code runs.
//   - Before giving up d.running, the owner re-checks under d.mu that there
//     is nothing left it could run, so a stage queued meanwhile is never lost.
//   - Moving from one Deferred to the next (an inner Deferred finishing, a
//     Chain target, a Then hand-over) returns the next node to drive instead
//     of calling into it, so arbitrarily long chains run in a loop on a
//     fixed-size goroutine stack.

// A node is a Deferred of any type, as seen by the firing loop.
type node interface {
	// step runs d's stages as far as they go and returns the node to run
	// next (or nil) and a node to come back to once that one is done (or
	// nil).
	step() (next, resume node)
}

// stage is one callback/errback pair. Exactly one callback-side field and
// at most one errback-side field are set; a nil side passes the result on.
type stage[T any] struct {
	cb    func(T) (T, error)
	eb    func(*Failure) (T, error)
	cbd   func(T) *Deferred[T]
	ebd   func(*Failure) *Deferred[T]
	both  func(T, *Failure) (T, error)
	chain *Deferred[T]
}

// drive runs n and everything it leads to.
func drive(n node) {
	var resume []node
	for {
		for n != nil {
			var r node
			n, r = n.step()
			if r != nil {
				resume = append(resume, r)
			}
		}
		if len(resume) == 0 {
			return
		}
		n = resume[len(resume)-1]
		resume[len(resume)-1] = nil
		resume = resume[:len(resume)-1]
	}
}

// runnable reports whether d has work the firing loop could do now. d.mu
// must be held.
func (d *Deferred[T]) runnable() bool {
	return d.called && !d.running && d.paused == 0 && d.waiting == nil &&
		(d.head < len(d.stages) || d.parent != nil || d.handoff != nil)
}

// step implements node.
func (d *Deferred[T]) step() (next, resume node) {
	d.mu.Lock()
	if !d.runnable() {
		// Nothing to run: a failure held here is unhandled until a stage
		// comes for it.
		if d.called && !d.running && d.failure != nil && d.waiting == nil && !d.cleanupArmed {
			d.armCleanup()
		}
		d.mu.Unlock()
		return nil, nil
	}
	d.running = true
	if d.cleanupArmed {
		// Somebody is about to see the failure: it is not unhandled yet.
		d.cleanupArmed = false
		d.cleanup.Stop()
	}
	for d.paused == 0 && d.head < len(d.stages) {
		st := d.stages[d.head]
		d.stages[d.head] = stage[T]{} // let the closures go
		d.head++
		if d.head == len(d.stages) {
			d.head, d.stages = 0, d.stages[:0]
		}
		v, f := d.value, d.failure

		if st.chain != nil {
			other := st.chain
			var zero T
			d.value, d.failure = zero, nil
			d.mu.Unlock()
			next, err := other.settle(v, f)
			d.mu.Lock()
			if err != nil {
				d.failure = failureOf(err)
			}
			if next == nil {
				continue
			}
			// Run other's chain before the rest of ours, as Twisted does,
			// but from the loop: come back to d only if it has more to do.
			more := d.head < len(d.stages) || d.parent != nil || d.handoff != nil || d.failure != nil
			d.running = false
			d.mu.Unlock()
			if more {
				return next, d
			}
			return next, nil
		}

		d.mu.Unlock()
		v, f, inner := runStage(&st, v, f)
		d.mu.Lock()
		if inner != nil {
			d.waiting = inner
			d.running = false
			d.mu.Unlock()
			return link(d, inner), nil
		}
		d.value, d.failure = v, f
	}

	// Out of stages (or paused). Hand the result on if somebody waits for it.
	if d.paused == 0 && d.head == len(d.stages) {
		if p := d.parent; p != nil {
			v, f := d.value, d.failure
			var zero T
			d.value, d.failure, d.parent = zero, nil, nil
			d.running = false
			d.mu.Unlock()
			return p.deliver(v, f), nil
		}
		if h := d.handoff; h != nil {
			v, f := d.value, d.failure
			var zero T
			d.value, d.failure, d.handoff = zero, nil, nil
			d.running = false
			d.mu.Unlock()
			return h(v, f), nil
		}
	}
	if d.failure != nil && !d.cleanupArmed {
		d.armCleanup()
	}
	d.running = false
	d.mu.Unlock()
	return nil, nil
}

// runStage runs one stage on the result (v, f) and returns the new result,
// or the Deferred the stage returned, which the chain must now wait for. A
// panic in the stage becomes the new result's Failure.
func runStage[T any](st *stage[T], v T, f *Failure) (rv T, rf *Failure, inner *Deferred[T]) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			rv, rf, inner = zero, panicFailure(p), nil
		}
	}()
	var err error
	if f == nil {
		switch {
		case st.cb != nil:
			rv, err = st.cb(v)
		case st.cbd != nil:
			inner = st.cbd(v)
			if inner == nil {
				err = errNilDeferred
			}
		case st.both != nil:
			rv, err = st.both(v, nil)
		default:
			return v, nil, nil
		}
	} else {
		switch {
		case st.eb != nil:
			rv, err = st.eb(f)
		case st.ebd != nil:
			inner = st.ebd(f)
			if inner == nil {
				err = errNilDeferred
			}
		case st.both != nil:
			rv, err = st.both(v, f)
		default:
			return v, f, nil
		}
	}
	if err != nil {
		if f, ok := err.(*Failure); ok && f == nil {
			// AddBoth's natural pass-through returns its nil *Failure on
			// success: a typed nil means no failure, not a mystery error.
			return rv, nil, inner
		}
		var zero T
		return zero, failureOf(err), nil
	}
	return rv, nil, inner
}

var errNilDeferred = errors.New("deferred: a stage returned a nil *Deferred")

// link makes outer, which is marked as waiting for inner and not running,
// continue with inner's result once inner's chain has run. It returns the
// node to drive next.
func link[T any](outer, inner *Deferred[T]) node {
	if inner == outer {
		return outer.deliver(zeroOf[T](), failureOf(fmt.Errorf(
			"deferred: a stage returned the Deferred it belongs to; its chain would wait for itself forever")))
	}
	inner.mu.Lock()
	switch {
	case inner.handoff != nil || inner.handedOver:
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(errors.New(
			"deferred: a stage returned a Deferred whose chain was handed over by Then")))
	case inner.parent != nil:
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(errors.New(
			"deferred: a stage returned a Deferred that another Deferred already waits for")))
	case inner.called && !inner.running && inner.paused == 0 && inner.waiting == nil &&
		inner.head == len(inner.stages):
		// Already fired and idle: take its result now (Twisted leaves the
		// inner Deferred holding None; we leave it the zero value).
		v, f := inner.value, inner.failure
		var zero T
		inner.value, inner.failure = zero, nil
		if inner.cleanupArmed {
			inner.cleanupArmed = false
			inner.cleanup.Stop()
		}
		inner.mu.Unlock()
		return outer.deliver(v, f)
	default:
		inner.parent = outer
		inner.mu.Unlock()
		return inner
	}
}

func zeroOf[T any]() (z T) { return z }

// deliver gives a waiting Deferred the result it waited for and returns it,
// to be driven on.
func (d *Deferred[T]) deliver(v T, f *Failure) node {
	d.mu.Lock()
	d.value, d.failure, d.waiting = v, f, nil
	d.mu.Unlock()
	return d
}

// settle fires d with (v, f) on behalf of the library (Chain, Then) and
// returns d to be driven. If d has already fired it returns nil and, unless
// the firing was expected after a Cancel, an ErrAlreadyCalled error.
func (d *Deferred[T]) settle(v T, f *Failure) (node, error) {
	d.mu.Lock()
	if d.called {
		if d.suppressAlreadyCalled {
			d.suppressAlreadyCalled = false
			d.mu.Unlock()
			return nil, nil
		}
		err := d.alreadyCalledError()
		d.mu.Unlock()
		return nil, err
	}
	d.fire(v, f, 1)
	d.mu.Unlock()
	return d, nil
}

// settleWaiting fires d with the result of inner, once inner has one. It is
// ThenDeferred's hand-over.
func (d *Deferred[T]) settleWaiting(inner *Deferred[T]) node {
	d.mu.Lock()
	if d.called {
		suppressed := d.suppressAlreadyCalled
		d.suppressAlreadyCalled = false
		d.mu.Unlock()
		if !suppressed {
			// Nobody can see inner's result any more: say so.
			inner.AddErrback(func(f *Failure) (T, error) {
				reportUnhandled(f)
				return zeroOf[T](), nil
			})
		}
		return nil
	}
	d.fire(zeroOf[T](), nil, 1)
	d.waiting = inner
	d.mu.Unlock()
	return link(d, inner)
}
