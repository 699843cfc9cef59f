package deferred

import (
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQueueGetFiresAtOnceWithStoredValuesInOrder(t *testing.T) {
	q := NewQueue[int](0, 0)
	for i := range 20 {
		require.NoError(t, q.Put(i))
	}
	assert.Equal(t, 20, q.Len())
	for i := range 20 {
		o := Capture(q.Get())
		require.True(t, o.Fired, "a stored value fires Get at once")
		assert.Equal(t, i, o.Value)
	}
	assert.Equal(t, 0, q.Len())
}

func TestQueuePutGoesToWaitingGetsFIFO(t *testing.T) {
	q := NewQueue[string](0, 0)
	outs := make([]*Captured[string], 3)
	for i := range outs {
		outs[i] = Capture(q.Get())
		assert.False(t, outs[i].Fired)
	}
	assert.Equal(t, 3, q.Waiting())
	for _, v := range []string{"a", "b", "c"} {
		require.NoError(t, q.Put(v))
	}
	for i, want := range []string{"a", "b", "c"} {
		require.True(t, outs[i].Fired, "Put fires the waiting Get on the putting goroutine")
		assert.Equal(t, want, outs[i].Value)
	}
	assert.Equal(t, 0, q.Len(), "handed-over values are not stored")
	assert.Equal(t, 0, q.Waiting())
}

func TestQueueZeroValueAndNonPositiveLimitsAreUnlimited(t *testing.T) {
	for name, q := range map[string]*Queue[int]{
		"zero":     new(Queue[int]),
		"0,0":      NewQueue[int](0, 0),
		"negative": NewQueue[int](-1, -5),
	} {
		for i := range 1000 {
			require.NoError(t, q.Put(i), name)
		}
		assert.Equal(t, 1000, q.Len(), name)
		for i := range 1000 {
			assert.Equal(t, i, Capture(q.Get()).Value, name)
		}
		for range 1000 {
			o := Capture(q.Get())
			require.False(t, o.Fired, "%s: an unlimited backlog lets every Get wait", name)
		}
		assert.Equal(t, 1000, q.Waiting(), name)
	}
}

func TestQueuePutOverSizeFailsWithErrQueueFull(t *testing.T) {
	q := NewQueue[int](2, 0)
	require.NoError(t, q.Put(1))
	require.NoError(t, q.Put(2))
	err := q.Put(3)
	require.ErrorIs(t, err, ErrQueueFull)
	assert.Equal(t, 2, q.Len(), "the refused value is not stored")
	assert.Equal(t, 1, Capture(q.Get()).Value)
	require.NoError(t, q.Put(3), "room again after a Get")
	assert.Equal(t, 2, Capture(q.Get()).Value)
	assert.Equal(t, 3, Capture(q.Get()).Value)
}

func TestQueuePutWithWaitingGetIgnoresSize(t *testing.T) {
	// Twisted: a waiting Get takes the value before size is checked.
	q := NewQueue[int](1, 0)
	o := Capture(q.Get())
	require.NoError(t, q.Put(1))
	assert.Equal(t, 1, o.Value)
	require.NoError(t, q.Put(2))
	assert.ErrorIs(t, q.Put(3), ErrQueueFull)
}

func TestQueueGetOverBacklogFailsWithErrQueueBacklog(t *testing.T) {
	q := NewQueue[int](0, 2)
	o1 := Capture(q.Get())
	o2 := Capture(q.Get())
	o3 := Capture(q.Get())
	require.True(t, o3.Fired, "the Get over the backlog has already failed")
	require.NotNil(t, o3.Failure)
	assert.ErrorIs(t, o3.Failure, ErrQueueBacklog)
	assert.Equal(t, 2, q.Waiting(), "the refused Get does not wait")
	require.NoError(t, q.Put(1))
	require.NoError(t, q.Put(2))
	assert.Equal(t, 1, o1.Value)
	assert.Equal(t, 2, o2.Value)

	require.NoError(t, q.Put(3))
	assert.Equal(t, 3, Capture(q.Get()).Value, "a stored value is served whatever the backlog")
}

func TestQueueCancelPendingGetRemovesIt(t *testing.T) {
	q := NewQueue[int](0, 2)
	d1 := q.Get()
	o1 := Capture(d1)
	o2 := Capture(q.Get())
	d1.Cancel()
	require.True(t, o1.Fired)
	assert.ErrorIs(t, o1.Failure, ErrCancelled)
	assert.Equal(t, 1, q.Waiting())

	o3 := Capture(q.Get())
	assert.False(t, o3.Fired, "the cancelled Get freed its backlog slot")

	require.NoError(t, q.Put(10))
	assert.Equal(t, 10, o2.Value, "the value goes to the next waiter")
	require.NoError(t, q.Put(11))
	assert.Equal(t, 11, o3.Value)
}

func TestQueueCancelOnlyGetThenPutStores(t *testing.T) {
	q := NewQueue[int](0, 0)
	d := q.Get()
	d.Cancel()
	assert.ErrorIs(t, Capture(d).Failure, ErrCancelled) // handled: not reported
	require.NoError(t, q.Put(5))
	assert.Equal(t, 1, q.Len(), "no waiter left: the value is stored")
	assert.Equal(t, 5, Capture(q.Get()).Value)
}

func TestQueueCancelFiredGetDoesNothing(t *testing.T) {
	q := NewQueue[int](0, 0)
	require.NoError(t, q.Put(1))
	d := q.Get()
	d.Cancel()
	o := Capture(d)
	require.True(t, o.Fired)
	assert.Nil(t, o.Failure)
	assert.Equal(t, 1, o.Value)
	assert.Equal(t, 0, q.Len(), "the value is not put back")
}

func TestQueueGetInsideHandOffQueuesBehindWaiters(t *testing.T) {
	// w1's callback puts a value and makes a new Get: the value belongs to
	// w2, which waited first.
	q := NewQueue[string](0, 0)
	var w3 *Captured[string]
	q.Get().AddCallback(func(v string) (string, error) {
		assert.NoError(t, q.Put("b"))
		w3 = Capture(q.Get())
		return v, nil
	})
	w2 := Capture(q.Get())
	require.NoError(t, q.Put("a"))
	assert.Equal(t, "b", w2.Value)
	require.NotNil(t, w3)
	assert.False(t, w3.Fired)
	assert.Equal(t, 1, q.Waiting())
}

func TestQueueSizeCountsOnlyValuesNotPromisedToGets(t *testing.T) {
	// Inside a hand-off, stored values that waiting Gets will take do not
	// make the queue full.
	q := NewQueue[int](1, 0)
	var errs []error
	q.Get().AddCallback(func(v int) (int, error) {
		errs = append(errs, q.Put(100), q.Put(101), q.Put(102))
		return v, nil
	})
	w2 := Capture(q.Get())
	require.NoError(t, q.Put(0))
	require.Len(t, errs, 3)
	assert.NoError(t, errs[0], "100 goes to the waiting w2")
	assert.NoError(t, errs[1], "101 is stored: size 1")
	assert.ErrorIs(t, errs[2], ErrQueueFull)
	assert.Equal(t, 100, w2.Value)
	assert.Equal(t, 1, q.Len())
	assert.Equal(t, 101, Capture(q.Get()).Value)
}

func TestQueueWaiterFiredElsewhereLosesNoValue(t *testing.T) {
	// A waiting Get fired by someone else (or cancelled just as Put takes
	// it off the list) cannot take the value: it goes to the next Get, or
	// is stored, ahead of later values.
	q := NewQueue[int](0, 0)
	d := q.Get()
	require.NoError(t, d.Callback(-1))
	o := Capture(q.Get())
	require.NoError(t, q.Put(1))
	assert.Equal(t, 1, o.Value, "the value skips the fired waiter")

	d2 := q.Get()
	require.NoError(t, d2.Callback(-2))
	require.NoError(t, q.Put(2))
	require.NoError(t, q.Put(3))
	assert.Equal(t, 2, q.Len())
	assert.Equal(t, 2, Capture(q.Get()).Value, "the returned value keeps its place")
	assert.Equal(t, 3, Capture(q.Get()).Value)
}

func TestQueueRingMatchesSliceModel(t *testing.T) {
	var r valueRing[int]
	var model []int
	next := 0
	// A fixed pseudo-random walk through growth, wrap-around and shrinking.
	seed := uint32(1)
	for step := range 20000 {
		seed = seed*1664525 + 1013904223
		op := seed >> 29 // 0..7
		if step > 15000 {
			op = 7 // drain: exercise shrinking
		}
		switch {
		case op < 3:
			r.pushBack(next)
			model = append(model, next)
			next++
		case op < 5:
			r.pushFront(next)
			model = append([]int{next}, model...)
			next++
		default:
			if len(model) == 0 {
				continue
			}
			got := r.popFront()
			if got != model[0] {
				t.Fatalf("step %d: popFront = %d, want %d", step, got, model[0])
			}
			model = model[1:]
		}
		require.Equal(t, len(model), r.len())
	}
	assert.LessOrEqual(t, len(r.buf), 64, "the drained ring gave its memory back")
}

func TestQueueHandOffToManyPuttingGetsDoesNotGrowStack(t *testing.T) {
	primSmallStack(t)
	q := NewQueue[int](0, 0)
	var got []int
	for range primManyWaiters {
		q.Get().AddCallback(func(v int) (int, error) {
			got = append(got, v)
			return v, q.Put(v + 1) // hands the next value to the next waiter
		})
	}
	require.NoError(t, q.Put(0))
	require.Len(t, got, primManyWaiters)
	for i, v := range got {
		if v != i {
			t.Fatalf("waiter %d got %d", i, v)
		}
	}
	assert.Equal(t, 0, q.Waiting())
	assert.Equal(t, 1, q.Len(), "the last waiter's Put is stored")
	assert.Equal(t, primManyWaiters, Capture(q.Get()).Value)
}

func TestQueueConcurrentPutGetDeliversEachValueOnce(t *testing.T) {
	const producers, consumers, perProducer = 8, 8, 500
	const total = producers * perProducer
	q := NewQueue[int](16, 0)

	var pwg sync.WaitGroup
	for p := range producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := range perProducer {
				v := p*perProducer + i
				for {
					err := q.Put(v)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						t.Errorf("Put: %v", err)
						return
					}
					runtime.Gosched() // full: let a consumer take one
				}
			}
		}()
	}

	received := make(chan int, total)
	var cwg sync.WaitGroup
	for c := range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for got, tries := 0, 0; got < total/consumers; tries++ {
				d := q.Get()
				if (c+tries)%6 == 0 {
					d.Cancel() // pending: withdrawn; already fired: keeps its value
				}
				v, f := Capture(d).Wait(t)
				if f != nil {
					if !errors.Is(f, ErrCancelled) {
						t.Errorf("Get: %v", f)
						return
					}
					continue
				}
				received <- v
				got++
			}
		}()
	}
	pwg.Wait()
	cwg.Wait()
	close(received)

	seen := make([]int, total)
	for v := range received {
		seen[v]++
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("value %d delivered %d times", v, n)
		}
	}
	assert.Equal(t, 0, q.Len(), "nothing left behind")
	assert.Equal(t, 0, q.Waiting())
}

// The backlog counts the Gets that no stored value is about to serve. In a
// hand-off, values put by a waiter's callback are promised to the Gets
// still waiting, so a Get made there waits behind them (or takes one of
// those values) without counting them against the backlog, and is refused
// only once backlog Gets wait with no value for them.
func TestQueueBacklogDuringHandOffCountsOnlyUnservedGets(t *testing.T) {
	q := NewQueue[int](0, 2)
	var g3, g4, g5, g6 *Captured[int]
	var waitingInside int
	q.Get().AddCallback(func(v int) (int, error) {
		assert.NoError(t, q.Put(2)) // for g2
		assert.NoError(t, q.Put(3)) // for g3
		g3 = Capture(q.Get())
		g4 = Capture(q.Get())
		g5 = Capture(q.Get())
		waitingInside = q.Waiting()
		g6 = Capture(q.Get())
		return v, nil
	})
	g2 := Capture(q.Get())
	require.NoError(t, q.Put(1))

	assert.Equal(t, 2, waitingInside, "g4 and g5 wait with no value for them")
	require.True(t, g6.Fired, "a third Get with no value for it is over the backlog")
	assert.ErrorIs(t, listErr(g6.Failure), ErrQueueBacklog)
	for i, g := range []*Captured[int]{g3, g4, g5} {
		assert.Nil(t, g.Failure, "g%d was refused: the values promised to earlier Gets counted against the backlog", i+3)
	}
	assert.Equal(t, 2, g2.Value)
	assert.Equal(t, 3, g3.Value)
	assert.False(t, g4.Fired)
	assert.False(t, g5.Fired)
	assert.Equal(t, 2, q.Waiting())

	require.NoError(t, q.Put(4))
	require.NoError(t, q.Put(5))
	assert.Equal(t, 4, g4.Value)
	assert.Equal(t, 5, g5.Value)
	assert.Equal(t, 0, q.Waiting())
}

// A Get that the hand-off has taken off the list but that fired meanwhile
// (cancelled by another goroutine in that window, or fired by someone
// else) refuses its value. The value goes back to the front: the next Get
// gets it, and the values put after it keep their order. The window
// cannot be hit at will, so the Get here is fired by someone else, which
// the hand-off sees the same way: a Callback refused.
func TestQueueValueRefusedByATakenGetGoesToTheNextGetInOrder(t *testing.T) {
	q := NewQueue[int](0, 0)
	g1 := Capture(q.Get().AddCallback(func(v int) (int, error) {
		// Stored while the hand-off runs: promised to g2 (then g3) and g4.
		assert.NoError(t, q.Put(2))
		assert.NoError(t, q.Put(3))
		return v, nil
	}))
	g2 := q.Get()
	require.NoError(t, g2.Errback(ErrCancelled))
	g3, g4 := Capture(q.Get()), Capture(q.Get())
	require.NoError(t, q.Put(1))

	assert.Equal(t, 1, g1.Value)
	_, f := Capture(g2).Now(t)
	assert.ErrorIs(t, listErr(f), ErrCancelled, "g2 kept its own result")
	assert.Equal(t, 2, g3.Value, "the value g2 refused goes to the next Get, first")
	assert.Equal(t, 3, g4.Value)
	assert.Equal(t, 0, q.Len())
	assert.Equal(t, 0, q.Waiting())
}

// Cancelling waiting Gets anywhere in the list (the middle, the end) takes
// them out and leaves the others in order: the next Puts go to the next
// waiters, and a Get made afterwards waits behind them.
func TestQueueCancelledWaitersLeaveTheOthersInOrder(t *testing.T) {
	q := NewQueue[int](0, 0)
	ds := make([]*Deferred[int], 5)
	outs := make([]*Captured[int], 5)
	for i := range ds {
		ds[i] = q.Get()
	}
	ds[1].Cancel() // the middle
	ds[4].Cancel() // the end
	ds[0].Cancel() // the front
	for i, d := range ds {
		outs[i] = Capture(d)
	}
	late := Capture(q.Get())
	assert.Equal(t, 3, q.Waiting())
	for v := 1; v <= 3; v++ {
		require.NoError(t, q.Put(v))
	}
	for _, i := range []int{0, 1, 4} {
		assert.ErrorIs(t, listErr(outs[i].Failure), ErrCancelled, "Get %d", i)
	}
	assert.Equal(t, 1, outs[2].Value)
	assert.Equal(t, 2, outs[3].Value)
	assert.Equal(t, 3, late.Value, "the Get made after the cancellations waits behind the others")
	assert.Equal(t, 0, q.Waiting())
	assert.Equal(t, 0, q.Len())
}
