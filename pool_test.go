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
				ds[i] = Submit(context.Background(), p, func(context.Context) (int, error) {
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
			ds[i] = Submit(t.Context(), p, func(context.Context) (int, error) {
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
			Submit(t.Context(), p, func(context.Context) (int, error) {
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
		first := Submit(t.Context(), p, func(context.Context) (int, error) { <-gate; return 1, nil })
		var ran atomic.Bool
		queued := Submit(t.Context(), p, func(context.Context) (int, error) { ran.Store(true); return 2, nil })
		last := Submit(t.Context(), p, func(context.Context) (int, error) { return 3, nil })
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
		running := Submit(t.Context(), p, func(ctx context.Context) (int, error) {
			<-ctx.Done()
			ctxErr.Store(ctx.Err())
			return 99, nil
		})
		next := Submit(t.Context(), p, func(context.Context) (int, error) { return 2, nil })
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
		Submit(t.Context(), p, func(context.Context) (int, error) { <-gate; return 0, nil })
		ctx, cancel := context.WithCancel(t.Context())
		var ran atomic.Bool
		d := Submit(ctx, p, func(context.Context) (int, error) { ran.Store(true); return 1, nil })
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
	_, err := Submit(context.Background(), p, func(context.Context) (int, error) { return 0, errBoom }).
		Await(context.Background())
	assert.ErrorIs(t, err, errBoom)
	_, err = Submit(context.Background(), p, func(context.Context) (int, error) { panic("kaboom") }).
		Await(context.Background())
	var f *Failure
	require.ErrorAs(t, err, &f)
	pv, ok := f.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "kaboom", pv)

	// A panic does not cost the pool its slot.
	v, err := Submit(context.Background(), p, func(context.Context) (int, error) { return 7, nil }).
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
		d := Submit(t.Context(), p, func(context.Context) (int, error) {
			fOn = timeGoroutineID()
			<-added // f must not return before the stage is there, or the stage runs on the test goroutine
			return 1, nil
		})
		next := make(chan string, 1)
		d.AddCallback(func(v int) (int, error) {
			chainOn = timeGoroutineID()
			// The slot is free while the chain runs: a job submitted from
			// it runs even though this stage waits for it.
			inner, err := Submit(t.Context(), p, func(context.Context) (string, error) { return "next", nil }).
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
		d := Submit(context.Background(), p, func(context.Context) (int, error) { return 1, nil })
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

// Backlog tests: a Pool made by NewPoolWithBacklog lets at most backlog
// functions wait for a slot; Submit past that fails at once with
// ErrPoolFull, SubmitWait waits for room in FIFO order and can be
// withdrawn.

// poolQueued returns how many functions wait for a slot in p.
func poolQueued(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// blockingJob returns a function that records its start and returns v
// once gate closes.
func blockingJob(gate <-chan struct{}, started *atomic.Int32, v int) func(context.Context) (int, error) {
	return func(context.Context) (int, error) {
		started.Add(1)
		<-gate
		return v, nil
	}
}

func TestPoolBacklogSubmitFailsFastWithErrPoolFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoolWithBacklog(1, 2)
		gate := make(chan struct{})
		var started atomic.Int32
		ds := make([]*Deferred[int], 3)
		for i := range ds {
			ds[i] = Submit(t.Context(), p, blockingJob(gate, &started, i))
		}
		synctest.Wait()
		assert.Equal(t, int32(1), started.Load())
		assert.Equal(t, 2, poolQueued(p))

		var ran atomic.Bool
		refused := Capture(Submit(t.Context(), p, func(context.Context) (int, error) { ran.Store(true); return 0, nil }))
		require.True(t, refused.Fired, "Submit over the backlog fails at once")
		assert.ErrorIs(t, refused.Failure, ErrPoolFull)
		assert.Equal(t, 2, poolQueued(p), "the refused function does not wait")

		close(gate)
		for i, d := range ds {
			v, err := d.Await(t.Context())
			require.NoError(t, err)
			assert.Equal(t, i, v)
		}
		p.Wait()
		assert.False(t, ran.Load(), "a refused function ran")
		v, err := Submit(t.Context(), p, func(context.Context) (int, error) { return 7, nil }).Await(t.Context())
		require.NoError(t, err, "room again once the backlog drained")
		assert.Equal(t, 7, v)
	})
}

func TestPoolBacklogZeroRunsAtOnceOrRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoolWithBacklog(2, 0)
		gate := make(chan struct{})
		var started atomic.Int32
		a := Submit(t.Context(), p, blockingJob(gate, &started, 1))
		b := Submit(t.Context(), p, blockingJob(gate, &started, 2))
		c := Capture(Submit(t.Context(), p, blockingJob(gate, &started, 3)))
		require.True(t, c.Fired)
		assert.ErrorIs(t, c.Failure, ErrPoolFull)
		synctest.Wait()
		assert.Equal(t, int32(2), started.Load())
		close(gate)
		_, err := a.Await(t.Context())
		require.NoError(t, err)
		_, err = b.Await(t.Context())
		require.NoError(t, err)
		p.Wait()
		assert.Equal(t, int32(2), started.Load())
	})
}

func TestPoolSubmitWaitOnUnboundedPoolFiresAtOnce(t *testing.T) {
	p := NewPool(1)
	gate := make(chan struct{})
	var started atomic.Int32
	outs := make([]*Captured[*Deferred[int]], 10)
	for i := range outs {
		outs[i] = Capture(SubmitWait(context.Background(), p, blockingJob(gate, &started, i)))
		require.True(t, outs[i].Fired, "no backlog limit: let in at once")
		require.Nil(t, outs[i].Failure)
	}
	close(gate)
	for i, o := range outs {
		v, err := o.Value.Await(context.Background())
		require.NoError(t, err)
		assert.Equal(t, i, v)
	}
	p.Wait()
}

func TestPoolSubmitWaitWaitsForRoomInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoolWithBacklog(1, 1)
		gates := make([]chan struct{}, 5)
		for i := range gates {
			gates[i] = make(chan struct{})
		}
		var mu sync.Mutex
		var order []int
		job := func(i int) func(context.Context) (int, error) {
			return func(context.Context) (int, error) {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				<-gates[i]
				return i * 10, nil
			}
		}
		r0 := Submit(t.Context(), p, job(0)) // runs
		r1 := Submit(t.Context(), p, job(1)) // queued
		w2 := Capture(SubmitWait(t.Context(), p, job(2)))
		w3 := Capture(SubmitWait(t.Context(), p, job(3)))
		assert.False(t, w2.Fired, "full: SubmitWait waits")
		assert.False(t, w3.Fired)
		refused := Capture(Submit(t.Context(), p, job(4)))
		require.True(t, refused.Fired)
		assert.ErrorIs(t, refused.Failure, ErrPoolFull, "Submit does not go ahead of a waiting SubmitWait")

		close(gates[0]) // 1 runs; 2 takes its backlog place
		_, err := r0.Await(t.Context())
		require.NoError(t, err)
		_, f := w2.Wait(t)
		require.Nil(t, f)
		assert.False(t, w3.Fired)
		assert.Equal(t, 1, poolQueued(p))

		close(gates[1]) // 2 runs; 3 takes its place
		_, err = r1.Await(t.Context())
		require.NoError(t, err)
		_, f = w3.Wait(t)
		require.Nil(t, f)

		close(gates[2])
		close(gates[3])
		for i, w := range []*Captured[*Deferred[int]]{w2, w3} {
			v, err := w.Value.Await(t.Context())
			require.NoError(t, err)
			assert.Equal(t, (i+2)*10, v)
		}
		p.Wait()
		assert.Equal(t, []int{0, 1, 2, 3}, order)
	})
}

func TestPoolSubmitWaitCancelWithdrawsTheFunction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoolWithBacklog(1, 0)
		gate := make(chan struct{})
		var started atomic.Int32
		r := Submit(t.Context(), p, blockingJob(gate, &started, 1))
		var ran atomic.Bool
		w := SubmitWait(t.Context(), p, func(context.Context) (int, error) { ran.Store(true); return 0, nil })
		next := Capture(SubmitWait(t.Context(), p, blockingJob(gate, &started, 3)))

		var waited atomic.Bool
		go func() { p.Wait(); waited.Store(true) }()
		w.Cancel()
		o := Capture(w)
		require.True(t, o.Fired)
		assert.ErrorIs(t, o.Failure, ErrCancelled)
		p.mu.Lock()
		assert.Equal(t, 1, p.admits.Len(), "the withdrawn SubmitWait left the line")
		p.mu.Unlock()

		close(gate)
		_, err := r.Await(t.Context())
		require.NoError(t, err)
		_, f := next.Wait(t)
		require.Nil(t, f, "the room went to the SubmitWait after the withdrawn one")
		v, err := next.Value.Await(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 3, v)
		synctest.Wait()
		assert.True(t, waited.Load(), "Wait waits no more for a withdrawn function")
		assert.False(t, ran.Load(), "a withdrawn function ran")
	})
}

// TestPoolSubmitWaitCancelAfterItWasLetInFiresIt: a SubmitWait let in
// whose Deferred has not fired yet (another admission's callback is
// running in the same firing loop) cannot be withdrawn any more: Cancel
// fires it with f's Deferred, and f runs.
func TestPoolSubmitWaitCancelAfterItWasLetInFiresIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoolWithBacklog(1, 2)
		gate := make(chan struct{})
		var started atomic.Int32
		Submit(t.Context(), p, blockingJob(gate, &started, 0))
		b1 := Submit(t.Context(), p, blockingJob(gate, &started, 1))
		b2 := Submit(t.Context(), p, blockingJob(gate, &started, 2))
		Capture(b1) // their cancellations are expected
		Capture(b2)
		wc := SubmitWait(t.Context(), p, blockingJob(gate, &started, 3))
		wd := SubmitWait(t.Context(), p, blockingJob(gate, &started, 4))
		od := Capture(wd)

		var inCallback *Captured[*Deferred[int]]
		wc.AddCallback(func(r *Deferred[int]) (*Deferred[int], error) {
			b2.Cancel() // lets wd in; its firing waits for this callback
			p.mu.Lock()
			admitted := len(p.admitted)
			p.mu.Unlock()
			assert.Equal(t, 1, admitted, "wd is let in, not yet fired")
			wd.Cancel()
			inCallback = od
			return r, nil
		})
		b1.Cancel() // lets wc in, firing it here
		require.NotNil(t, inCallback, "wc did not fire when b1 left the backlog")
		require.True(t, od.Fired)
		require.Nil(t, od.Failure, "a SubmitWait already let in must not fail")
		require.NotNil(t, od.Value)

		close(gate)
		v, err := od.Value.Await(t.Context())
		require.NoError(t, err, "the function let in runs")
		assert.Equal(t, 4, v)
		p.Wait()
		assert.Equal(t, int32(3), started.Load(), "0, 3 and 4 ran; the cancelled 1 and 2 did not")
	})
}

// TestPoolSubmitWaitProducerLoop: an event-driven producer submits its next
// function from the callback of the previous admission, so it never holds
// more than the backlog in the Pool; every function runs once.
func TestPoolSubmitWaitProducerLoop(t *testing.T) {
	const n, limit, backlog = 2000, 2, 3
	p := NewPoolWithBacklog(limit, backlog)
	var g poolGauge
	var mu sync.Mutex
	var started []int
	results := make([]*Deferred[int], n)
	done := make(chan struct{})
	var produce func(i int)
	produce = func(i int) {
		if i == n {
			close(done)
			return
		}
		SubmitWait(context.Background(), p, func(context.Context) (int, error) {
			g.enter()
			defer g.exit()
			mu.Lock()
			started = append(started, i)
			mu.Unlock()
			if q := poolQueued(p); q > backlog {
				t.Errorf("%d functions queued in a backlog of %d", q, backlog)
			}
			runtime.Gosched()
			return i, nil
		}).AddCallback(func(r *Deferred[int]) (*Deferred[int], error) {
			results[i] = r
			produce(i + 1)
			return r, nil
		})
	}
	produce(0)
	<-done
	p.Wait()
	for i, r := range results {
		v, err := r.Await(context.Background())
		require.NoError(t, err)
		require.Equal(t, i, v)
	}
	assert.Len(t, started, n, "a function ran twice or never")
	assert.LessOrEqual(t, g.max.Load(), int32(limit))
}

// TestPoolSubmitWaitConcurrentEveryAdmittedFunctionRunsOnce: many producers
// SubmitWait and cancel some of their waits. A function runs exactly when
// its SubmitWait succeeded, the backlog never overflows, and the Pool ends
// empty.
func TestPoolSubmitWaitConcurrentEveryAdmittedFunctionRunsOnce(t *testing.T) {
	const producers, each, limit, backlog = 8, 100, 2, 3
	p := NewPoolWithBacklog(limit, backlog)
	var g poolGauge
	var ran [producers * each]atomic.Int32
	var admitted [producers * each]atomic.Bool
	var wg sync.WaitGroup
	for w := range producers {
		wg.Go(func() {
			for i := range each {
				k := w*each + i
				d := SubmitWait(context.Background(), p, func(context.Context) (int, error) {
					g.enter()
					defer g.exit()
					ran[k].Add(1)
					runtime.Gosched()
					return k, nil
				})
				if i%3 == 0 {
					d.Cancel()
				}
				r, f := Capture(d).Wait(t)
				if f != nil {
					assert.ErrorIs(t, f, ErrCancelled)
					continue
				}
				admitted[k].Store(true)
				v, err := r.Await(context.Background())
				assert.NoError(t, err)
				assert.Equal(t, k, v)
			}
		})
	}
	wg.Wait()
	p.Wait()
	for k := range ran {
		want := int32(0)
		if admitted[k].Load() {
			want = 1
		}
		if got := ran[k].Load(); got != want {
			t.Errorf("function %d: admitted %v, ran %d times", k, admitted[k].Load(), got)
		}
	}
	assert.LessOrEqual(t, g.max.Load(), int32(limit))
	p.mu.Lock()
	defer p.mu.Unlock()
	assert.Zero(t, p.active)
	assert.Zero(t, p.running)
	assert.Zero(t, p.queue.Len())
	assert.Zero(t, p.admits.Len())
}

func TestPoolSubmitWaitContextEndedWhileWaitingFailsWhenItsSlotComes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoolWithBacklog(1, 0)
		gate := make(chan struct{})
		var started atomic.Int32
		Submit(t.Context(), p, blockingJob(gate, &started, 0))
		ctx, cancel := context.WithCancel(t.Context())
		var ran atomic.Bool
		w := Capture(SubmitWait(ctx, p, func(context.Context) (int, error) { ran.Store(true); return 1, nil }))
		cancel()
		assert.False(t, w.Fired, "the end of ctx does not withdraw the function")
		close(gate)
		r, f := w.Wait(t)
		require.Nil(t, f)
		_, err := r.Await(t.Context())
		assert.ErrorIs(t, err, context.Canceled)
		p.Wait()
		assert.False(t, ran.Load())
	})
}

func TestPoolBacklogMisusePanics(t *testing.T) {
	work := func(context.Context) (int, error) { return 1, nil }
	var nilCtx context.Context
	for _, c := range []struct {
		name, msg string
		run       func()
	}{
		{"NewPoolWithBacklog limit 0", "deferred: NewPoolWithBacklog called with a limit below 1", func() { NewPoolWithBacklog(0, 1) }},
		{"NewPoolWithBacklog negative backlog", "deferred: NewPoolWithBacklog called with a negative backlog", func() { NewPoolWithBacklog(1, -1) }},
		{"SubmitWait nil pool", "deferred: SubmitWait called with a Pool not made by NewPool", func() { SubmitWait(context.Background(), nil, work) }},
		{"SubmitWait zero Pool", "deferred: SubmitWait called with a Pool not made by NewPool", func() { SubmitWait(context.Background(), new(Pool), work) }},
		{"SubmitWait nil ctx", "deferred: SubmitWait called with a nil context.Context", func() { SubmitWait(nilCtx, NewPool(1), work) }},
		{"SubmitWait nil f", "deferred: SubmitWait called with a nil function", func() { SubmitWait[int](context.Background(), NewPool(1), nil) }},
	} {
		assert.PanicsWithValue(t, c.msg, c.run, c.name)
	}
}
