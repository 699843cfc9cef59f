package deferred

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin List, Gather and Race (issue 3). Where a rule comes from
// Twisted 22.4 (DeferredList, gatherResults), the scenario was run there
// first; the result is noted beside the test. Twisted 22.4 has no race().

var (
	errListA = errors.New("list test error A")
	errListB = errors.New("list test error B")
	errListC = errors.New("list test error C")
)

// listErr turns a *Failure into an error that is nil when f is.
func listErr(f *Failure) error {
	if f == nil {
		return nil
	}
	return f
}

// listCancellable returns a pending Deferred whose canceller counts its
// calls in *n, without firing it (Cancel then fails it with ErrCancelled).
func listCancellable(n *int) *Deferred[int] {
	return NewWithCanceller(func(*Deferred[int]) { *n++ })
}

// listDepth is the number of frames on the calling goroutine's stack.
func listDepth() int {
	pcs := make([]uintptr, 100_000)
	return runtime.Callers(0, pcs)
}

// listUnhandled records the failures reported as unhandled during a test.
type listUnhandled struct {
	mu  sync.Mutex
	got []*Failure
}

func listWatchUnhandled(t *testing.T) *listUnhandled {
	w := &listUnhandled{}
	prev := SetUnhandledHandler(func(f *Failure) {
		w.mu.Lock()
		w.got = append(w.got, f)
		w.mu.Unlock()
	})
	t.Cleanup(func() { SetUnhandledHandler(prev) })
	return w
}

func (w *listUnhandled) count(target error) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, f := range w.got {
		if errors.Is(f, target) {
			n++
		}
	}
	return n
}

// collect runs garbage collections until two control failures, dropped
// one after the other, have been reported: whatever became unreachable
// before them has had its chance to be reported too.
func (w *listUnhandled) collect(t *testing.T) {
	t.Helper()
	for round := range 2 {
		control := fmt.Errorf("list test control failure %d", round)
		func() { Fail[int](control) }()
		deadline := time.Now().Add(10 * time.Second)
		for w.count(control) == 0 {
			require.True(t, time.Now().Before(deadline), "the control failure was never reported")
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
	}
}

// List

func TestListKeepsInputOrderAndWaitsForAll(t *testing.T) {
	a, b, c := New[int](), New[int](), New[int]()
	l := List(a, b, c)

	require.NoError(t, c.Callback(3))
	require.False(t, l.Called(), "List fired before every input settled")
	require.NoError(t, a.Errback(errListA))
	require.False(t, l.Called(), "List fired before every input settled")
	require.NoError(t, b.Callback(2))

	out, f := Capture(l).Now(t)
	require.Nil(t, f)
	require.Len(t, out, 3)
	assert.ErrorIs(t, listErr(out[0].Failure), errListA)
	assert.Zero(t, out[0].Value)
	assert.Equal(t, Outcome[int]{Value: 2}, out[1])
	assert.Equal(t, Outcome[int]{Value: 3}, out[2])
}

// Twisted 22.4, DeferredList([a, b], consumeErrors=True), a.callback(1),
// b.errback(ValueError): stages added to a afterwards see 1, to b see None.
func TestListInputsGoOnWithValueOrZeroAfterItsStage(t *testing.T) {
	a, b := New[int](), New[int]()
	l := List(a, b)
	bFailure := NewFailure(errListA)
	require.NoError(t, a.Callback(1))
	require.NoError(t, b.Errback(bFailure))

	v, f := Capture(a).Now(t)
	assert.Equal(t, 1, v)
	assert.Nil(t, f)
	v, f = Capture(b).Now(t)
	assert.Zero(t, v)
	assert.Nil(t, f, "List must consume the input's failure")

	out, _ := Capture(l).Now(t)
	assert.Same(t, bFailure, out[1].Failure, "the Outcome holds the input's own Failure")
}

func TestListFailuresAreNotReportedAsUnhandled(t *testing.T) {
	w := listWatchUnhandled(t)
	func() {
		a, b := New[int](), New[int]()
		List(a, b, Fail[int](errListB))
		require.NoError(t, a.Errback(errListA))
		require.NoError(t, b.Callback(1))
	}()
	// The unhandled control shows that unreachable failures are reported.
	w.collect(t)
	assert.Zero(t, w.count(errListA), "a failure consumed by List was reported")
	assert.Zero(t, w.count(errListB), "a failure consumed by List was reported")
}

func TestListNoInputsFiresAtOnceWithEmptySlice(t *testing.T) {
	for _, l := range []*Deferred[[]Outcome[int]]{List[int](), List([]*Deferred[int]{}...)} {
		require.True(t, l.Called())
		out, f := Capture(l).Now(t)
		require.Nil(t, f)
		assert.NotNil(t, out)
		assert.Empty(t, out)
	}
}

func TestListAlreadyFiredInputsCountAtOnce(t *testing.T) {
	l := List(Succeed(1), Fail[int](errListA), Succeed(3))
	require.True(t, l.Called(), "all inputs had fired: List must have fired before returning")
	out, f := Capture(l).Now(t)
	require.Nil(t, f)
	require.Len(t, out, 3)
	assert.Equal(t, 1, out[0].Value)
	assert.ErrorIs(t, listErr(out[1].Failure), errListA)
	assert.Equal(t, 3, out[2].Value)

	// Fired and pending mixed.
	p := New[int]()
	l = List(Succeed(1), p)
	require.False(t, l.Called())
	require.NoError(t, p.Callback(2))
	out, _ = Capture(l).Now(t)
	assert.Equal(t, []Outcome[int]{{Value: 1}, {Value: 2}}, out)
}

// Twisted 22.4 adds one stage per position: DeferredList([a, a],
// consumeErrors=True) gives [(False, failure), (True, None)]. We add one
// stage per distinct input, so both positions get the failure.
func TestListRepeatedInputGetsItsResultInEveryPosition(t *testing.T) {
	a, b := New[int](), New[int]()
	l := List(a, b, a)
	aFailure := NewFailure(errListA)
	require.NoError(t, a.Errback(aFailure))
	require.NoError(t, b.Callback(2))
	out, _ := Capture(l).Now(t)
	require.Len(t, out, 3)
	assert.Same(t, aFailure, out[0].Failure)
	assert.Same(t, aFailure, out[2].Failure)
	assert.Equal(t, 2, out[1].Value)
	v, f := Capture(a).Now(t)
	assert.Zero(t, v)
	assert.Nil(t, f)

	// Past the size where repeats are found through a hash table.
	base := []*Deferred[int]{New[int](), New[int](), New[int](), New[int](), New[int](), New[int](), New[int]()}
	ds := make([]*Deferred[int], 60)
	for i := range ds {
		ds[i] = base[i%len(base)]
	}
	l = List(ds...)
	for k, d := range base {
		if k == 3 {
			require.NoError(t, d.Errback(errListB))
			continue
		}
		require.False(t, l.Called())
		require.NoError(t, d.Callback(100+k))
	}
	out, _ = Capture(l).Now(t)
	require.Len(t, out, len(ds))
	for i, o := range out {
		if i%len(base) == 3 {
			assert.ErrorIs(t, listErr(o.Failure), errListB, "position %d", i)
			continue
		}
		assert.Equal(t, Outcome[int]{Value: 100 + i%len(base)}, o, "position %d", i)
	}
}

// Twisted 22.4: DeferredList([a, succeed(7), b], consumeErrors=True).cancel()
// cancels a and b, and the list fires with [(False, CancelledError),
// (True, 7), (False, CancelledError)].
func TestListCancelCancelsPendingInputsAndFiresWithOutcomes(t *testing.T) {
	var na, nb int
	a, b := listCancellable(&na), listCancellable(&nb)
	l := List(a, Succeed(7), b)
	l.Cancel()
	assert.Equal(t, 1, na, "a's canceller")
	assert.Equal(t, 1, nb, "b's canceller")
	out, f := Capture(l).Now(t)
	require.Nil(t, f, "List fires with the outcomes, cancellations included")
	require.Len(t, out, 3)
	assert.ErrorIs(t, listErr(out[0].Failure), ErrCancelled)
	assert.Equal(t, Outcome[int]{Value: 7}, out[1])
	assert.ErrorIs(t, listErr(out[2].Failure), ErrCancelled)
}

func TestListCancelLeavesSettledInputsAlone(t *testing.T) {
	a, b := New[int](), New[int]()
	l := List(a, b)
	require.NoError(t, a.Callback(1))
	// a's chain now waits on inner, after List's stage: not List's business.
	var nInner int
	inner := listCancellable(&nInner)
	a.AddCallbackDeferred(func(int) *Deferred[int] { return inner })

	l.Cancel()
	assert.Zero(t, nInner, "cancelling List reached into a settled input's chain")
	out, _ := Capture(l).Now(t)
	assert.Equal(t, 1, out[0].Value)
	assert.ErrorIs(t, listErr(out[1].Failure), ErrCancelled)
	require.NoError(t, inner.Callback(5))
}

// Twisted's DeferredList.cancel does not fire the list, so a list whose
// input cannot settle stays pending forever; ours fails with ErrCancelled,
// as any Deferred whose canceller did not fire it.
func TestListCancelFailsWhenAnInputCannotSettle(t *testing.T) {
	a := New[int]()
	a.Pause()
	l := List(a)
	require.NoError(t, a.Callback(1)) // fired, but List's stage waits for Unpause
	l.Cancel()
	_, f := Capture(l).Now(t)
	require.ErrorIs(t, f, ErrCancelled)

	require.NotPanics(t, a.Unpause) // List's stage runs; its late Callback is dropped
	v, f := Capture(a).Now(t)
	assert.Equal(t, 1, v)
	assert.Nil(t, f)
}

func TestListThousandInputsFiredInALoop(t *testing.T) {
	const n = 1000
	ds := make([]*Deferred[int], n)
	for i := range ds {
		ds[i] = New[int]()
	}
	l := List(ds...)
	depth := 0
	l.AddCallback(func(out []Outcome[int]) ([]Outcome[int], error) {
		depth = listDepth()
		return out, nil
	})
	base := listDepth()
	for i, d := range ds {
		require.NoError(t, d.Callback(i))
	}
	require.NotZero(t, depth, "List did not fire")
	assert.Less(t, depth-base, 50, "stack grew with the number of inputs")
	out, _ := Capture(l).Now(t)
	for i, o := range out {
		require.Equal(t, Outcome[int]{Value: i}, o)
	}
}

func TestListConcurrentFiring(t *testing.T) {
	const n = 200
	ds := make([]*Deferred[int], n)
	for i := range ds {
		ds[i] = New[int]()
	}
	l := List(ds...)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() {
			<-start
			if i%3 == 0 {
				assert.NoError(t, d.Errback(fmt.Errorf("input %d: %w", i, errListA)))
			} else {
				assert.NoError(t, d.Callback(i))
			}
		})
	}
	close(start)
	wg.Wait()
	out, f := Capture(l).Now(t)
	require.Nil(t, f)
	require.Len(t, out, n)
	for i, o := range out {
		if i%3 == 0 {
			require.ErrorIs(t, listErr(o.Failure), errListA)
			require.Contains(t, o.Failure.Error(), fmt.Sprintf("input %d:", i))
			continue
		}
		require.Equal(t, Outcome[int]{Value: i}, o)
	}
}

// Core bug, found here: a Deferred that fails before any stage is added
// (Errback or Cancel on it, as List, Gather and Race do on theirs) and is
// then dropped is never reported: step returns early, as the Deferred has
// nothing to run, before arming the cleanup. Twisted 22.4 logs "Unhandled
// error in Deferred" for both d.errback(e) and d.cancel() on a Deferred
// without callbacks, then gc.collect().
func TestListCoreReportsFailureWithoutStages(t *testing.T) {
	w := listWatchUnhandled(t)
	errFailed := errors.New("list test: failed before any stage")
	errGathered := errors.New("list test: gathered before any stage")
	func() {
		_ = New[int]().Errback(errFailed)
		a := New[int]()
		Gather(a)
		require.NoError(t, a.Errback(errGathered))
	}()
	w.collect(t)
	assert.Equal(t, 1, w.count(errFailed), "Errback with no stage, then dropped")
	assert.Equal(t, 1, w.count(errGathered), "Gather's failure with no stage, then dropped")
}

// Gather

func TestGatherValuesInInputOrder(t *testing.T) {
	a, b, c := New[string](), New[string](), New[string]()
	g := Gather(a, b, c)
	require.NoError(t, b.Callback("b"))
	require.NoError(t, c.Callback("c"))
	require.False(t, g.Called())
	require.NoError(t, a.Callback("a"))
	v, f := Capture(g).Now(t)
	require.Nil(t, f)
	assert.Equal(t, []string{"a", "b", "c"}, v)

	// Values pass on down the inputs' chains.
	got, _ := Capture(b).Now(t)
	assert.Equal(t, "b", got)
}

// Twisted 22.4: gatherResults([a, b], consumeErrors=True) with b failing
// before a fails with FirstError index 1.
func TestGatherFailsWithFirstFailureInFiringOrder(t *testing.T) {
	a, b, c := New[int](), New[int](), New[int]()
	g := Gather(a, b, c)
	bFailure := NewFailure(errListB)
	require.NoError(t, b.Errback(bFailure))
	require.True(t, g.Called(), "Gather must fail at the first failure")
	require.NoError(t, a.Errback(errListA))

	_, f := Capture(g).Now(t)
	require.NotNil(t, f)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 1, fe.Index)
	assert.Same(t, bFailure, fe.Failure)
	assert.ErrorIs(t, f, errListB)
	assert.NotErrorIs(t, f, errListA)
	assert.Equal(t, "deferred: input 1 failed: "+errListB.Error(), fe.Error())

	// The inputs' failures were consumed.
	for _, d := range []*Deferred[int]{a, b} {
		v, f := Capture(d).Now(t)
		assert.Zero(t, v)
		assert.Nil(t, f)
	}
	require.NoError(t, c.Callback(3))
}

// Twisted 22.4: after gatherResults fails, a pending input with a
// canceller is neither cancelled nor fired.
func TestGatherLeavesRemainingInputsRunningAfterAFailure(t *testing.T) {
	var n int
	a, b := New[int](), listCancellable(&n)
	g := Gather(a, b)
	require.NoError(t, a.Errback(errListA))
	_, f := Capture(g).Now(t)
	require.ErrorIs(t, f, errListA)
	assert.Zero(t, n, "Gather cancelled a remaining input")
	assert.False(t, b.Called())

	require.NoError(t, b.Callback(2))
	v, f := Capture(b).Now(t)
	assert.Equal(t, 2, v)
	assert.Nil(t, f)
}

func TestGatherReportsOnlyItsOwnFailure(t *testing.T) {
	w := listWatchUnhandled(t)
	func() {
		a, b := New[int](), New[int]()
		// Nobody handles Gather's failure: it is reported. (The stage makes
		// the chain end in it; see TestListCoreReportsFailureWithoutStages.)
		Gather(a, b).AddCallback(func(v []int) ([]int, error) { return v, nil })
		require.NoError(t, a.Errback(errListA))
		require.NoError(t, b.Errback(errListB))
	}()
	w.collect(t)
	assert.Equal(t, 1, w.count(errListA), "Gather's failure (input a's, as FirstError) must be reported once")
	assert.Zero(t, w.count(errListB), "a later failure consumed by Gather was reported")
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.got {
		if errors.Is(f, errListA) {
			var fe *FirstError
			assert.ErrorAs(t, f, &fe)
		}
	}
}

func TestGatherNoInputsFiresAtOnceWithEmptySlice(t *testing.T) {
	g := Gather[int]()
	require.True(t, g.Called())
	v, f := Capture(g).Now(t)
	require.Nil(t, f)
	assert.NotNil(t, v)
	assert.Empty(t, v)
}

func TestGatherAlreadyFiredInputs(t *testing.T) {
	g := Gather(Succeed(1), Succeed(2))
	require.True(t, g.Called())
	v, _ := Capture(g).Now(t)
	assert.Equal(t, []int{1, 2}, v)

	g = Gather(Succeed(1), Fail[int](errListA), Fail[int](errListB))
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 1, fe.Index)
}

// Twisted 22.4: gatherResults([a, b], consumeErrors=True).cancel() cancels
// both and fails with FirstError(CancelledError, 0).
func TestGatherCancelCancelsPendingInputs(t *testing.T) {
	var na, nb, nc int
	a, b, c := listCancellable(&na), listCancellable(&nb), listCancellable(&nc)
	g := Gather(a, b, c)
	require.NoError(t, a.Callback(1))
	g.Cancel()
	assert.Zero(t, na, "a had settled")
	assert.Equal(t, 1, nb)
	assert.Equal(t, 1, nc, "every pending input is cancelled, even after Gather failed")
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 1, fe.Index)
	assert.ErrorIs(t, f, ErrCancelled)
}

func TestGatherRepeatedInput(t *testing.T) {
	a, b := New[int](), New[int]()
	g := Gather(a, b, a)
	require.NoError(t, a.Callback(1))
	require.NoError(t, b.Callback(2))
	v, _ := Capture(g).Now(t)
	assert.Equal(t, []int{1, 2, 1}, v)

	a = New[int]()
	g = Gather(a, a)
	require.NoError(t, a.Errback(errListA))
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 0, fe.Index)
}

// A Gather over many inputs finds repeats with a hash table that it reuses
// from one call to the next: what a call left there, even one that
// panicked halfway, must not make the next see repeats that are not.
func TestGatherReusedRepeatTableStartsEmpty(t *testing.T) {
	const n = 300
	fresh := func() []*Deferred[int] {
		ds := make([]*Deferred[int], n)
		for i := range ds {
			ds[i] = New[int]()
		}
		return ds
	}
	check := func(ds []*Deferred[int], g *Deferred[[]int]) {
		t.Helper()
		for i, d := range ds {
			if i == 0 || ds[i-1] != d {
				require.NoError(t, d.Callback(i))
			}
		}
		v, f := Capture(g).Now(t)
		require.Nil(t, f)
		require.Len(t, v, n)
		for i, x := range v {
			want := i
			if i > 0 && ds[i-1] == ds[i] {
				want = i - 1
			}
			if x != want {
				t.Fatalf("value %d is %d, want %d", i, x, want)
			}
		}
	}
	for round := 0; round < 3; round++ {
		ds := fresh()
		for i := 1; i < n; i += 2 {
			ds[i] = ds[i-1] // every other position repeats the one before
		}
		check(ds, Gather(ds...))
		ds = fresh()
		check(ds, Gather(ds...))

		bad := fresh()
		bad[n-1] = nil
		require.Panics(t, func() { Gather(bad...) })
		ds = fresh()
		copy(ds, bad[:n-1]) // the inputs the panicking call had put in its table
		check(ds, Gather(ds...))
	}
}

func TestGatherHundredThousandInputs(t *testing.T) {
	const n = 100_000
	ds := make([]*Deferred[int], n)
	for i := range ds {
		ds[i] = New[int]()
	}
	g := Gather(ds...)
	depth := 0
	g.AddCallback(func(v []int) ([]int, error) {
		depth = listDepth()
		return v, nil
	})
	base := listDepth()
	for i := n - 1; i >= 0; i-- {
		if err := ds[i].Callback(i * 2); err != nil {
			t.Fatal(err)
		}
	}
	require.NotZero(t, depth, "Gather did not fire")
	assert.Less(t, depth-base, 50, "stack grew with the number of inputs")
	v, _ := Capture(g).Now(t)
	require.Len(t, v, n)
	for i, x := range v {
		if x != i*2 {
			t.Fatalf("value %d is %d, want %d", i, x, i*2)
		}
	}

	// Cancelling them all, and all of them fired already.
	for i := range ds {
		ds[i] = New[int]()
	}
	g = Gather(ds...)
	g.Cancel()
	_, f := Capture(g).Now(t)
	require.ErrorIs(t, f, ErrCancelled)
	for i, d := range ds {
		if !d.Called() {
			t.Fatalf("input %d was not cancelled", i)
		}
	}
	g = Gather(ds...)
	v, f = Capture(g).Now(t)
	require.Nil(t, f, "inputs go on with the zero value after Gather consumed their failure")
	require.Len(t, v, n)
}

func TestGatherConcurrentFiring(t *testing.T) {
	const n = 200
	for _, withFailures := range []bool{false, true} {
		ds := make([]*Deferred[int], n)
		errs := make([]error, n)
		for i := range ds {
			ds[i] = New[int]()
			errs[i] = fmt.Errorf("input %d: %w", i, errListA)
		}
		g := Gather(ds...)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, d := range ds {
			wg.Go(func() {
				<-start
				if withFailures && i%4 == 1 {
					assert.NoError(t, d.Errback(errs[i]))
				} else {
					assert.NoError(t, d.Callback(i))
				}
			})
		}
		close(start)
		wg.Wait()
		v, f := Capture(g).Now(t)
		if !withFailures {
			require.Nil(t, f)
			for i, x := range v {
				require.Equal(t, i, x)
			}
			continue
		}
		var fe *FirstError
		require.ErrorAs(t, f, &fe)
		require.Equal(t, 1, fe.Index%4, "index %d did not fail", fe.Index)
		require.ErrorIs(t, f, errs[fe.Index], "the failure is not that of input %d", fe.Index)
	}
}

func TestGatherFirstErrorWithoutFailure(t *testing.T) {
	fe := &FirstError{Index: 2}
	assert.NoError(t, fe.Unwrap())
	assert.Equal(t, "deferred: input 2 failed", fe.Error())
}

// GatherFailFast

// The first failure cancels every input still pending, before the
// combined Deferred's chain runs; the input that settled is not touched.
func TestGatherFailFastCancelsPendingInputsOnFirstFailure(t *testing.T) {
	var na, nb, nc, nd int
	a, b, c, d := listCancellable(&na), listCancellable(&nb), listCancellable(&nc), listCancellable(&nd)
	g := GatherFailFast(a, b, c, d)
	require.NoError(t, a.Callback(1))
	var cancelledFirst bool
	g.AddErrback(func(f *Failure) ([]int, error) {
		cancelledFirst = c.Called() && d.Called()
		return nil, f
	})
	require.NoError(t, b.Errback(errListB))

	assert.True(t, cancelledFirst, "GatherFailFast fired before cancelling the pending inputs")
	assert.Zero(t, na, "an input that had settled was cancelled")
	assert.Zero(t, nb, "the failed input was cancelled")
	assert.Equal(t, 1, nc)
	assert.Equal(t, 1, nd)
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 1, fe.Index)
	assert.ErrorIs(t, f, errListB)
	assert.NotErrorIs(t, f, ErrCancelled, "a cancellation took the failed input's place")

	// Each input goes on past GatherFailFast's stage: a with its value,
	// the cancelled ones with their failure consumed.
	v, f := Capture(a).Now(t)
	assert.Equal(t, 1, v)
	assert.Nil(t, f)
	for _, x := range []*Deferred[int]{b, c, d} {
		v, f := Capture(x).Now(t)
		assert.Zero(t, v)
		assert.Nil(t, f, "GatherFailFast must consume its inputs' failures")
	}
}

// Gather, by contrast, cancels nothing on a failure.
func TestGatherFailFastOnlyCancelsWithFailFast(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gather func(...*Deferred[int]) *Deferred[[]int]
		want   int
	}{{"Gather", Gather[int], 0}, {"GatherFailFast", GatherFailFast[int], 1}} {
		t.Run(tc.name, func(t *testing.T) {
			var n int
			a, b := New[int](), listCancellable(&n)
			g := tc.gather(a, b)
			require.NoError(t, a.Errback(errListA))
			assert.Equal(t, tc.want, n)
			_, f := Capture(g).Now(t)
			assert.ErrorIs(t, f, errListA)
		})
	}
}

// Inputs that fired before the call count as settled; a failed one among
// them fails GatherFailFast at once and cancels the pending ones, wherever
// they stand in ds.
func TestGatherFailFastAlreadyFiredInputs(t *testing.T) {
	var na, nb int
	a, b := listCancellable(&na), listCancellable(&nb)
	ok := Succeed(5)
	g := GatherFailFast(a, ok, Fail[int](errListA), b)
	require.True(t, g.Called(), "GatherFailFast had a failed input: it must fail before returning")
	assert.Equal(t, 1, na, "a pending input before the failed one was not cancelled")
	assert.Equal(t, 1, nb, "a pending input after the failed one was not cancelled")
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 2, fe.Index)
	v, f := Capture(ok).Now(t)
	assert.Equal(t, 5, v, "an input that had fired was touched")
	assert.Nil(t, f)

	g = GatherFailFast(Succeed(1), Succeed(2))
	v2, f := Capture(g).Now(t)
	require.Nil(t, f)
	assert.Equal(t, []int{1, 2}, v2)

	g = GatherFailFast[int]()
	v2, f = Capture(g).Now(t)
	require.Nil(t, f)
	assert.NotNil(t, v2)
	assert.Empty(t, v2)
}

// An input that has fired but whose chain waits, before GatherFailFast's
// stage, for a Deferred an earlier stage returned has not settled: Cancel
// cancels what it waits for.
func TestGatherFailFastCancelsWhatAnInputWaitsFor(t *testing.T) {
	var n int
	inner := listCancellable(&n)
	a := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	b := New[int]()
	g := GatherFailFast(a, b)
	require.NoError(t, b.Errback(errListB))
	assert.Equal(t, 1, n, "the Deferred the input waits for was not cancelled")
	_, f := Capture(g).Now(t)
	assert.ErrorIs(t, f, errListB)
	_, f = Capture(a).Now(t)
	assert.Nil(t, f, "the input's cancellation was not consumed")
}

// Cancelling GatherFailFast itself is cancelling Gather: every pending input
// is cancelled, once, and it fails with the first cancellation.
func TestGatherFailFastCancel(t *testing.T) {
	var na, nb, nc int
	a, b, c := listCancellable(&na), listCancellable(&nb), listCancellable(&nc)
	g := GatherFailFast(a, b, c)
	require.NoError(t, a.Callback(1))
	g.Cancel()
	assert.Zero(t, na, "a had settled")
	assert.Equal(t, 1, nb)
	assert.Equal(t, 1, nc, "an input was cancelled twice, or not at all")
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 1, fe.Index)
	assert.ErrorIs(t, f, ErrCancelled)
}

func TestGatherFailFastRepeatedInput(t *testing.T) {
	var n int
	a, b := New[int](), listCancellable(&n)
	g := GatherFailFast(b, a, b, a)
	require.NoError(t, a.Errback(errListA))
	assert.Equal(t, 1, n, "a repeated input is cancelled once")
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	assert.Equal(t, 1, fe.Index, "the failure is reported at the input's first position")
}

func TestGatherFailFastBadInputPanics(t *testing.T) {
	a := New[int]()
	require.PanicsWithValue(t, "deferred: GatherFailFast: input 1 is nil", func() { GatherFailFast(a, nil) })
	require.NoError(t, a.Callback(1))
	assert.Zero(t, queuedStages(a), "the input got a stage from a call that panicked")

	var n int
	b, handed := listCancellable(&n), New[int]()
	Then(handed, func(v int) (int, error) { return v, nil })
	require.PanicsWithValue(t,
		"deferred: GatherFailFast: input 1 was handed over by Then or ThenDeferred; pass the Deferred that Then returned",
		func() { GatherFailFast(b, handed) })
	require.NoError(t, b.Errback(errListA))
	assert.Zero(t, n)
	_, f := Capture(b).Now(t)
	assert.ErrorIs(t, f, errListA, "the input's result was changed by a call that panicked")
}

// Unhandled failures as for Gather: GatherFailFast's own failure is
// reported once if nobody handles it; the inputs' later failures and the
// cancellations it caused are consumed.
func TestGatherFailFastReportsOnlyItsOwnFailure(t *testing.T) {
	w := listWatchUnhandled(t)
	func() {
		a, b, c := New[int](), New[int](), New[int]()
		GatherFailFast(a, b, c).AddCallback(func(v []int) ([]int, error) { return v, nil })
		require.NoError(t, a.Errback(errListA))
		require.True(t, b.Called() && c.Called(), "the pending inputs were not cancelled")
	}()
	func() {
		// A canceller that fails its input with an error of its own.
		a := New[int]()
		b := NewWithCanceller(func(d *Deferred[int]) { _ = d.Errback(errListC) })
		GatherFailFast(a, b).AddErrback(func(*Failure) ([]int, error) { return nil, nil })
		require.NoError(t, a.Errback(errListB))
	}()
	w.collect(t)
	assert.Equal(t, 1, w.count(errListA), "GatherFailFast's failure must be reported once")
	assert.Zero(t, w.count(ErrCancelled), "a cancelled input's failure was reported")
	assert.Zero(t, w.count(errListB), "a handled failure was reported")
	assert.Zero(t, w.count(errListC), "a cancelled input's failure was reported")
}

// Inputs settling on many goroutines: whichever failure wins, every input
// either settled or was cancelled, and none is left pending.
func TestGatherFailFastConcurrentFiring(t *testing.T) {
	const n = 200
	ds := make([]*Deferred[int], n)
	for i := range ds {
		ds[i] = New[int]()
	}
	g := GatherFailFast(ds...)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range ds[:n/2] {
		wg.Go(func() {
			<-start
			if i%4 == 1 {
				assert.NoError(t, d.Errback(fmt.Errorf("input %d: %w", i, errListA)))
			} else {
				assert.NoError(t, d.Callback(i))
			}
		})
	}
	close(start)
	wg.Wait()
	_, f := Capture(g).Now(t)
	var fe *FirstError
	require.ErrorAs(t, f, &fe)
	require.Equal(t, 1, fe.Index%4)
	for i, d := range ds[n/2:] {
		require.True(t, d.Called(), "input %d was left pending", n/2+i)
		_, f := Capture(d).Now(t)
		require.Nil(t, f, "input %d's cancellation was not consumed", n/2+i)
	}
}

// Race

func TestRaceFirstSuccessWinsAndTheRestAreCancelledFirst(t *testing.T) {
	var na, nb, nc int
	a, b, c := listCancellable(&na), listCancellable(&nb), listCancellable(&nc)
	r := Race(a, b, c)
	cancelledFirst := false
	r.AddCallback(func(x Indexed[int]) (Indexed[int], error) {
		cancelledFirst = na == 1 && nc == 1
		return x, nil
	})
	require.NoError(t, b.Callback(2))
	v, f := Capture(r).Now(t)
	require.Nil(t, f)
	assert.Equal(t, Indexed[int]{Index: 1, Value: 2}, v)
	assert.Equal(t, 1, na)
	assert.Zero(t, nb, "the winner was cancelled")
	assert.Equal(t, 1, nc)
	assert.True(t, cancelledFirst, "losers must be cancelled before Race fires")

	// The losers' cancellations were consumed.
	for _, d := range []*Deferred[int]{a, c} {
		_, f := Capture(d).Now(t)
		assert.Nil(t, f)
	}
	got, _ := Capture(b).Now(t)
	assert.Equal(t, 2, got, "the winner's value passes on down its chain")
}

func TestRaceIgnoresFailuresBeforeASuccess(t *testing.T) {
	a, b := New[int](), New[int]()
	r := Race(a, b)
	require.NoError(t, a.Errback(errListA))
	require.False(t, r.Called())
	require.NoError(t, b.Callback(5))
	v, f := Capture(r).Now(t)
	require.Nil(t, f)
	assert.Equal(t, Indexed[int]{Index: 1, Value: 5}, v)
}

func TestRaceAllFailJoinsEveryFailureInInputOrder(t *testing.T) {
	a, b, c := New[int](), New[int](), New[int]()
	r := Race(a, b, c)
	fa, fb, fc := NewFailure(errListA), NewFailure(errListB), NewFailure(errListC)
	require.NoError(t, c.Errback(fc))
	require.NoError(t, a.Errback(fa))
	require.False(t, r.Called())
	require.NoError(t, b.Errback(fb))

	_, f := Capture(r).Now(t)
	require.NotNil(t, f)
	for _, target := range []error{errListA, errListB, errListC} {
		assert.ErrorIs(t, f, target)
	}
	joined, ok := errors.Unwrap(f).(interface{ Unwrap() []error })
	require.True(t, ok, "Race's failure must wrap an errors.Join: %T", errors.Unwrap(f))
	assert.Equal(t, []error{fa, fb, fc}, joined.Unwrap())
}

func TestRaceAlreadyFiredInputWins(t *testing.T) {
	var na, nc int
	a, c := listCancellable(&na), listCancellable(&nc)
	r := Race(a, Fail[int](errListA), Succeed(5), c, Succeed(6))
	require.True(t, r.Called())
	v, _ := Capture(r).Now(t)
	assert.Equal(t, Indexed[int]{Index: 2, Value: 5}, v)
	assert.Equal(t, 1, na)
	assert.Equal(t, 1, nc)
}

func TestRaceCancelCancelsPendingInputs(t *testing.T) {
	var na, nb int
	a, b := listCancellable(&na), listCancellable(&nb)
	r := Race(a, b, Fail[int](errListA))
	r.Cancel()
	assert.Equal(t, 1, na)
	assert.Equal(t, 1, nb)
	_, f := Capture(r).Now(t)
	require.ErrorIs(t, f, ErrCancelled)
	require.ErrorIs(t, f, errListA)

	// A canceller that makes its input succeed wins the race.
	w := NewWithCanceller(func(d *Deferred[int]) { _ = d.Callback(9) })
	r = Race(New[int](), w)
	r.Cancel()
	v, f := Capture(r).Now(t)
	require.Nil(t, f)
	assert.Equal(t, Indexed[int]{Index: 1, Value: 9}, v)
}

func TestRaceLoserSuccessDoesNotChangeTheWinner(t *testing.T) {
	a := New[int]()
	late := NewWithCanceller(func(d *Deferred[int]) { _ = d.Callback(9) })
	r := Race(a, late)
	require.NoError(t, a.Callback(1))
	v, _ := Capture(r).Now(t)
	assert.Equal(t, Indexed[int]{Index: 0, Value: 1}, v)
	got, _ := Capture(late).Now(t)
	assert.Equal(t, 9, got, "a loser's value passes on down its chain")
}

func TestRaceCancelledLosersAreNotReported(t *testing.T) {
	w := listWatchUnhandled(t)
	func() {
		a, b, c := New[int](), New[int](), New[int]()
		Race(a, b, c)
		require.NoError(t, a.Errback(errListA))
		require.NoError(t, b.Callback(1))
	}()
	w.collect(t)
	assert.Zero(t, w.count(ErrCancelled), "a loser's cancellation was reported")
	assert.Zero(t, w.count(errListA), "a loser's failure was reported")
}

func TestRaceRepeatedInputWinsWithItsFirstPosition(t *testing.T) {
	a, b := New[int](), New[int]()
	r := Race(b, a, a)
	require.NoError(t, a.Callback(3))
	v, _ := Capture(r).Now(t)
	assert.Equal(t, Indexed[int]{Index: 1, Value: 3}, v)

	a = New[int]()
	r = Race(a, a)
	require.NoError(t, a.Errback(errListA))
	_, f := Capture(r).Now(t)
	require.ErrorIs(t, f, errListA)
	joined := errors.Unwrap(f).(interface{ Unwrap() []error }).Unwrap()
	assert.Len(t, joined, 1, "one input, one failure")
}

func TestRaceConcurrentFiring(t *testing.T) {
	const n = 200
	ds := make([]*Deferred[int], n)
	for i := range ds {
		ds[i] = New[int]()
	}
	r := Race(ds...)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() {
			<-start
			if i%2 == 0 {
				_ = d.Errback(errListA) // a loser may have been cancelled already
			} else {
				_ = d.Callback(i * 10)
			}
		})
	}
	close(start)
	wg.Wait()
	v, f := Capture(r).Now(t)
	require.Nil(t, f)
	require.Equal(t, 1, v.Index%2, "input %d failed, it cannot win", v.Index)
	require.Equal(t, v.Index*10, v.Value)
	for _, d := range ds {
		require.True(t, d.Called())
	}
	// All fail, concurrently.
	for i := range ds {
		ds[i] = New[int]()
	}
	r = Race(ds...)
	start = make(chan struct{})
	for i, d := range ds {
		wg.Go(func() {
			<-start
			assert.NoError(t, d.Errback(fmt.Errorf("input %d: %w", i, errListA)))
		})
	}
	close(start)
	wg.Wait()
	_, f = Capture(r).Now(t)
	require.NotNil(t, f)
	joined := errors.Unwrap(f).(interface{ Unwrap() []error }).Unwrap()
	require.Len(t, joined, n)
	for i, err := range joined {
		require.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf("input %d:", i)), err.Error())
	}
}

// TestFanInStageRunsInItsPlaceInTheInputsChain: Gather's stage sees an
// input's result as the input's earlier stages left it, and the combined
// Deferred's chain runs before the input's later stages. Twisted 22.4,
// gatherResults with 0, 1 and 4 callbacks on the input before it:
// ['gather [1, 2]', 'a after 1'], then 10 and 10000 likewise. The three
// cases cover the stage at the head of the queue (run under the input's
// lock), after another stage of the same batch, and past the inline stages.
func TestFanInStageRunsInItsPlaceInTheInputsChain(t *testing.T) {
	for _, before := range []int{0, 1, 4} {
		t.Run(fmt.Sprintf("%d stages before", before), func(t *testing.T) {
			var order []string
			a, b := New[int](), New[int]()
			want := 1
			for range before {
				a.AddCallback(func(v int) (int, error) { return v * 10, nil })
				want *= 10
			}
			g := Gather(a, b)
			g.AddCallback(func(vs []int) ([]int, error) {
				order = append(order, fmt.Sprint("gather ", vs))
				return vs, nil
			})
			a.AddCallback(func(v int) (int, error) {
				order = append(order, fmt.Sprint("a after ", v))
				return v, nil
			})
			require.NoError(t, b.Callback(2))
			require.NoError(t, a.Callback(1))
			assert.Equal(t, []string{fmt.Sprintf("gather [%d 2]", want), fmt.Sprint("a after ", want)}, order)
		})
	}
}

// listStaged returns a pending Deferred whose canceller counts its calls in
// *n, with before stages already queued, each adding 1 to a value or
// passing a failure on: with three or more, the stage a combinator adds
// next lies past the inline ones, in the spilled queue, where the
// combinator's Cancel must still find it.
func listStaged(n *int, before int) *Deferred[int] {
	d := listCancellable(n)
	for range before {
		d.AddCallback(func(v int) (int, error) { return v + 1, nil })
	}
	return d
}

// Cancelling a combinator looks for its stage among each input's queued
// stages. With three, four or five stages before it, that stage is in the
// spill, not inline; the input is cancelled all the same, and the combined
// Deferred settles as for an input with no stages before.
func TestFanInCancelFindsItsStageInTheSpilledQueue(t *testing.T) {
	for before := 3; before <= 5; before++ {
		t.Run(fmt.Sprintf("List/%d before", before), func(t *testing.T) {
			var na, nb int
			a, b := listStaged(&na, before), listStaged(&nb, 0)
			l := List(a, b)
			l.Cancel()
			assert.Equal(t, 1, na, "the input whose stage is spilled was not cancelled")
			assert.Equal(t, 1, nb)
			out, f := Capture(l).Now(t)
			require.Nil(t, f, "List fires with the outcomes")
			require.Len(t, out, 2)
			assert.ErrorIs(t, listErr(out[0].Failure), ErrCancelled)
			assert.ErrorIs(t, listErr(out[1].Failure), ErrCancelled)
		})
		t.Run(fmt.Sprintf("Gather/%d before", before), func(t *testing.T) {
			var na int
			a := listStaged(&na, before)
			g := Gather(Succeed(1), a)
			g.Cancel()
			assert.Equal(t, 1, na, "the input whose stage is spilled was not cancelled")
			_, f := Capture(g).Now(t)
			require.ErrorIs(t, f, ErrCancelled)
			var fe *FirstError
			require.ErrorAs(t, f, &fe)
			assert.Equal(t, 1, fe.Index)
		})
		t.Run(fmt.Sprintf("Race/%d before", before), func(t *testing.T) {
			var na, nb int
			a, b := listStaged(&na, 0), listStaged(&nb, before)
			r := Race(a, b)
			r.Cancel()
			assert.Equal(t, 1, na)
			assert.Equal(t, 1, nb, "the input whose stage is spilled was not cancelled")
			_, f := Capture(r).Now(t)
			require.ErrorIs(t, f, ErrCancelled)
		})
		t.Run(fmt.Sprintf("Race winner/%d before", before), func(t *testing.T) {
			// The winner's stage has run; the loser's is spilled, and
			// Race cancels it before firing.
			var na, nb int
			a, b := listStaged(&na, 0), listStaged(&nb, before)
			r := Race(a, b)
			require.NoError(t, a.Callback(4))
			assert.Zero(t, na, "the winner is not cancelled")
			assert.Equal(t, 1, nb, "the loser whose stage is spilled was not cancelled")
			v, f := Capture(r).Now(t)
			require.Nil(t, f)
			assert.Equal(t, Indexed[int]{Index: 0, Value: 4}, v)
		})
	}
}
