package deferred

import (
	"errors"
	"runtime"
	"sync/atomic"
)

// spinLock guards a Deferred's fields. Its critical sections are a few
// dozen instructions and never run user code, so spinning beats parking;
// unlocking is a plain atomic store where sync.Mutex needs a second
// read-modify-write, which is most of the cost of an uncontended chain.
type spinLock struct{ v atomic.Uint32 }

func (l *spinLock) Lock() {
	if l.v.CompareAndSwap(0, 1) {
		return
	}
	l.lockSlow()
}

func (l *spinLock) lockSlow() {
	for i := 0; ; i++ {
		if l.v.Load() == 0 && l.v.CompareAndSwap(0, 1) {
			return
		}
		if i >= 16 {
			runtime.Gosched() // the holder may have been preempted
		}
	}
}

func (l *spinLock) Unlock() { l.v.Store(0) }

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
	// resume is step for a Deferred that was left running (still owned
	// by the loop) while another one's chain ran first.
	resume() (next, resume node)
}

// stage is one callback/errback pair. Each side is nil (pass the result
// on) or one of
//
//	callbackFn[T], errbackFn[T]          AddCallback, AddErrback
//	callbackDeferredFn[T], errbackDef…   the …Deferred variants
//	bothFn[T]                            AddBoth
//	*pairStage[T]                        AddCallbacks
//	*Deferred[T]                         Chain
//	*slot[T]                             List, Gather, Race
//	handoffFunc[T]                       Then's hand-over, always last
//	waiterRef[T]                         give the result to the Deferred waiting for d
//
// One interface keeps a stage at 16 bytes, so three fit inline in a small
// Deferred; func values are pointer-shaped and box without allocating. The
// named types keep the kinds apart even where the signatures would not
// (a Deferred[*Failure]'s callback has an errback's signature).
type stage[T any] struct {
	fn any
}

type (
	callbackFn[T any]         func(T) (T, error)
	errbackFn[T any]          func(*Failure) (T, error)
	bothFn[T any]             func(T, *Failure) (T, error)
	callbackDeferredFn[T any] func(T) *Deferred[T]
	errbackDeferredFn[T any]  func(*Failure) *Deferred[T]
)

// pairStage is AddCallbacks' stage: the one case with two functions.
type pairStage[T any] struct {
	cb callbackFn[T]
	eb errbackFn[T]
}

// A waiterRef is the stage that link adds to a Deferred another one waits
// for: at that point of its chain, its result moves to the waiting one, as
// Twisted's continuation callback does. Stages added later see the zero
// value.
type waiterRef[T any] *Deferred[T]

// handoffFunc moves the result to the Deferred that Then returned and
// returns that one, to be driven on.
type handoffFunc[T any] func(T, *Failure) node

// inlineStages is how many stages a Deferred holds without allocating.
const inlineStages = 3

// stageSpill holds the stages past the inline ones.
type stageSpill[T any] struct{ s []stage[T] }

// push queues st. d.mu is held.
func (d *Deferred[T]) push(st stage[T]) {
	if d.n < inlineStages {
		d.inline[d.n] = st
	} else {
		if d.spill == nil {
			d.spill = &stageSpill[T]{s: make([]stage[T], 0, 2*inlineStages)}
		}
		d.spill.s = append(d.spill.s, st)
	}
	d.n++
}

func bothStage[T any](f func(T, *Failure) (T, error)) stage[T] { return stage[T]{fn: bothFn[T](f)} }

// drive runs n and everything it leads to.
func drive(n node) { driveFrom(n, nil) }

// driveFrom runs next, then r, and everything they lead to.
func driveFrom(n, r node) {
	var resume []node
	if r != nil {
		resume = append(resume, r)
	}
	owned := false // n is a resumed Deferred, still marked running
	for {
		for n != nil {
			var r node
			if owned {
				n, r = n.resume()
				owned = false
			} else {
				n, r = n.step()
			}
			if r != nil {
				resume = append(resume, r)
			}
		}
		if len(resume) == 0 {
			return
		}
		n, owned = resume[len(resume)-1], true
		resume[len(resume)-1] = nil
		resume = resume[:len(resume)-1]
	}
}

// runnable reports whether d has work the firing loop could do now. d.mu
// must be held.
func (d *Deferred[T]) runnable() bool {
	return d.called && !d.running && d.paused.Load() == 0 && d.waiting == nil &&
		d.head < d.n
}

// noteIdle arms the unhandled-failure report of a Deferred the loop found
// nothing to run on: a failure held there is unhandled until a stage comes
// for it. d.mu is held.
func (d *Deferred[T]) noteIdle() {
	if d.called && !d.running && d.failure != nil && d.waiting == nil && !d.cleanupArmed {
		d.armCleanup()
	}
}

// step implements node.
func (d *Deferred[T]) step() (next, resume node) {
	d.mu.Lock()
	if !d.runnable() {
		d.noteIdle()
		d.mu.Unlock()
		return nil, nil
	}
	d.running = true
	return d.run()
}

// resume implements node.
func (d *Deferred[T]) resume() (next, resume node) {
	d.mu.Lock()
	return d.run()
}

// run runs d's stages as far as they go. d.mu is held and d.running was set
// by the caller; run releases both.
func (d *Deferred[T]) run() (next, resume node) {
	if d.cleanupArmed {
		// Somebody is about to see the failure: it is not unhandled yet.
		d.cleanupArmed = false
		d.x.cleanup.Stop()
	}
	for d.paused.Load() == 0 && d.head < d.n {
		// Run the stages queued so far without the lock. Others may push
		// meanwhile: that never touches these elements (a growing spill
		// only copies them), and only the runner moves head.
		start, end := int(d.head), int(d.n)
		var spill []stage[T]
		if d.spill != nil {
			spill = d.spill.s
		}
		v, f := d.value, d.failure
		d.mu.Unlock()

		r := batchRun[T]{v: v, f: f}
		n := 0
		if start < inlineStages {
			seg := d.inline[start:min(end, inlineStages)]
			for r.n < len(seg) && !r.stopped {
				d.runSome(seg, &r)
			}
			n = r.n
		}
		if !r.stopped && end > inlineStages {
			seg := spill[max(start, inlineStages)-inlineStages : end-inlineStages]
			r.n = 0
			for r.n < len(seg) && !r.stopped {
				d.runSome(seg, &r)
			}
			n += r.n
		}
		v, f = r.v, r.f
		inner, other, handoff, waiter := r.inner, r.other, r.handoff, r.waiter

		d.mu.Lock()
		for i := start; i < start+n; i++ { // let the closures go
			if i < inlineStages {
				d.inline[i] = stage[T]{}
			} else {
				spill[i-inlineStages] = stage[T]{}
				d.spill.s[i-inlineStages] = stage[T]{} // the copy, if the spill grew
			}
		}
		if d.head = int32(start + n); d.head == d.n {
			d.head, d.n = 0, 0
			if d.spill != nil {
				d.spill.s = d.spill.s[:0]
			}
		}
		d.value, d.failure = v, f

		if handoff != nil {
			// Then's continuation, always the last stage: the result
			// moves to the Deferred that Then returned.
			d.value, d.failure = zeroOf[T](), nil
			d.running = false
			d.mu.Unlock()
			return handoff(v, f), nil
		}
		if inner != nil {
			d.waiting = inner
			d.running = false
			d.mu.Unlock()
			return link(d, inner), nil
		}
		if waiter != nil {
			// Twisted's order: the waiting Deferred's chain goes on first,
			// then ours, which we keep running meanwhile.
			d.value, d.failure, d.parent = zeroOf[T](), nil, nil
			more := d.head < d.n
			if !more {
				d.running = false
			}
			d.mu.Unlock()
			p := waiter.deliver(v, f)
			if more {
				return p, d
			}
			return p, nil
		}
		if other != nil {
			d.value, d.failure = zeroOf[T](), nil
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
			// but from the loop. d stays running meanwhile, so stages that
			// other's chain adds to d wait their turn; the loop resumes d
			// afterwards if it has more to do by then.
			d.mu.Unlock()
			return next, d
		}
	}

	if d.failure != nil && !d.cleanupArmed {
		d.armCleanup()
	}
	d.running = false
	d.mu.Unlock()
	return nil, nil
}

// batchRun is the state of a run of stages outside the lock.
type batchRun[T any] struct {
	n       int  // stages of the segment used, the one that stopped the run included
	stopped bool // a stage returned a Deferred, is special, or paused d
	v       T
	f       *Failure
	inner   *Deferred[T]   // returned by the last stage: wait for it
	other   *Deferred[T]   // a Chain stage: fire it
	handoff handoffFunc[T] // Then's hand-over
	waiter  *Deferred[T]   // the Deferred waiting for d's result here
}

// runSome runs batch's stages from r.n on, until one returns a Deferred, is
// a Chain, hand-over or waiter stage, or pauses d (r.stopped), or panics
// (the panic is now the result, and the caller goes on from the next stage).
// One deferred recover covers the whole run: recovering per stage would
// cost a defer each.
func (d *Deferred[T]) runSome(batch []stage[T], r *batchRun[T]) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			r.v, r.f, r.inner = zero, panicFailure(p), nil
			r.stopped = d.paused.Load() != 0
		}
	}()
	for r.n < len(batch) {
		st := &batch[r.n]
		r.n++
		switch x := st.fn.(type) {
		case *Deferred[T]:
			r.other, r.stopped = x, true
			return
		case handoffFunc[T]:
			r.handoff, r.stopped = x, true
			return
		case waiterRef[T]:
			r.waiter, r.stopped = x, true
			return
		}
		if r.v, r.f, r.inner = callStage(st, r.v, r.f); r.inner != nil {
			r.stopped = true
			return
		}
		if d.paused.Load() != 0 {
			r.stopped = true // a stage paused us
			return
		}
	}
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
	return callStage(st, v, f)
}

// callStage is runStage without the recover.
func callStage[T any](st *stage[T], v T, f *Failure) (rv T, rf *Failure, inner *Deferred[T]) {
	var err error
	switch fn := st.fn.(type) {
	case callbackFn[T]:
		if f != nil {
			return v, f, nil
		}
		rv, err = fn(v)
	case errbackFn[T]:
		if f == nil {
			return v, nil, nil
		}
		rv, err = fn(f)
	case bothFn[T]:
		rv, err = fn(v, f)
	case *slot[T]: // List, Gather, Race
		rv, err = fn.s.settle(fn.i, v, f)
	case *pairStage[T]:
		if f == nil {
			rv, err = fn.cb(v)
		} else {
			rv, err = fn.eb(f)
		}
	case callbackDeferredFn[T]:
		if f != nil {
			return v, f, nil
		}
		if inner = fn(v); inner == nil {
			err = errNilDeferred
		}
	case errbackDeferredFn[T]:
		if f == nil {
			return v, nil, nil
		}
		if inner = fn(f); inner == nil {
			err = errNilDeferred
		}
	default:
		return v, f, nil
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

// call calls f, turning a panic into a Failure.
func call[T any](f func() (T, error)) (v T, fl *Failure) {
	v, fl, _ = runStage(&stage[T]{fn: callbackFn[T](func(T) (T, error) { return f() })}, v, nil)
	return v, fl
}

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

// link makes outer, which is marked as waiting for inner and not running,
// continue with inner's result once inner's chain has run. It returns the
// node to drive next.
func link[T any](outer, inner *Deferred[T]) node {
	if inner == outer {
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned the Deferred it belongs to; its chain would wait for itself forever")))
	}
	if waitsFor(inner, outer) {
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred that waits for this one; both would wait forever")))
	}
	inner.mu.Lock()
	switch {
	case inner.handedOver:
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred whose chain was handed over by Then")))
	case inner.parent != nil:
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred that another Deferred already waits for")))
	case inner.called && !inner.running && inner.paused.Load() == 0 && inner.waiting == nil &&
		inner.head == inner.n:
		// Already fired and idle: take its result now (Twisted leaves the
		// inner Deferred holding None; we leave it the zero value).
		v, f := inner.value, inner.failure
		var zero T
		inner.value, inner.failure = zero, nil
		if inner.cleanupArmed {
			inner.cleanupArmed = false
			inner.x.cleanup.Stop()
		}
		inner.mu.Unlock()
		return outer.deliver(v, f)
	default:
		inner.parent = outer
		w := waiterRef[T](outer)
		inner.push(stage[T]{fn: w})
		inner.mu.Unlock()
		return inner
	}
}

// waitsFor reports whether d's chain waits, directly or through others, for
// target's.
func waitsFor[T any](d, target *Deferred[T]) bool {
	for d != nil {
		if d == target {
			return true
		}
		d.mu.Lock()
		next := d.waiting
		d.mu.Unlock()
		d = next
	}
	return false
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
		return nil, d.calledAgain()
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
		// Fired by its user or cancelled meanwhile: inner keeps its result,
		// and reports it if it is a failure nobody handles.
		d.suppressAlreadyCalled = false
		d.mu.Unlock()
		return nil
	}
	d.fire(zeroOf[T](), nil, 1)
	d.waiting = inner
	d.mu.Unlock()
	return link(d, inner)
}
