package deferred

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrPoolFull is matched by the failure of a Deferred from Submit when the
// Pool's backlog of functions waiting for a slot is full (see
// NewPoolWithBacklog). SubmitWait waits for room instead.
var ErrPoolFull = errors.New("deferred: pool backlog full")

// A Pool runs functions in goroutines, at most n at a time, and gives each
// caller a Deferred for its function's result: the counterpart of Twisted's
// deferToThreadPool. A function submitted while n are running waits in a
// first-in, first-out backlog, which holds no goroutine: its goroutine
// starts when a running one returns. A Pool made by NewPoolWithBacklog
// bounds that backlog; a producer then either gets ErrPoolFull at once
// (Submit) or a Deferred that fires when there is room (SubmitWait).
//
// Create a Pool with NewPool or NewPoolWithBacklog; the zero Pool is not
// usable. Submit, SubmitWait and Wait may be called concurrently from any
// goroutine. A Pool must not be copied.
//
// In tests, create the Pool and submit to it inside a testing/synctest
// bubble, where time is fake: the functions' goroutines join the bubble,
// so their timers and a timeout added to their Deferreds follow the
// bubble's clock, and AddTimeout(time.Hour) fires as soon as every
// goroutine in the bubble is blocked
// (TestAddTimeoutFiresInstantlyInABubble in package deferredtest,
// deferredtest/synctest_test.go).
//
// The slots are counted under the Pool's own lock, not with a
// golang.org/x/sync semaphore.Weighted: Weighted waits by parking the
// goroutine that calls Acquire, and a Pool's backlog must hold no goroutine.
type Pool struct {
	limit   int // most functions running at once; 0 in a Pool not made by NewPool
	backlog int // most functions waiting for a slot; -1: no limit

	mu       sync.Mutex
	running  int       // slots taken
	queue    list.List // of *poolJob, waiting for a slot, oldest first
	admits   list.List // of *poolAdmit: SubmitWait callers waiting for room, oldest first
	admitted []func()  // fire the Deferreds of admitted SubmitWait callers, oldest first
	handing  bool      // a call is firing admitted
	active   int       // jobs submitted and not finished, and admitted not yet fired
	idle     sync.Cond // signalled when active drops to 0
}

type poolJob struct {
	run    func()
	cancel context.CancelFunc // ends the job's context
	elem   *list.Element      // in Pool.queue while queued, else nil
}

// poolAdmit is a SubmitWait caller waiting for room in the backlog.
type poolAdmit struct {
	job  *poolJob
	fire func()        // fires the caller's Deferred with the job's
	elem *list.Element // in Pool.admits while waiting, else nil
}

// NewPool returns a Pool that runs at most n functions at a time and lets
// any number more wait for a slot. It panics if n is less than 1.
func NewPool(n int) *Pool {
	if n < 1 {
		panic("deferred: NewPool called with a limit below 1")
	}
	return newPool(n, -1)
}

// NewPoolWithBacklog returns a Pool that runs at most n functions at a time
// and lets at most backlog more wait for a slot. With backlog 0, a function
// runs at once or not at all. Submit fails at once with ErrPoolFull when
// the backlog is full; SubmitWait waits for room. It panics if n is less
// than 1 or backlog is negative.
func NewPoolWithBacklog(n, backlog int) *Pool {
	if n < 1 {
		panic("deferred: NewPoolWithBacklog called with a limit below 1")
	}
	if backlog < 0 {
		panic("deferred: NewPoolWithBacklog called with a negative backlog")
	}
	return newPool(n, backlog)
}

func newPool(n, backlog int) *Pool {
	p := &Pool{limit: n, backlog: backlog}
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
// Submit never blocks. If p's backlog is full (NewPoolWithBacklog), or
// SubmitWait callers wait for room, f is dropped and the Deferred has
// already failed with ErrPoolFull.
//
// Cancelling the Deferred while f is queued removes f from the queue (it
// never runs); while f runs, it cancels f's context, and the result f
// returns afterwards is dropped. Either way the Deferred fails with
// ErrCancelled at once, its chain running on the goroutine that called
// Cancel. Submit panics if p was not made by NewPool or NewPoolWithBacklog,
// or if ctx or f is nil.
func Submit[T any](ctx context.Context, p *Pool, f func(context.Context) (T, error)) *Deferred[T] {
	j, d := newPoolJob(ctx, p, f, "Submit")
	p.mu.Lock()
	if !p.admitLocked(j) {
		p.mu.Unlock()
		j.cancel()
		return Fail[T](ErrPoolFull)
	}
	p.active++
	p.mu.Unlock()
	return d
}

// SubmitWait is Submit for a producer that waits for room in p's backlog
// instead of failing with ErrPoolFull. It returns a Deferred that fires,
// once f has started or joined the backlog, with the Deferred for f's
// result (the one Submit returns): at once, on the calling goroutine, if
// there is room and no earlier SubmitWait waits, and otherwise when a slot
// or backlog place frees up, after every earlier SubmitWait was let in, on
// the goroutine that freed it. On a Pool made by NewPool it always fires at
// once. Use ThenDeferred to continue with f's result. SubmitWait never
// blocks.
//
// Cancelling the returned Deferred while it waits withdraws f, which never
// runs: the Deferred fails with ErrCancelled. Cancelling it once f was let
// in does nothing: it fires with f's Deferred, which can be cancelled in
// turn. The end of ctx does not withdraw f by itself: f is then let in and
// fails with ctx.Err() when its slot comes (see Submit). SubmitWait panics
// as Submit does.
func SubmitWait[T any](ctx context.Context, p *Pool, f func(context.Context) (T, error)) *Deferred[*Deferred[T]] {
	j, d := newPoolJob(ctx, p, f, "SubmitWait")
	p.mu.Lock()
	p.active++
	if p.admitLocked(j) {
		p.mu.Unlock()
		return Succeed(d)
	}
	a := &poolAdmit{job: j}
	admitted := NewWithCanceller(func(admitted *Deferred[*Deferred[T]]) {
		p.mu.Lock()
		if a.elem != nil {
			p.admits.Remove(a.elem)
			a.elem = nil
			p.finishLocked()
			p.mu.Unlock()
			j.cancel()
			return // Cancel fails admitted with ErrCancelled
		}
		p.mu.Unlock()
		// f was let in before this Cancel: say so rather than lose f's
		// Deferred. Whichever of this and a.fire comes first fires it.
		_ = admitted.Callback(d)
	})
	a.fire = func() { _ = admitted.Callback(d) }
	a.elem = p.admits.PushBack(a)
	p.mu.Unlock()
	return admitted
}

// newPoolJob checks Submit's arguments and returns the job that runs f and
// the Deferred for f's result.
func newPoolJob[T any](ctx context.Context, p *Pool, f func(context.Context) (T, error), fn string) (*poolJob, *Deferred[T]) {
	switch {
	case p == nil || p.limit == 0:
		panic("deferred: " + fn + " called with a Pool not made by NewPool")
	case ctx == nil:
		panic("deferred: " + fn + " called with a nil context.Context")
	case f == nil:
		panic("deferred: " + fn + " called with a nil function")
	}
	ctx, cancel := context.WithCancel(ctx)
	j := &poolJob{cancel: cancel}
	var cancelled atomic.Bool
	d := NewWithCanceller(func(*Deferred[T]) {
		cancelled.Store(true) // before cancel, as in Go
		cancel()
		p.mu.Lock()
		if j.elem == nil {
			p.mu.Unlock()
			return // running or done: its goroutine counts it out
		}
		p.queue.Remove(j.elem)
		j.elem = nil
		p.finishLocked()
		p.admitWaitingLocked() // its backlog place is free
		p.fireAdmittedAndUnlock()
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
		p.mu.Lock()
		p.releaseLocked()
		p.mu.Unlock()
		if !cancelled.Load() {
			settleResult(d, v, fl)
		}
		p.mu.Lock()
		p.finishLocked()
		p.fireAdmittedAndUnlock() // the SubmitWait callers releaseLocked let in
	}
	return j, d
}

// admitLocked starts j if a slot is free and no job is queued, or queues j
// if the backlog has room, and reports whether it did either. It never lets
// j ahead of a waiting SubmitWait: those wait only while there is no room,
// for admitWaitingLocked fills room under p.mu as soon as it appears. p.mu
// is held.
func (p *Pool) admitLocked(j *poolJob) bool {
	switch {
	case p.running < p.limit && p.queue.Len() == 0:
		p.running++
		go j.run()
	case p.backlog < 0 || p.queue.Len() < p.backlog:
		j.elem = p.queue.PushBack(j)
	default:
		return false
	}
	return true
}

// releaseLocked gives a finished job's slot to the oldest queued job, or
// frees it if none waits, and lets waiting SubmitWait callers into the room
// that makes. p.mu is held, as in Submit's check for room, so a job is
// never left queued beside a free slot.
func (p *Pool) releaseLocked() {
	if e := p.queue.Front(); e != nil {
		j := p.queue.Remove(e).(*poolJob)
		j.elem = nil
		go j.run()
	} else {
		p.running--
	}
	p.admitWaitingLocked()
}

// admitWaitingLocked lets waiting SubmitWait callers in, oldest first, while
// there is room, and schedules their Deferreds to fire. p.mu is held.
func (p *Pool) admitWaitingLocked() {
	for e := p.admits.Front(); e != nil; e = p.admits.Front() {
		a := e.Value.(*poolAdmit)
		if !p.admitLocked(a.job) {
			return
		}
		p.admits.Remove(e)
		a.elem = nil
		p.admitted = append(p.admitted, a.fire)
		p.active++ // Wait waits for the firing too
	}
}

// fireAdmittedAndUnlock fires the Deferreds admitWaitingLocked scheduled,
// in order and in a loop (a callback that submits again adds to the loop,
// not to the stack), unless another call is already doing so, in which
// case that call fires them. p.mu is held on entry and released on return.
func (p *Pool) fireAdmittedAndUnlock() {
	if p.handing {
		p.mu.Unlock()
		return
	}
	p.handing = true
	for len(p.admitted) > 0 {
		fire := p.admitted[0]
		p.admitted[0] = nil
		p.admitted = p.admitted[1:]
		p.mu.Unlock()
		fire()
		p.mu.Lock()
		p.finishLocked()
	}
	p.admitted = nil
	p.handing = false
	p.mu.Unlock()
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
// Cancel, and every Deferred SubmitWait returned has fired or been
// cancelled. Functions submitted while Wait blocks are waited for too.
//
// Wait must not be called from a stage of a Deferred that Submit or
// SubmitWait returned, nor from anything that stage's chain runs: that
// function is not done until its chain has run, so Wait would wait for
// itself forever. Call it from another goroutine, or Await the Deferreds
// one needs instead.
func (p *Pool) Wait() {
	p.mu.Lock()
	for p.active > 0 {
		p.idle.Wait()
	}
	p.mu.Unlock()
}
