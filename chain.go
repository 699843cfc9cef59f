package deferred

import (
	"errors"
	"runtime"
	"sync/atomic"
	"unsafe"
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

// stage is one callback/errback pair: a pointer-shaped value and a kind
// that says what the pointer is.
//
//	kind                      p                  made by
//	kindCallback, kindErrback func(T) (T, error)… AddCallback, AddErrback
//	kindCallbackDeferred, …   func(T) *Deferred…  the …Deferred variants
//	kindBoth                  func(T, *Failure)…  AddBoth
//	kindPair                  *pairStage[T]       AddCallbacks
//	kindSlot                  *slot[T]            List, Gather, Race
//	kindChain                 *Deferred[T]        Chain
//	kindHandoff               handoffFunc[T]      Then's hand-over, always last
//	kindWaiter                *Deferred[T]        give the result to the Deferred waiting for d
//
// Func values are one pointer, so every kind fits in p without boxing, and
// a Deferred keeps its first stages as three pointers and three kind bytes.
// The kind keeps stages apart even where the signatures would not (a
// Deferred[*Failure]'s callback has an errback's signature), and switching
// on a byte is cheaper than a type switch over generic types. T is not
// stored: it ties a stage to the Deferred[T] it may be added to.
type stage[T any] struct {
	p unsafe.Pointer
	k stageKind
}

// stageKind says what a stage's pointer is.
type stageKind uint8

const (
	kindNone stageKind = iota
	kindCallback
	kindErrback
	kindBoth
	kindCallbackDeferred
	kindErrbackDeferred
	kindPair
	kindSlot
	// The kinds from here on are not run by callStage: they stop a batch
	// and the loop handles them.
	kindChain
	kindHandoff
	kindWaiter
)

// funcPtr returns the pointer that the func value f is.
func funcPtr[F any](f F) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&f)) }

// ptrFunc turns a pointer from funcPtr back into its func type.
func ptrFunc[F any](p unsafe.Pointer) F { return *(*F)(unsafe.Pointer(&p)) }

type (
	callbackFn[T any]         = func(T) (T, error)
	errbackFn[T any]          = func(*Failure) (T, error)
	bothFn[T any]             = func(T, *Failure) (T, error)
	callbackDeferredFn[T any] = func(T) *Deferred[T]
	errbackDeferredFn[T any]  = func(*Failure) *Deferred[T]
)

func callbackStage[T any](f callbackFn[T]) stage[T] {
	return stage[T]{p: funcPtr(f), k: kindCallback}
}

func errbackStage[T any](f errbackFn[T]) stage[T] {
	return stage[T]{p: funcPtr(f), k: kindErrback}
}

func bothStage[T any](f bothFn[T]) stage[T] { return stage[T]{p: funcPtr(f), k: kindBoth} }

func callbackDeferredStage[T any](f callbackDeferredFn[T]) stage[T] {
	return stage[T]{p: funcPtr(f), k: kindCallbackDeferred}
}

func errbackDeferredStage[T any](f errbackDeferredFn[T]) stage[T] {
	return stage[T]{p: funcPtr(f), k: kindErrbackDeferred}
}

func pairStageOf[T any](cb callbackFn[T], eb errbackFn[T]) stage[T] {
	return stage[T]{p: unsafe.Pointer(&pairStage[T]{cb: cb, eb: eb}), k: kindPair}
}

func slotStage[T any](s *slot[T]) stage[T] { return stage[T]{p: unsafe.Pointer(s), k: kindSlot} }

func chainStage[T any](other *Deferred[T]) stage[T] {
	return stage[T]{p: unsafe.Pointer(other), k: kindChain}
}

func handoffStage[T any](h handoffFunc[T]) stage[T] {
	return stage[T]{p: funcPtr(h), k: kindHandoff}
}

// waiterStage is the stage that link adds to a Deferred another one waits
// for: at that point of its chain, its result moves to the waiting one, as
// Twisted's continuation callback does. Stages added later see the zero
// value.
func waiterStage[T any](outer *Deferred[T]) stage[T] {
	return stage[T]{p: unsafe.Pointer(outer), k: kindWaiter}
}

// pairStage is AddCallbacks' stage: the one case with two functions.
type pairStage[T any] struct {
	cb callbackFn[T]
	eb errbackFn[T]
}

// handoffFunc moves the result to the Deferred that Then returned and
// returns that one, to be driven on.
type handoffFunc[T any] func(T, *Failure) node

// inlineStages is how many stages a Deferred holds without allocating.
const inlineStages = 3

// push queues st. d.mu is held.
func (d *Deferred[T]) push(st stage[T]) {
	if d.n < inlineStages {
		d.inline[d.n], d.kinds[d.n] = st.p, st.k
	} else {
		x := d.ext()
		if x.spill == nil {
			x.spill = make([]stage[T], 0, 2*inlineStages)
		}
		x.spill = append(x.spill, st)
	}
	d.n++
}

// queued reports whether a stage with pointer p is in d's queue: not run
// yet, or in the batch running now (head moves only after a batch).
func (d *Deferred[T]) queued(p unsafe.Pointer) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := d.head; i < d.n; i++ {
		if i < inlineStages && d.inline[i] == p || i >= inlineStages && d.x.spill[i-inlineStages].p == p {
			return true
		}
	}
	return false
}

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
	return d.called && !d.running && d.paused.Load() == 0 && d.waiting() == nil &&
		d.head < d.n
}

// noteIdle arms the unhandled-failure report of a Deferred the loop found
// nothing to run on: a failure held there is unhandled until a stage comes
// for it. d.mu is held.
func (d *Deferred[T]) noteIdle() {
	if d.called && !d.running && d.failure != nil && d.waiting() == nil && !d.cleanupArmed {
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
		if d.head < inlineStages && d.kinds[d.head] == kindSlot {
			// A stage of List, Gather or Race runs no user code up to
			// the firing of the combined Deferred, so it runs here,
			// under the lock: this spares an input a lock round trip.
			s := (*slot[T])(d.inline[d.head])
			d.inline[d.head] = nil
			if d.head++; d.head == d.n {
				d.head, d.n = 0, 0
			}
			var fire bool
			d.value, d.failure, fire = s.s.record(s.i, d.value, d.failure)
			if fire {
				// The combined Deferred's chain runs user code: without
				// the lock, and before the rest of ours, as Twisted does.
				// d stays running meanwhile.
				d.mu.Unlock()
				s.s.fire()
				d.mu.Lock()
			}
			continue
		}
		// Run the stages queued so far without the lock. Others may push
		// meanwhile: that never touches these elements (a growing spill
		// only copies them), and only the runner moves head.
		start, end := int(d.head), int(d.n)
		var spill []stage[T]
		if end > inlineStages {
			spill = d.x.spill
		}
		// The inline stages are copied out: pushes write the slots after
		// them, never these, but a copy is one slice for runSome.
		var local [inlineStages]stage[T]
		for i := start; i < min(end, inlineStages); i++ {
			local[i-start] = stage[T]{p: d.inline[i], k: d.kinds[i]}
		}
		v, f := d.value, d.failure
		d.mu.Unlock()

		r := batchRun[T]{v: v, f: f}
		n := 0
		if start < inlineStages {
			seg := local[:min(end, inlineStages)-start]
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
				d.inline[i] = nil
			} else {
				spill[i-inlineStages] = stage[T]{}
				d.x.spill[i-inlineStages] = stage[T]{} // the copy, if the spill grew
			}
		}
		if d.head = int32(start + n); d.head == d.n {
			d.head, d.n = 0, 0
			if d.x != nil {
				d.x.spill = d.x.spill[:0]
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
			d.setWaiting(inner)
			d.running = false
			d.mu.Unlock()
			return link(d, inner), nil
		}
		if waiter != nil {
			// Twisted's order: the waiting Deferred's chain goes on first,
			// then ours, which we keep running meanwhile.
			d.value, d.failure = zeroOf[T](), nil
			d.set(waitedFor, false)
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
// cost a defer each. The result lives in locals between stages; r.n is
// kept up to date for the recover.
func (d *Deferred[T]) runSome(batch []stage[T], r *batchRun[T]) {
	// Calling recover costs a runtime call; a flag set on every normal
	// return spares it. (A panic with a nil value still recovers non-nil,
	// as a *runtime.PanicNilError.)
	returned := false
	defer func() {
		if returned {
			return
		}
		if p := recover(); p != nil {
			var zero T
			r.v, r.f, r.inner = zero, panicFailure(p), nil
			r.stopped = d.paused.Load() != 0
		}
	}()
	v, f := r.v, r.f
	for i := r.n; i < len(batch); {
		st := batch[i]
		i++
		r.n = i
		switch {
		case st.k == kindCallback && f == nil:
			// The common stage, run here rather than through callStage.
			nv, err := ptrFunc[callbackFn[T]](st.p)(v)
			if err != nil {
				v, f = stageFailed[T](nv, err)
			} else {
				v = nv
			}
		case st.k >= kindChain:
			switch st.k {
			case kindChain:
				r.other = (*Deferred[T])(st.p)
			case kindHandoff:
				r.handoff = ptrFunc[handoffFunc[T]](st.p)
			default: // kindWaiter
				r.waiter = (*Deferred[T])(st.p)
			}
			r.v, r.f, r.stopped = v, f, true
			returned = true
			return
		default:
			var inner *Deferred[T]
			if v, f, inner = callStage(st, v, f); inner != nil {
				r.v, r.f, r.inner, r.stopped = v, f, inner, true
				returned = true
				return
			}
		}
		if d.paused.Load() != 0 {
			r.v, r.f, r.stopped = v, f, true // a stage paused us
			returned = true
			return
		}
	}
	r.v, r.f = v, f
	returned = true
}

// runStage runs one stage on the result (v, f) and returns the new result,
// or the Deferred the stage returned, which the chain must now wait for. A
// panic in the stage becomes the new result's Failure.
func runStage[T any](st stage[T], v T, f *Failure) (rv T, rf *Failure, inner *Deferred[T]) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			rv, rf, inner = zero, panicFailure(p), nil
		}
	}()
	return callStage(st, v, f)
}

// callStage is runStage without the recover. st must be of a kind before
// kindChain.
func callStage[T any](st stage[T], v T, f *Failure) (rv T, rf *Failure, inner *Deferred[T]) {
	var err error
	switch st.k {
	case kindCallback:
		if f != nil {
			return v, f, nil
		}
		rv, err = ptrFunc[callbackFn[T]](st.p)(v)
	case kindErrback:
		if f == nil {
			return v, nil, nil
		}
		rv, err = ptrFunc[errbackFn[T]](st.p)(f)
	case kindBoth:
		rv, err = ptrFunc[bothFn[T]](st.p)(v, f)
	case kindSlot: // List, Gather, Race
		s := (*slot[T])(st.p)
		var fire bool
		if rv, rf, fire = s.s.record(s.i, v, f); fire {
			s.s.fire()
		}
		return rv, rf, nil
	case kindPair:
		ps := (*pairStage[T])(st.p)
		if f == nil {
			rv, err = ps.cb(v)
		} else {
			rv, err = ps.eb(f)
		}
	case kindCallbackDeferred:
		if f != nil {
			return v, f, nil
		}
		if inner = ptrFunc[callbackDeferredFn[T]](st.p)(v); inner == nil {
			err = errNilDeferred
		}
	default: // kindErrbackDeferred
		if f == nil {
			return v, nil, nil
		}
		if inner = ptrFunc[errbackDeferredFn[T]](st.p)(f); inner == nil {
			err = errNilDeferred
		}
	}
	if err != nil {
		rv, rf = stageFailed[T](rv, err)
		if rf != nil {
			inner = nil
		}
		return rv, rf, inner
	}
	return rv, nil, inner
}

// stageFailed is the result of a stage that returned (v, err) with a non-nil
// err: the zero value and err's Failure, or, for a typed nil *Failure (the
// natural pass-through of AddBoth on success), v and no failure.
func stageFailed[T any](v T, err error) (T, *Failure) {
	if f, ok := err.(*Failure); ok && f == nil {
		return v, nil
	}
	var zero T
	return zero, failureOf(err)
}

// call calls f, turning a panic into a Failure.
func call[T any](f func() (T, error)) (v T, fl *Failure) {
	v, fl, _ = runStage(callbackStage(func(T) (T, error) { return f() }), v, nil)
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
	case inner.is(handedOver):
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred whose chain was handed over by Then")))
	case inner.is(waitedFor):
		inner.mu.Unlock()
		return outer.deliver(zeroOf[T](), failureOf(invalidReturn(
			"deferred: a stage returned a Deferred that another Deferred already waits for")))
	case inner.called && !inner.running && inner.paused.Load() == 0 && inner.waiting() == nil &&
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
		inner.set(waitedFor, true)
		inner.push(waiterStage(outer))
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
		next := d.waiting()
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
	d.value, d.failure = v, f
	d.setWaiting(nil)
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
		d.set(suppressAlreadyCalled, false)
		d.mu.Unlock()
		return nil
	}
	d.fire(zeroOf[T](), nil, 1)
	d.setWaiting(inner)
	d.mu.Unlock()
	return link(d, inner)
}
