package deferred

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// awaitReports installs an unhandled-failure handler that records the
// failures matching watched, and restores the previous one at the end.
type awaitReports struct {
	mu      sync.Mutex
	watched []error
	got     []error
}

func awaitWatchUnhandled(t *testing.T, watched ...error) *awaitReports {
	r := &awaitReports{watched: watched}
	prev := SetUnhandledHandler(func(f *Failure) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, w := range r.watched {
			if errors.Is(f, w) {
				r.got = append(r.got, w)
			}
		}
	})
	t.Cleanup(func() { SetUnhandledHandler(prev) })
	return r
}

func (r *awaitReports) reported(err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g == err {
			return true
		}
	}
	return false
}

// settle drops two canaries with unhandled failures, one after the other,
// and collects garbage until both are reported, so that the cleanups of
// Deferreds dropped before them have had their turn.
func (r *awaitReports) settle(t *testing.T) {
	for range 2 {
		canary := errors.New("await canary")
		r.mu.Lock()
		r.watched = append(r.watched, canary)
		r.mu.Unlock()
		awaitDropFailed(canary)
		deadline := time.Now().Add(30 * time.Second) // a guard, not a timing assertion
		for !r.reported(canary) {
			require.True(t, time.Now().Before(deadline), "the canary was never reported")
			runtime.GC()
			runtime.Gosched()
		}
	}
}

//go:noinline
func awaitDropFailed(err error) { _ = Fail[int](err) }

func TestAwaitReturnsValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		d := Later(2*time.Second, func() (int, error) { return 42, nil })
		v, err := d.Await(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 42, v)
		assert.Equal(t, 2*time.Second, time.Since(start), "Await did not block until the result")
	})
}

func TestAwaitFailedDeferredReturnsTheFailure(t *testing.T) {
	errBoom := errors.New("boom")
	d := New[int]()
	go func() { _ = d.Errback(errBoom) }()
	v, err := d.Await(context.Background())
	require.Error(t, err)
	assert.Zero(t, v)
	assert.ErrorIs(t, err, errBoom)
	var f *Failure
	require.ErrorAs(t, err, &f)
	assert.Same(t, err, error(f), "Await returned a wrapper, not the *Failure")
}

// TestAwaitLeavesTheResult reproduces the first trap of issue 14: a second
// Await on a failed Deferred got the zero value and a nil error.
func TestAwaitLeavesTheResult(t *testing.T) {
	errDisk := errors.New("disk on fire")
	for _, fail := range []bool{false, true} {
		d := Succeed(5)
		if fail {
			d = Fail[int](errDisk)
		}
		v1, err1 := d.Await(context.Background())
		v2, err2 := d.Await(context.Background())
		assert.Equal(t, v1, v2, "a second Await got another value")
		assert.Equal(t, err1, err2, "a second Await got another error")
		if fail {
			assert.ErrorIs(t, err2, errDisk, "a second Await lost the failure")
		} else {
			assert.Equal(t, 5, v2)
		}
		fired, v, f := Capture(d).Get()
		require.True(t, fired)
		if fail {
			assert.ErrorIs(t, f, errDisk, "Await took the failure off the chain")
		} else {
			assert.Nil(t, f)
			assert.Equal(t, 5, v, "Await took the value off the chain")
		}
	}
}

// TestAwaitManyGoroutinesBeforeAndAfterTheFiringGetTheSameResult: every
// Await, on any goroutine, before or after the firing, gets the same
// failure.
func TestAwaitManyGoroutinesBeforeAndAfterTheFiringGetTheSameResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errDisk := errors.New("disk on fire")
		d := New[int]()
		const n = 8
		errs := make(chan error, 2*n)
		for range n {
			go func() {
				_, err := d.Await(context.Background())
				errs <- err
			}()
		}
		synctest.Wait() // all are waiting
		require.NoError(t, d.Errback(errDisk))
		for range n {
			go func() {
				_, err := d.Await(context.Background())
				errs <- err
			}()
		}
		var first error
		for range 2 * n {
			err := <-errs
			require.ErrorIs(t, err, errDisk)
			if first == nil {
				first = err
			}
			assert.Same(t, first, err, "two Awaits got different failures")
		}
	})
}

func TestAwaitFailureIsNotReportedUnhandled(t *testing.T) {
	errAwaited := errors.New("awaited failure")
	reports := awaitWatchUnhandled(t, errAwaited, ErrCancelled)
	func() {
		d := New[int]()
		go func() { _ = d.Errback(errAwaited) }()
		_, err := d.Await(context.Background())
		require.ErrorIs(t, err, errAwaited)

		// Await gave up on ctx: the cancellation's failure counts as
		// handled too.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = New[int]().Await(ctx)
		require.ErrorIs(t, err, context.Canceled)
	}()
	reports.settle(t)
	assert.False(t, reports.reported(errAwaited), "a failure Await returned was reported as unhandled")
	assert.False(t, reports.reported(ErrCancelled), "the cancellation after Await gave up was reported as unhandled")
}

func TestAwaitContextEndCancelsDeferred(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cancels atomic.Int32
		d := NewWithCanceller(func(*Deferred[int]) { cancels.Add(1) })
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		v, err := d.Await(ctx)
		assert.Equal(t, time.Second, time.Since(start))
		assert.Zero(t, v)
		assert.Equal(t, context.DeadlineExceeded, err, "Await returns ctx.Err() itself")
		assert.Equal(t, int32(1), cancels.Load())
		fired, _, f := Capture(d).Get()
		require.True(t, fired)
		assert.ErrorIs(t, f, ErrCancelled, "the cancellation's failure stays in the chain")
	})
}

func TestAwaitContextEndDoesNotWaitForPausedChain(t *testing.T) {
	d := New[int]()
	d.Pause()
	require.NoError(t, d.Callback(1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.Await(ctx)
	require.ErrorIs(t, err, context.Canceled)

	// Await took nothing: the result is there once the chain goes on.
	d.Unpause()
	fired, v, f := Capture(d).Get()
	require.True(t, fired)
	assert.Nil(t, f)
	assert.Equal(t, 1, v)
}

func TestAwaitResultWinsOverEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := Succeed(3).Await(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, v)
}

func TestAwaitFromManyGoroutinesOnDifferentDeferreds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var wg sync.WaitGroup
		sum := atomic.Int64{}
		for i := range 50 {
			wg.Go(func() {
				d := Later(time.Duration(i)*time.Millisecond, func() (int, error) { return i, nil })
				v, err := d.Await(t.Context())
				assert.NoError(t, err)
				sum.Add(int64(v))
			})
		}
		wg.Wait()
		assert.Equal(t, int64(49*50/2), sum.Load())
	})
}

// Await's doc: if the result and the end of ctx are both there, Await
// returns the result. Its wait picks at random among ready cases, so the
// rule is checked many times over, for a value, for a failure, and for a
// result and an end that both arrive while Await waits.
func TestAwaitResultWinsOverEndedContextWhateverTheWaitPicks(t *testing.T) {
	errAwaited := errors.New("await: the failure that was there")
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 200 {
		v, err := Succeed(i).Await(ended)
		require.NoError(t, err, "round %d", i)
		require.Equal(t, i, v)

		v, err = Fail[int](errAwaited).Await(ended)
		require.ErrorIs(t, err, errAwaited, "round %d: the failure, not ctx.Err()", i)
		require.Zero(t, v)
	}

	synctest.Test(t, func(t *testing.T) {
		for i := range 200 {
			d := New[int]()
			ctx, cancel := context.WithCancel(t.Context())
			var (
				v   int
				err error
			)
			done := make(chan struct{})
			go func() {
				defer close(done)
				v, err = d.Await(ctx)
			}()
			synctest.Wait() // Await waits for both
			require.NoError(t, d.Callback(i))
			cancel()
			<-done
			require.NoError(t, err, "round %d", i)
			require.Equal(t, i, v)
		}
	})
}

// When the result and the end of ctx are both there as Await starts to
// wait, Await returns the result: it looks again before giving up. (select
// picks one of two ready cases at random: without the second look, about
// half the rounds would give ctx.Err().)
func TestAwaitResultAndContextEndTogetherGiveTheResult(t *testing.T) {
	for round := range 40 {
		d := New[int]()
		ctx, cancel := context.WithCancel(t.Context())
		testHookAwaitWaits = func() {
			_ = d.Callback(round)
			cancel()
		}
		v, err := d.Await(ctx)
		testHookAwaitWaits = nil
		require.NoError(t, err, "round %d: Await gave up on a result that was there", round)
		assert.Equal(t, round, v)
	}
}
