package deferred

import (
	"errors"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// primSmallStack caps every goroutine's stack at 1 MB for the rest of the
// test. The 100,000-waiter hand-offs below fit in that; a hand-off that
// recursed once per waiter needs more than 64 MB (measured) and crashes the
// test binary with "goroutine stack exceeds 1048576-byte limit".
func primSmallStack(t *testing.T) {
	old := debug.SetMaxStack(1 << 20)
	t.Cleanup(func() { debug.SetMaxStack(old) })
}

const primManyWaiters = 100_000

func TestLockZeroValueAcquireFiresAtOnce(t *testing.T) {
	var l Lock
	require.False(t, l.Locked())
	o := Capture(l.Acquire())
	require.True(t, o.Fired)
	assert.Nil(t, o.Failure)
	assert.Same(t, &l, o.Value, "Acquire fires with the Lock itself")
	assert.True(t, l.Locked())
	l.Release()
	assert.False(t, l.Locked())
}

func TestLockNewLockIsUnlocked(t *testing.T) {
	l := NewLock()
	require.False(t, l.Locked())
	o := Capture(l.Acquire())
	require.True(t, o.Fired)
	assert.Same(t, l, o.Value)
	l.Release()
	assert.False(t, l.Locked())
}

func TestLockSecondAcquireWaitsForRelease(t *testing.T) {
	l := NewLock()
	l.Acquire()
	o := Capture(l.Acquire())
	require.False(t, o.Fired)
	assert.Equal(t, 1, l.Waiting())
	l.Release()
	require.True(t, o.Fired, "Release hands the lock to the waiter on the releasing goroutine")
	assert.Same(t, l, o.Value)
	assert.True(t, l.Locked(), "the lock stays held: by the waiter now")
	assert.Equal(t, 0, l.Waiting())
	l.Release()
	assert.False(t, l.Locked())
}

func TestLockWaitersAreServedFIFO(t *testing.T) {
	l := NewLock()
	l.Acquire()
	var order []int
	for i := range 10 {
		l.Acquire().AddCallback(func(l *Lock) (*Lock, error) {
			order = append(order, i)
			return l, nil
		})
	}
	for range 10 {
		l.Release()
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, order)
	assert.True(t, l.Locked(), "the last waiter still holds the lock")
	l.Release()
	assert.False(t, l.Locked())
}

func TestLockAcquireInsideHandOffQueuesBehindWaiters(t *testing.T) {
	// A holder that releases and at once re-acquires inside its callback
	// must not jump the queue.
	l := NewLock()
	l.Acquire()
	var order []string
	l.Acquire().AddCallback(func(l *Lock) (*Lock, error) {
		order = append(order, "a")
		l.Release()
		l.Acquire().AddCallback(func(l *Lock) (*Lock, error) {
			order = append(order, "a again")
			l.Release()
			return l, nil
		})
		return l, nil
	})
	l.Acquire().AddCallback(func(l *Lock) (*Lock, error) {
		order = append(order, "b")
		l.Release()
		return l, nil
	})
	l.Release()
	assert.Equal(t, []string{"a", "b", "a again"}, order)
	assert.False(t, l.Locked())
}

func TestLockCancelPendingAcquireRemovesWaiter(t *testing.T) {
	l := NewLock()
	l.Acquire()
	d1 := l.Acquire()
	o1 := Capture(d1)
	o2 := Capture(l.Acquire())
	d1.Cancel()
	require.True(t, o1.Fired)
	require.NotNil(t, o1.Failure)
	assert.ErrorIs(t, o1.Failure, ErrCancelled)
	assert.Equal(t, 1, l.Waiting())

	l.Release()
	assert.True(t, o2.Fired, "the lock goes to the next waiter")
	assert.Nil(t, o2.Failure)
	assert.True(t, l.Locked())
	l.Release()
	assert.False(t, l.Locked(), "the cancelled waiter never held the lock")
}

func TestLockCancelLastWaiterLeavesLockFree(t *testing.T) {
	l := NewLock()
	l.Acquire()
	d := l.Acquire()
	d.Cancel()
	assert.ErrorIs(t, Capture(d).Failure, ErrCancelled) // handled: not reported
	assert.Equal(t, 0, l.Waiting())
	l.Release()
	assert.False(t, l.Locked())
	o := Capture(l.Acquire())
	assert.True(t, o.Fired, "a fresh Acquire gets the freed lock at once")
	assert.Nil(t, o.Failure)
}

func TestLockCancelFiredAcquireDoesNothing(t *testing.T) {
	l := NewLock()
	d := l.Acquire()
	d.Cancel()
	o := Capture(d)
	require.True(t, o.Fired)
	assert.Nil(t, o.Failure, "the fired Acquire keeps its value")
	assert.Same(t, l, o.Value)
	assert.True(t, l.Locked(), "the caller still holds the lock")
	l.Release()
	assert.False(t, l.Locked())
}

func TestLockWaiterFiredElsewhereTakesNoToken(t *testing.T) {
	// A waiting Acquire that its owner fires itself (or that is cancelled
	// just as Release takes it off the list) never held the lock: Release
	// must pass the lock on, not lose it.
	l := NewLock()
	l.Acquire()
	d := l.Acquire()
	require.NoError(t, d.Errback(errors.New("gave up waiting")))
	Capture(d)
	o := Capture(l.Acquire())
	l.Release()
	require.True(t, o.Fired, "the lock skips the fired waiter")
	assert.Nil(t, o.Failure)
	l.Release()
	assert.False(t, l.Locked())
}

func TestLockHandOffToManyReleasingWaitersDoesNotGrowStack(t *testing.T) {
	primSmallStack(t)
	l := NewLock()
	l.Acquire()
	ran := 0
	for range primManyWaiters {
		l.Acquire().AddCallback(func(l *Lock) (*Lock, error) {
			ran++
			l.Release()
			return l, nil
		})
	}
	l.Release()
	assert.Equal(t, primManyWaiters, ran)
	assert.False(t, l.Locked())
	assert.Equal(t, 0, l.Waiting())
}

func TestLockConcurrentAcquireReleaseIsExclusive(t *testing.T) {
	l := NewLock()
	const goroutines, rounds = 16, 300
	var inside, total atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				d := l.Acquire()
				if (g+i)%7 == 0 {
					d.Cancel() // a pending Acquire withdraws; a fired one keeps the lock
				}
				_, f := Capture(d).Wait(t)
				if f != nil {
					assert.ErrorIs(t, f, ErrCancelled)
					continue
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders of a Lock at once", n)
				}
				total.Add(1)
				runtime.Gosched()
				inside.Add(-1)
				l.Release()
			}
		}()
	}
	wg.Wait()
	assert.Positive(t, total.Load())
	assert.False(t, l.Locked(), "every holder released; no token was lost to a cancelled waiter")
	assert.Equal(t, 0, l.Waiting())
}

func TestLockRunLockedHoldsUntilResultSettles(t *testing.T) {
	l := NewLock()
	inner := New[string]()
	o := Capture(RunLocked(l, func() *Deferred[string] {
		assert.True(t, l.Locked(), "f runs holding the lock")
		return inner
	}))
	assert.True(t, l.Locked(), "held while f's Deferred is pending")
	assert.False(t, o.Fired)
	require.NoError(t, inner.Callback("done"))
	require.True(t, o.Fired)
	assert.Nil(t, o.Failure)
	assert.Equal(t, "done", o.Value)
	assert.False(t, l.Locked())
}

func TestLockRunLockedWaitsForTheLock(t *testing.T) {
	l := NewLock()
	l.Acquire()
	called := false
	o := Capture(RunLocked(l, func() *Deferred[int] {
		called = true
		return Succeed(7)
	}))
	assert.False(t, called, "f waits for the lock")
	l.Release()
	assert.True(t, called)
	require.True(t, o.Fired)
	assert.Equal(t, 7, o.Value)
	assert.False(t, l.Locked(), "released after f's Deferred settled")
}

func TestLockRunLockedReleasesOnFailure(t *testing.T) {
	l := NewLock()
	boom := errors.New("boom")
	o := Capture(RunLocked(l, func() *Deferred[int] { return Fail[int](boom) }))
	require.True(t, o.Fired)
	require.NotNil(t, o.Failure)
	assert.ErrorIs(t, o.Failure, boom, "the failure passes through")
	assert.False(t, l.Locked())
}

func TestLockRunLockedReleasesOnPanic(t *testing.T) {
	l := NewLock()
	o := Capture(RunLocked(l, func() *Deferred[int] { panic("kaput") }))
	require.True(t, o.Fired)
	require.NotNil(t, o.Failure)
	pv, ok := o.Failure.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "kaput", pv)
	assert.False(t, l.Locked())
}

func TestLockRunLockedReleasesOnNilDeferred(t *testing.T) {
	l := NewLock()
	o := Capture(RunLocked(l, func() *Deferred[int] { return nil }))
	require.True(t, o.Fired)
	require.NotNil(t, o.Failure, "a nil Deferred from f is a failure, never a zero value")
	assert.False(t, l.Locked())
}

func TestLockRunLockedCancelWhileWaitingSkipsF(t *testing.T) {
	l := NewLock()
	l.Acquire()
	called := false
	d := RunLocked(l, func() *Deferred[int] {
		called = true
		return Succeed(1)
	})
	o := Capture(d)
	d.Cancel()
	require.True(t, o.Fired)
	assert.ErrorIs(t, o.Failure, ErrCancelled)
	assert.Equal(t, 0, l.Waiting())
	assert.True(t, l.Locked(), "the first holder still holds the lock")
	l.Release()
	assert.False(t, called)
	assert.False(t, l.Locked(), "the cancelled run released nothing it did not hold")
}

func TestLockRunLockedCancelAfterStartCancelsF(t *testing.T) {
	l := NewLock()
	inner := New[int]()
	d := RunLocked(l, func() *Deferred[int] { return inner })
	o := Capture(d)
	d.Cancel()
	assert.True(t, inner.Called(), "cancelling the run cancels f's Deferred")
	require.True(t, o.Fired)
	assert.ErrorIs(t, o.Failure, ErrCancelled)
	assert.False(t, l.Locked())
}

func TestSemaphoreAcquireUpToLimitThenWaits(t *testing.T) {
	s := NewSemaphore(3)
	assert.Equal(t, 3, s.Limit())
	assert.Equal(t, 3, s.Tokens())
	for i := range 3 {
		o := Capture(s.Acquire())
		require.True(t, o.Fired, "acquire %d fits under the limit", i)
		assert.Same(t, s, o.Value)
	}
	assert.Equal(t, 0, s.Tokens())
	o := Capture(s.Acquire())
	assert.False(t, o.Fired)
	assert.Equal(t, 1, s.Waiting())
	s.Release()
	assert.True(t, o.Fired, "Release hands the token to the waiter")
	assert.Equal(t, 0, s.Tokens())
	assert.Equal(t, 0, s.Waiting())
	for range 3 {
		s.Release()
	}
	assert.Equal(t, 3, s.Tokens())
}

func TestSemaphoreWaitersAreServedFIFO(t *testing.T) {
	s := NewSemaphore(2)
	s.Acquire()
	s.Acquire()
	var order []int
	for i := range 10 {
		s.Acquire().AddCallback(func(s *Semaphore) (*Semaphore, error) {
			order = append(order, i)
			return s, nil
		})
	}
	for range 10 {
		s.Release()
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, order)
	assert.Equal(t, 0, s.Tokens())
}

func TestSemaphoreAcquireInsideHandOffQueuesBehindWaiters(t *testing.T) {
	s := NewSemaphore(1)
	s.Acquire()
	var order []string
	s.Acquire().AddCallback(func(s *Semaphore) (*Semaphore, error) {
		order = append(order, "a")
		s.Release()
		s.Acquire().AddCallback(func(s *Semaphore) (*Semaphore, error) {
			order = append(order, "a again")
			s.Release()
			return s, nil
		})
		return s, nil
	})
	s.Acquire().AddCallback(func(s *Semaphore) (*Semaphore, error) {
		order = append(order, "b")
		s.Release()
		return s, nil
	})
	s.Release()
	assert.Equal(t, []string{"a", "b", "a again"}, order)
	assert.Equal(t, 1, s.Tokens())
}

func TestSemaphoreCancelPendingAcquireGivesTokenToNext(t *testing.T) {
	s := NewSemaphore(1)
	s.Acquire()
	d1 := s.Acquire()
	o1 := Capture(d1)
	o2 := Capture(s.Acquire())
	d1.Cancel()
	require.True(t, o1.Fired)
	assert.ErrorIs(t, o1.Failure, ErrCancelled)
	assert.Equal(t, 1, s.Waiting())
	s.Release()
	assert.True(t, o2.Fired)
	assert.Nil(t, o2.Failure)
	s.Release()
	assert.Equal(t, 1, s.Tokens(), "the cancelled waiter took no token")
}

func TestSemaphoreCancelFiredAcquireDoesNothing(t *testing.T) {
	s := NewSemaphore(2)
	d := s.Acquire()
	d.Cancel()
	o := Capture(d)
	require.True(t, o.Fired)
	assert.Nil(t, o.Failure)
	assert.Equal(t, 1, s.Tokens(), "the token stays taken")
	s.Release()
	assert.Equal(t, 2, s.Tokens())
}

func TestSemaphoreHandOffToManyReleasingWaitersDoesNotGrowStack(t *testing.T) {
	primSmallStack(t)
	s := NewSemaphore(3)
	for range 3 {
		s.Acquire()
	}
	ran := 0
	for range primManyWaiters {
		s.Acquire().AddCallback(func(s *Semaphore) (*Semaphore, error) {
			ran++
			s.Release()
			return s, nil
		})
	}
	for range 3 {
		s.Release()
	}
	assert.Equal(t, primManyWaiters, ran)
	assert.Equal(t, 3, s.Tokens())
	assert.Equal(t, 0, s.Waiting())
}

func TestSemaphoreConcurrentNeverMoreThanLimitHolders(t *testing.T) {
	const limit, goroutines, rounds = 3, 16, 300
	s := NewSemaphore(limit)
	var inside, total atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				d := s.Acquire()
				if (g+i)%5 == 0 {
					d.Cancel()
				}
				_, f := Capture(d).Wait(t)
				if f != nil {
					assert.ErrorIs(t, f, ErrCancelled)
					continue
				}
				if n := inside.Add(1); n > limit {
					t.Errorf("%d holders of a Semaphore(%d) at once", n, limit)
				}
				total.Add(1)
				runtime.Gosched()
				inside.Add(-1)
				s.Release()
			}
		}()
	}
	wg.Wait()
	assert.Positive(t, total.Load())
	assert.Equal(t, limit, s.Tokens(), "every token came back")
	assert.Equal(t, 0, s.Waiting())
}

func TestSemaphoreRunLimitedBoundsConcurrentRuns(t *testing.T) {
	s := NewSemaphore(2)
	inners := make([]*Deferred[int], 5)
	var started []int
	outs := make([]*Captured[int], 5)
	for i := range 5 {
		outs[i] = Capture(RunLimited(s, func() *Deferred[int] {
			started = append(started, i)
			inners[i] = New[int]()
			return inners[i]
		}))
	}
	assert.Equal(t, []int{0, 1}, started, "only Limit runs start")
	require.NoError(t, inners[1].Callback(10))
	assert.Equal(t, []int{0, 1, 2}, started, "a settled run lets the oldest waiting one start")
	assert.True(t, outs[1].Fired)
	assert.Equal(t, 10, outs[1].Value)
	require.NoError(t, inners[0].Errback(errors.New("x")))
	assert.Equal(t, []int{0, 1, 2, 3}, started, "a failed run releases its token too")
	require.True(t, outs[0].Fired)
	assert.NotNil(t, outs[0].Failure)
	require.NoError(t, inners[2].Callback(2))
	require.NoError(t, inners[3].Callback(3))
	require.NoError(t, inners[4].Callback(4))
	for i := 2; i < 5; i++ {
		assert.Equal(t, i, outs[i].Value)
	}
	assert.Equal(t, 2, s.Tokens())
}

func TestSemaphoreRunLimitedReleasesOnPanic(t *testing.T) {
	s := NewSemaphore(1)
	o := Capture(RunLimited(s, func() *Deferred[int] { panic(errors.New("bad")) }))
	require.True(t, o.Fired)
	_, ok := o.Failure.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, 1, s.Tokens())
}

func TestSemaphoreRunLimitedConcurrentWithForeignReleases(t *testing.T) {
	// Runs settle on goroutines of their own, so Releases race with the
	// hand-off loop running on other goroutines.
	const limit, runs = 4, 400
	s := NewSemaphore(limit)
	var inside atomic.Int64
	var workers sync.WaitGroup
	results := make(chan int, runs)
	var callers sync.WaitGroup
	for i := range runs {
		callers.Add(1)
		go func() {
			defer callers.Done()
			v, f := Capture(RunLimited(s, func() *Deferred[int] {
				if n := inside.Add(1); n > limit {
					t.Errorf("%d runs at once under RunLimited with limit %d", n, limit)
				}
				d := New[int]()
				workers.Add(1)
				go func() {
					defer workers.Done()
					runtime.Gosched()
					inside.Add(-1)
					assert.NoError(t, d.Callback(i))
				}()
				return d
			})).Wait(t)
			assert.Nil(t, f)
			results <- v
		}()
	}
	callers.Wait()
	workers.Wait()
	close(results)
	seen := make(map[int]bool)
	for v := range results {
		seen[v] = true
	}
	assert.Len(t, seen, runs, "every run delivered its own result")
	assert.Equal(t, limit, s.Tokens())
}
