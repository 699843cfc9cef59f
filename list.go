package deferred

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// This file holds the combinators over many Deferreds: List, Gather,
// GatherFailFast and Race. Each adds one stage to every distinct input and
// counts the inputs still pending with an atomic counter; whichever stage
// settles the outcome fires the combined Deferred. Nothing waits and
// nothing recurses per input.

// Outcome is how one input of List settled: with Value, when Failure is
// nil, or with Failure (Value is then the zero value).
type Outcome[T any] struct {
	Value   T
	Failure *Failure
}

// Indexed is the result of Race: the value of the input that succeeded
// first and that input's position among Race's arguments.
type Indexed[T any] struct {
	Index int
	Value T
}

// FirstError is the error inside the failure of a Deferred returned by
// Gather: the input at position Index failed before any other, with
// Failure. errors.Is and errors.As see through it to Failure and the error
// Failure wraps.
type FirstError struct {
	Index   int
	Failure *Failure
}

// Error names the input that failed and its failure.
func (e *FirstError) Error() string {
	if e.Failure == nil {
		return fmt.Sprintf("deferred: input %d failed", e.Index)
	}
	return fmt.Sprintf("deferred: input %d failed: %s", e.Index, e.Failure.Error())
}

// Unwrap returns the input's Failure.
func (e *FirstError) Unwrap() error {
	if e.Failure == nil {
		return nil // a nil *Failure in an error would read as non-nil
	}
	return e.Failure
}

// ErrNoInputs is the failure of a Race with no input: nothing could ever
// win it, and failing at once beats never firing (Twisted's race([])).
var ErrNoInputs = errors.New("deferred: Race called with no inputs")

// List returns a Deferred that fires once every input has a result, with
// one Outcome per input, in the order of ds. It is Twisted's DeferredList
// with consumeErrors: List adds one stage to each input, which records the
// result there and then passes a value on unchanged but turns a failure
// into the zero value, so the failure belongs to the Outcome and is never
// reported as unhandled. An input that appears twice gets one stage and its
// result in both positions. Inputs that have already fired count at once;
// with no inputs, or only fired ones, List returns a fired Deferred (an
// empty, non-nil slice for no inputs).
//
// Cancelling the returned Deferred before it fires cancels every input that
// has not settled yet; it then fires with their outcomes, cancellations
// included, as Twisted's DeferredList does. If one of them cannot settle
// (it is paused, say), the returned Deferred fails with ErrCancelled instead.
//
// List never blocks; the returned Deferred fires on the goroutine that
// settles the last input. It panics, naming the position, if an input is nil
// or its chain was handed over by Then or ThenDeferred; the inputs' results
// are then left as they were.
func List[T any](ds ...*Deferred[T]) *Deferred[[]Outcome[T]] {
	if len(ds) == 0 {
		return Succeed([]Outcome[T]{})
	}
	l := &listing[T]{out: make([]Outcome[T], len(ds))}
	l.init("List", ds)
	l.d = NewWithCanceller(func(*Deferred[[]Outcome[T]]) { l.cancel() })
	l.attach("List", l)
	return l.d
}

type listing[T any] struct {
	fanIn[T]
	d   *Deferred[[]Outcome[T]]
	out []Outcome[T]
}

func (l *listing[T]) record(i int, v T, f *Failure) (T, *Failure, bool) {
	if l.abandoned.Load() {
		return v, f, false
	}
	fill(l.out, Outcome[T]{Value: v, Failure: f}, i, l.next)
	last := l.left.Add(-1) == 0
	if f != nil {
		return zeroOf[T](), nil, last
	}
	return v, nil, last
}

func (l *listing[T]) fire() {
	// An error here means l.d was cancelled and failed already.
	_ = l.d.Callback(l.out)
}

// Gather returns a Deferred that fires with the values of all inputs, in
// the order of ds, or fails as soon as one input fails, with a *FirstError
// holding that input's position and Failure. "First" is in firing order,
// not position order: with inputs settling on many goroutines, the failure
// whose stage ran first wins. It is Twisted's gatherResults with
// consumeErrors: Gather adds one stage to each input, which passes a value
// on unchanged and turns a failure into the zero value: the first failure
// travels on as Gather's own, and the others are dropped, not reported as
// unhandled.
//
// After a failure, Gather leaves the other inputs running (as Twisted does):
// they may be shared with other code, and cancelling is the caller's call
// — use GatherFailFast if their work is no longer wanted. Their later
// failures are consumed too.
//
// Repeated inputs, fired inputs and no inputs are handled as by List.
// Cancelling the returned Deferred before it fires cancels every input that
// has not settled yet; the first cancellation that fails an input makes it
// fail with a *FirstError matching ErrCancelled.
//
// Gather never blocks, and panics on a bad input as List does.
func Gather[T any](ds ...*Deferred[T]) *Deferred[[]T] {
	return gather("Gather", false, ds)
}

// GatherFailFast is Gather, except that its first failure cancels every
// input that has not settled yet, before GatherFailFast fails with the
// *FirstError: errgroup's and conc's rule, for inputs whose work is not
// wanted once one of them has failed. An input has settled once its chain
// has reached GatherFailFast's stage; one that has not (pending, paused, or
// waiting for a Deferred an earlier stage returned) is cancelled, and its
// cancellation failure is consumed like any later failure, never reported
// as unhandled. Inputs that settled before the failure are not touched.
//
// Do not give GatherFailFast a Deferred that other code shares and still
// needs: it would be cancelled too. Give it an Observe branch of that
// Deferred instead, whose cancellation leaves the Deferred alone.
//
// Repeated inputs, fired inputs, no inputs and cancelling the returned
// Deferred are handled as by Gather. GatherFailFast never blocks, and
// panics on a bad input as List does.
func GatherFailFast[T any](ds ...*Deferred[T]) *Deferred[[]T] {
	return gather("GatherFailFast", true, ds)
}

// gather is Gather, or GatherFailFast when failFast is set; fn names it in
// panics.
func gather[T any](fn string, failFast bool, ds []*Deferred[T]) *Deferred[[]T] {
	if len(ds) == 0 {
		return Succeed([]T{})
	}
	g := &gathering[T]{values: make([]T, len(ds)), failFast: failFast}
	g.init(fn, ds)
	g.d = NewWithCanceller(func(*Deferred[[]T]) { g.cancel() })
	g.attach(fn, g)
	return g.d
}

type gathering[T any] struct {
	fanIn[T]
	d        *Deferred[[]T]
	values   []T
	failFast bool // GatherFailFast: the first failure cancels the pending inputs
	failed   atomic.Bool
	first    *FirstError // set by the failure that set failed
}

func (g *gathering[T]) record(i int, v T, f *Failure) (T, *Failure, bool) {
	if g.abandoned.Load() {
		return v, f, false
	}
	if f != nil {
		if g.failed.CompareAndSwap(false, true) {
			g.first = &FirstError{Index: i, Failure: f}
			return zeroOf[T](), nil, true
		}
		return zeroOf[T](), nil, false
	}
	fill(g.values, v, i, g.next)
	// Only successes count down, so a failure rules this out.
	return v, nil, g.left.Add(-1) == 0
}

func (g *gathering[T]) fire() {
	if g.first != nil {
		if g.failFast {
			// The failed input's stage has run: cancel passes it by, and
			// the others' cancellations come back to record as failures
			// after the first, which it consumes.
			g.cancel()
		}
		_ = g.d.Errback(g.first)
		return
	}
	_ = g.d.Callback(g.values)
}

// Race returns a Deferred that fires with the first input to succeed, in
// firing order, and its position in ds. As soon as one succeeds, Race
// cancels every other input that has not settled yet, before firing. If
// every input fails, Race fails with errors.Join of their Failures, in the
// order of ds (errors.Is matches each of them); with no inputs it fails at
// once with ErrNoInputs.
//
// Race adds one stage to each input, which passes a value on unchanged and
// turns a failure into the zero value: losers' failures, cancellations
// included, are never reported as unhandled. An input that appears twice
// gets one stage and, if it wins, the first of its positions. Cancelling
// the returned Deferred before it fires cancels every input that has not
// settled; it then fails with the joined cancellations (matching
// ErrCancelled), unless a canceller made its input succeed.
//
// Race never blocks, and panics on a bad input as List does.
func Race[T any](ds ...*Deferred[T]) *Deferred[Indexed[T]] {
	if len(ds) == 0 {
		return Fail[Indexed[T]](ErrNoInputs)
	}
	r := &racing[T]{failures: make([]*Failure, len(ds))}
	r.init("Race", ds)
	r.d = NewWithCanceller(func(*Deferred[Indexed[T]]) { r.cancel() })
	r.attach("Race", r)
	return r.d
}

type racing[T any] struct {
	fanIn[T]
	d        *Deferred[Indexed[T]]
	failures []*Failure // by first position
	won      atomic.Bool
	winner   Indexed[T] // set by the success that set won
}

func (r *racing[T]) record(i int, v T, f *Failure) (T, *Failure, bool) {
	if r.abandoned.Load() {
		return v, f, false
	}
	if f == nil {
		if r.won.CompareAndSwap(false, true) {
			r.winner = Indexed[T]{Index: i, Value: v}
			return v, nil, true
		}
		return v, nil, false
	}
	r.failures[i] = f
	// Only failures count down, so a success rules this out.
	return zeroOf[T](), nil, r.left.Add(-1) == 0
}

func (r *racing[T]) fire() {
	if r.won.Load() {
		r.cancel() // the winner's stage has run: Cancel passes it by
		_ = r.d.Callback(r.winner)
		return
	}
	errs := make([]error, 0, len(r.failures))
	for _, f := range r.failures {
		if f != nil {
			errs = append(errs, f)
		}
	}
	_ = r.d.Errback(errors.Join(errs...))
}
