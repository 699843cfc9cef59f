package deferred

// This file owns the bridges to Go's own ways of waiting: CancelWhen ties a
// Deferred to a context.Context, and AsCompleted ranges over Deferreds as
// they settle.

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
)

// CancelWhen cancels d if ctx ends before d's chain reaches this point, and
// lets ctx go once it does. It registers d's cancellation with
// context.AfterFunc, so no goroutine waits for ctx, and adds a stage at
// this point of d's chain, as AddTimeout does, that withdraws the
// registration: once d's result gets here — a value or a failure, from the
// producer, a canceller or another Cancel — ctx holds nothing of d, however
// long ctx lives. Until then ctx holds d, as context.AfterFunc holds its
// function.
//
// When ctx ends first, Cancel and the chain after it run on the goroutine
// context.AfterFunc starts, and the failure of that cancellation, if it
// matches ErrCancelled, becomes one that also matches context.Cause(ctx):
// it matches ErrTimeout instead of ErrCancelled if ctx's deadline passed
// (ctx.Err() is context.DeadlineExceeded), as AddTimeout's does. If ctx has
// already ended, CancelWhen cancels d at once, on the calling goroutine,
// unless d's chain has already reached this point. A ctx that can never
// end (its Done returns nil, as context.Background's does) adds nothing.
// As with AddTimeout, the cancellation covers a Deferred an earlier stage
// waits for, not one a later stage returns, and a result that gets here
// first passes unchanged.
//
// CancelWhen returns d. It panics if ctx is nil, or if d's chain was
// handed over by Then or ThenDeferred.
func (d *Deferred[T]) CancelWhen(ctx context.Context) *Deferred[T] {
	if ctx == nil {
		panic("deferred: CancelWhen called with a nil context.Context")
	}
	mustNotBeNil(d, "CancelWhen")
	if ctx.Done() == nil {
		d.mustNotBeHandedOver("CancelWhen")
		return d
	}
	g := &cancelGuard[T]{d: d}
	// The stage goes in first: if d's chain is already past this point, it
	// runs now and there is nothing to register.
	d.add(bothStage(func(v T, f *Failure) (T, error) {
		if g.reached() && f != nil && errors.Is(f, ErrCancelled) {
			return zeroOf[T](), contextEnded(ctx)
		}
		return v, f
	}), "CancelWhen")

	g.mu.Lock()
	if g.state != guardPending {
		g.mu.Unlock()
		return d
	}
	if ctx.Err() != nil {
		g.mu.Unlock()
		g.cancel()
		return d
	}
	// context.AfterFunc never calls g.cancel on this goroutine, so holding
	// g.mu here only makes a stage that runs meanwhile find stop set.
	g.stop = context.AfterFunc(ctx, g.cancel)
	g.mu.Unlock()
	return d
}

// mustNotBeHandedOver panics, naming method, if d's chain was handed over
// by Then or ThenDeferred.
func (d *Deferred[T]) mustNotBeHandedOver(method string) {
	if d.handedOverNow() {
		panic(handedOverMessage(method))
	}
}

// handedOverNow reports whether Then or ThenDeferred has taken d's chain
// over.
func (d *Deferred[T]) handedOverNow() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.is(handedOver)
}

// contextEnded is the error of a Deferred that CancelWhen cancelled because
// ctx ended: ErrTimeout for a deadline, as AddTimeout's, and ErrCancelled
// otherwise, with ctx's cause.
func contextEnded(ctx context.Context) error {
	sentinel := ErrCancelled
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		sentinel = ErrTimeout
	}
	return fmt.Errorf("%w by its context: %w", sentinel, context.Cause(ctx))
}

// A cancelGuard settles the race between whatever cancels d from outside
// its chain (a context's end for CancelWhen, the timer for AddTimeout) and
// d's chain reaching the stage that withdraws it: exactly one side wins,
// and a loser does nothing.
type cancelGuard[T any] struct {
	d *Deferred[T]

	mu     sync.Mutex
	state  guardState
	stop   func() bool // withdraws the cancelling side; nil once it cannot run
	paused bool        // the stage paused d until the cancelling side's Cancel returns
}

type guardState uint8

const (
	guardPending    guardState = iota // neither side has won yet
	guardCancelling                   // the cancelling side won and is cancelling d
	guardCancelled                    // the cancelling side won and has cancelled d
	guardBeaten                       // d's chain reached the stage first
)

// reached is the stage's side; it reports whether the cancelling side won.
func (g *cancelGuard[T]) reached() bool {
	g.mu.Lock()
	switch g.state {
	case guardPending:
		g.state = guardBeaten
		stop := g.stop
		g.stop = nil
		g.mu.Unlock()
		if stop != nil {
			stop()
		}
		return false
	case guardCancelling:
		// Cancel has not returned: stop the chain after this stage, or
		// Cancel could cancel a Deferred that a later stage returns, which
		// neither CancelWhen nor AddTimeout covers.
		g.paused = true
		g.d.Pause()
	}
	g.mu.Unlock()
	return true
}

// cancel is the cancelling side: cancel d unless its chain got there first.
func (g *cancelGuard[T]) cancel() {
	g.mu.Lock()
	if g.state != guardPending {
		g.mu.Unlock()
		return
	}
	g.state = guardCancelling
	g.stop = nil
	g.mu.Unlock()

	if testHookGuardCancelling != nil {
		testHookGuardCancelling()
	}
	g.d.Cancel()

	g.mu.Lock()
	g.state = guardCancelled
	paused := g.paused
	g.paused = false
	g.mu.Unlock()
	if paused {
		g.d.Unpause()
	}
}

// testHookGuardCancelling, set by tests only, is called by cancel after the
// cancelling side has won and before its Cancel, so that a test can fire d
// inside that window.
var testHookGuardCancelling func()

// AsCompleted returns an iterator that yields each position of ds once,
// with its input's Outcome, in the order the inputs settle: inputs that
// have settled already come first, in the order of ds, then the others as
// they settle. A repeated input is yielded once per position. It is the
// range-over-func counterpart of [List], for a caller who wants each
// result as soon as it is there.
//
// Each range over the iterator takes an [Deferred.Observe] branch of every
// input, so an Outcome is the input's result as it stands at the end of
// its chain when the range begins, and blocks, on the ranging goroutine,
// until a branch settles or ctx ends. When the loop ends — all yielded, a
// break, a panic in its body, or ctx ending, after which nothing more is
// yielded — the branches still pending are cancelled, which takes them off
// their inputs: no goroutine and no stage is left behind. The inputs
// themselves are never cancelled, and their chains go on unchanged.
//
// A failure AsCompleted yields counts as handled, as one Await returns
// does: the loop's body has it. A failure it never yields (the loop ended
// first) stays its input's, reported as unhandled if nothing handles it on
// the input's own chain; the branches never report it themselves.
//
// Like Await, the range must not run in one of the inputs' stages, whose
// chain cannot go on before the stage returns. AsCompleted panics, at the
// call and naming the position, if an input is nil or its chain was handed
// over by Then or ThenDeferred, and if ctx is nil.
func AsCompleted[T any](ctx context.Context, ds ...*Deferred[T]) iter.Seq2[int, Outcome[T]] {
	if ctx == nil {
		panic("deferred: AsCompleted called with a nil context.Context")
	}
	for i, d := range ds {
		if d == nil {
			panic(nilInputMessage("AsCompleted", i))
		}
		if d.handedOverNow() {
			panic(fmt.Sprintf("deferred: AsCompleted: input %d was handed over by Then or ThenDeferred; pass the Deferred that Then returned", i))
		}
	}
	return func(yield func(int, Outcome[T]) bool) {
		if ctx.Err() != nil {
			return
		}
		// Each branch's stage sends once: with room for all, none blocks.
		settled := make(chan positioned[T], len(ds))
		branches := make([]*Deferred[T], 0, len(ds))
		defer func() {
			for _, b := range branches {
				b.Cancel() // a branch that has fired ignores it
				b.forgetShared()
			}
		}()
		for i, d := range ds {
			b := d.Observe()
			branches = append(branches, b)
			b.AddBoth(func(v T, f *Failure) (T, error) {
				settled <- positioned[T]{i, Outcome[T]{Value: v, Failure: f}}
				return v, f // passed on untouched: see forgetShared
			})
		}
		for range ds {
			select {
			case p := <-settled:
				if ctx.Err() != nil {
					return
				}
				if p.o.Failure != nil {
					p.o.Failure.marks.Or(markHandled) // the body has it, as Await's caller does
				}
				if !yield(p.i, p.o) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}
}

// positioned is an input's Outcome and its position in AsCompleted's ds.
type positioned[T any] struct {
	i int
	o Outcome[T]
}

// forgetShared takes its result off b, a branch that AsCompleted made and
// whose chain has run or is about to end, without marking a failure
// handled: the failure is its input's to handle or report, and b, once
// collected, would report it while the input may still handle it. The
// wait on Done is short: the only stage on b has run, or is running and
// only sends on a channel with room.
func (b *Deferred[T]) forgetShared() {
	<-b.Done()
	b.mu.Lock()
	if b.is(cleanupArmed) {
		b.disarmCleanupLocked()
	}
	b.value, b.failure = zeroOf[T](), nil
	b.mu.Unlock()
}
