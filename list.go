package deferred

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// This file holds the combinators over many Deferreds: List, Gather and Race.
// Each adds one stage to every distinct input and counts the inputs still
// pending with an atomic counter; whichever stage settles the outcome fires
// the combined Deferred. Nothing waits and nothing recurses per input.

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
// — cancel them from an errback if their work is no longer wanted. Their
// later failures are consumed too.
//
// Repeated inputs, fired inputs and no inputs are handled as by List.
// Cancelling the returned Deferred before it fires cancels every input that
// has not settled yet; the first cancellation that fails an input makes it
// fail with a *FirstError matching ErrCancelled.
//
// Gather never blocks, and panics on a bad input as List does.
func Gather[T any](ds ...*Deferred[T]) *Deferred[[]T] {
	if len(ds) == 0 {
		return Succeed([]T{})
	}
	g := &gathering[T]{values: make([]T, len(ds))}
	g.init("Gather", ds)
	g.d = NewWithCanceller(func(*Deferred[[]T]) { g.cancel() })
	g.attach("Gather", g)
	return g.d
}

type gathering[T any] struct {
	fanIn[T]
	d      *Deferred[[]T]
	values []T
	failed atomic.Bool
	first  *FirstError // set by the failure that set failed
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

// fanIn is what List, Gather and Race share: the inputs, which positions
// repeat an input, and how many distinct inputs are left to count down.
type fanIn[T any] struct {
	// slots holds each distinct input at its first position, with the
	// stage that input gets; a repeated position has a nil input. Only
	// attach changes it after init.
	slots []slot[T]
	c     combiner[T] // the List, Gather or Race embedding this fanIn
	// next is nil unless an input repeats; then next[i] is the next
	// position holding the same input as position i, or -1.
	next      []int32
	left      atomic.Int64
	abandoned atomic.Bool // a panic cut the setup short: stages pass results on untouched
}

// smallFanIn is the number of inputs up to which looking back beats a hash
// table for finding repeats.
const smallFanIn = 16

// init records ds, finding repeated inputs, and panics (naming fn) on a nil
// input.
func (g *fanIn[T]) init(fn string, ds []*Deferred[T]) {
	g.slots = make([]slot[T], len(ds))
	distinct := 0
	if len(ds) <= smallFanIn {
		for i, d := range ds {
			if d == nil {
				panic(nilInputMessage(fn, i))
			}
			j := i - 1
			for j >= 0 && ds[j] != d {
				j--
			}
			if j >= 0 {
				g.link(j, i, len(ds))
				continue
			}
			g.slots[i].d = d
			distinct++
		}
		g.left.Store(int64(distinct))
		return
	}

	// Open addressing over pointer identity: one allocation, a few
	// nanoseconds an input, where a map costs five times as much.
	bits := 1
	for 1<<bits < 2*len(ds) {
		bits++
	}
	tb := takeTable(1 << bits)
	defer giveTable(tb)
	table := tb.t // last position of an input, plus one; 0 is empty
	mask := uint64(len(table) - 1)
	shift := uint(64-bits) & 63 // the mask spares the shift its check for >= 64
	for i, d := range ds {
		if d == nil {
			panic(nilInputMessage(fn, i))
		}
		// Heap objects do not move, so the address identifies d.
		h := uint64(uintptr(unsafe.Pointer(d))) * 0x9E3779B97F4A7C15 >> shift
		for {
			e := table[h]
			if e == 0 {
				table[h] = int32(i + 1)
				g.slots[i].d = d
				distinct++
				break
			}
			if ds[e-1] == d {
				g.link(int(e-1), i, len(ds))
				table[h] = int32(i + 1)
				break
			}
			h = (h + 1) & mask
		}
	}
	g.left.Store(int64(distinct))
}

// A table is init's hash table, kept in tables between uses, all zero.
type table struct{ t []int32 }

// tables holds zeroed tables of at most maxPooledTable entries: a Gather
// over many inputs would otherwise allocate, and leave to the collector, a
// table as large as the slice of inputs it was given.
var tables sync.Pool

const maxPooledTable = 1 << 16

// takeTable returns a zeroed table of n entries, n a power of two.
func takeTable(n int) *table {
	if n <= maxPooledTable {
		if tb, _ := tables.Get().(*table); tb != nil {
			if cap(tb.t) >= n {
				tb.t = tb.t[:n]
				return tb
			}
		}
	}
	return &table{t: make([]int32, n)}
}

// giveTable clears tb and keeps it for the next takeTable.
func giveTable(tb *table) {
	if cap(tb.t) <= maxPooledTable {
		clear(tb.t)
		tables.Put(tb)
	}
}

func nilInputMessage(fn string, i int) string {
	return fmt.Sprintf("deferred: %s: input %d is nil", fn, i)
}

// link records that position i repeats the input last seen at position j.
func (g *fanIn[T]) link(j, i, n int) {
	if g.next == nil {
		g.next = make([]int32, n)
		for k := range g.next {
			g.next[k] = -1
		}
	}
	g.next[j] = int32(i)
}

// A combiner is List's, Gather's or Race's stage logic. It comes in two
// halves so that the firing loop can record an input's result without
// letting go of the input's lock, which is most of the cost of an input.
type combiner[T any] interface {
	// record takes input i's result and returns the stage's result and
	// whether the combined Deferred must fire now. It runs no user code
	// and takes no lock.
	record(i int, v T, f *Failure) (T, *Failure, bool)
	// fire fires the combined Deferred, once record has said so.
	fire()
}

// A slot is one distinct input and its stage: a pointer to the slot stands
// in for a closure, which would cost an allocation per input, and the
// slot's place in fanIn.slots is the input's position.
type slot[T any] struct {
	g *fanIn[T]
	d *Deferred[T]
}

// record runs the slot's stage on its input's result: see combiner.record.
func (s *slot[T]) record(v T, f *Failure) (T, *Failure, bool) {
	i := (uintptr(unsafe.Pointer(s)) - uintptr(unsafe.Pointer(unsafe.SliceData(s.g.slots)))) / unsafe.Sizeof(*s)
	return s.g.c.record(int(i), v, f)
}

// attach adds c's stage to each distinct input, i being its first
// position. Stages of inputs that have fired already run only once every
// input has its stage, so that a panic on a later input leaves the earlier
// ones as they were.
func (g *fanIn[T]) attach(fn string, c combiner[T]) {
	g.c = c
	ready := -1
	for i := range g.slots {
		sl := &g.slots[i]
		d := sl.d
		if d == nil {
			continue
		}
		d.mu.Lock()
		if d.is(handedOver) {
			d.mu.Unlock()
			g.abandoned.Store(true)
			g.startInputs(ready, i)
			panic(fmt.Sprintf("deferred: %s: input %d was handed over by Then or ThenDeferred; pass the Deferred that Then returned", fn, i))
		}
		sl.g = g
		d.pushLocked(stage[T]{p: unsafe.Pointer(sl), k: kindFanIn})
		if ready < 0 && d.runnableLocked() {
			ready = i
		}
		d.mu.Unlock()
	}
	g.startInputs(ready, len(g.slots))
}

// startInputs drives the inputs at positions from..to-1 that may have stages to
// run; from < 0 means none.
func (g *fanIn[T]) startInputs(from, to int) {
	if from < 0 {
		return
	}
	for i := from; i < to; i++ {
		if d := g.slots[i].d; d != nil {
			drive(d, nil)
		}
	}
}

// cancel cancels every input whose stage has not run yet. While the batch
// holding the stage runs, queued may say either: the input has fired then
// and waits for nothing, so Cancel passes it by.
func (g *fanIn[T]) cancel() {
	for i := range g.slots {
		if d := g.slots[i].d; d != nil && d.queued(unsafe.Pointer(&g.slots[i])) {
			d.Cancel()
		}
	}
}

// fill stores x at position i and at every position repeating its input.
func fill[X any](dst []X, x X, i int, next []int32) {
	dst[i] = x
	if next == nil {
		return
	}
	for j := next[i]; j >= 0; j = next[j] {
		dst[j] = x
	}
}
