package deferred

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stagesLeft is how many stages d has queued and not run.
func stagesLeft[T any](d *Deferred[T]) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int(d.n - d.head)
}

func (r *awaitReports) count(err error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.got {
		if g == err {
			n++
		}
	}
	return n
}

func TestObserveGetsTheResultAtItsPointAndLeavesTheChain(t *testing.T) {
	d := New[int]()
	d.AddCallback(func(v int) (int, error) { return v + 1, nil })
	b := d.Observe()
	d.AddCallback(func(v int) (int, error) { return v * 10, nil })
	out := Capture(d)
	got := Capture(b)
	require.NoError(t, d.Callback(1))

	bv, bf := got.Now(t)
	require.Nil(t, bf)
	assert.Equal(t, 2, bv, "the branch got another point's result")
	v, f := out.Now(t)
	require.Nil(t, f)
	assert.Equal(t, 20, v, "the branch changed the source's chain")
}

func TestObserveOfAFiredDeferredFiresAtOnce(t *testing.T) {
	d := Succeed(3)
	b := d.Observe()
	o, ok := b.Peek()
	require.True(t, ok, "the branch of a fired Deferred has no result")
	assert.Equal(t, Outcome[int]{Value: 3}, o)
	o, ok = d.Peek()
	require.True(t, ok)
	assert.Equal(t, 3, o.Value, "Observe took the source's value")
}

// The branch's chain runs before the rest of the source's, as a Chain
// target's does (Twisted's chainDeferred).
func TestObserveBranchRunsBeforeTheRestOfTheSource(t *testing.T) {
	var order []string
	d := New[int]()
	b := d.Observe()
	b.AddCallback(func(v int) (int, error) { order = append(order, "branch"); return v, nil })
	d.AddCallback(func(v int) (int, error) { order = append(order, "source"); return v, nil })
	require.NoError(t, d.Callback(1))
	assert.Equal(t, []string{"branch", "source"}, order)
}

func TestObserveSharesTheFailure(t *testing.T) {
	errDisk := errors.New("disk on fire")
	d := New[int]()
	b1, b2 := d.Observe(), d.Observe()
	require.NoError(t, d.Errback(errDisk))
	o1, ok1 := b1.Peek()
	o2, ok2 := b2.Peek()
	o, ok := d.Peek()
	require.True(t, ok1 && ok2 && ok)
	assert.ErrorIs(t, o.Failure, errDisk)
	assert.Same(t, o.Failure, o1.Failure, "a branch got another failure")
	assert.Same(t, o.Failure, o2.Failure, "a branch got another failure")
	_, _ = d.Await(context.Background()) // handled: no report
}

func TestObserveCancelTakesTheBranchOffAndNeverCancelsTheSource(t *testing.T) {
	var cancels atomic.Int32
	d := NewWithCanceller(func(*Deferred[int]) { cancels.Add(1) })
	d.AddCallback(func(v int) (int, error) { return v + 1, nil })
	b := d.Observe()
	d.AddCallback(func(v int) (int, error) { return v + 1, nil })
	require.Equal(t, 3, stagesLeft(d))

	b.Cancel()
	o, ok := b.Peek()
	require.True(t, ok)
	assert.ErrorIs(t, o.Failure, ErrCancelled, "a cancelled branch does not fail with ErrCancelled")
	_, _ = b.Await(context.Background()) // handled: no report
	assert.Zero(t, cancels.Load(), "cancelling a branch cancelled the source")
	assert.Equal(t, 2, stagesLeft(d), "the cancelled branch's stage is still on the source")

	out := Capture(d)
	require.NoError(t, d.Callback(1))
	v, f := out.Now(t)
	require.Nil(t, f)
	assert.Equal(t, 3, v, "taking the branch off changed the source's chain")
}

func TestObserveCancelAfterTheBranchFiredActsOnTheBranchAlone(t *testing.T) {
	var cancels atomic.Int32
	d := NewWithCanceller(func(*Deferred[int]) { cancels.Add(1) })
	b := d.Observe()
	inner := New[int]()
	d.AddCallbackDeferred(func(int) *Deferred[int] { return inner }) // d waits after the branch
	require.NoError(t, d.Callback(1))
	b.Cancel()
	assert.Zero(t, cancels.Load())
	assert.False(t, inner.Called(), "cancelling a fired branch cancelled what the source waits for")
	o, ok := b.Peek()
	require.True(t, ok)
	assert.Equal(t, Outcome[int]{Value: 1}, o)
}

// TestRaceOverAnObservedShutdownLeavesItAlone reproduces the second trap of
// issue 14: Race cancels its losers, which cancelled a shared Deferred.
func TestRaceOverAnObservedShutdownLeavesItAlone(t *testing.T) {
	t.Run("the trap, without Observe", func(t *testing.T) {
		shutdown := New[int]()
		r := Race(Succeed(1), shutdown)
		_, ok := r.Peek()
		require.True(t, ok)
		assert.True(t, shutdown.Called(), "Race no longer cancels its losers")
	})
	t.Run("with Observe", func(t *testing.T) {
		var cancels atomic.Int32
		shutdown := NewWithCanceller(func(*Deferred[int]) { cancels.Add(1) })
		work := New[int]()
		r := Race(work, shutdown.Observe())
		require.NoError(t, work.Callback(7))
		o, ok := r.Peek()
		require.True(t, ok)
		require.Nil(t, o.Failure)
		assert.Equal(t, Indexed[int]{Index: 0, Value: 7}, o.Value)
		assert.Zero(t, cancels.Load(), "Race cancelled the shared Deferred")
		assert.False(t, shutdown.Called())
		assert.Zero(t, stagesLeft(shutdown), "the losing branch is still on the shared Deferred")
	})
}

// Combining over one long-lived pending Deferred through Observe, 100,000
// times, leaves nothing on it once the combined Deferreds are gone.
func TestObserveCombiningOverALongLivedDeferredLeavesItsHeapFlat(t *testing.T) {
	shutdown := New[struct{}]()
	round := func(i int) {
		work := New[struct{}]()
		r := Race(work, shutdown.Observe())
		_ = work.Callback(struct{}{})
		_, _ = r.Peek()
	}
	for i := range 1000 { // warm up: pools, size classes
		round(i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 100_000 {
		round(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	assert.Zero(t, stagesLeft(shutdown), "branches are left on the shared Deferred")
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// Leaking one branch a round would be 100,000 × ~300 bytes = 30 MB.
	assert.Less(t, grown, int64(1<<20), "the heap grew by %d bytes over 100,000 rounds", grown)
	runtime.KeepAlive(shutdown)
}

func TestDoneIsClosedOnceTheResultIsThere(t *testing.T) {
	d := New[int]()
	d.Pause()
	inner := New[int]()
	d.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	done := d.Done()
	isClosed := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	assert.False(t, isClosed(), "closed before the firing")
	require.NoError(t, d.Callback(1))
	assert.False(t, isClosed(), "closed while paused")
	_, ok := d.Peek()
	assert.False(t, ok)
	d.Unpause()
	assert.False(t, isClosed(), "closed while waiting for another Deferred")
	require.NoError(t, inner.Callback(2))
	assert.True(t, isClosed(), "not closed once the result is there")
	o, ok := d.Peek()
	require.True(t, ok)
	assert.Equal(t, 2, o.Value)
	assert.True(t, isClosedChan(d.Done()), "a later Done is not closed")
}

// TestDoneIsClosedAfterChainsOfEveryLength: Done's channel lives in the
// side storage that a chain past three stages also uses, and which the
// runner lets go when those stages have run; the channel must survive that.
func TestDoneIsClosedAfterChainsOfEveryLength(t *testing.T) {
	for n := range 2*inlineStages + spillGrowth + 2 {
		d := New[int]()
		done := d.Done()
		for range n {
			d.AddCallback(func(v int) (int, error) { return v + 1, nil })
		}
		require.NoError(t, d.Callback(0))
		assert.True(t, isClosedChan(done), "%d stages: Done not closed once the result is there", n)
		o, ok := d.Peek()
		require.True(t, ok)
		assert.Equal(t, n, o.Value)
	}
}

func isClosedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestDoneCostsNothingUntilCalled(t *testing.T) {
	d := New[int]()
	require.NoError(t, d.Callback(1))
	assert.Nil(t, d.x, "a Deferred nobody asked for Done has side storage")
	assert.True(t, isClosedChan(d.Done()))
	assert.Nil(t, d.x, "Done on a Deferred holding its result made a channel")
	allocs := testing.AllocsPerRun(100, func() { _ = d.Done() })
	assert.Zero(t, allocs)
}

func TestDoneInASelect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New[string]()
		go func() { _ = d.Callback("ready") }()
		select {
		case <-d.Done():
		case <-t.Context().Done():
			t.Fatal("never done")
		}
		o, ok := d.Peek()
		require.True(t, ok)
		assert.Equal(t, "ready", o.Value)
	})
}

func TestPeekChangesNothing(t *testing.T) {
	errDisk := errors.New("disk on fire")
	reports := awaitWatchUnhandled(t, errDisk)
	func() {
		d := Fail[int](errDisk)
		o, ok := d.Peek()
		require.True(t, ok)
		assert.ErrorIs(t, o.Failure, errDisk)
		o2, _ := d.Peek()
		assert.Same(t, o.Failure, o2.Failure)
	}()
	reports.settle(t)
	assert.Equal(t, 1, reports.count(errDisk), "a failure only Peeked at is not reported once")
}

// One failure shared by a Deferred and its branches is reported once if
// nothing handles it, and not at all once anything does.
func TestObserveFailureIsReportedOnceOrNotAtAll(t *testing.T) {
	cases := []struct {
		name    string
		handle  func(d, b1, b2 *Deferred[int])
		reports int
	}{
		{"nobody handles it", func(d, b1, b2 *Deferred[int]) {}, 1},
		{"a branch recovers", func(d, b1, b2 *Deferred[int]) {
			b1.AddErrback(func(*Failure) (int, error) { return 0, nil })
		}, 0},
		{"a branch returns another error", func(d, b1, b2 *Deferred[int]) {
			b2.AddErrback(func(*Failure) (int, error) { return 0, errShareOther })
		}, 0},
		{"a branch passes it on", func(d, b1, b2 *Deferred[int]) {
			b1.AddErrback(func(f *Failure) (int, error) { return 0, f })
		}, 1},
		{"the source recovers", func(d, b1, b2 *Deferred[int]) {
			d.AddErrback(func(*Failure) (int, error) { return 0, nil })
		}, 0},
		{"an Await on a branch returns it", func(d, b1, b2 *Deferred[int]) {
			_, _ = b1.Await(context.Background())
		}, 0},
		{"an Await on the source returns it", func(d, b1, b2 *Deferred[int]) {
			_, _ = d.Await(context.Background())
		}, 0},
		{"a branch is only peeked at", func(d, b1, b2 *Deferred[int]) { _, _ = b2.Peek() }, 1},
		{"List consumes it on a branch", func(d, b1, b2 *Deferred[int]) { List(b1) }, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errShared := errors.New("shared failure: " + c.name)
			reports := awaitWatchUnhandled(t, errShared, errShareOther)
			func() {
				d := New[int]()
				b1, b2 := d.Observe(), d.Observe()
				require.NoError(t, d.Errback(errShared))
				c.handle(d, b1, b2)
			}()
			reports.settle(t)
			assert.Equal(t, c.reports, reports.count(errShared), "reports of the shared failure")
		})
	}
}

var errShareOther = errors.New("another error")

// A Failure fired into a second Deferred as it is (Errback, or a stage
// returning it) is shared by both: reported once if neither handles it,
// not at all once either does, even if it was handled before it was fired
// into the other.
func TestFailureFiredIntoAnotherDeferredIsShared(t *testing.T) {
	recovers := func(*Failure) (int, error) { return 0, nil }
	cases := []struct {
		name    string
		run     func(err error) (keep []*Deferred[int])
		reports int
	}{
		{"Errback into a second Deferred, nobody handles it", func(err error) []*Deferred[int] {
			d1 := Fail[int](err)
			o, _ := d1.Peek()
			f := o.Failure
			d2 := New[int]()
			_ = d2.Errback(f)
			return nil
		}, 1},
		{"Errback into a second Deferred, which recovers", func(err error) []*Deferred[int] {
			d1 := Fail[int](err)
			o, _ := d1.Peek()
			f := o.Failure
			New[int]().AddErrback(recovers).Errback(f)
			return nil
		}, 0},
		{"Errback into a second Deferred, and the first recovers", func(err error) []*Deferred[int] {
			d1 := Fail[int](err)
			o, _ := d1.Peek()
			f := o.Failure
			_ = New[int]().Errback(f)
			d1.AddErrback(recovers)
			return nil
		}, 0},
		{"a stage returns it in another Deferred, which recovers", func(err error) []*Deferred[int] {
			d1 := Fail[int](err)
			o, _ := d1.Peek()
			f := o.Failure
			Succeed(1).AddCallback(func(int) (int, error) { return 0, f }).AddErrback(recovers)
			return nil
		}, 0},
		{"handled in its chain, then fired into another that drops it", func(err error) []*Deferred[int] {
			var kept *Failure
			New[int]().AddErrback(func(f *Failure) (int, error) { kept = f; return 0, nil }).Errback(err)
			_ = New[int]().Errback(kept)
			return nil
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errShared := errors.New("fired into another: " + c.name)
			reports := awaitWatchUnhandled(t, errShared)
			func() { _ = c.run(errShared) }()
			reports.settle(t)
			assert.Equal(t, c.reports, reports.count(errShared), "reports of the failure")
		})
	}
}

// An Await on a branch whose ctx ends first cancels the branch, never the
// shared Deferred.
func TestAwaitOnABranchLeavesTheSharedDeferredAlone(t *testing.T) {
	var cancels atomic.Int32
	d := NewWithCanceller(func(*Deferred[int]) { cancels.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.Observe().Await(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, cancels.Load())
	assert.False(t, d.Called())
	assert.Zero(t, stagesLeft(d), "the abandoned branch is still on the shared Deferred")
}

func BenchmarkAwaitFired(b *testing.B) {
	b.ReportAllocs()
	d := Succeed(1)
	ctx := context.Background()
	for b.Loop() {
		if v, _ := d.Await(ctx); v != 1 {
			b.Fatal(v)
		}
	}
}

func BenchmarkDoneFired(b *testing.B) {
	b.ReportAllocs()
	d := Succeed(1)
	for b.Loop() {
		<-d.Done()
	}
}

// BenchmarkObserve: a branch of a pending Deferred, then the firing.
func BenchmarkObserve(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		d := New[int]()
		br := d.Observe()
		_ = d.Callback(1)
		_ = br
	}
}
