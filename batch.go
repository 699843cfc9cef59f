package deferred

// This file owns a batch: a run of the stages that call user code, taken
// from the head of a Deferred's queue and run without its lock, with one
// recover for the whole run.

import "unsafe"

// A batch is runBatchLocked's run of stages: the stages to run, the next
// one to run, the result so far, and why the run stopped.
type batch[T any] struct {
	spill         []stage[T] // stage j >= inlineStages is spill[j-inlineStages]
	start, i, end int32
	v             T
	f             *Failure
	inner         *Deferred[T] // a stage returned it, not fired: the chain waits for it
	stopped       bool         // before end: inner, a pause, or a stage runAndUnlock handles
	returned      bool         // runStages returned without a panic
}

// runBatchLocked runs the stages from the head of d's queue up to the
// first one runAndUnlock handles itself, without d.mu, stopping early if a
// stage pauses d or returns a Deferred that has not fired. It stores the
// result and returns that Deferred, which d's chain must now wait for, or
// nil.
//
// The stages are read in place, without the lock: only the runner moves
// head, and a push writes past the batch's end, or copies the spill when
// it grows it. The spill's header is read under the lock for that reason.
func (d *Deferred[T]) runBatchLocked() *Deferred[T] {
	// Set field by field: a composite literal is built in a temporary and
	// copied with wide loads that stall on the narrow stores just made
	// (5% of FloorChain/stages=4's time, pprof).
	var b batch[T]
	b.start, b.i, b.end = d.head, d.head, d.n
	b.v, b.f = d.value, d.failure
	if b.end > inlineStages {
		b.spill = d.x.spill[:b.end-inlineStages]
	}
	d.mu.Unlock()

	if tracing() { // the one check tracing costs when off
		d.runStagesTraced(&b)
	} else {
		for b.i < b.end && !b.stopped {
			d.runStages(&b)
		}
	}

	d.mu.Lock()
	d.endBatchLocked(&b)
	return b.inner
}

// endBatchLocked lets go of the stages b ran, and stores its result.
func (d *Deferred[T]) endBatchLocked(b *batch[T]) {
	start := b.start
	if start == 0 && b.i >= inlineStages { // let the closures go
		d.inline = [inlineStages]unsafe.Pointer{}
	} else {
		for j := start; j < min(b.i, inlineStages); j++ {
			d.inline[j] = nil
		}
	}
	if b.i > inlineStages {
		if b.i == d.n && b.f == nil && d.x.onlyStages(d.flags) {
			// Every stage has run and the side storage held only stages:
			// let it go whole, as stopRunningAndUnlock would, rather than
			// clear it first (3% of FloorChain/stages=4's time).
			d.x = nil
		} else {
			d.clearRunLocked(b.spill, max(start, inlineStages)-inlineStages, b.i-inlineStages)
		}
	}
	d.head = b.i
	d.resetIfEmptyLocked()
	d.value, d.failure = b.v, b.f
}

// runStages runs b's stages from b.i on b's result, until b.end or until it
// stops: before a stage of a kind runAndUnlock handles, or after one that
// pauses d or returns a Deferred that has not fired. A stage that panics
// ends the call too, with the panic's Failure as the result, and the
// caller goes on from the next stage. One deferred recover covers the
// whole call: one per stage would cost a defer each.
func (d *Deferred[T]) runStages(b *batch[T]) {
	// Calling recover costs a runtime call; b.returned, set on the normal
	// return, spares it. (A panic with a nil value still recovers non-nil,
	// as a *runtime.PanicNilError.)
	b.returned = false
	defer func() {
		if !b.returned {
			if p := recover(); p != nil {
				b.v, b.f = zeroOf[T](), panicFailure(p)
				b.f.stage = d.panickedStage(b)
				b.stopped = d.paused.Load() != 0
			} else {
				d.goOnAfterGoexit(b)
			}
		}
	}()
	i, end, v, f := b.i, b.end, b.v, b.f
	for ; i < end; i++ {
		var st stage[T]
		if i < inlineStages {
			st = stage[T]{p: d.inline[i], k: d.kinds[i]}
		} else {
			st = b.spill[i-inlineStages]
		}
		b.i = i + 1 // where to go on if st panics
		switch {
		case st.k == kindCallback && f == nil:
			// The common stage, called here rather than through callStage.
			nv, err := ptrFunc[callbackFn[T]](st.p)(v)
			if err != nil {
				v, f = stageFailed[T](nv, err, entry(st.p))
			} else {
				v = nv
			}
		case st.k == kindErrback && f != nil:
			// The failure path's stage, likewise (7% of FailurePath's
			// instructions, callgrind).
			nv, err := ptrFunc[errbackFn[T]](st.p)(f)
			var nf *Failure
			if err != nil {
				nv, nf = stageFailed[T](nv, err, entry(st.p))
			}
			markHandledIfReplaced(f, nf)
			v, f = nv, nf
		case st.k > kindErrbackDeferred:
			b.i, b.stopped = i, true
			b.v, b.f, b.returned = v, f, true
			return
		default:
			var in *Deferred[T]
			f0 := f
			v, f, in = callStage(st, v, f)
			markHandledIfReplaced(f0, f)
			if in != nil {
				tv, tf, took := d.takeFired(in)
				if !took {
					b.inner, b.stopped = in, true
					b.v, b.f, b.returned = v, f, true
					return
				}
				v, f = tv, tf
			}
		}
		if d.paused.Load() != 0 {
			b.i, b.stopped = i+1, true
			b.v, b.f, b.returned = v, f, true
			return
		}
	}
	b.i, b.v, b.f, b.returned = i, v, f, true
}

// panickedStage returns the entry PC of the function of the stage of b
// that panicked, the one before b.i, or 0 for AddCallbacks' pair, whose
// half that ran is not known then.
func (d *Deferred[T]) panickedStage(b *batch[T]) uintptr {
	i := b.i - 1
	var st stage[T]
	if i < inlineStages {
		st = stage[T]{p: d.inline[i], k: d.kinds[i]}
	} else {
		st = b.spill[i-inlineStages]
	}
	if st.k == kindPair || st.p == nil {
		return 0
	}
	return entry(st.p)
}
