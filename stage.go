package deferred

// This file owns the stages: how each kind is encoded, how stages are
// queued on a Deferred, and the consumer's methods that add them. Calling
// one is in call.go.

import "unsafe"

// stage is one callback/errback pair: a pointer-shaped value and a kind
// that says what the pointer is.
//
//	kind                      p                  made by
//	kindCallback, kindErrback func(T) (T, error)… AddCallback, AddErrback
//	kindBoth                  func(T, *Failure)…  AddBoth
//	kindPair                  *pairStage[T]       AddCallbacks
//	kindCallbackDeferred, …   func(T) *Deferred…  the …Deferred variants
//	kindFanIn                 *slot[T]            List, Gather, Race
//	kindChain                 *Deferred[T]        Chain
//	kindThen                  *thenTarget[T]      Then, ThenDeferred; always last
//	kindWaiter                *Deferred[T]        the Deferred waiting for d (nest.go)
//	kindBranch                *Deferred[T]        Observe, Await (share.go)
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
	// The kinds that run user code: the runner calls them in batches,
	// without the lock (runBatchLocked).
	kindCallback stageKind = iota + 1
	kindErrback
	kindBoth
	kindPair
	kindCallbackDeferred
	kindErrbackDeferred
	// The kinds the runner's loop handles itself when they reach the head
	// of the queue (runAndUnlock).
	kindFanIn
	kindChain
	kindThen
	kindWaiter
	kindBranch
)

// plain reports whether a stage of kind k returns a result, never a
// Deferred.
func (k stageKind) plain() bool { return k <= kindPair }

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

// pairStage is AddCallbacks' stage: the one case with two functions.
type pairStage[T any] struct {
	cb callbackFn[T]
	eb errbackFn[T]
}

func callbackStage[T any](f callbackFn[T]) stage[T] {
	return stage[T]{p: funcPtr(f), k: kindCallback}
}

func bothStage[T any](f bothFn[T]) stage[T] { return stage[T]{p: funcPtr(f), k: kindBoth} }

// inlineStages is how many stages a Deferred holds without allocating.
const inlineStages = 3

// pushLocked queues st. (add does the same by hand, as pushLocked does not
// inline.)
func (d *Deferred[T]) pushLocked(st stage[T]) {
	if d.n < inlineStages {
		if d.n == 0 && d.x != nil {
			d.notePendingStageLocked()
		}
		d.inline[d.n], d.kinds[d.n] = st.p, st.k
		d.n++
	} else {
		d.spillLocked(st)
	}
}

// spillLocked is pushLocked past the inline stages.
func (d *Deferred[T]) spillLocked(st stage[T]) {
	d.n++
	if d.x == nil {
		// Fresh side storage: write it without reading it back, as a
		// read of memory just allocated waits for its cache line (3% of
		// FloorChain/stages=4's time, pprof).
		x := new(extra[T])
		x.block[0] = st
		x.spill = x.block[:1:spillBlock]
		d.x = x
		return
	}
	sp := d.x.spill
	if len(sp) == cap(sp) {
		if sp == nil {
			sp = d.x.block[:0]
		} else {
			sp = growSpill(sp)
			if !d.is(running) {
				// No batch reads the block: let go of the copies there.
				// (While one runs, clearRunLocked does it.)
				d.x.block = [spillBlock]stage[T]{}
			}
		}
	}
	d.x.spill = append(sp, st)
}

// growSpill returns a copy of sp with room for more stages: at least
// spillGrowth, then twice as many.
func growSpill[T any](sp []stage[T]) []stage[T] {
	ns := make([]stage[T], len(sp), max(2*cap(sp), spillGrowth))
	copy(ns, sp)
	return ns
}

// spillGrowth is the capacity of the spill once it outgrows its first block.
const spillGrowth = 4

// setStageLocked sets the queued stage at index i.
func (d *Deferred[T]) setStageLocked(i int32, st stage[T]) {
	if i < inlineStages {
		d.inline[i], d.kinds[i] = st.p, st.k
	} else {
		d.x.spill[i-inlineStages] = st
	}
}

// removeLocked removes the queued stage at index i, which nobody runs: the
// stages after it move up one place.
func (d *Deferred[T]) removeLocked(i int32) {
	for ; i < d.n-1; i++ {
		d.setStageLocked(i, d.stageLocked(i+1))
	}
	d.setStageLocked(d.n-1, stage[T]{})
	d.n--
	if d.n > inlineStages {
		d.x.spill = d.x.spill[:d.n-inlineStages]
	} else if d.x != nil {
		d.x.spill = d.x.spill[:0]
	}
	d.resetIfEmptyLocked()
}

// stageLocked returns the queued stage at index i.
func (d *Deferred[T]) stageLocked(i int32) stage[T] {
	if i < inlineStages {
		return stage[T]{p: d.inline[i], k: d.kinds[i]}
	}
	return d.x.spill[i-inlineStages]
}

// popLocked removes the stage at the head of the queue, which the runner
// has taken.
func (d *Deferred[T]) popLocked() {
	if d.head < inlineStages {
		d.inline[d.head] = nil
	} else {
		d.clearRunLocked(d.x.spill, d.head-inlineStages, d.head-inlineStages+1)
	}
	d.head++
	d.resetIfEmptyLocked()
}

// clearRunLocked lets go of spill[from:to], stages that have run, where
// spill is d.x.spill or the array it held when the run took its stages,
// and of their copies in what the spill grew into and in the block it grew
// out of. Nothing reads those places meanwhile: the runner calls it, under
// the lock, and a batch only reads the array it took.
func (d *Deferred[T]) clearRunLocked(spill []stage[T], from, to int32) {
	cur := d.x.spill
	grown := unsafe.SliceData(cur) != unsafe.SliceData(spill)
	for j := from; j < to; j++ {
		spill[j] = stage[T]{}
		if grown {
			cur[j] = stage[T]{}
		}
	}
	for j := from; j < min(to, spillBlock); j++ {
		d.x.block[j] = stage[T]{} // a loop: clear() costs a runtime call
	}
}

// resetIfEmptyLocked starts the queue afresh once every stage has run. The
// spill keeps its storage until the run ends (stopRunningAndUnlock), so
// stages queued meanwhile reuse it.
func (d *Deferred[T]) resetIfEmptyLocked() {
	if d.head != d.n {
		return
	}
	d.head, d.n = 0, 0
	if d.x != nil {
		d.x.spill = d.x.spill[:0]
	}
}

// queued reports whether a stage with pointer p is still in d's queue. A
// stage the runner has taken but not finished may read either way; d has
// fired and waits for nothing then, so a Cancel prompted by the answer is
// a no-op.
func (d *Deferred[T]) queued(p unsafe.Pointer) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := d.head; i < d.n; i++ {
		if d.stageLocked(i).p == p {
			return true
		}
	}
	return false
}

// AddCallbacks adds a stage of two halves: cb runs if the chain holds a
// value at this point, eb if it holds a failure. They form one level: eb
// never sees an error returned by cb; the next errback does. AddCallbacks
// returns d. It panics if cb or eb is nil, or if d's chain was handed over
// by Then or ThenDeferred.
func (d *Deferred[T]) AddCallbacks(cb func(T) (T, error), eb func(*Failure) (T, error)) *Deferred[T] {
	if cb == nil || eb == nil {
		panic("deferred: AddCallbacks called with a nil function")
	}
	return d.add(stage[T]{p: unsafe.Pointer(&pairStage[T]{cb: cb, eb: eb}), k: kindPair}, "AddCallbacks")
}

// AddCallback adds a callback: cb gets the value, and its (v, nil) passes v
// on while its (_, err) fails the chain from here. A failure passes cb by.
// AddCallback returns d. It panics if cb is nil, or if d's chain was handed
// over by Then or ThenDeferred.
func (d *Deferred[T]) AddCallback(cb func(T) (T, error)) *Deferred[T] {
	return d.add(stage[T]{p: funcPtr(cb), k: kindCallback}, "AddCallback")
}

// AddErrback adds an errback: eb gets the failure, and its (v, nil)
// recovers with v while its (_, err) keeps failing with err (return the
// Failure itself to pass it on unchanged). A value passes eb by. AddErrback
// returns d. It panics if eb is nil, or if d's chain was handed over by
// Then or ThenDeferred.
func (d *Deferred[T]) AddErrback(eb func(*Failure) (T, error)) *Deferred[T] {
	return d.add(stage[T]{p: funcPtr(eb), k: kindErrback}, "AddErrback")
}

// AddBoth adds f as both callback and errback: it gets the value and a nil
// *Failure, or the zero value and the failure. Returning that nil *Failure
// as the error counts as success, so `return v, f` passes any result on.
// AddBoth returns d. It panics if f is nil, or if d's chain was handed over
// by Then or ThenDeferred.
func (d *Deferred[T]) AddBoth(f func(T, *Failure) (T, error)) *Deferred[T] {
	return d.add(stage[T]{p: funcPtr(f), k: kindBoth}, "AddBoth")
}

// AddCallbackDeferred adds a callback that returns a Deferred: the chain
// waits for it and goes on with its result, value or failure. A returned
// Deferred the chain cannot wait for — nil, d itself, one whose chain Then
// handed over, one another Deferred already waits for, or one that waits
// for d — fails the chain with an error matching ErrInvalidReturn.
// AddCallbackDeferred returns d. It panics if cb is nil, or if d's chain
// was handed over by Then or ThenDeferred.
func (d *Deferred[T]) AddCallbackDeferred(cb func(T) *Deferred[T]) *Deferred[T] {
	return d.add(stage[T]{p: funcPtr(cb), k: kindCallbackDeferred}, "AddCallbackDeferred")
}

// AddErrbackDeferred adds an errback that returns a Deferred: the chain
// waits for it and goes on with its result, value or failure. A returned
// Deferred the chain cannot wait for fails the chain with an error matching
// ErrInvalidReturn, as for AddCallbackDeferred. AddErrbackDeferred returns
// d. It panics if eb is nil, or if d's chain was handed over by Then or
// ThenDeferred.
func (d *Deferred[T]) AddErrbackDeferred(eb func(*Failure) *Deferred[T]) *Deferred[T] {
	return d.add(stage[T]{p: funcPtr(eb), k: kindErrbackDeferred}, "AddErrbackDeferred")
}

// add queues st and, if d has fired and nobody is running its chain, runs
// the chain on this goroutine.
func (d *Deferred[T]) add(st stage[T], method string) *Deferred[T] {
	if d == nil {
		panicNilReceiver(method)
	}
	if st.p == nil { // checked here, so that the Add… methods inline
		panic("deferred: " + method + " called with a nil function")
	}
	d.mu.Lock()
	if f := d.flags; f&(called|handedOver) == 0 || f&(running|handedOver) == running {
		// Not fired yet, or a goroutine (another, or this one in a stage)
		// runs the chain and will run st too: queue it and leave, keeping
		// the lock as briefly as possible (adders contend for it while the
		// chain runs).
		if n := d.n; n < inlineStages { // pushLocked, by hand
			d.inline[n], d.kinds[n] = st.p, st.k
			d.n = n + 1
			if n == 0 && d.x != nil {
				d.notePendingStageLocked()
			}
		} else {
			d.spillLocked(st)
		}
		d.mu.Unlock()
		return d
	}
	if d.flags&(handedOver|cleanupArmed) == 0 && st.k.plain() && d.head == d.n &&
		d.aux == nil && d.paused.Load() == 0 {
		// The one shortcut past the queue: a plain stage added to a fired,
		// idle Deferred runs at once. Queuing it and running a batch of one
		// costs 1.85× the instructions (callgrind, FloorAddToFired in bench/).
		d.runAloneAndUnlock(st)
		return d
	}
	d.addToFiredAndUnlock(st, method)
	return d
}

// addToFiredAndUnlock is add for a Deferred that has fired and that nobody
// runs, when the shortcut does not apply, or whose chain was handed over;
// it unlocks d.mu. (Kept apart so that add has a small frame.)
func (d *Deferred[T]) addToFiredAndUnlock(st stage[T], method string) {
	if d.is(handedOver) {
		d.mu.Unlock()
		panic(handedOverMessage(method))
	}
	d.pushLocked(st)
	d.runAndUnlockIfIdle()
}

func handedOverMessage(method string) string {
	return "deferred: " + method + " on a Deferred whose chain was handed over by Then or ThenDeferred; use the Deferred that Then returned"
}
