package deferred

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unhandledDeadline bounds how long a test collects garbage while waiting
// for a report; it is generous because nothing here asserts timing.
const unhandledDeadline = 10 * time.Second

// unhandledCatcher is an unhandled-failure handler that passes on the
// reports of the errors a test made and drops the rest (other tests'
// Deferreds may be collected meanwhile).
type unhandledCatcher struct {
	mu      sync.Mutex
	watched map[error]int
	got     chan error
}

// unhandledCatch installs a catcher for watched errors and restores the
// previous handler when the test ends.
func unhandledCatch(t *testing.T, watched ...error) *unhandledCatcher {
	t.Helper()
	c := &unhandledCatcher{watched: map[error]int{}, got: make(chan error, 64)}
	for _, e := range watched {
		c.watched[e] = 0
	}
	prev := SetUnhandledHandler(c.handle)
	t.Cleanup(func() { SetUnhandledHandler(prev) })
	return c
}

func (c *unhandledCatcher) handle(f *Failure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := range c.watched {
		if errors.Is(f, e) {
			c.watched[e]++
			c.got <- e
			return
		}
	}
}

func (c *unhandledCatcher) count(e error) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watched[e]
}

// waitFor collects garbage until want has been reported, or fails the test
// after the deadline.
func (c *unhandledCatcher) waitFor(t *testing.T, want error) {
	t.Helper()
	deadline := time.NewTimer(unhandledDeadline)
	defer deadline.Stop()
	for {
		runtime.GC()
		tick := time.NewTimer(5 * time.Millisecond)
		select {
		case e := <-c.got:
			tick.Stop()
			if e == want {
				return
			}
		case <-tick.C:
		case <-deadline.C:
			tick.Stop()
			t.Fatalf("%v was never reported as unhandled", want)
		}
	}
}

// settle lets the Deferreds dropped so far be collected and reported, so
// that a test can then check what was not reported: it drops a canary with
// an unhandled failure, waits for its report, and does so twice, so that
// the cleanups of earlier collections have had their turn.
func (c *unhandledCatcher) settle(t *testing.T) {
	t.Helper()
	for range 2 {
		canary := errors.New("canary")
		c.mu.Lock()
		c.watched[canary] = 0
		c.mu.Unlock()
		unhandledDropFailed(canary)
		c.waitFor(t, canary)
	}
}

// unhandledDropFailed makes a Deferred that fails with err after one
// callback stage and drops it.
//
//go:noinline
func unhandledDropFailed(err error) {
	d := New[int]()
	d.AddCallback(func(v int) (int, error) { return v, nil })
	_ = d.Errback(err)
}

//go:noinline
func unhandledDropHandled(err error) {
	d := New[int]()
	d.AddErrback(func(f *Failure) (int, error) { return 0, nil })
	_ = d.Errback(err)
}

//go:noinline
func unhandledDropFail(err error) {
	Fail[int](err)
}

//go:noinline
func unhandledDropHandledLater(err error) {
	d := New[int]()
	d.AddCallback(func(v int) (int, error) { return v, nil })
	_ = d.Errback(err) // the chain ends in a failure here...
	d.AddCallback(func(v int) (int, error) { return v, nil })
	d.AddErrback(func(f *Failure) (int, error) { return 1, nil }) // ...until this errback handles it
}

//go:noinline
func unhandledDropFailHandledLater(err error) {
	Fail[int](err).AddErrback(func(f *Failure) (int, error) { return 1, nil })
}

// unhandledOuterAndInner makes outer wait on inner through
// AddCallbackDeferred, and fails inner with err.
//
//go:noinline
func unhandledOuterAndInner(err error) (outer, inner *Deferred[int]) {
	inner = New[int]()
	outer = Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	_ = inner.Errback(err)
	return outer, inner
}

//go:noinline
func unhandledKeepOuter(err error) *Deferred[int] {
	outer, _ := unhandledOuterAndInner(err)
	return outer
}

//go:noinline
func unhandledKeepInner(err error) *Deferred[int] {
	_, inner := unhandledOuterAndInner(err)
	return inner
}

//go:noinline
func unhandledDropThroughOuter(err error, innerPending, outerHandles bool) {
	var inner *Deferred[int]
	if innerPending {
		inner = New[int]()
	} else {
		inner = Fail[int](err)
	}
	outer := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	if innerPending {
		_ = inner.Errback(err)
	}
	if outerHandles {
		outer.AddErrback(func(f *Failure) (int, error) { return 0, nil })
	}
}

// unhandledDropped lists ways of dropping a Deferred whose chain ends in
// the failure err that no stage handled.
var unhandledDropped = []struct {
	name string
	drop func(err error)
}{
	{"Errback after a stage", unhandledDropFailed},
	{"stage returns an error", func(err error) {
		d := New[int]()
		d.AddCallback(func(int) (int, error) { return 0, err })
		_ = d.Callback(1)
	}},
	{"Errback with no stages", func(err error) {
		d := New[int]()
		_ = d.Errback(err)
	}},
	{"canceller fails it, no stages", func(err error) {
		d := NewWithCanceller(func(d *Deferred[int]) { _ = d.Errback(err) })
		d.Cancel()
	}},
	{"Then's Deferred", func(err error) {
		Then(Fail[int](err), func(int) (string, error) { return "", nil })
	}},
	{"Chain's target", func(err error) {
		d := New[int]()
		d.Chain(New[int]())
		_ = d.Errback(err)
	}},
}

func TestUnhandledReportedOnce(t *testing.T) {
	for _, tc := range unhandledDropped {
		t.Run(tc.name, func(t *testing.T) {
			boom := errors.New("unhandled once: " + tc.name)
			c := unhandledCatch(t, boom)
			unhandledDropWith(tc.drop, boom)
			c.waitFor(t, boom)
			c.settle(t)
			assert.Equal(t, 1, c.count(boom), "an unhandled failure is reported exactly once")
		})
	}
}

// unhandledDropWith calls drop in a frame of its own, so that nothing on
// the test's stack keeps the Deferred alive.
//
//go:noinline
func unhandledDropWith(drop func(error), err error) { drop(err) }

func TestUnhandledHandledNotReported(t *testing.T) {
	boom := errors.New("handled")
	c := unhandledCatch(t, boom)
	unhandledDropHandled(boom)
	c.settle(t)
	assert.Zero(t, c.count(boom), "a handled failure is never reported")
}

func TestUnhandledFailDropped(t *testing.T) {
	boom := errors.New("Fail dropped")
	c := unhandledCatch(t, boom)
	unhandledDropFail(boom)
	c.waitFor(t, boom)
	c.settle(t)
	assert.Equal(t, 1, c.count(boom))
}

func TestUnhandledHandledByLaterErrback(t *testing.T) {
	afterFire := errors.New("handled after firing")
	failLater := errors.New("Fail handled later")
	c := unhandledCatch(t, afterFire, failLater)
	unhandledDropHandledLater(afterFire)
	unhandledDropFailHandledLater(failLater)
	c.settle(t)
	assert.Zero(t, c.count(afterFire), "an errback added after the failure handles it")
	assert.Zero(t, c.count(failLater), "an errback added to Fail's Deferred handles it")
}

func TestUnhandledPassedToOuterDeferred(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		innerPending, outerHandles bool
		want                       int
	}{
		{"pending inner, outer unhandled", true, false, 1},
		{"failed inner, outer unhandled", false, false, 1},
		{"pending inner, outer handles", true, true, 0},
		{"failed inner, outer handles", false, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			boom := errors.New(tc.name)
			c := unhandledCatch(t, boom)
			unhandledDropThroughOuter(boom, tc.innerPending, tc.outerHandles)
			if tc.want > 0 {
				c.waitFor(t, boom)
			}
			c.settle(t)
			assert.Equal(t, tc.want, c.count(boom), "only the outer Deferred may report the failure")
		})
	}
}

// TestUnhandledOuterReportsNotInner tells the two apart by dropping one
// while the other stays reachable.
func TestUnhandledOuterReportsNotInner(t *testing.T) {
	t.Run("inner dropped, outer alive", func(t *testing.T) {
		boom := errors.New("inner dropped")
		c := unhandledCatch(t, boom)
		outer := unhandledKeepOuter(boom)
		c.settle(t)
		assert.Zero(t, c.count(boom), "the inner Deferred passed its failure on: it must not report it")
		outer.AddErrback(func(*Failure) (int, error) { return 0, nil })
		runtime.KeepAlive(outer)
	})
	t.Run("outer dropped, inner alive", func(t *testing.T) {
		boom := errors.New("outer dropped")
		c := unhandledCatch(t, boom)
		inner := unhandledKeepInner(boom)
		c.waitFor(t, boom)
		c.settle(t)
		assert.Equal(t, 1, c.count(boom), "the outer Deferred reports the failure it ends with")
		runtime.KeepAlive(inner)
	})
}

// unhandledLogBuffer is a goroutine-safe buffer: the default handler logs
// from the runtime's cleanup goroutine.
type unhandledLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *unhandledLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *unhandledLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the logged records that mention msg.
func (b *unhandledLogBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.buf.String(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "record %q", line)
		out = append(out, rec)
	}
	return out
}

func TestUnhandledDefaultHandlerLogsToSlog(t *testing.T) {
	logs := &unhandledLogBuffer{}
	prevLogger := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prevLogger) })

	// Install a custom handler first, so that nil visibly restores the default.
	// Handlers here count only this test's failures: another test's dropped
	// Deferred may be collected meanwhile, on the cleanup goroutine.
	mine := errors.New("custom handler")
	var custom atomic.Int32
	prev := SetUnhandledHandler(func(f *Failure) {
		if errors.Is(f, mine) {
			custom.Add(1)
		}
	})
	t.Cleanup(func() { SetUnhandledHandler(prev) })
	old := SetUnhandledHandler(nil)
	require.NotNil(t, old)
	old(NewFailure(mine))
	assert.Equal(t, int32(1), custom.Load(), "SetUnhandledHandler returns the previous handler")

	msg := "default handler " + time.Now().String()
	unhandledDropFailed(fmt.Errorf("%s: %w", msg, mine))

	deadline := time.Now().Add(unhandledDeadline)
	for len(logs.records(t, msg)) == 0 {
		require.True(t, time.Now().Before(deadline), "the default handler never logged the failure")
		runtime.GC()
		time.Sleep(5 * time.Millisecond) // let the cleanup goroutine run; not a timing assertion
	}
	// Let later collections run too: the failure must still be logged once.
	canaries := unhandledCatch(t)
	canaries.settle(t)

	recs := logs.records(t, msg)
	require.Len(t, recs, 1, "one record per unhandled failure")
	rec := recs[0]
	assert.Equal(t, "ERROR", rec["level"])
	assert.Equal(t, msg+": custom handler", rec["error"], "the record holds the error")
	stack, ok := rec["stack"].(string)
	require.True(t, ok, "the record has a stack attribute: %v", rec)
	assert.Contains(t, stack, "unhandledDropFailed", "the stack names where the failure arose")
	assert.Equal(t, int32(1), custom.Load(), "the custom handler gets no reports after SetUnhandledHandler(nil)")
}

func TestUnhandledSetHandlerReturnsPrevious(t *testing.T) {
	mine := errors.New("returns previous")
	var mu sync.Mutex
	var calls []string
	record := func(name string) func(*Failure) {
		return func(f *Failure) {
			if errors.Is(f, mine) { // ignore other tests' collected Deferreds
				mu.Lock()
				calls = append(calls, name)
				mu.Unlock()
			}
		}
	}
	first := record("first")
	orig := SetUnhandledHandler(first)
	t.Cleanup(func() { SetUnhandledHandler(orig) })
	require.NotNil(t, orig, "the default handler is returned, never nil")

	got := SetUnhandledHandler(record("second"))
	got(NewFailure(mine))
	mu.Lock()
	assert.Equal(t, []string{"first"}, calls)
	mu.Unlock()

	got = SetUnhandledHandler(nil)
	got(NewFailure(mine))
	mu.Lock()
	assert.Equal(t, []string{"first", "second"}, calls)
	mu.Unlock()

	// After nil, the previous handler returned is the default one: it logs.
	logs := &unhandledLogBuffer{}
	prevLogger := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(logs, nil)))
	defer slog.SetDefault(prevLogger)
	def := SetUnhandledHandler(nil)
	def(NewFailure(errors.New("default after nil")))
	assert.Len(t, logs.records(t, "default after nil"), 1)
}

// unhandledAbortedFanIn gives combine a failed input, a pending one and one
// whose chain Then handed over, which makes combine panic after it has
// added its stage to the first two; it then fails the pending input and
// drops them all.
//
//go:noinline
func unhandledAbortedFanIn(t *testing.T, combine func(...*Deferred[int]), errFired, errLater error) {
	failed, pending, bad := Fail[int](errFired), New[int](), New[int]()
	Then(bad, func(int) (string, error) { return "", nil })
	require.Panics(t, func() { combine(failed, pending, bad) })
	require.NoError(t, pending.Errback(errLater))
}

// A List, Gather or Race whose setup panicked on a bad input leaves the
// inputs' results as they were: the stages it had added pass them on
// untouched, so a failure an input had, or gets later, is not consumed as
// the combinator would have done, and is reported as unhandled when the
// input is dropped with it, as if the combinator had never been called.
func TestUnhandledInputsOfAnAbortedFanInAreStillReported(t *testing.T) {
	combiners := []struct {
		name    string
		combine func(...*Deferred[int])
	}{
		{"List", func(ds ...*Deferred[int]) { List(ds...) }},
		{"Gather", func(ds ...*Deferred[int]) { Gather(ds...) }},
		{"Race", func(ds ...*Deferred[int]) { Race(ds...) }},
	}
	for _, c := range combiners {
		t.Run(c.name, func(t *testing.T) {
			errFired := fmt.Errorf("aborted %s: the input that had failed", c.name)
			errLater := fmt.Errorf("aborted %s: the input that failed afterwards", c.name)
			catcher := unhandledCatch(t, errFired, errLater)
			unhandledAbortedFanIn(t, c.combine, errFired, errLater)
			for _, e := range []error{errFired, errLater} {
				if catcher.count(e) == 0 { // waitFor drops the other's report
					catcher.waitFor(t, e)
				}
			}
			catcher.settle(t)
			assert.Equal(t, 1, catcher.count(errFired))
			assert.Equal(t, 1, catcher.count(errLater))
		})
	}
}
