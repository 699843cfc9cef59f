package deferred

// This file owns what a Deferred shows in an execution trace: while
// runtime/trace records, each run of a chain's stages is a task, and each
// stage that calls user code is a region within it, named after the
// stage's function, so that `go tool trace` shows which stage ran where,
// for how long, and on which goroutine. When tracing is off, the cost is
// one check of trace.IsEnabled per batch (tracing).

import (
	"context"
	"reflect"
	"runtime"
	rtrace "runtime/trace" // trace is failure.go's
	"sync"
)

// tracing reports whether runtime/trace records: one atomic load, which
// runBatchLocked and runAloneAndUnlock make, and which is all tracing costs
// when it is off.
func tracing() bool { return rtrace.IsEnabled() }

// runStagesTraced is runBatchLocked's loop while runtime/trace records:
// it runs b's stages as runStages does, under a task for the whole batch,
// one stage per runStages call so that each stage that calls user code is
// a region of its own.
//
// The task covers the batch: a run of the chain's user stages on one
// goroutine, from the firing, or the chain going on after it waited, to
// where the chain stops, waits, moves on to another Deferred, or reaches
// a stage the library handles. A task must end, a chain that waits may
// never go on, and a Deferred has no room to keep a task across its waits
// (TestDeferredSize); the gaps between a chain's tasks are its waits.
func (d *Deferred[T]) runStagesTraced(b *batch[T]) {
	ctx, task := rtrace.NewTask(context.Background(), taskName[T]())
	defer task.End() // also when a stage calls runtime.Goexit
	end := b.end
	for b.i < end && !b.stopped {
		st := batchStage(d, b, b.i)
		b.end = b.i + 1
		if st.k.runsOn(b.f) {
			d.runStageInRegion(ctx, b, stageName(stageEntry(st, b.f)))
		} else {
			d.runStages(b) // passes the result on, or stops before st
		}
	}
	b.end = end
}

// runStageInRegion runs b's one stage in a region named name.
func (d *Deferred[T]) runStageInRegion(ctx context.Context, b *batch[T], name string) {
	defer rtrace.StartRegion(ctx, name).End()
	d.runStages(b)
}

// runAloneTracedAndUnlock is runAloneAndUnlock while runtime/trace
// records: st is queued and run as a batch of one, so that it shows as
// every other stage does. d has fired and is idle, and d.mu is held.
func (d *Deferred[T]) runAloneTracedAndUnlock(st stage[T]) {
	d.pushLocked(st)
	d.runAndUnlockIfIdle()
}

// batchStage returns stage i of b, which d's queue holds.
func batchStage[T any](d *Deferred[T], b *batch[T], i int32) stage[T] {
	if i < inlineStages {
		return stage[T]{p: d.inline[i], k: d.kinds[i]}
	}
	return b.spill[i-inlineStages]
}

// runsOn reports whether a stage of kind k calls user code on a result
// whose failure is f: a callback does on a success only, an errback on a
// failure only. The library's own kinds do not.
func (k stageKind) runsOn(f *Failure) bool {
	switch k {
	case kindCallback, kindCallbackDeferred:
		return f == nil
	case kindErrback, kindErrbackDeferred:
		return f != nil
	case kindBoth, kindPair:
		return true
	}
	return false
}

// Region and task names, computed once each: runtime.FuncForPC and
// reflect's type names are not free.
var (
	stageNames sync.Map // entry PC -> name of the function
	taskNames  sync.Map // reflect.Type of T -> "deferred: Deferred[T] fired"
)

// stageName returns the name of the function whose entry PC is pc, as
// runtime.FuncForPC gives it ("example.com/pkg.fetch"), for a stage's
// region.
func stageName(pc uintptr) string {
	if name, ok := stageNames.Load(pc); ok {
		return name.(string)
	}
	name := "deferred: stage"
	if fn := runtime.FuncForPC(pc); fn != nil {
		name = fn.Name()
	}
	stageNames.Store(pc, name)
	return name
}

// taskName returns the type of the task of a Deferred[T]'s run:
// "deferred: Deferred[int] fired", say.
func taskName[T any]() string {
	t := reflect.TypeFor[T]()
	if name, ok := taskNames.Load(t); ok {
		return name.(string)
	}
	name := "deferred: Deferred[" + t.String() + "] fired"
	taskNames.Store(t, name)
	return name
}
