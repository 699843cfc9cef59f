package deferred

import (
	"context"
	"errors"
	"iter"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin the bridges to Go's own ways of waiting (issue 14):
// CancelWhen and AsCompleted.

var errBridge = errors.New("bridge test error")

// countingCtx is a Context with an AfterFunc method, which
// context.AfterFunc calls instead of keeping its own records: so a test
// counts exactly the registrations still live on it.
type countingCtx struct {
	mu    sync.Mutex
	done  chan struct{}
	err   error
	next  int
	funcs map[int]func()
	total int // registrations ever made
}

func newCountingCtx() *countingCtx {
	return &countingCtx{done: make(chan struct{}), funcs: map[int]func(){}}
}

func (c *countingCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *countingCtx) Done() <-chan struct{}       { return c.done }
func (c *countingCtx) Value(any) any               { return nil }

func (c *countingCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *countingCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	id := c.next
	c.next++
	c.funcs[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.funcs[id]
		delete(c.funcs, id)
		return ok
	}
}

// cancel ends c and calls the functions registered on it.
func (c *countingCtx) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	close(c.done)
	fs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// live returns the number of registrations not yet withdrawn or run.
func (c *countingCtx) live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.funcs)
}

// queuedStages returns the number of stages queued on d and not yet run.
func queuedStages[T any](d *Deferred[T]) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int(d.n - d.head)
}

// CancelWhen

func TestCancelWhenCancelsWhenTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		d := listCancellable(&n)
		ctx, cancel := context.WithCancel(t.Context())
		require.Same(t, d, d.CancelWhen(ctx))
		c := Capture(d)
		synctest.Wait()
		assert.Zero(t, n, "cancelled before ctx ended")

		cancel()
		synctest.Wait()
		assert.Equal(t, 1, n, "the canceller runs once")
		_, f := c.Now(t)
		require.ErrorIs(t, f, ErrCancelled)
		assert.ErrorIs(t, f, context.Canceled)
		assert.False(t, f.Timeout())
	})
}

func TestCancelWhenFailureCarriesTheContextsCause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		d := New[int]().CancelWhen(ctx)
		c := Capture(d)
		cancel(errBridge)
		synctest.Wait()
		_, f := c.Now(t)
		require.ErrorIs(t, f, ErrCancelled)
		assert.ErrorIs(t, f, errBridge, "the cause of ctx's end is in the failure")
	})
}

// A deadline is a timeout: the failure matches ErrTimeout and
// context.DeadlineExceeded, as AddTimeout's, and no longer ErrCancelled.
func TestCancelWhenDeadlineFailsWithErrTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		d := New[int]().CancelWhen(ctx)
		c := Capture(d)
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		assert.False(t, d.Called(), "cancelled before the deadline")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		_, f := c.Now(t)
		require.ErrorIs(t, f, ErrTimeout)
		assert.ErrorIs(t, f, context.DeadlineExceeded)
		assert.NotErrorIs(t, f, ErrCancelled)
		assert.True(t, f.Timeout(), "a deadline's failure is a timeout")
	})
}

// A ctx that has ended already cancels d before CancelWhen returns, on the
// calling goroutine: no goroutine to wait for.
func TestCancelWhenContextAlreadyDoneCancelsAtOnce(t *testing.T) {
	var n int
	d := listCancellable(&n)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	d.CancelWhen(ctx)
	assert.Equal(t, 1, n, "not cancelled before CancelWhen returned")
	require.True(t, d.Called())
	_, f := Capture(d).Now(t)
	assert.ErrorIs(t, f, ErrCancelled)
	assert.ErrorIs(t, f, context.Canceled)

	// The same with a ctx that counts registrations: none is made.
	cc := newCountingCtx()
	cc.cancel()
	d = New[int]().CancelWhen(cc)
	require.True(t, d.Called())
	assert.Zero(t, cc.total, "CancelWhen registered on a ctx that had ended")
	_, f = Capture(d).Now(t)
	assert.ErrorIs(t, f, ErrCancelled)
}

// A result that reaches CancelWhen's stage first withdraws the
// registration and passes unchanged; ctx's end later does nothing.
func TestCancelWhenResultFirstLetsTheContextGo(t *testing.T) {
	var n int
	cc := newCountingCtx()
	d := listCancellable(&n).CancelWhen(cc)
	require.Equal(t, 1, cc.live())
	require.NoError(t, d.Callback(7))
	assert.Zero(t, cc.live(), "the registration outlived d's firing")
	cc.cancel()
	assert.Zero(t, n)
	v, f := Capture(d).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 7, v)

	// A cancellation from elsewhere is passed on as it is.
	cc = newCountingCtx()
	d = New[int]().CancelWhen(cc)
	d.Cancel()
	assert.Zero(t, cc.live())
	_, f = Capture(d).Now(t)
	require.ErrorIs(t, f, ErrCancelled)
	assert.NotContains(t, f.Error(), "by its context", "a Cancel that ctx did not cause was rewritten")

	// A failure likewise.
	cc = newCountingCtx()
	d = New[int]().CancelWhen(cc)
	require.NoError(t, d.Errback(errBridge))
	assert.Zero(t, cc.live())
	_, f = Capture(d).Now(t)
	assert.ErrorIs(t, f, errBridge)
}

// d whose chain is past this point already: nothing is registered, and an
// ended ctx cancels nothing.
func TestCancelWhenOnAFiredDeferredRegistersNothing(t *testing.T) {
	cc := newCountingCtx()
	d := Succeed(3).CancelWhen(cc)
	assert.Zero(t, cc.total)
	cc.cancel()
	ended := newCountingCtx()
	ended.cancel()
	d.CancelWhen(ended)
	v, f := Capture(d).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 3, v)
}

// A ctx that can never end (Done returns nil) costs nothing: no stage, no
// registration.
func TestCancelWhenBackgroundAddsNothing(t *testing.T) {
	d := New[int]()
	require.Same(t, d, d.CancelWhen(context.Background()))
	assert.Zero(t, queuedStages(d))
}

// The check: 100,000 Deferreds on one long-lived ctx leave no
// AfterFunc registered on it once they have fired.
func TestCancelWhenHundredThousandLeaveNoRegistration(t *testing.T) {
	const n = 100_000
	cc := newCountingCtx()
	cancelWhenThenFire(t, n, cc, cc.live)
	assert.Equal(t, n, cc.total)
}

// cancelWhenThenFire makes n Deferreds cancelled when ctx ends, checks
// that live, ctx's count of registrations, counts one each, fires them
// all, and checks that live is back to zero.
func cancelWhenThenFire(t *testing.T, n int, ctx context.Context, live func() int) {
	t.Helper()
	ds := make([]*Deferred[int], n)
	for i := range ds {
		ds[i] = New[int]().CancelWhen(ctx)
	}
	require.Equal(t, n, live(), "each pending Deferred holds one registration")
	for i, d := range ds {
		require.NoError(t, d.Callback(i))
	}
	assert.Zero(t, live(), "registrations outlived the Deferreds' firing")
}

// The same on a context of the standard library's: its cancelCtx keeps a
// child per AfterFunc, which it must have dropped. (Reads context's
// internals; skipped if they change.)
func TestCancelWhenHundredThousandOnAStandardContext(t *testing.T) {
	const n = 100_000
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	children := reflect.ValueOf(ctx)
	if children.Kind() == reflect.Pointer {
		children = children.Elem()
	}
	if children.Kind() != reflect.Struct {
		t.Skip("context.WithCancel's context is not a struct pointer any more")
	}
	children = children.FieldByName("children")
	if !children.IsValid() || children.Kind() != reflect.Map {
		t.Skip("context's cancelCtx has no children map any more")
	}
	cancelWhenThenFire(t, n, ctx, children.Len) // each a child of ctx's cancelCtx
}

// CancelWhen's cancellation covers a Deferred an earlier stage waits for.
func TestCancelWhenCoversWhatAnEarlierStageWaitsFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		inner := listCancellable(&n)
		d := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
		ctx, cancel := context.WithCancel(t.Context())
		d.CancelWhen(ctx)
		c := Capture(d)
		cancel()
		synctest.Wait()
		assert.Equal(t, 1, n, "the inner Deferred was not cancelled")
		_, f := c.Now(t)
		assert.ErrorIs(t, f, ErrCancelled)
	})
}

// Once d's chain has passed CancelWhen's stage, ctx's end does not cancel
// a Deferred a later stage returned.
func TestCancelWhenDoesNotCoverALaterStage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		inner := listCancellable(&n)
		ctx, cancel := context.WithCancel(t.Context())
		d := New[int]().CancelWhen(ctx)
		d.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
		require.NoError(t, d.Callback(1))
		cancel()
		synctest.Wait()
		assert.Zero(t, n, "ctx's end cancelled what a later stage returned")
		require.NoError(t, inner.Callback(2))
		v, f := Capture(d).Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 2, v)
	})
}

// The producer's result reaches CancelWhen's stage after ctx's AfterFunc
// has won but before its Cancel: the result passes unchanged, and the
// stages after CancelWhen's wait until that Cancel has returned, so it
// cannot cancel a Deferred one of them returns.
func TestCancelWhenResultInsideTheCancellingWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n int
		inner := listCancellable(&n)
		ctx, cancel := context.WithCancel(t.Context())
		d := New[int]().CancelWhen(ctx)
		d.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
		c := Capture(d)

		testHookGuardCancelling = func() { _ = d.Callback(5) }
		t.Cleanup(func() { testHookGuardCancelling = nil })
		cancel()
		synctest.Wait()
		assert.Zero(t, n, "the Cancel that lost cancelled what a later stage returned")
		fired, _, _ := c.Get()
		assert.False(t, fired, "the chain went on past the Deferred a later stage returned")
		require.NoError(t, inner.Callback(6))
		v, f := c.Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 6, v)
	})
}

func TestCancelWhenMisuse(t *testing.T) {
	var nilCtx context.Context
	assert.PanicsWithValue(t, "deferred: CancelWhen called with a nil context.Context", func() {
		New[int]().CancelWhen(nilCtx)
	})
	var nilD *Deferred[int]
	assert.PanicsWithValue(t, "deferred: CancelWhen called on a nil *Deferred", func() {
		nilD.CancelWhen(t.Context())
	})
	for _, ctx := range []context.Context{t.Context(), context.Background()} {
		d := New[int]()
		Then(d, func(v int) (string, error) { return "", nil })
		assert.PanicsWithValue(t, handedOverMessage("CancelWhen"), func() { d.CancelWhen(ctx) })
	}
}

// AsCompleted

// asCompletedAll ranges over AsCompleted(ctx, ds...) and returns what it
// yielded, in order.
func asCompletedAll[T any](ctx context.Context, ds ...*Deferred[T]) (idx []int, out []Outcome[T]) {
	return collectSeq(AsCompleted(ctx, ds...))
}

// collectSeq ranges over seq and returns what it yielded, in order.
func collectSeq[T any](seq iter.Seq2[int, Outcome[T]]) (idx []int, out []Outcome[T]) {
	for i, o := range seq {
		idx = append(idx, i)
		out = append(out, o)
	}
	return idx, out
}

func TestAsCompletedYieldsInSettlingOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b, c := New[int](), New[int](), New[int]()
		fireAt := func(d *Deferred[int], after time.Duration, fire func(*Deferred[int]) error) {
			go func() {
				time.Sleep(after)
				assert.NoError(t, fire(d))
			}()
		}
		fireAt(c, 1*time.Second, func(d *Deferred[int]) error { return d.Callback(3) })
		fireAt(a, 2*time.Second, func(d *Deferred[int]) error { return d.Errback(errBridge) })
		fireAt(b, 3*time.Second, func(d *Deferred[int]) error { return d.Callback(2) })

		idx, out := asCompletedAll(t.Context(), a, b, c)
		assert.Equal(t, []int{2, 0, 1}, idx)
		require.Len(t, out, 3)
		assert.Equal(t, Outcome[int]{Value: 3}, out[0])
		assert.ErrorIs(t, listErr(out[1].Failure), errBridge, "a failure is yielded as an outcome")
		assert.Equal(t, Outcome[int]{Value: 2}, out[2])

		// The inputs' chains go on with their results, failure included.
		v, f := Capture(c).Now(t)
		assert.Equal(t, 3, v)
		assert.Nil(t, f)
		_, f = Capture(a).Now(t)
		assert.ErrorIs(t, f, errBridge, "AsCompleted took the input's failure")
	})
}

// Inputs that settled before the range begins come first, in the order of
// ds; the others follow as they settle (here, fired by the loop's body).
func TestAsCompletedAlreadySettledInputsComeFirst(t *testing.T) {
	p, q := New[int](), New[int]()
	fail := Fail[int](errBridge)
	ds := []*Deferred[int]{p, Succeed(1), q, fail, Succeed(4)}
	var idx []int
	for i := range AsCompleted(t.Context(), ds...) {
		idx = append(idx, i)
		switch len(idx) {
		case 3:
			require.NoError(t, q.Callback(2))
		case 4:
			require.NoError(t, p.Callback(0))
		}
	}
	assert.Equal(t, []int{1, 3, 4, 2, 0}, idx)
	_, f := Capture(fail).Now(t)
	assert.ErrorIs(t, f, errBridge)
}

func TestAsCompletedRepeatedInputYieldsEachPosition(t *testing.T) {
	a, b := New[int](), New[int]()
	go func() {
		_ = a.Callback(1)
		_ = b.Callback(2)
	}()
	idx, out := asCompletedAll(t.Context(), a, b, a)
	assert.ElementsMatch(t, []int{0, 1, 2}, idx)
	for k, i := range idx {
		want := map[int]int{0: 1, 1: 2, 2: 1}[i]
		assert.Equal(t, Outcome[int]{Value: want}, out[k], "position %d", i)
	}
}

func TestAsCompletedNoInputsYieldsNothing(t *testing.T) {
	idx, _ := asCompletedAll[int](t.Context())
	assert.Empty(t, idx)
}

// Breaking out of the loop leaves the inputs as they were: not cancelled,
// no stage of AsCompleted's left on them, their chains unchanged.
func TestAsCompletedBreakLeavesNothingBehind(t *testing.T) {
	var na, nb int
	a, b := listCancellable(&na), listCancellable(&nb)
	b.AddCallback(func(v int) (int, error) { return v * 10, nil })
	done := Succeed(7)
	stagesB := queuedStages(b)
	for i, o := range AsCompleted(t.Context(), a, b, done) {
		assert.Equal(t, 2, i)
		assert.Equal(t, 7, o.Value)
		assert.Equal(t, 1, queuedStages(a), "the range has no branch on a")
		break
	}
	assert.Zero(t, queuedStages(a), "a branch's stage was left on an input")
	assert.Equal(t, stagesB, queuedStages(b), "a branch's stage was left on an input")
	assert.Zero(t, na+nb, "AsCompleted cancelled an input")
	assert.False(t, a.Called())

	require.NoError(t, b.Callback(3))
	v, f := Capture(b).Now(t)
	assert.Equal(t, 30, v)
	assert.Nil(t, f)
}

// A panic in the loop's body ends the range as a break does.
func TestAsCompletedPanicInTheBodyLeavesNothingBehind(t *testing.T) {
	a := New[int]()
	assert.PanicsWithValue(t, "body", func() {
		for range AsCompleted(t.Context(), a, Succeed(1)) {
			panic("body")
		}
	})
	assert.Zero(t, queuedStages(a))
	assert.False(t, a.Called())
}

// ctx ending during the range: nothing more is yielded, even an outcome
// that is already there, and the range returns, leaving nothing behind.
func TestAsCompletedContextEndStopsTheRange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var na, nb int
		a, b, c := listCancellable(&na), listCancellable(&nb), Succeed(3)
		ctx, cancel := context.WithCancel(t.Context())
		var idx []int
		for i := range AsCompleted(ctx, a, b, c) {
			idx = append(idx, i)
			require.NoError(t, a.Callback(1)) // ready, but ctx ends first
			cancel()
		}
		assert.Equal(t, []int{2}, idx)
		assert.Zero(t, queuedStages(b), "a branch's stage was left on an input")
		assert.Zero(t, na+nb, "AsCompleted cancelled an input")

		// ctx ending while the range waits.
		d := New[int]()
		ctx, cancel = context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		idx, _ = asCompletedAll(ctx, d)
		assert.Empty(t, idx)
		assert.Zero(t, queuedStages(d))
		assert.False(t, d.Called())
	})
}

func TestAsCompletedContextAlreadyDoneYieldsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	d := New[int]()
	idx, _ := asCompletedAll(ctx, d, Succeed(1))
	assert.Empty(t, idx)
	assert.Zero(t, queuedStages(d))
}

// Each range takes fresh branches: the iterator can be ranged again.
func TestAsCompletedRangesAgain(t *testing.T) {
	a := Succeed(1)
	seq := AsCompleted(t.Context(), a, Succeed(2))
	for range 2 {
		idx, out := collectSeq(seq)
		assert.Equal(t, []int{0, 1}, idx)
		assert.Equal(t, []Outcome[int]{{Value: 1}, {Value: 2}}, out)
	}
}

// A failure AsCompleted yields stays its input's: reported once if nothing
// handles it, and not at all if the input's chain handles it later, even
// after the branches are gone.
// A failure AsCompleted yields counts as handled, as one Await returns
// does; one it never yields stays its input's, reported once if nothing
// handles it, never by the branches.
func TestAsCompletedYieldedFailureCountsAsHandled(t *testing.T) {
	w := listWatchUnhandled(t)
	errNotYielded := errors.New("bridge test: never yielded")
	errHandledLater := errors.New("bridge test: handled later")
	kept := New[int]()
	func() {
		yielded, notYielded := Fail[int](errBridge), New[int]()
		for range AsCompleted(t.Context(), yielded, notYielded) {
			break // after the first: notYielded's failure is never yielded
		}
		_ = notYielded.Errback(errNotYielded)
		for range AsCompleted(t.Context(), Succeed(0), kept) {
			break // kept has not failed yet: nothing yielded of it
		}
		_ = kept.Errback(errHandledLater)
	}()
	w.collect(t) // the branches and the dropped inputs are collected here
	kept.AddErrback(func(*Failure) (int, error) { return 0, nil })
	w.collect(t)
	assert.Zero(t, w.count(errBridge), "a failure the loop's body got was reported as unhandled")
	assert.Equal(t, 1, w.count(errNotYielded), "a failure never yielded, and never handled, must be reported once")
	assert.Zero(t, w.count(errHandledLater), "a branch reported a failure its input handled later")
	assert.Zero(t, w.count(ErrCancelled), "a branch's cancellation was reported")
}

// The branches cancelled at the end of a range do not report their
// cancellation.
func TestAsCompletedCancelledBranchesAreNotReported(t *testing.T) {
	w := listWatchUnhandled(t)
	a := New[int]()
	for range AsCompleted(t.Context(), a, Succeed(1)) {
		break
	}
	w.collect(t)
	assert.Zero(t, w.count(ErrCancelled))
	runtime.KeepAlive(a)
}

func TestAsCompletedMisuse(t *testing.T) {
	a := New[int]()
	assert.PanicsWithValue(t, "deferred: AsCompleted: input 1 is nil", func() { AsCompleted(t.Context(), a, nil) },
		"the panic must come at the call, before any range")
	handed := New[int]()
	Then(handed, func(v int) (string, error) { return "", nil })
	assert.PanicsWithValue(t,
		"deferred: AsCompleted: input 0 was handed over by Then or ThenDeferred; pass the Deferred that Then returned",
		func() { AsCompleted(t.Context(), handed) })
	var nilCtx context.Context
	assert.PanicsWithValue(t, "deferred: AsCompleted called with a nil context.Context", func() { AsCompleted(nilCtx, a) })
	assert.Zero(t, queuedStages(a))
}

// ctx ending while the producers fire on other goroutines: each Deferred
// ends with its value or with ctx's cancellation, never both, never none.
func TestCancelWhenRacesWithProducers(t *testing.T) {
	const n = 200
	ctx, cancel := context.WithCancel(t.Context())
	ds := make([]*Deferred[int], n)
	caps := make([]*Captured[int], n)
	for i := range ds {
		ds[i] = New[int]().CancelWhen(ctx)
		caps[i] = Capture(ds[i])
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() {
			<-start
			assert.NoError(t, d.Callback(i))
		})
	}
	wg.Go(func() {
		<-start
		cancel()
	})
	close(start)
	wg.Wait()
	for i, c := range caps {
		v, f := c.Wait(t)
		if f != nil {
			require.ErrorIs(t, f, ErrCancelled, "input %d", i)
			require.ErrorIs(t, f, context.Canceled, "input %d", i)
			continue
		}
		require.Equal(t, i, v)
	}
}

// Inputs firing on other goroutines while the loop breaks: once they have
// all fired, no branch's stage is left on any of them, and no branch's
// cancellation is reported.
func TestAsCompletedBreakWhileInputsFire(t *testing.T) {
	w := listWatchUnhandled(t)
	const n = 100
	ds := make([]*Deferred[int], n)
	for i := range ds {
		ds[i] = New[int]()
	}
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { assert.NoError(t, d.Callback(i)) })
	}
	for i, o := range AsCompleted(t.Context(), ds...) {
		assert.Equal(t, i, o.Value)
		break
	}
	wg.Wait()
	for i, d := range ds {
		require.Zero(t, queuedStages(d), "a branch's stage was left on input %d", i)
		v, f := Capture(d).Now(t)
		require.Nil(t, f)
		require.Equal(t, i, v, "input %d's chain was changed", i)
	}
	w.collect(t)
	assert.Zero(t, w.count(ErrCancelled))
}
