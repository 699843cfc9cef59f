package deferred

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// A Pool runs functions in goroutines, at most n at a time, and gives each
// caller a Deferred for its function's result: the counterpart of Twisted's
// deferToThreadPool. A function submitted while n are running waits in a
// first-in, first-out queue, which holds no goroutine: its goroutine starts
// when a running one returns.
//
// Create a Pool with NewPool; the zero Pool is not usable. Submit and Wait
// may be called concurrently from any goroutine. A Pool must not be copied.
type Pool struct {
	slots *semaphore.Weighted // nil in a Pool not made by NewPool

	mu     sync.Mutex
	queue  list.List // of *poolJob, waiting for a slot, oldest first
	active int       // jobs submitted and not finished
	idle   sync.Cond // signalled when active drops to 0
}

type poolJob struct {
	run  func()
	elem *list.Element // in Pool.queue while queued, else nil
}

// NewPool returns a Pool that runs at most n functions at a time. It panics
// if n is less than 1.
func NewPool(n int) *Pool {
	if n < 1 {
		panic("deferred: NewPool called with a limit below 1")
	}
	p := &Pool{slots: semaphore.NewWeighted(int64(n))}
	p.idle.L = &p.mu
	return p
}

// Submit queues f to run on p with a child context of ctx and returns a
// Deferred that fires with f's result: its value, its error as a Failure,
// or the Failure of its panic. f starts in a new goroutine as soon as one
// of p's slots is free and every function submitted before it has started;
// when f returns, its slot goes to the next queued function and the
// Deferred's chain runs on f's goroutine. If ctx has ended by the time a
// slot is free, f is not called and the Deferred fails with ctx.Err().
//
// Cancelling the Deferred while f is queued removes f from the queue (it
// never runs); while f runs, it cancels f's context, and the result f
// returns afterwards is dropped. Either way the Deferred fails with
// ErrCancelled at once, its chain running on the goroutine that called
// Cancel. Submit never blocks. It panics if p was not made by NewPool, or if
// ctx or f is nil.
func Submit[T any](p *Pool, ctx context.Context, f func(context.Context) (T, error)) *Deferred[T] {
	switch {
	case p == nil || p.slots == nil:
		panic("deferred: Submit called with a Pool not made by NewPool")
	case ctx == nil:
		panic("deferred: Submit called with a nil context.Context")
	case f == nil:
		panic("deferred: Submit called with a nil function")
	}
	ctx, cancel := context.WithCancel(ctx)
	j := new(poolJob)
	var cancelled atomic.Bool
	d := NewWithCanceller(func(*Deferred[T]) {
		cancelled.Store(true) // before cancel, as in Go
		cancel()
		p.mu.Lock()
		if j.elem != nil {
			p.queue.Remove(j.elem)
			j.elem = nil
			p.finishLocked()
		}
		p.mu.Unlock()
	})
	j.run = func() {
		var v T
		var fl *Failure
		if err := ctx.Err(); err != nil {
			fl = NewFailure(err)
		} else {
			v, fl = callContext(ctx, f)
		}
		cancel()
		p.release()
		if !cancelled.Load() {
			settleResult(d, v, fl)
		}
		p.mu.Lock()
		p.finishLocked()
		p.mu.Unlock()
	}

	p.mu.Lock()
	p.active++
	if p.queue.Len() == 0 && p.slots.TryAcquire(1) {
		p.mu.Unlock()
		go j.run()
		return d
	}
	j.elem = p.queue.PushBack(j)
	p.mu.Unlock()
	return d
}

// release gives a finished job's slot to the oldest queued job, or frees it
// if none waits. Both happen under p.mu, as Submit's check for a free slot
// does, so a job is never left queued beside a free slot.
func (p *Pool) release() {
	p.mu.Lock()
	e := p.queue.Front()
	if e == nil {
		p.slots.Release(1)
		p.mu.Unlock()
		return
	}
	j := p.queue.Remove(e).(*poolJob)
	j.elem = nil
	p.mu.Unlock()
	go j.run()
}

// finishLocked counts a job out. p.mu is held.
func (p *Pool) finishLocked() {
	p.active--
	if p.active == 0 {
		p.idle.Broadcast()
	}
}

// Wait blocks until every function submitted to p so far has either
// returned, with its Deferred's chain run, or been taken off the queue by
// Cancel. Functions submitted while Wait blocks are waited for too.
//
// Wait must not be called from a stage of a Deferred that Submit returned,
// nor from anything that stage's chain runs: that function is not done
// until its chain has run, so Wait would wait for itself forever. Call it
// from another goroutine, or Await the Deferreds one needs instead.
func (p *Pool) Wait() {
	p.mu.Lock()
	for p.active > 0 {
		p.idle.Wait()
	}
	p.mu.Unlock()
}
