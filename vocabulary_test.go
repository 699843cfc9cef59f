package deferred_test

// Go's error vocabulary: every failure the library makes for a cancellation
// or a timeout, checked with the idioms that code written for errgroup,
// context or net/http uses. The README's error table is this table.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

// timeouter is the method net.Error, *url.Error and context's deadline
// error share; code tests for it with errors.As or a type assertion.
type timeouter interface{ Timeout() bool }

// awaitErr returns what Await returns for d, as a user would hold it.
func awaitErr[T any](d *deferred.Deferred[T]) error {
	_, err := d.Await(context.Background())
	return err
}

// firstFailure returns the failure that reaches a stage added to d before
// anything else.
func firstFailure[T any](d *deferred.Deferred[T]) *error {
	var got error
	d.AddErrback(func(f *deferred.Failure) (T, error) {
		got = f
		return *new(T), f
	})
	return &got
}

// stalledTransport answers no request: each ends with its context.
type stalledTransport struct{}

func (stalledTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, context.Cause(r.Context())
}

var stalledClient = &http.Client{Transport: stalledTransport{}}

// errorVocabulary is the README's error table: for each way a cancellation
// or a timeout reaches a user, the error they hold and what it matches.
var errorVocabulary = []struct {
	name     string
	err      func(t *testing.T) error // runs in a synctest bubble
	sentinel error                    // ErrCancelled, ErrTimeout, or nil: matches neither
	ctxErr   error                    // context.Canceled or context.DeadlineExceeded
	timeout  bool                     // what Timeout() reports
}{
	{"Cancel", func(t *testing.T) error {
		d := deferred.New[int]()
		d.Cancel()
		return awaitErr(d)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Cancel with a canceller that does not fire", func(t *testing.T) error {
		d := deferred.NewWithCanceller(func(*deferred.Deferred[int]) {})
		d.Cancel()
		return awaitErr(d)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Race loser", func(t *testing.T) error {
		winner, loser := deferred.New[int](), deferred.New[int]()
		got := firstFailure(loser)
		race := deferred.Race(winner, loser)
		require.NoError(t, winner.Callback(1))
		_, err := race.Await(context.Background())
		require.NoError(t, err)
		return *got
	}, deferred.ErrCancelled, context.Canceled, false},

	{"cancelled Race", func(t *testing.T) error {
		race := deferred.Race(deferred.New[int](), deferred.New[int]())
		race.Cancel()
		return awaitErr(race)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"cancelled Gather", func(t *testing.T) error {
		g := deferred.Gather(deferred.New[int](), deferred.New[int]())
		g.Cancel()
		return awaitErr(g)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Lock waiter withdrawn", func(t *testing.T) error {
		l := deferred.NewLock()
		_ = l.Acquire()
		w := l.Acquire()
		w.Cancel()
		return awaitErr(w)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Semaphore waiter withdrawn", func(t *testing.T) error {
		s := deferred.NewSemaphore(1)
		_ = s.Acquire()
		w := s.Acquire()
		w.Cancel()
		return awaitErr(w)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Queue Get withdrawn", func(t *testing.T) error {
		g := deferred.NewQueue[int](0, 0).Get()
		g.Cancel()
		return awaitErr(g)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Queue PutWait withdrawn", func(t *testing.T) error {
		q := deferred.NewQueue[int](1, 0)
		require.NoError(t, q.Put(1))
		w := q.PutWait(2)
		w.Cancel()
		return awaitErr(w)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"GatherFailFast, an input it cancelled", func(t *testing.T) error {
		failing, pending := deferred.New[int](), deferred.New[int]()
		got := firstFailure(pending)
		g := deferred.GatherFailFast(failing, pending)
		require.NoError(t, failing.Errback(errors.New("disk on fire")))
		_, err := g.Await(context.Background())
		require.Error(t, err)
		return *got
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Observe branch cancelled", func(t *testing.T) error {
		b := deferred.New[int]().Observe()
		b.Cancel()
		return awaitErr(b)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"CancelWhen, its ctx cancelled", func(t *testing.T) error {
		ctx, cancel := context.WithCancel(context.Background())
		d := deferred.New[int]().CancelWhen(ctx)
		cancel()
		return awaitErr(d)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"CancelWhen, its ctx past its deadline", func(t *testing.T) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return awaitErr(deferred.New[int]().CancelWhen(ctx))
	}, deferred.ErrTimeout, context.DeadlineExceeded, true},

	{"Later cancelled", func(t *testing.T) error {
		d := deferred.Later(time.Hour, func() (int, error) { return 1, nil })
		d.Cancel()
		return awaitErr(d)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Go cancelled", func(t *testing.T) error {
		d := deferred.Go(context.Background(), func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		})
		d.Cancel()
		return awaitErr(d)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Pool job cancelled while queued", func(t *testing.T) error {
		p := deferred.NewPool(1)
		defer p.Wait()
		block := func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() }
		running := submit(p, block)
		queued := submit(p, block)
		queued.Cancel()
		running.Cancel()
		require.ErrorIs(t, awaitErr(running), deferred.ErrCancelled)
		return awaitErr(queued)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Pool job cancelled while running", func(t *testing.T) error {
		p := deferred.NewPool(1)
		defer p.Wait()
		started := make(chan struct{})
		running := submit(p, func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			return 0, ctx.Err()
		})
		<-started
		running.Cancel()
		return awaitErr(running)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"Submit, its ctx ended before a slot was free", func(t *testing.T) error {
		p := deferred.NewPool(1)
		defer p.Wait()
		release := make(chan struct{})
		busy := submit(p, func(context.Context) (int, error) { <-release; return 0, nil })
		ctx, cancel := context.WithCancel(context.Background())
		queued := deferred.Submit(ctx, p, func(context.Context) (int, error) { return 1, nil })
		cancel()
		close(release)
		_, err := busy.Await(context.Background())
		require.NoError(t, err)
		return awaitErr(queued)
	}, nil, context.Canceled, false},

	{"AddTimeout", func(t *testing.T) error {
		return awaitErr(deferred.New[int]().AddTimeout(time.Second))
	}, deferred.ErrTimeout, context.DeadlineExceeded, true},

	{"AddTimeoutFunc passing the failure on", func(t *testing.T) error {
		d := deferred.New[int]().AddTimeoutFunc(time.Second, func(f *deferred.Failure) (int, error) {
			return 0, f
		})
		return awaitErr(d)
	}, deferred.ErrTimeout, context.DeadlineExceeded, true},

	{"web.WithTimeout", func(t *testing.T) error {
		return awaitErr(web.GetPage(context.Background(), "http://example.com/",
			web.WithClient(stalledClient), web.WithTimeout(time.Second)))
	}, deferred.ErrTimeout, context.DeadlineExceeded, true},

	{"web.GetPage cancelled", func(t *testing.T) error {
		d := web.GetPage(context.Background(), "http://example.com/", web.WithClient(stalledClient))
		d.Cancel()
		return awaitErr(d)
	}, deferred.ErrCancelled, context.Canceled, false},

	{"web.GetPage, its ctx cancelled", func(t *testing.T) error {
		ctx, cancel := context.WithCancel(context.Background())
		d := web.GetPage(ctx, "http://example.com/", web.WithClient(stalledClient))
		cancel()
		return awaitErr(d)
	}, nil, context.Canceled, false},

	{"web.GetPage, its ctx past its deadline", func(t *testing.T) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return awaitErr(web.GetPage(ctx, "http://example.com/", web.WithClient(stalledClient)))
	}, nil, context.DeadlineExceeded, true},

	{"Await, its ctx cancelled first", func(t *testing.T) error {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d := deferred.New[int]()
		got := firstFailure(d)
		_, err := d.Await(ctx)
		assert.ErrorIs(t, *got, deferred.ErrCancelled, "Await cancelled d")
		return err
	}, nil, context.Canceled, false},

	{"Await, its ctx past its deadline first", func(t *testing.T) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d := deferred.New[int]()
		got := firstFailure(d)
		_, err := d.Await(ctx)
		assert.ErrorIs(t, *got, deferred.ErrCancelled, "Await cancelled d")
		assert.NotErrorIs(t, *got, deferred.ErrTimeout, "Await's cancellation of d is not a timeout")
		return err
	}, nil, context.DeadlineExceeded, true},
}

// submit runs f on p with a background context.
func submit(p *deferred.Pool, f func(context.Context) (int, error)) *deferred.Deferred[int] {
	return deferred.Submit(context.Background(), p, f)
}

func TestErrorVocabulary(t *testing.T) {
	for _, tc := range errorVocabulary {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				err := tc.err(t)
				require.Error(t, err)

				for _, s := range []error{deferred.ErrCancelled, deferred.ErrTimeout} {
					assert.Equal(t, s == tc.sentinel, errors.Is(err, s), "errors.Is(%q, %q)", err, s)
				}
				for _, c := range []error{context.Canceled, context.DeadlineExceeded} {
					assert.Equal(t, c == tc.ctxErr, errors.Is(err, c), "errors.Is(%q, %q)", err, c)
				}

				// net.Error's idiom, through errors.As…
				var te timeouter
				assert.Equal(t, tc.timeout, errors.As(err, &te) && te.Timeout(), "errors.As: Timeout() of %q", err)
				// …and as a type assertion on the error itself.
				te, ok := err.(timeouter)
				assert.Equal(t, tc.timeout, ok && te.Timeout(), "%T.Timeout() of %q", err, err)
				if tc.sentinel != nil {
					assert.IsType(t, (*deferred.Failure)(nil), err, "Await returns the *Failure")
				}
			})
		})
	}
}

// The sentinels themselves match context's errors, so a user's own
// fmt.Errorf("…: %w", ErrTimeout) reads as a timeout everywhere.
func TestSentinelsMatchContextErrors(t *testing.T) {
	assert.ErrorIs(t, deferred.ErrCancelled, context.Canceled)
	assert.NotErrorIs(t, deferred.ErrCancelled, context.DeadlineExceeded)
	assert.ErrorIs(t, deferred.ErrTimeout, context.DeadlineExceeded)
	assert.NotErrorIs(t, deferred.ErrTimeout, context.Canceled)
	assert.NotErrorIs(t, deferred.ErrTimeout, deferred.ErrCancelled, "a timeout is not a cancellation, as in context")

	var te timeouter
	require.ErrorAs(t, deferred.ErrTimeout, &te)
	assert.True(t, te.Timeout())
	assert.False(t, errors.As(deferred.ErrCancelled, &te), "ErrCancelled has no Timeout method")

	assert.Equal(t, "deferred: cancelled", deferred.ErrCancelled.Error())
	assert.Equal(t, "deferred: timed out", deferred.ErrTimeout.Error())
}

// netTimeout is an error with a Timeout method, as net's errors have.
type netTimeout struct{ timeout bool }

func (e netTimeout) Error() string { return fmt.Sprintf("net: timeout %v", e.timeout) }
func (e netTimeout) Timeout() bool { return e.timeout }

// A *Failure's Timeout is *url.Error's, seeing through wrapping: the first
// error in the chain with a Timeout method decides.
func TestFailureTimeout(t *testing.T) {
	timeoutFailure := deferred.NewFailure(&deferred.TimeoutError{Op: "x", After: time.Second})
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"plain error", errors.New("disk on fire"), false},
		{"cancellation", deferred.ErrCancelled, false},
		{"ErrTimeout", deferred.ErrTimeout, true},
		{"ErrTimeout wrapped by the user", fmt.Errorf("fetch: %w", deferred.ErrTimeout), true},
		{"*TimeoutError", &deferred.TimeoutError{Op: "x", After: time.Second}, true},
		{"context.DeadlineExceeded", context.DeadlineExceeded, true},
		{"context.Canceled", context.Canceled, false},
		{"a net error that times out", fmt.Errorf("dial: %w", netTimeout{true}), true},
		{"a net error that does not", netTimeout{false}, false},
		{"*url.Error over a deadline", &url.Error{Op: "Get", URL: "http://x/", Err: context.DeadlineExceeded}, true},
		{"a Failure wrapped in an error", fmt.Errorf("step 2: %w", timeoutFailure), true},
		{"a timeout joined with others", errors.Join(errors.New("a"), timeoutFailure), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := deferred.NewFailure(tc.err)
			assert.Equal(t, tc.want, f.Timeout())
		})
	}
	assert.False(t, (*deferred.Failure)(nil).Timeout(), "a nil Failure")
	assert.Same(t, timeoutFailure, deferred.NewFailure(timeoutFailure))
}

func TestTimeoutErrorMessage(t *testing.T) {
	err := &deferred.TimeoutError{Op: "web: GET http://example.com/", After: 1500 * time.Millisecond}
	assert.EqualError(t, err, "web: GET http://example.com/: timed out after 1.5s")
	assert.ErrorIs(t, err, deferred.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, err.Timeout())
}
