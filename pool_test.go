package deferred

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// poolGauge counts the functions running at once and keeps the maximum.
type poolGauge struct{ now, max atomic.Int32 }

func (g *poolGauge) enter() {
	n := g.now.Add(1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (g *poolGauge) exit() { g.now.Add(-1) }

func TestPoolManySubmittersNeverExceedLimit(t *testing.T) {
	const limit, submitters, each = 3, 16, 40
	p := NewPool(limit)
	var g poolGauge
	var sum atomic.Int64
	var wg sync.WaitGroup
	for s := range submitters {
		wg.Go(func() {
			ds := make([]*Deferred[int], each)
			for i := range each {
				ds[i] = Submit(p, context.Background(), func(context.Context) (int, error) {
					g.enter()
					defer g.exit()
					runtime.Gosched()
					return s*each + i, nil
				})
			}
			for _, d := range ds {
				v, err := d.Await(context.Background())
				assert.NoError(t, err)
				sum.Add(int64(v))
			}
		})
	}
	wg.Wait()
	p.Wait()
	n := submitters * each
	assert.Equal(t, int64(n*(n-1)/2), sum.Load(), "a job's result went missing")
	assert.LessOrEqual(t, g.max.Load(), int32(limit))
	assert.Positive(t, g.max.Load())
}

func TestPoolFillsAllSlotsAndQueuesTheRestWithoutGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit, jobs = 4, 500
		p := NewPool(limit)
		var g poolGauge
		gate := make(chan struct{})
		before := runtime.NumGoroutine()
		ds := make([]*Deferred[int], jobs)
		for i := range jobs {
			ds[i] = Submit(p, t.Context(), func(context.Context) (int, error) {
				g.enter()
				defer g.exit()
				<-gate
				return 1, nil
			})
		}
		synctest.Wait()
		assert.Equal(t, int32(limit), g.now.Load(), "the pool does not use all its slots")
		// One goroutine per running job, none per queued one. (The count
		// is process-wide: leave room for a goroutine of an earlier test
		// that is still on its way out.)
		assert.LessOrEqual(t, runtime.NumGoroutine()-before, limit+4, "queued jobs hold goroutines")

		close(gate)
		p.Wait()
		for _, d := range ds {
			v, err := d.Await(t.Context())
			require.NoError(t, err)
			require.Equal(t, 1, v)
		}
		assert.Equal(t, int32(limit), g.max.Load())
	})
}

func TestPoolStartsQueuedJobsInSubmissionOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit, jobs = 3, 12
		p := NewPool(limit)
		var mu sync.Mutex
		var started []int
		finish := make([]chan struct{}, jobs)
		for i := range jobs {
			finish[i] = make(chan struct{})
			Submit(p, t.Context(), func(context.Context) (int, error) {
				mu.Lock()
				started = append(started, i)
				mu.Unlock()
				<-finish[i]
				return i, nil
			})
		}
		startedNow := func() []int {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return append([]int(nil), started...)
		}
		require.ElementsMatch(t, []int{0, 1, 2}, startedNow())

		// Finish running jobs out of order: each freed slot goes to the
		// oldest queued job.
		running := []int{2, 0, 1}
		for next := limit; next < jobs; next++ {
			done := running[0]
			running = append(running[1:], next)
			close(finish[done])
			now := startedNow()
			require.Len(t, now, next+1, "not exactly one job started for one freed slot")
			assert.Equal(t, next, now[next], "a freed slot did not go to the oldest queued job")
		}
		for _, i := range running {
			close(finish[i])
		}
		p.Wait()
	})
}

func TestPoolCancelQueuedJobRemovesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPool(1)
		gate := make(chan struct{})
		first := Submit(p, t.Context(), func(context.Context) (int, error) { <-gate; return 1, nil })
		var ran atomic.Bool
		queued := Submit(p, t.Context(), func(context.Context) (int, error) { ran.Store(true); return 2, nil })
		last := Submit(p, t.Context(), func(context.Context) (int, error) { return 3, nil })
		out := Capture(queued)

		queued.Cancel()
		fired, _, f := out.Get()
		require.True(t, fired, "Cancel did not fail the queued job at once")
		assert.ErrorIs(t, f, ErrCancelled)
		p.mu.Lock()
		queuedNow := p.queue.Len()
		p.mu.Unlock()
		assert.Equal(t, 1, queuedNow, "the cancelled job is still queued")

		close(gate)
		v, err := first.Await(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 1, v)
		v, err = last.Await(t.Context())
		require.NoError(t, err, "the job after a cancelled one did not run")
		assert.Equal(t, 3, v)
		p.Wait()
		assert.False(t, ran.Load(), "a cancelled queued job ran")
	})
}

func TestPoolCancelRunningJobCancelsItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPool(1)
		var ctxErr atomic.Value
		running := Submit(p, t.Context(), func(ctx context.Context) (int, error) {
			<-ctx.Done()
			ctxErr.Store(ctx.Err())
			return 99, nil
		})
		next := Submit(p, t.Context(), func(context.Context) (int, error) { return 2, nil })
		out := Capture(running)
		synctest.Wait()

		running.Cancel()
		fired, _, f := out.Get()
		require.True(t, fired, "Cancel did not fail the running job at once")
		assert.ErrorIs(t, f, ErrCancelled)

		v, err := next.Await(t.Context())
		require.NoError(t, err, "the slot of the cancelled job was not freed")
		assert.Equal(t, 2, v)
		p.Wait()
		assert.Equal(t, context.Canceled, ctxErr.Load())
		_, v, f = out.Get()
		assert.ErrorIs(t, f, ErrCancelled, "the late result replaced the cancellation")
		assert.Zero(t, v)
	})
}

func TestPoolJobWhoseContextEndedInQueueDoesNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPool(1)
		gate := make(chan struct{})
		Submit(p, t.Context(), func(context.Context) (int, error) { <-gate; return 0, nil })
		ctx, cancel := context.WithCancel(t.Context())
		var ran atomic.Bool
		d := Submit(p, ctx, func(context.Context) (int, error) { ran.Store(true); return 1, nil })
		cancel()
		close(gate)
		_, err := d.Await(t.Context())
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, ErrCancelled)
		p.Wait()
		assert.False(t, ran.Load())
	})
}

func TestPoolErrorAndPanicBecomeFailures(t *testing.T) {
	p := NewPool(2)
	errBoom := errors.New("boom")
	_, err := Submit(p, context.Background(), func(context.Context) (int, error) { return 0, errBoom }).
		Await(context.Background())
	assert.ErrorIs(t, err, errBoom)
	_, err = Submit(p, context.Background(), func(context.Context) (int, error) { panic("kaboom") }).
		Await(context.Background())
	var f *Failure
	require.ErrorAs(t, err, &f)
	pv, ok := f.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "kaboom", pv)

	// A panic does not cost the pool its slot.
	v, err := Submit(p, context.Background(), func(context.Context) (int, error) { return 7, nil }).
		Await(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 7, v)
	p.Wait()
}

func TestPoolChainRunsOnJobGoroutineAfterSlotIsFreed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPool(1)
		var fOn, chainOn string
		added := make(chan struct{})
		d := Submit(p, t.Context(), func(context.Context) (int, error) {
			fOn = timeGoroutineID()
			<-added // f must not return before the stage is there, or the stage runs on the test goroutine
			return 1, nil
		})
		next := make(chan string, 1)
		d.AddCallback(func(v int) (int, error) {
			chainOn = timeGoroutineID()
			// The slot is free while the chain runs: a job submitted from
			// it runs even though this stage waits for it.
			inner, err := Submit(p, t.Context(), func(context.Context) (string, error) { return "next", nil }).
				Await(t.Context())
			next <- inner
			return v, err
		})
		close(added)
		p.Wait()
		require.NotEmpty(t, fOn)
		assert.Equal(t, fOn, chainOn)
		assert.Equal(t, "next", <-next)
	})
}

// TestPoolWaitWaitsForTheChainsToo pins the reason for the rule in Wait's
// doc (issue 13, defect 7): a job counts until its Deferred's chain has
// run, so Wait returns only after a stage still running on the job's
// goroutine returns; called from that stage, it would wait for itself.
func TestPoolWaitWaitsForTheChainsToo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPool(1)
		release := make(chan struct{})
		d := Submit(p, context.Background(), func(context.Context) (int, error) { return 1, nil })
		d.AddCallback(func(v int) (int, error) { <-release; return v, nil })

		var waited atomic.Bool
		go func() { p.Wait(); waited.Store(true) }()
		synctest.Wait() // f has returned; its chain blocks in the stage
		assert.False(t, waited.Load(), "Wait returned while the job's chain was still running")

		close(release)
		synctest.Wait()
		assert.True(t, waited.Load(), "Wait returns once the chain has run")
	})
}
