package deferred

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// timerLog records the timers the package starts, so that a test can
// check that they are stopped.
type timerLog struct {
	mu     sync.Mutex
	timers []*time.Timer
}

// watchTimers records the package's timers until the test ends.
func watchTimers(t *testing.T) *timerLog {
	l := &timerLog{}
	old := afterFunc
	afterFunc = func(d time.Duration, f func()) *time.Timer {
		tm := time.AfterFunc(d, f)
		l.mu.Lock()
		l.timers = append(l.timers, tm)
		l.mu.Unlock()
		return tm
	}
	t.Cleanup(func() { afterFunc = old })
	return l
}

// all returns the timers started so far.
func (l *timerLog) all() []*time.Timer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*time.Timer(nil), l.timers...)
}

// take returns the timers started so far and forgets them, so that they,
// and the Deferreds they hold, can be collected.
func (l *timerLog) take() []*time.Timer {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.timers
	l.timers = nil
	return ts
}

func TestTimeoutPendingDeferredFailsWithErrTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New[int]()
		require.Same(t, d, d.AddTimeout(5*time.Second))
		out := Capture(d)

		time.Sleep(5*time.Second - time.Nanosecond)
		synctest.Wait()
		fired, _, _ := out.Get()
		require.False(t, fired, "timed out early")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		fired, _, f := out.Get()
		require.True(t, fired)
		require.NotNil(t, f)
		assert.ErrorIs(t, f, ErrTimeout)
		assert.NotErrorIs(t, f, ErrCancelled)
		assert.Contains(t, f.Error(), "5s")

		// The producer did not hear of the cancellation: its late firing
		// passes quietly, as after any Cancel.
		assert.NoError(t, d.Callback(1))
	})
}

func TestTimeoutFiringInTimeStopsTheTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		timers := watchTimers(t).all
		d := New[int]().AddTimeout(5 * time.Second)
		require.Len(t, timers(), 1)

		time.Sleep(3 * time.Second)
		require.NoError(t, d.Callback(7))
		// Stop reports false: the timer was already stopped, not expired.
		assert.False(t, timers()[0].Stop(), "the timer still runs after d fired in time")

		// A stage after the timeout waits for an inner Deferred: the
		// timeout's time passing must not cancel it.
		var innerCancelled atomic.Bool
		inner := NewWithCanceller(func(*Deferred[int]) { innerCancelled.Store(true) })
		d.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
		out := Capture(d)
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.False(t, innerCancelled.Load())

		require.NoError(t, inner.Callback(8))
		fired, v, f := out.Get()
		require.True(t, fired)
		assert.Nil(t, f)
		assert.Equal(t, 8, v)
	})
}

func TestTimeoutOnFiredDeferredStartsNoTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		timers := watchTimers(t).all
		d := Succeed(3).AddTimeout(time.Second)
		assert.Empty(t, timers())
		fired, v, f := Capture(d).Get()
		require.True(t, fired)
		assert.Nil(t, f)
		assert.Equal(t, 3, v)
	})
}

func TestTimeoutCancellerValueWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := NewWithCanceller(func(d *Deferred[string]) { _ = d.Callback("from canceller") })
		out := Capture(d.AddTimeout(time.Second))
		time.Sleep(time.Second)
		synctest.Wait()
		fired, v, f := out.Get()
		require.True(t, fired)
		assert.Nil(t, f)
		assert.Equal(t, "from canceller", v)
	})
}

func TestTimeoutCancellerOtherFailurePasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errOwn := errors.New("canceller's own error")
		d := NewWithCanceller(func(d *Deferred[int]) { _ = d.Errback(errOwn) })
		out := Capture(d.AddTimeout(time.Second))
		time.Sleep(time.Second)
		synctest.Wait()
		fired, _, f := out.Get()
		require.True(t, fired)
		require.NotNil(t, f)
		assert.ErrorIs(t, f, errOwn)
		assert.NotErrorIs(t, f, ErrTimeout)
	})
}

func TestTimeoutCancellationNotByTheTimerStaysCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		timers := watchTimers(t).all
		d := New[int]().AddTimeout(5 * time.Second)
		out := Capture(d)
		time.Sleep(time.Second)
		d.Cancel()
		fired, _, f := out.Get()
		require.True(t, fired)
		assert.ErrorIs(t, f, ErrCancelled)
		assert.NotErrorIs(t, f, ErrTimeout)
		assert.False(t, timers()[0].Stop(), "the timer still runs after d was cancelled")
	})
}

func TestTimeoutCoversDeferredAnEarlierStageWaitsFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inner := New[int]()
		d := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
		out := Capture(d.AddTimeout(2 * time.Second))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.True(t, inner.Called(), "the timeout did not cancel the inner Deferred")
		fired, _, f := out.Get()
		require.True(t, fired)
		assert.ErrorIs(t, f, ErrTimeout)
	})
}

func TestTimeoutRunsChainOnTimerGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		test := timeGoroutineID()
		var ran string
		New[int]().AddTimeout(time.Second).AddErrback(func(*Failure) (int, error) {
			ran = timeGoroutineID()
			return 0, nil
		})
		time.Sleep(time.Second)
		synctest.Wait()
		require.NotEmpty(t, ran)
		assert.NotEqual(t, test, ran)
	})
}

func TestTimeoutZeroTimesOutAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		timers := watchTimers(t).all
		d := New[int]()
		out := Capture(d.AddTimeout(0))
		// No timer, no waiting: done on the calling goroutine.
		assert.Empty(t, timers())
		fired, _, f := out.Get()
		require.True(t, fired)
		assert.ErrorIs(t, f, ErrTimeout)
	})
}

func TestTimeoutZeroOnFiredDeferredPasses(t *testing.T) {
	fired, v, f := Capture(Succeed(4).AddTimeout(0)).Get()
	require.True(t, fired)
	assert.Nil(t, f)
	assert.Equal(t, 4, v)
}

// TestTimeoutOnHandedOverDeferredStartsNoTimer: AddTimeout on a Deferred
// whose chain was handed over panics (the message is checked in
// misuse_test.go's table) before it starts a timer.
func TestTimeoutOnHandedOverDeferredStartsNoTimer(t *testing.T) {
	timers := watchTimers(t).all
	d := New[int]()
	Then(d, func(v int) (string, error) { return "", nil })
	require.Panics(t, func() { d.AddTimeout(time.Second) })
	assert.Empty(t, timers())
}

// The timer may decide to cancel d just as d's producer fires it. The
// chain then passes the timeout's stage with the producer's result, and
// the timer's late Cancel must not reach a Deferred that a later stage
// waits for: the timeout does not cover stages added after it.
func TestTimeoutRaceWithFiringNeverCancelsLaterStage(t *testing.T) {
	for range 300 {
		synctest.Test(t, func(t *testing.T) {
			d := New[int]().AddTimeout(time.Second)
			var innerCancelled atomic.Bool
			inner := NewWithCanceller(func(*Deferred[int]) { innerCancelled.Store(true) })
			d.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
			out := Capture(d)

			go func() {
				time.Sleep(time.Second) // wakes with the timer
				_ = d.Callback(1)
			}()
			time.Sleep(time.Second)
			synctest.Wait()

			require.False(t, innerCancelled.Load(), "the timer cancelled a stage after the timeout")
			fired, _, f := out.Get()
			if fired {
				// The timer won outright: d timed out.
				require.ErrorIs(t, f, ErrTimeout)
				return
			}
			// The producer got there first, wholly or in part.
			require.NoError(t, inner.Callback(2))
			fired, v, f := out.Get()
			require.True(t, fired)
			require.Nil(t, f)
			require.Equal(t, 2, v)
		})
	}
}

func TestLaterFiresWithResultAfterDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		start := time.Now()
		var ranAt time.Duration
		d := Later(3*time.Second, func() (string, error) {
			calls.Add(1)
			ranAt = time.Since(start)
			return "done", nil
		})
		out := Capture(d)

		time.Sleep(3*time.Second - time.Nanosecond)
		synctest.Wait()
		assert.Zero(t, calls.Load(), "f ran before the delay")
		assert.False(t, d.Called())

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, int32(1), calls.Load())
		assert.Equal(t, 3*time.Second, ranAt)
		fired, v, f := out.Get()
		require.True(t, fired)
		assert.Nil(t, f)
		assert.Equal(t, "done", v)
	})
}

func TestLaterErrorAndPanicBecomeFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errBoom := errors.New("boom")
		e := Capture(Later(time.Second, func() (int, error) { return 0, errBoom }))
		p := Capture(Later(time.Second, func() (int, error) { panic("kaboom") }))
		time.Sleep(time.Second)
		synctest.Wait()

		fired, _, f := e.Get()
		require.True(t, fired)
		assert.ErrorIs(t, f, errBoom)

		fired, _, f = p.Get()
		require.True(t, fired)
		require.NotNil(t, f)
		pv, ok := f.PanicValue()
		assert.True(t, ok)
		assert.Equal(t, "kaboom", pv)
	})
}

func TestLaterCancelStopsTimerAndFNeverRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		timers := watchTimers(t).all
		var calls atomic.Int32
		d := Later(5*time.Second, func() (int, error) { calls.Add(1); return 1, nil })
		out := Capture(d)

		time.Sleep(2 * time.Second)
		d.Cancel()
		fired, _, f := out.Get()
		require.True(t, fired, "Cancel did not fail the Deferred at once")
		assert.ErrorIs(t, f, ErrCancelled)
		assert.False(t, timers()[0].Stop(), "Cancel did not stop the timer")

		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Zero(t, calls.Load())
	})
}

func TestLaterRunsOnTimerGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		test := timeGoroutineID()
		var fOn, chainOn string
		d := Later(time.Second, func() (int, error) { fOn = timeGoroutineID(); return 0, nil })
		d.AddCallback(func(int) (int, error) { chainOn = timeGoroutineID(); return 0, nil })
		time.Sleep(time.Second)
		synctest.Wait()
		require.NotEmpty(t, fOn)
		assert.NotEqual(t, test, fOn)
		assert.Equal(t, fOn, chainOn)
	})
}

func TestLaterZeroDelayRunsOnTimerGoroutineWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		release := make(chan struct{})
		// Were f called inside Later, it would block there for ever and
		// synctest would report the deadlock.
		d := Later(0, func() (int, error) { <-release; return 9, nil })
		out := Capture(d)
		close(release)
		synctest.Wait()
		fired, v, f := out.Get()
		require.True(t, fired)
		assert.Nil(t, f)
		assert.Equal(t, 9, v)
		assert.Zero(t, time.Since(start))
	})
}

// timeGoroutineID returns the calling goroutine's id, from its stack header.
func timeGoroutineID() string {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	return s[:strings.IndexByte(s, ' ')]
}

// The result may arrive just as AddTimeout's timer fires. Whichever side
// gets there first, at any interleaving, the chain goes on past the
// timeout's stage exactly once (never stuck paused), and what it goes on
// with follows from what d got first, which a stage before the timeout's
// records: the timer's cancellation becomes a failure matching ErrTimeout;
// the producer's value, or its failure, which does not match ErrCancelled,
// passes unchanged, even when it reaches the stage after the timer fired.
// The producer's firing after the timer's Cancel is ignored, as after any
// Cancel of a Deferred with no canceller.
func TestTimeoutRaceWindowEndsInTheResultOrErrTimeout(t *testing.T) {
	errProduced := errors.New("timeout test: the producer's failure")
	for _, failing := range []bool{false, true} {
		var produced, timedOut int
		for range 500 {
			synctest.Test(t, func(t *testing.T) {
				d := New[int]()
				var firstFailure *Failure
				d.AddBoth(func(v int, f *Failure) (int, error) {
					firstFailure = f
					// Let the other side run meanwhile: the timer then
					// fires while the result is on its way to the stage.
					for range 3 {
						runtime.Gosched()
					}
					return v, f
				})
				d.AddTimeout(time.Second)
				var after int
				d.AddBoth(func(v int, f *Failure) (int, error) {
					after++
					return v, f
				})
				out := Capture(d)

				var fireErr error
				go func() {
					time.Sleep(time.Second) // wakes with the timer
					if failing {
						fireErr = d.Errback(errProduced)
					} else {
						fireErr = d.Callback(1)
					}
				}()
				time.Sleep(time.Second)
				synctest.Wait()

				require.NoError(t, fireErr, "the producer's firing after a timeout is ignored")
				v, f := out.Now(t) // the chain is never left paused
				require.Equal(t, 1, after, "the stage after the timeout's ran once")
				switch {
				case firstFailure != nil && errors.Is(firstFailure, ErrCancelled):
					require.ErrorIs(t, listErr(f), ErrTimeout, "the timer's cancellation became a timeout")
					timedOut++
				case failing:
					require.Same(t, firstFailure, f, "the producer's failure passes unchanged")
					require.NotErrorIs(t, f, ErrTimeout)
					produced++
				default:
					require.Nil(t, f, "the producer's value passes unchanged")
					require.Equal(t, 1, v)
					produced++
				}
			})
		}
		t.Logf("failing=%v: the producer's result got there first %d times, the timer %d times", failing, produced, timedOut)
	}
}

// TestTimeoutFiringInsideTheWindowHoldsLaterStagesUntilCancelReturns fires
// d inside the timer's window: the timer has won (the guard is
// cancelling) but its Cancel has not run yet. The result reaches the
// timeout's stage, which passes the producer's value unchanged, as
// Twisted's addTimeout passes any result but its own CancelledError, and
// pauses d: the stage after it, which returns a pending inner Deferred,
// must not run until the timer's Cancel has returned, or that Cancel would
// cancel the inner Deferred, which the timeout does not cover. The window
// is entered by hand: the test holds the timer's function and calls it,
// and the hook fires d, all on the test goroutine.
func TestTimeoutFiringInsideTheWindowHoldsLaterStagesUntilCancelReturns(t *testing.T) {
	var expire func()
	old := afterFunc
	afterFunc = func(_ time.Duration, f func()) *time.Timer {
		expire = f
		tm := time.AfterFunc(time.Hour, func() {})
		tm.Stop() // the test fires the timer itself
		return tm
	}
	t.Cleanup(func() { afterFunc = old })

	d := New[int]().AddTimeout(time.Second)
	require.NotNil(t, expire, "AddTimeout started no timer")

	var innerCancelled atomic.Bool
	inner := NewWithCanceller(func(*Deferred[int]) { innerCancelled.Store(true) })
	var seen []int
	d.AddCallbackDeferred(func(v int) *Deferred[int] {
		seen = append(seen, v)
		return inner
	})
	out := Capture(d)

	hookRan := false
	testHookGuardCancelling = func() {
		hookRan = true
		require.NoError(t, d.Callback(1))
		// The result has passed the timeout's stage, and the chain stops
		// there until the timer's Cancel returns.
		assert.Empty(t, seen, "a stage after the timeout ran before the timer's Cancel returned")
	}
	t.Cleanup(func() { testHookGuardCancelling = nil })

	expire()
	require.True(t, hookRan, "the hook did not run: the timer did not take the window")

	// Cancel has returned and the chain went on: the stage after the
	// timeout ran once, with the producer's value, and waits for inner.
	assert.Equal(t, []int{1}, seen)
	assert.False(t, innerCancelled.Load(), "the timer's Cancel reached a Deferred a later stage waits for")
	assert.False(t, inner.Called())
	fired, _, _ := out.Get()
	require.False(t, fired, "d did not wait for the inner Deferred")

	require.NoError(t, inner.Callback(2))
	fired, v, f := out.Get()
	require.True(t, fired)
	require.Nil(t, f)
	assert.Equal(t, 2, v)
}

// TestTimeoutFailureSaysWhatAndHowLong: the timeout's failure is a
// *TimeoutError naming AddTimeout and its timeout, a timeout in Go's
// vocabulary too (see vocabulary_test.go for every idiom).
func TestTimeoutFailureSaysWhatAndHowLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := Capture(New[int]().AddTimeout(1500 * time.Millisecond))
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		_, f := out.Now(t)
		require.NotNil(t, f)
		assert.EqualError(t, f, "deferred: AddTimeout: timed out after 1.5s")
		var te *TimeoutError
		require.ErrorAs(t, f, &te)
		assert.Equal(t, TimeoutError{Op: "deferred: AddTimeout", After: 1500 * time.Millisecond}, *te)
		assert.True(t, f.Timeout())
		assert.ErrorIs(t, f, context.DeadlineExceeded)
	})
}

// onTimeoutLog records AddTimeoutFunc's calls of its function.
type onTimeoutLog struct {
	mu    sync.Mutex
	calls []*Failure
}

// fn returns an onTimeout function that records its failure and returns
// (v, err).
func (l *onTimeoutLog) fn(v int, err error) func(*Failure) (int, error) {
	return func(f *Failure) (int, error) {
		l.mu.Lock()
		l.calls = append(l.calls, f)
		l.mu.Unlock()
		return v, err
	}
}

func (l *onTimeoutLog) get() []*Failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Failure(nil), l.calls...)
}

func TestTimeoutFuncFallbackValueReplacesTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log onTimeoutLog
		d := New[int]()
		require.Same(t, d, d.AddTimeoutFunc(5*time.Second, log.fn(42, nil)))
		out := Capture(d)

		time.Sleep(5*time.Second - time.Nanosecond)
		synctest.Wait()
		require.Empty(t, log.get(), "onTimeout called early")
		fired, _, _ := out.Get()
		require.False(t, fired)

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		calls := log.get()
		require.Len(t, calls, 1)
		f := calls[0]
		assert.ErrorIs(t, f, ErrTimeout)
		assert.ErrorIs(t, f, context.DeadlineExceeded)
		assert.NotErrorIs(t, f, ErrCancelled)
		assert.True(t, f.Timeout())
		assert.EqualError(t, f, "deferred: AddTimeoutFunc: timed out after 5s")

		v, f := out.Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 42, v, "the fallback value replaced the timeout")
	})
}

func TestTimeoutFuncErrorReplacesTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errGaveUp := errors.New("gave up")
		var log onTimeoutLog
		out := Capture(New[int]().AddTimeoutFunc(time.Second, log.fn(0, errGaveUp)))
		time.Sleep(time.Second)
		synctest.Wait()
		_, f := out.Now(t)
		require.NotNil(t, f)
		assert.ErrorIs(t, f, errGaveUp)
		assert.NotErrorIs(t, f, ErrTimeout)
		assert.False(t, f.Timeout())
		assert.Len(t, log.get(), 1)
	})
}

func TestTimeoutFuncPanicBecomesTheFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := Capture(New[int]().AddTimeoutFunc(time.Second, func(*Failure) (int, error) {
			panic("no fallback")
		}))
		time.Sleep(time.Second)
		synctest.Wait()
		_, f := out.Now(t)
		require.NotNil(t, f)
		pv, ok := f.PanicValue()
		assert.True(t, ok)
		assert.Equal(t, "no fallback", pv)
	})
}

// onTimeout decides about timeouts only: a result in time, or a result the
// canceller gives, never reaches it, and passes as AddTimeout passes it.
func TestTimeoutFuncIsCalledOnlyForATimeout(t *testing.T) {
	errOwn := errors.New("producer's error")
	for _, tc := range []struct {
		name string
		run  func(d *Deferred[int]) // before the timeout passes
		d    func() *Deferred[int]
		v    int
		err  error // what the chain ends with, nil for v
	}{
		{"value in time", func(d *Deferred[int]) { _ = d.Callback(7) }, New[int], 7, nil},
		{"failure in time", func(d *Deferred[int]) { _ = d.Errback(errOwn) }, New[int], 0, errOwn},
		{"Cancel not by the timer", func(d *Deferred[int]) { d.Cancel() }, New[int], 0, ErrCancelled},
		{"canceller's value", nil, func() *Deferred[int] {
			return NewWithCanceller(func(d *Deferred[int]) { _ = d.Callback(3) })
		}, 3, nil},
		{"canceller's own failure", nil, func() *Deferred[int] {
			return NewWithCanceller(func(d *Deferred[int]) { _ = d.Errback(errOwn) })
		}, 0, errOwn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var log onTimeoutLog
				d := tc.d()
				out := Capture(d.AddTimeoutFunc(time.Second, log.fn(-1, nil)))
				if tc.run != nil {
					time.Sleep(time.Second / 2)
					tc.run(d)
				}
				time.Sleep(time.Second)
				synctest.Wait()
				assert.Empty(t, log.get(), "onTimeout called without a timeout")
				v, f := out.Now(t)
				if tc.err == nil {
					assert.Nil(t, f)
					assert.Equal(t, tc.v, v)
					return
				}
				assert.ErrorIs(t, f, tc.err)
				assert.NotErrorIs(t, f, ErrTimeout)
			})
		})
	}
}

func TestTimeoutFuncZeroCallsOnTimeoutAtOnce(t *testing.T) {
	var log onTimeoutLog
	out := Capture(New[int]().AddTimeoutFunc(0, log.fn(9, nil)))
	v, f := out.Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 9, v)
	require.Len(t, log.get(), 1)
	assert.ErrorIs(t, log.get()[0], ErrTimeout)

	// A Deferred already past the stage's point never times out.
	v, f = Capture(Succeed(4).AddTimeoutFunc(0, log.fn(9, nil))).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 4, v)
	assert.Len(t, log.get(), 1)
}

func TestTimeoutFuncMisusePanics(t *testing.T) {
	fallback := func(*Failure) (int, error) { return 0, nil }
	assert.PanicsWithValue(t, "deferred: AddTimeoutFunc called with a negative timeout (-1s)", func() {
		New[int]().AddTimeoutFunc(-time.Second, fallback)
	})
	assert.PanicsWithValue(t, "deferred: AddTimeoutFunc called with a nil function", func() {
		New[int]().AddTimeoutFunc(time.Second, nil)
	})
}
