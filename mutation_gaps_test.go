package deferred

import (
	"errors"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin behaviours that a mutation run (tools/mutate) found no
// test observed: each names the mutant of tools/mutate/mutants.txt that
// survived the rest of the suite, and was seen failing under it.

var errGap = errors.New("mutation gap test error")

func gapIdentity(v int) (int, error) { return v, nil }

// Mutant stage-spill-kept: a Deferred kept after its chain ended in a
// failure (it keeps its side storage, for the unhandled report) lets go of
// a spill that outgrew its first block.
func TestMutationGapFailedChainLetsGoOfAGrownSpill(t *testing.T) {
	d := New[int]()
	for range inlineStages + 2*spillBlock {
		d.AddCallback(gapIdentity)
	}
	require.NoError(t, d.Errback(errGap))
	d.mu.Lock()
	require.NotNil(t, d.x, "the failure's report is armed, so the side storage stays")
	assert.LessOrEqual(t, cap(d.x.spill), spillBlock, "the grown spill is kept after every stage ran")
	d.mu.Unlock()
	_, f := Capture(d).Now(t)
	assert.ErrorIs(t, f, errGap)
}

// Mutant stage-queued-past-end: cancelling a List looks, for each input,
// at the stages still queued, and only those. The input here settled (its
// fan-in stage, the fourth, has run), then waits for a Deferred a later
// stage returned, with one more stage queued.
func TestMutationGapCancelListWhoseSettledInputHadThreeStagesBefore(t *testing.T) {
	a, b := New[int](), New[int]()
	for range inlineStages {
		a.AddCallback(gapIdentity)
	}
	l := List(a, b)
	waited := New[int]()
	a.AddCallbackDeferred(func(int) *Deferred[int] { return waited })
	a.AddCallback(gapIdentity)
	require.NoError(t, a.Callback(1))
	out := Capture(l)

	l.Cancel()
	got, f := out.Now(t)
	require.Nil(t, f, "cancelling the List must give the outcomes, not fail: %v", f)
	require.Len(t, got, 2)
	assert.Equal(t, 1, got[0].Value)
	assert.Nil(t, got[0].Failure)
	assert.ErrorIs(t, got[1].Failure, ErrCancelled)
	assert.False(t, waited.Called(), "a settled input is not cancelled, nor what it waits for")
	require.NoError(t, waited.Callback(2))
}

// Mutant batch-panic-ignores-pause: a stage that pauses its Deferred and
// then panics stops the chain there, as one that pauses and returns does.
func TestMutationGapStageThatPausesThenPanicsStopsTheChain(t *testing.T) {
	d := New[int]()
	d.AddCallback(func(int) (int, error) {
		d.Pause()
		panic(errGap)
	})
	out := Capture(d)
	require.NoError(t, d.Callback(1))
	fired, _, _ := out.Get()
	assert.False(t, fired, "the chain went on past a Pause because the stage then panicked")
	d.Unpause()
	_, f := out.Now(t)
	assert.ErrorIs(t, f, errGap)
}

// Mutant batch-panic-keeps-value: after a stage panics, the chain holds
// the zero value with the panic's Failure, as AddBoth's doc says.
func TestMutationGapPanicLeavesTheZeroValue(t *testing.T) {
	d := New[int]()
	d.AddCallback(func(v int) (int, error) { return v + 1, nil })
	d.AddCallback(func(int) (int, error) { panic(errGap) })
	got := -1
	d.AddBoth(func(v int, f *Failure) (int, error) {
		got = v
		return 0, nil
	})
	require.NoError(t, d.Callback(1))
	assert.Equal(t, 0, got, "a stage after a panic saw a value besides the failure")
}

// Mutant chain-waitedfor-kept: an inner Deferred that has delivered its
// result to the chain that waited for it is free again: another chain may
// wait for it (and takes its zero value), and Then may take it over.
func TestMutationGapInnerIsFreeAfterDelivering(t *testing.T) {
	inner := New[int]()
	first := Capture(Succeed(0).AddCallbackDeferred(func(int) *Deferred[int] { return inner }))
	require.NoError(t, inner.Callback(5))
	v, f := first.Now(t)
	require.Nil(t, f)
	assert.Equal(t, 5, v)

	second := Capture(Succeed(0).AddCallbackDeferred(func(int) *Deferred[int] { return inner }))
	v, f = second.Now(t)
	assert.Nil(t, f, "a second chain could not wait for an inner that has delivered: %v", f)
	assert.Equal(t, 0, v)

	assert.NotPanics(t, func() { Then(inner, func(int) (int, error) { return 0, nil }) })
}

// Mutant nest-take-handed-over: a stage returning a Deferred whose chain
// Then handed over fails with ErrInvalidReturn even when that Deferred has
// fired and is idle (its result went to Then's Deferred).
func TestMutationGapReturningAFiredHandedOverDeferredIsInvalid(t *testing.T) {
	src := Succeed(1)
	u := Capture(Then(src, func(v int) (int, error) { return v, nil }))
	_, f := u.Now(t)
	require.Nil(t, f)

	out := Capture(Succeed(0).AddCallbackDeferred(func(int) *Deferred[int] { return src }))
	_, f = out.Now(t)
	assert.ErrorIs(t, f, ErrInvalidReturn)
}

// Mutant nest-take-busy: a returned Deferred that has fired but still has
// stages queued (set aside while the chain it delivered to goes on first)
// runs them before its result moves to the chain that now waits for it.
func TestMutationGapReturnedInnerRunsItsQueuedStagesFirst(t *testing.T) {
	inner, outer := New[int](), New[int]()
	outer.AddCallbackDeferred(func(int) *Deferred[int] { return inner }) // waits for inner
	outer.AddCallbackDeferred(func(int) *Deferred[int] { return inner }) // and again, once it delivered
	out := Capture(outer)
	require.NoError(t, outer.Callback(0))
	inner.AddCallback(func(int) (int, error) { return 42, nil }) // after the waiter stage

	// inner delivers 1 to outer, whose chain goes on first (as in Twisted)
	// and returns inner again: inner's own stage has not run yet.
	require.NoError(t, inner.Callback(1))
	v, f := out.Now(t)
	require.Nil(t, f)
	assert.Equal(t, 42, v, "outer took inner's result before inner's queued stage ran")
}

// Mutant goexit-alone-drops-queued: a stage that add's shortcut runs at
// once (a plain stage added to a fired, idle Deferred) may add stages to
// its own Deferred; they run when it returns.
func TestMutationGapStageAddedByAStageRunAtOnceRuns(t *testing.T) {
	d := Succeed(1)
	ran := false
	d.AddCallback(func(v int) (int, error) {
		d.AddCallback(func(v int) (int, error) { ran = true; return v, nil })
		return v, nil
	})
	assert.True(t, ran, "a stage queued by the running stage was left behind")
}

// Mutant batch-grown-copy-kept: the runner lets go of the stages it ran
// even when one of them made the spill grow (a push copies it), so a
// Deferred paused in mid-chain does not keep the closures of the stages
// before in the copy.
func TestMutationGapStagesRunAreLetGoWhenTheSpillGrewMeanwhile(t *testing.T) {
	d := New[int]()
	held := gapAddStagesThatGrowTheSpill(d, true)
	require.NoError(t, d.Callback(1))
	gapRequireLetGoThenResume(t, d, held, "a stage that ran is still referenced from the grown spill")
}

// Mutant stage-block-copy-kept: a spill that outgrew its first block before
// the Deferred fired leaves a copy of the block's stages there; the runner
// lets go of that copy too once the stage has run.
func TestMutationGapStagesRunAreLetGoFromTheBlockTheSpillOutgrew(t *testing.T) {
	d := New[int]()
	held := gapAddStagesThatGrowTheSpill(d, false)
	d.AddCallback(func(v int) (int, error) { d.Pause(); return v, nil }) // grows the spill now
	d.AddCallback(gapIdentity)
	require.NoError(t, d.Callback(1))
	gapRequireLetGoThenResume(t, d, held, "a stage that ran is still referenced from the block")
}

// gapRequireLetGoThenResume checks that the stage holding held was let go
// while d is paused in mid-chain, and that d's chain, unpaused, ends with 1.
func gapRequireLetGoThenResume(t *testing.T, d *Deferred[int], held weak.Pointer[[64]byte], msg string) {
	t.Helper()
	gapRequireCollected(t, held, msg)
	out := Capture(d)
	d.Unpause()
	v, f := out.Now(t)
	require.Nil(t, f)
	assert.Equal(t, 1, v)
}

func gapRequireCollected(t *testing.T, held weak.Pointer[[64]byte], msg string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for held.Value() != nil && time.Now().Before(deadline) {
		runtime.GC()
	}
	assert.Nil(t, held.Value(), msg)
}

// gapAddStagesThatGrowTheSpill fills d's inline stages and its spill's
// first block; the last stage of the block holds an object, whose weak
// pointer it returns. If whileRunning, that stage also adds a stage that
// pauses d, making the spill grow (by copying) while the chain runs.
//
//go:noinline
func gapAddStagesThatGrowTheSpill(d *Deferred[int], whileRunning bool) weak.Pointer[[64]byte] {
	for range inlineStages + spillBlock - 1 {
		d.AddCallback(gapIdentity)
	}
	obj := new([64]byte)
	obj[0] = 1
	held := weak.Make(obj)
	d.AddCallback(func(v int) (int, error) {
		if whileRunning {
			d.AddCallback(func(v int) (int, error) { d.Pause(); return v, nil })
			d.AddCallback(gapIdentity)
		}
		return v * int(obj[0]), nil
	})
	return held
}

// Mutant stage-block-copy-kept, the case only it covers: the spill grows
// out of its block while the chain runs but outside a batch (a Chain
// target's stage adds to the source); the block keeps a copy of the stage
// it held, which the runner lets go of once that stage has run, even with
// the Deferred paused in mid-chain.
func TestMutationGapBlockCopyIsLetGoWhenTheSpillGrewOutsideABatch(t *testing.T) {
	d, other := New[int](), New[int]()
	held := gapBlockStageOutsideABatch(d, other)
	require.NoError(t, d.Callback(1))
	gapRequireLetGoThenResume(t, d, held, "a stage that ran is still referenced from the block")
}

//go:noinline
func gapBlockStageOutsideABatch(d, other *Deferred[int]) weak.Pointer[[64]byte] {
	// other's chain runs first, from the driver, while d is running: its
	// stage adds to d and the spill grows out of the block.
	other.AddCallback(func(v int) (int, error) {
		d.AddCallback(func(v int) (int, error) { d.Pause(); return v, nil })
		d.AddCallback(gapIdentity)
		return v, nil
	})
	d.Chain(other)
	d.AddCallback(func(int) (int, error) { return 1, nil }) // Chain left the zero value
	for range inlineStages + spillBlock - 3 {
		d.AddCallback(gapIdentity)
	}
	obj := new([64]byte)
	obj[0] = 1
	held := weak.Make(obj)
	d.AddCallback(func(v int) (int, error) { return v * int(obj[0]), nil }) // the block's last stage
	return held
}
