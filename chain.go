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
//	kindHandoff               *handoff[T]         Then's hand-over, always last
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
	kindPair
	// The kinds up to here never stop a batch (see plainQueued).
	kindCallbackDeferred
	kindErrbackDeferred
	kindSlot
	// The kinds from here on are not run by callStage: they stop a batch
	// and the loop handles them.
	kindChain
	kindHandoff
	kindWaiter
	// Not stages: why a batch stopped (see runSome).
	kindInner  // a stage returned the Deferred p
	kindPaused // a stage paused d
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

func handoffStage[T any](h *handoff[T]) stage[T] {
	return stage[T]{p: unsafe.Pointer(h), k: kindHandoff}
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

// queued reports whether a stage with pointer p is in d's queue. While a
// batch runs, its inline stages are out of the queue and its spilled ones
// still in it, whether they have run yet or not; either way d has fired
// and waits for nothing then, so a Cancel prompted by the answer is a
// no-op.
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

// stepLater is a node to come back to that the loop does not own: its
// resume is step. (A struct of one pointer is stored in an interface
// without allocating.)
type stepLater[T any] struct{ d *Deferred[T] }

func (s stepLater[T]) step() (next, resume node)   { return s.d.step() }
func (s stepLater[T]) resume() (next, resume node) { return s.step() }

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
			// A stage of List, Gather or Race runs no user code up to the firing
			// of the combined Deferred, so it runs here, under the lock: this
			// spares an input a lock round trip.
			s := (*slot[T])(d.inline[d.head])
			d.inline[d.head] = nil
			if d.head++; d.head == d.n {
				d.head, d.n = 0, 0
			}
			var fire bool
			d.value, d.failure, fire = s.settle(d.value, d.failure)
			if fire {
				// The combined Deferred's chain runs user code: without the
				// lock, and before the rest of ours, as Twisted does. d stays
				// running meanwhile.
				d.mu.Unlock()
				s.g.s.fire()
				d.mu.Lock()
			}
			continue
		}
		if d.head < inlineStages && d.kinds[d.head] == kindHandoff {
			// Then's hand-over, always the last stage (so n <= inlineStages
			// here): nothing to batch, and no lock round trip to take it.
			st := stage[T]{p: d.inline[d.head], k: kindHandoff}
			d.inline[d.head] = nil
			d.head, d.n = 0, 0
			next, resume, _ = d.afterStop(st, d.value, d.failure)
			return next, resume
		}
		// Run the stages queued so far without the lock. The inline ones
		// are taken out (and put back if the batch stops before them), so
		// there is nothing to clear afterwards; others may push meanwhile,
		// which writes past end, never these. The spill's are run in
		// place: a growing spill only copies them, and only the runner
		// moves head.
		start, end := int(d.head), int(d.n)
		ptrs, kinds := d.inline, d.kinds // those before head are nil already
		d.inline = [inlineStages]unsafe.Pointer{}
		var spill []stage[T]
		if end > inlineStages {
			spill = d.x.spill
		}
		v, f := d.value, d.failure
		d.mu.Unlock()

		var stop stage[T]
		i := start
		for i < end && stop.k == kindNone {
			v, f, i, stop = d.runSome(&ptrs, &kinds, spill, i, end, v, f)
		}

		d.mu.Lock()
		for j := i; j < min(end, inlineStages); j++ {
			d.inline[j] = ptrs[j] // not run yet
		}
		if end > inlineStages {
			for j := max(start, inlineStages); j < i; j++ { // let the closures go
				spill[j-inlineStages] = stage[T]{}
				d.x.spill[j-inlineStages] = stage[T]{} // the copy, if the spill grew
			}
		}
		if d.head = int32(i); d.head == d.n {
			d.head, d.n = 0, 0
			if d.x != nil {
				d.x.spill = d.x.spill[:0]
			}
		}
		d.value, d.failure = v, f

		if stop.k >= kindChain && stop.k != kindPaused {
			if next, resume, done := d.afterStop(stop, v, f); done {
				return next, resume
			}
		}
	}

	if d.failure != nil && !d.cleanupArmed {
		d.armCleanup()
	}
	d.running = false
	d.mu.Unlock()
	return nil, nil
}

// afterStop handles a batch that stopped at a special stage. d.mu is held
// and d is running. With done, run returns next and resume (d.mu
// released); otherwise d.mu is held again and run's loop goes on.
func (d *Deferred[T]) afterStop(stop stage[T], v T, f *Failure) (next, resume node, done bool) {
	switch stop.k {
	case kindHandoff:
		// Then's continuation, always the last stage: the result moves
		// to the Deferred that Then returned.
		d.value, d.failure = zeroOf[T](), nil
		d.running = false
		d.mu.Unlock()
		return (*(*handoff[T])(stop.p)).handoff(v, f), nil, true
	case kindInner:
		inner := (*Deferred[T])(stop.p)
		d.setWaiting(inner)
		d.running = false
		d.mu.Unlock()
		return link(d, inner), nil, true
	case kindWaiter:
		// Twisted's order: the waiting Deferred's chain goes on first,
		// then the rest of ours. As in Twisted, d is not running
		// meanwhile: a stage of the waiting chain that touches d (adds a
		// stage, say) runs d's rest there and then.
		d.value, d.failure = zeroOf[T](), nil
		d.set(waitedFor, false)
		more := d.head < d.n
		d.running = false
		d.mu.Unlock()
		p := (*Deferred[T])(stop.p).deliver(v, f)
		if more {
			return p, stepLater[T]{d}, true
		}
		return p, nil, true
	}
	// A Chain stage.
	d.value, d.failure = zeroOf[T](), nil
	d.mu.Unlock()
	next, err := (*Deferred[T])(stop.p).settle(v, f)
	d.mu.Lock()
	if err != nil {
		d.failure = failureOf(err)
	}
	if next == nil {
		return nil, nil, false
	}
	// Run other's chain before the rest of ours, as Twisted does, but from
	// the loop. d stays running meanwhile, so stages that other's chain
	// adds to d wait their turn; the loop resumes d afterwards if it has
	// more to do by then.
	d.mu.Unlock()
	return next, d, true
}

// runSlotAlone runs d's one queued stage, a fan-in stage (see run), and
// returns true if that was all: the common case of an input of List,
// Gather or Race firing. If the stage fires the combined Deferred, it
// returns false with the stage run, d.mu held and d running, and run takes
// over. d.mu is held and d running when it is called.
//
// It repeats run's fan-in branch and ending for one stage at index 0: a
// shared helper costs every input about 5% more instructions (callgrind),
// so keep the two in step by hand.
func (d *Deferred[T]) runSlotAlone() bool {
	s := (*slot[T])(d.inline[0])
	d.inline[0] = nil
	d.head, d.n = 0, 0
	var fire bool
	if d.value, d.failure, fire = s.settle(d.value, d.failure); fire {
		d.mu.Unlock()
		s.g.s.fire() // as in run
		d.mu.Lock()
		return false
	}
	if d.failure != nil { // a setup cut short by a panic passes it on
		d.armCleanup()
	}
	d.running = false
	d.mu.Unlock()
	return true
}

// plainQueued reports whether all of d's queued stages are inline and of
// the kinds that never stop a batch (callbacks, errbacks, AddBoth,
// AddCallbacks): the common case, which runPlain runs with less
// bookkeeping than run. d.mu is held.
func (d *Deferred[T]) plainQueued() bool {
	n := int(d.n)
	if n > inlineStages || d.cleanupArmed {
		return false
	}
	for i := int(d.head); i < n; i++ {
		if d.kinds[i] > kindPair {
			return false
		}
	}
	return true
}

// runPlain is run for a Deferred whose queued stages are plainQueued: it
// runs them as one batch and, if that leaves nothing to do, finishes and
// returns true. Otherwise (stages were added meanwhile, or one paused d)
// it returns false with d.mu held and d running, in the state run expects,
// and run goes on from there. d.mu is held and d running when it is
// called.
//
// runPlain and runPlainSome repeat run's batch and runSome without what
// plain inline stages cannot need (spill, stop stages); going through
// those instead costs a Chain3 about 10% more instructions (callgrind),
// so keep them in step by hand.
func (d *Deferred[T]) runPlain() bool {
	start, end := int(d.head), int(d.n)
	ptrs, kinds := d.inline, d.kinds // those before head are nil already
	d.inline = [inlineStages]unsafe.Pointer{}
	v, f := d.value, d.failure
	d.mu.Unlock()

	i := start
	for i < end {
		var paused bool
		if v, f, i, paused = d.runPlainSome(&ptrs, &kinds, i, end, v, f); paused {
			break
		}
	}

	d.mu.Lock()
	d.value, d.failure = v, f
	if i == end && d.n == int32(end) && d.paused.Load() == 0 {
		d.head, d.n = 0, 0
		if f != nil {
			d.armCleanup()
		}
		d.running = false
		d.mu.Unlock()
		return true
	}
	for j := i; j < end; j++ {
		d.inline[j] = ptrs[j] // not run yet
	}
	if d.head = int32(i); d.head == d.n {
		d.head, d.n = 0, 0
	}
	return false
}

// runPlainSome is runSome for runPlain's stages, which never stop a batch:
// it runs stages i..end-1 and returns the new result and the index after
// the last stage it ran, which is end unless a stage paused d (paused) or
// panicked (the panic's Failure is the result, and the caller goes on).
func (d *Deferred[T]) runPlainSome(ptrs *[inlineStages]unsafe.Pointer, kinds *[inlineStages]stageKind,
	i, end int, v T, f *Failure) (rv T, rf *Failure, next int, paused bool) {
	var at struct {
		returned bool // as in runSome
		i        int
	}
	defer func() {
		if at.returned {
			return
		}
		if p := recover(); p != nil {
			var zero T
			rv, rf, next, paused = zero, panicFailure(p), at.i, d.paused.Load() != 0
		}
	}()
	for i < end {
		st := stage[T]{p: ptrs[i], k: kinds[i]}
		i++
		at.i = i
		if st.k == kindCallback && f == nil {
			nv, err := ptrFunc[callbackFn[T]](st.p)(v)
			if err != nil {
				v, f = stageFailed[T](nv, err)
			} else {
				v = nv
			}
		} else if st.k == kindErrback && f != nil {
			nv, err := ptrFunc[errbackFn[T]](st.p)(f)
			if err != nil {
				v, f = stageFailed[T](nv, err)
			} else {
				v, f = nv, nil
			}
		} else {
			v, f, _ = callStage(st, v, f)
		}
		if d.paused.Load() != 0 {
			at.returned = true
			return v, f, i, true
		}
	}
	at.returned = true
	return v, f, i, false
}

// runSome runs stages i..end-1 of a batch on the result (v, f): stage j is
// (ptrs[j], kinds[j]) below inlineStages and spill[j-inlineStages] from
// there on. It returns the new result and the index after the last stage it
// used, which is end unless the batch stopped there: stop is then the
// stage that stopped it (a Chain, hand-over or waiter stage), or kindInner
// with the Deferred a stage returned, unless takeFired could take its result
// at once, or kindPaused if a stage paused d.
// A stage that panics stops the run too: its Failure is the result, and
// the caller goes on from the next stage (stop is kindPaused only if the
// stage paused d first). One deferred recover covers the whole run:
// recovering per stage would cost a defer each.
func (d *Deferred[T]) runSome(ptrs *[inlineStages]unsafe.Pointer, kinds *[inlineStages]stageKind, spill []stage[T],
	i, end int, v T, f *Failure) (rv T, rf *Failure, next int, stop stage[T]) {
	// Calling recover costs a runtime call; a flag set on every normal
	// return spares it. (A panic with a nil value still recovers non-nil,
	// as a *runtime.PanicNilError.) The closure shares only at, so that
	// the loop keeps i in a register.
	var at struct {
		returned bool
		i        int // the stage after the one running
	}
	defer func() {
		if at.returned {
			return
		}
		if p := recover(); p != nil {
			var zero T
			rv, rf, next, stop = zero, panicFailure(p), at.i, stage[T]{}
			if d.paused.Load() != 0 {
				stop.k = kindPaused
			}
		}
	}()
	for i < end {
		var st stage[T]
		if i < inlineStages {
			st = stage[T]{p: ptrs[i], k: kinds[i]}
		} else {
			st = spill[i-inlineStages]
		}
		i++
		at.i = i
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
			at.returned = true
			return v, f, i, st
		default:
			var inner *Deferred[T]
			if v, f, inner = callStage(st, v, f); inner != nil {
				tv, tf, took := d.takeFired(inner)
				if !took {
					at.returned = true
					return v, f, i, stage[T]{p: unsafe.Pointer(inner), k: kindInner}
				}
				v, f = tv, tf
			}
		}
		if d.paused.Load() != 0 {
			at.returned = true
			return v, f, i, stage[T]{k: kindPaused}
		}
	}
	at.returned = true
	return v, f, i, stage[T]{}
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
		if rv, rf, fire = s.settle(v, f); fire {
			s.g.s.fire()
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
	var zero T
	if f, ok := err.(*Failure); ok {
		if f == nil {
			return v, nil
		}
		return zero, f // an errback passing its Failure on, most often
	}
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
	default:
		inner.set(waitedFor, true)
		inner.push(waiterStage(outer))
		inner.mu.Unlock()
		return inner
	}
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
	if !inner.called || inner.running || inner.paused.Load() != 0 || inner.head != inner.n ||
		inner.waiting() != nil || inner.is(handedOver|waitedFor) {
		inner.mu.Unlock()
		return v, nil, false
	}
	v, f = inner.value, inner.failure
	var zero T
	inner.value, inner.failure = zero, nil
	if inner.cleanupArmed {
		inner.cleanupArmed = false
		inner.x.cleanup.Stop()
	}
	inner.mu.Unlock()
	return v, f, true
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
