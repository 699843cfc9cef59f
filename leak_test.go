package deferred

// This file checks that cancelled and dropped Deferreds leave nothing
// behind: no goroutine, no running timer, no memory.

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

const (
	leakTotal = 10_000 // pending Deferreds cancelled per kind
	// leakBatch bounds the goroutines alive at once: the race detector
	// allows at most 8128.
	leakBatch = 1_000
)

// leakCancelled counts the Deferreds that failed with ErrCancelled, as an
// errback that handles the failure (so nothing is reported as unhandled).
type leakCancelled struct{ n atomic.Int64 }

func (c *leakCancelled) watch(t *testing.T, d *Deferred[int]) {
	d.AddErrback(func(f *Failure) (int, error) {
		if assert.ErrorIs(t, f, ErrCancelled) {
			c.n.Add(1)
		}
		return 0, nil
	})
}

// leakCollected counts the Deferreds the garbage collector has freed.
type leakCollected struct{ n atomic.Int64 }

func (c *leakCollected) track(d *Deferred[int]) {
	runtime.AddCleanup(d, func(n *atomic.Int64) { n.Add(1) }, &c.n)
}

// waitAll collects garbage until want Deferreds have been freed; a guard
// bounds the wait so that a leak fails the test instead of hanging it.
func (c *leakCollected) waitAll(t *testing.T, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d dropped Deferreds were never collected", want-c.n.Load(), want)
		}
		runtime.GC()
		time.Sleep(time.Millisecond) // let the cleanup goroutine run
	}
	assert.Equal(t, want, c.n.Load())
}

// TestLeakCancelledGoEndsItsGoroutine: 10,000 Go Deferreds whose f waits
// for its context, in batches, all cancelled. Each fails with ErrCancelled,
// every goroutine ends (the synctest bubble would otherwise deadlock, and
// goleak checks again outside it), and every Deferred is collected.
func TestLeakCancelledGoEndsItsGoroutine(t *testing.T) {
	var cancelled leakCancelled
	var collected leakCollected
	synctest.Test(t, func(t *testing.T) {
		var started, returned atomic.Int64
		for range leakTotal / leakBatch {
			ds := make([]*Deferred[int], leakBatch)
			for i := range ds {
				ds[i] = Go(context.Background(), func(ctx context.Context) (int, error) {
					started.Add(1)
					defer returned.Add(1)
					<-ctx.Done()
					return 0, ctx.Err()
				})
				cancelled.watch(t, ds[i])
				collected.track(ds[i])
			}
			synctest.Wait() // every f is running, blocked on its context
			require.Equal(t, returned.Load()+leakBatch, started.Load())
			for _, d := range ds {
				d.Cancel()
			}
			synctest.Wait() // every goroutine has returned or is stuck for good
			require.Equal(t, started.Load(), returned.Load(), "an f did not see its context end")
		}
	})
	assert.Equal(t, int64(leakTotal), cancelled.n.Load())
	goleak.VerifyNone(t)
	collected.waitAll(t, leakTotal)
}

// TestLeakCancelledLaterStopsItsTimer: 10,000 Later Deferreds with an hour
// to go, all cancelled. Each fails with ErrCancelled at once, Cancel
// stopped each timer (Stop finds it stopped already), f never runs even
// after the hour has passed (on the bubble's fake clock), and every
// Deferred is collected.
func TestLeakCancelledLaterStopsItsTimer(t *testing.T) {
	timers := watchTimers(t).take
	var cancelled leakCancelled
	var collected leakCollected
	var ran atomic.Int64
	synctest.Test(t, func(t *testing.T) {
		ds := make([]*Deferred[int], leakTotal)
		for i := range ds {
			ds[i] = Later(time.Hour, func() (int, error) {
				ran.Add(1)
				return 1, nil
			})
			cancelled.watch(t, ds[i])
			collected.track(ds[i])
		}
		for _, d := range ds {
			d.Cancel()
		}
		assert.Equal(t, int64(leakTotal), cancelled.n.Load(), "Cancel did not fail every Later at once")
		ts := timers()
		require.Len(t, ts, leakTotal)
		running := 0
		for _, tm := range ts {
			if tm.Stop() {
				running++ // Cancel left it running
			}
		}
		assert.Zero(t, running, "timers left running by Cancel")
		time.Sleep(2 * time.Hour) // fake time: instant
		synctest.Wait()
	})
	assert.Zero(t, ran.Load(), "f of a cancelled Later ran")
	goleak.VerifyNone(t)
	collected.waitAll(t, leakTotal)
}

// TestLeakCancelledSubmitLeavesPoolEmpty: 10,000 jobs submitted to a Pool
// of 4, all cancelled, newest first. The 4 running jobs see their context
// end, the queued ones never start, every Deferred fails with
// ErrCancelled, Wait returns, no goroutine is left, and every Deferred is
// collected (the Pool's queue keeps none).
func TestLeakCancelledSubmitLeavesPoolEmpty(t *testing.T) {
	const limit = 4
	var cancelled leakCancelled
	var collected leakCollected
	var started atomic.Int64
	synctest.Test(t, func(t *testing.T) {
		p := NewPool(limit)
		ds := make([]*Deferred[int], leakTotal)
		for i := range ds {
			ds[i] = Submit(context.Background(), p, func(ctx context.Context) (int, error) {
				started.Add(1)
				<-ctx.Done()
				return 0, ctx.Err()
			})
			cancelled.watch(t, ds[i])
			collected.track(ds[i])
		}
		synctest.Wait()
		require.Equal(t, int64(limit), started.Load())
		// Newest first: the queued jobs go before a running one frees a slot.
		for i := len(ds) - 1; i >= 0; i-- {
			ds[i].Cancel()
		}
		p.Wait()
		synctest.Wait()
	})
	assert.Equal(t, int64(limit), started.Load(), "a cancelled queued job started")
	assert.Equal(t, int64(leakTotal), cancelled.n.Load())
	goleak.VerifyNone(t)
	collected.waitAll(t, leakTotal)
}

// TestLeakFiredAndDroppedAreCollected: 100,000 Deferreds, fired and
// dropped in the usual shapes (a value through stages, a handled failure,
// a stage waiting for an inner Deferred, a Then hand-over, a Chain), are
// all freed by the garbage collector: nothing global keeps a Deferred.
func TestLeakFiredAndDroppedAreCollected(t *testing.T) {
	const total = 100_000
	var collected leakCollected
	inc := func(v int) (int, error) { return v + 1, nil }
	handle := func(*Failure) (int, error) { return 0, nil }
	var sum atomic.Int64 // keeps the chains from being optimised away
	for i := range total / 5 {
		d := New[int]()
		collected.track(d)
		d.AddCallback(inc).AddCallback(inc)
		_ = d.Callback(i)

		f := New[int]()
		collected.track(f)
		f.AddErrback(handle)
		_ = f.Errback(assert.AnError)

		inner, outer := New[int](), Succeed(i)
		collected.track(outer)
		outer.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
		_ = inner.Callback(1)

		src := New[int]()
		collected.track(src)
		Then(src, func(v int) (int, error) { sum.Add(int64(v)); return v, nil })
		_ = src.Callback(i)

		c, other := New[int](), New[int]()
		collected.track(c)
		c.Chain(other)
		_ = c.Callback(i)
	}
	collected.waitAll(t, total)
	assert.Positive(t, sum.Load())
}
