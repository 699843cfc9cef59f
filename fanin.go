package deferred

// This file owns the fan-in that List, Gather, GatherFailFast and Race
// share: the inputs, finding repeated ones, the stage each input gets, and
// starting and cancelling them.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

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
