package deferred

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
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

// PutWait tests: a producer that finds the queue full waits for room, in
// FIFO order; its Deferred says whether its value went in, and the value
// goes in exactly once or, if withdrawn, never.

func TestQueuePutWaitFiresAtOnceWhenThereIsRoom(t *testing.T) {
	q := NewQueue[int](2, 0)
	for v := range 2 {
		o := Capture(q.PutWait(v))
		require.True(t, o.Fired, "room: PutWait fires at once")
		assert.Nil(t, o.Failure)
	}
	assert.Equal(t, 2, q.Len())

	unlimited := NewQueue[int](0, 0)
	for v := range 1000 {
		require.True(t, Capture(unlimited.PutWait(v)).Fired, "a queue without size never makes PutWait wait")
	}
	assert.Equal(t, 1000, unlimited.Len())

	withGet := NewQueue[int](1, 0)
	g := Capture(withGet.Get())
	require.True(t, Capture(withGet.PutWait(7)).Fired)
	assert.Equal(t, 7, g.Value, "PutWait hands its value to a waiting Get, as Put does")
}

func TestQueuePutWaitWaitsWhenFullAndGoesInFIFOAsGetsMakeRoom(t *testing.T) {
	q := NewQueue[int](1, 0)
	require.NoError(t, q.Put(0))
	p1, p2 := Capture(q.PutWait(1)), Capture(q.PutWait(2))
	assert.False(t, p1.Fired, "full: PutWait waits")
	assert.False(t, p2.Fired)
	assert.Equal(t, 1, q.Len(), "a waiting PutWait's value is not in the queue")
	assert.ErrorIs(t, q.Put(9), ErrQueueFull, "Put does not go ahead of waiting PutWaits")
	assert.False(t, Capture(q.PutWait(3)).Fired, "neither does a later PutWait")

	assert.Equal(t, 0, Capture(q.Get()).Value)
	assert.True(t, p1.Fired, "the Get's room goes to the oldest PutWait, on the Get's goroutine")
	assert.False(t, p2.Fired)
	assert.Equal(t, 1, q.Len())

	assert.Equal(t, 1, Capture(q.Get()).Value)
	assert.True(t, p2.Fired)
	assert.Equal(t, 2, Capture(q.Get()).Value)
	assert.Equal(t, 3, Capture(q.Get()).Value)
	assert.False(t, Capture(q.Get()).Fired, "9 was refused; nothing else went in")
}

func TestQueuePutWaitRoomFromAWaitingGetsHandOff(t *testing.T) {
	// A Get made while a Put's hand-off runs waits; the room it makes when
	// served goes to the waiting PutWait too.
	q := NewQueue[int](1, 0)
	require.NoError(t, q.Put(0))
	p := Capture(q.PutWait(1))
	var inner *Captured[int]
	q.Get().AddCallback(func(v int) (int, error) {
		inner = Capture(q.Get()) // 1 went in for it
		return v, nil
	})
	require.True(t, p.Fired)
	require.True(t, inner.Fired)
	assert.Equal(t, 1, inner.Value)
	assert.Equal(t, 0, q.Len())
}

// TestQueuePutDoesNotGoAheadOfPutWaitInAHandOff: while a hand-off loop runs
// a callback, a Get there makes room that the loop gives to the waiting
// PutWait only after the callback; a Put or a later PutWait in that
// callback must not take it.
func TestQueuePutDoesNotGoAheadOfPutWaitInAHandOff(t *testing.T) {
	q := NewQueue[int](1, 0)
	require.NoError(t, q.Put(1))
	var putInside error
	var p8 *Captured[struct{}]
	q.PutWait(2).AddCallback(func(struct{}) (struct{}, error) {
		assert.Equal(t, 2, Capture(q.Get()).Value) // room, with 3 waiting
		putInside = q.Put(9)
		p8 = Capture(q.PutWait(8))
		assert.False(t, p8.Fired, "a later PutWait took the room of a waiting one")
		return struct{}{}, nil
	})
	p3 := Capture(q.PutWait(3))
	assert.Equal(t, 1, Capture(q.Get()).Value) // starts the hand-off: 2 goes in
	assert.ErrorIs(t, putInside, ErrQueueFull, "Put took the room of a waiting PutWait")
	require.True(t, p3.Fired)
	assert.Equal(t, 3, Capture(q.Get()).Value)
	assert.True(t, p8.Fired)
	assert.Equal(t, 8, Capture(q.Get()).Value)
	assert.False(t, Capture(q.Get()).Fired)
}

func TestQueuePutWaitCancelWithdrawsTheValue(t *testing.T) {
	q := NewQueue[int](1, 0)
	require.NoError(t, q.Put(0))
	d1, d2, d3 := q.PutWait(1), q.PutWait(2), q.PutWait(3)
	o1, o3 := Capture(d1), Capture(d3)

	d2.Cancel()
	o2 := Capture(d2)
	require.True(t, o2.Fired)
	assert.ErrorIs(t, o2.Failure, ErrCancelled)

	for _, want := range []int{0, 1, 3} {
		assert.Equal(t, want, Capture(q.Get()).Value, "the withdrawn value is skipped")
	}
	assert.Nil(t, o1.Failure)
	assert.Nil(t, o3.Failure)
	assert.False(t, Capture(q.Get()).Fired, "the withdrawn value never went in")
	assert.Equal(t, 0, q.putters.Len())
}

// TestQueuePutWaitCancelAfterValueWentInFiresIt hits, by hand, the window
// in which the hand-off has moved a PutWait's value into the queue but not
// yet fired its Deferred: a Cancel there cannot take the value back, so it
// fires the Deferred with success instead of failing it, and the
// hand-off's own Callback then finds it fired.
func TestQueuePutWaitCancelAfterValueWentInFiresIt(t *testing.T) {
	q := NewQueue[int](1, 0)
	require.NoError(t, q.Put(0))
	d := q.PutWait(1)
	o := Capture(d)

	q.mu.Lock()
	assert.Equal(t, 0, q.values.popFront()) // a Get's share of the hand-off
	p := q.takePutLocked()                  // what the hand-off does next
	q.mu.Unlock()
	require.NotNil(t, p)
	require.Same(t, d, p.d)

	d.Cancel()
	require.True(t, o.Fired)
	assert.Nil(t, o.Failure, "the value went in: the Deferred must say so")
	assert.ErrorIs(t, p.d.Callback(struct{}{}), ErrAlreadyCalled)
	assert.Equal(t, 1, Capture(q.Get()).Value, "the value is delivered once")
	assert.False(t, Capture(q.Get()).Fired)
}

func TestQueuePutWaitHandOffToManyPuttersDoesNotGrowStack(t *testing.T) {
	primSmallStack(t)
	q := NewQueue[int](1, 0)
	require.NoError(t, q.Put(-1))
	var got []int
	for v := range primManyWaiters {
		// Each producer, once its value is in, takes the next value out:
		// that room goes to the next producer, in the same hand-off loop.
		q.PutWait(v).AddCallback(func(struct{}) (struct{}, error) {
			Capture(q.Get().AddCallback(func(v int) (int, error) {
				got = append(got, v)
				return v, nil
			}))
			return struct{}{}, nil
		})
	}
	assert.Equal(t, -1, Capture(q.Get()).Value)
	require.Len(t, got, primManyWaiters)
	for i, v := range got {
		if v != i {
			t.Fatalf("value %d came out at place %d", v, i)
		}
	}
	assert.Equal(t, 0, q.Len())
	assert.Equal(t, 0, q.putters.Len())
}

// TestQueuePutWaitConcurrentDeliversAcceptedValuesOnce: producers PutWait
// on many goroutines and cancel some of their waits; consumers Get. Every
// value whose PutWait succeeded comes out exactly once, and every value
// whose PutWait failed with ErrCancelled never does.
func TestQueuePutWaitConcurrentDeliversAcceptedValuesOnce(t *testing.T) {
	const producers, consumers, perProducer = 6, 6, 300
	const total = producers * perProducer
	const stop = -1
	q := NewQueue[int](4, 0)

	var accepted [total]atomic.Bool
	var pwg sync.WaitGroup
	for p := range producers {
		pwg.Go(func() {
			for i := range perProducer {
				v := p*perProducer + i
				d := q.PutWait(v)
				if (p+i)%4 == 0 {
					d.Cancel() // waiting: withdrawn; already in: fires
				}
				if _, f := Capture(d).Wait(t); f != nil {
					assert.ErrorIs(t, f, ErrCancelled)
					continue
				}
				accepted[v].Store(true)
			}
		})
	}

	var seen [total]atomic.Int32
	var cwg sync.WaitGroup
	for range consumers {
		cwg.Go(func() {
			for {
				v, f := Capture(q.Get()).Wait(t)
				if !assert.Nil(t, f) || v == stop {
					return
				}
				seen[v].Add(1)
			}
		})
	}
	pwg.Wait()
	for range consumers {
		Capture(q.PutWait(stop)) // after every accepted value, FIFO
	}
	cwg.Wait()

	n := 0
	for v := range total {
		want := int32(0)
		if accepted[v].Load() {
			want = 1
			n++
		}
		if got := seen[v].Load(); got != want {
			t.Errorf("value %d: accepted %v, delivered %d times", v, accepted[v].Load(), got)
		}
	}
	assert.Positive(t, n)
	t.Logf("%d of %d values accepted", n, total) // how many withdrawals raced is the scheduler's choice
	assert.Equal(t, 0, q.Len())
	assert.Equal(t, 0, q.putters.Len())
}
