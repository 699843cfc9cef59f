package deferredtest_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/deferredtest"
)

// TestMain fails the package's tests if any goroutine outlives them: the
// kit starts none.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeT is a testing.TB that records what the kit reports instead of
// failing the test. Fatalf returns, unlike the real one: the helpers must
// return at once after it. The embedded nil TB makes any other method
// panic, so a helper calling one is caught.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	fatals   []string
	errors   []string
	cleanups []func()
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// end runs the cleanups, the last registered first, as testing does.
func (f *fakeT) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.cleanups = nil
}

// fatal returns the one Fatalf message recorded, failing t if there is
// not exactly one.
func (f *fakeT) fatal(t *testing.T) string {
	t.Helper()
	require.Len(t, f.fatals, 1, "Fatalf calls")
	assert.Empty(t, f.errors, "Errorf calls")
	return f.fatals[0]
}

// passed fails t if the kit reported anything.
func (f *fakeT) passed(t *testing.T) {
	t.Helper()
	assert.Empty(t, f.fatals, "Fatalf calls")
	assert.Empty(t, f.errors, "Errorf calls")
}

var errKit = errors.New("kit test error")

// failedHere returns a Deferred holding a failure whose stack names this
// function.
//
//go:noinline
func failedHere(err error) *deferred.Deferred[int] { return deferred.Fail[int](err) }

// notFired returns Deferreds holding no result, in each way that can be.
func notFired() map[string]*deferred.Deferred[int] {
	paused := deferred.Succeed(1)
	paused.Pause()
	waiting := deferred.Succeed(1).AddCallbackDeferred(func(int) *deferred.Deferred[int] { return deferred.New[int]() })
	return map[string]*deferred.Deferred[int]{
		"pending": deferred.New[int](),
		"paused":  paused,
		"waiting": waiting,
	}
}

func TestSuccessResultOfReturnsTheValueAndLeavesIt(t *testing.T) {
	ft := new(fakeT)
	d := deferred.Succeed(42)
	assert.Equal(t, 42, deferredtest.SuccessResultOf(ft, d))
	ft.passed(t)

	var next int
	d.AddCallback(func(v int) (int, error) { next = v; return v, nil })
	assert.Equal(t, 42, next, "the value stays in the chain for the stages added after")
}

func TestSuccessResultOfFailsWithoutAResult(t *testing.T) {
	for name, d := range notFired() {
		t.Run(name, func(t *testing.T) {
			ft := new(fakeT)
			assert.Zero(t, deferredtest.SuccessResultOf(ft, d))
			msg := ft.fatal(t)
			assert.Contains(t, msg, "a value expected")
			assert.Contains(t, msg, "found no result")
			assert.Contains(t, msg, d.String(), "the message shows the Deferred's state")
		})
	}
}

func TestSuccessResultOfFailsOnAFailureShowingItsStack(t *testing.T) {
	deferredtest.NoUnhandled(t) // the failure it reports counts as handled
	ft := new(fakeT)
	assert.Zero(t, deferredtest.SuccessResultOf(ft, failedHere(errKit)))
	msg := ft.fatal(t)
	assert.Contains(t, msg, "found a failure instead: kit test error")
	assert.Contains(t, msg, "deferredtest_test.failedHere", "the failure's stack")
}

func TestFailureResultOfReturnsTheFailureAndLeavesIt(t *testing.T) {
	deferredtest.NoUnhandled(t) // the failure counts as handled
	for name, targets := range map[string][]error{
		"no target":          nil,
		"the target":         {errKit},
		"one of the targets": {deferred.ErrCancelled, errKit},
	} {
		t.Run(name, func(t *testing.T) {
			ft := new(fakeT)
			d := failedHere(errKit)
			held, ok := d.Peek()
			require.True(t, ok)
			f := deferredtest.FailureResultOf(ft, d, targets...)
			ft.passed(t)
			assert.Same(t, held.Failure, f, "the failure d holds, itself")

			var next *deferred.Failure
			d.AddErrback(func(f *deferred.Failure) (int, error) { next = f; return 0, f })
			assert.Same(t, f, next, "the failure stays in the chain for the stages added after")
		})
	}
}

func TestFailureResultOfFailsOnAnotherFailureShowingItsStack(t *testing.T) {
	deferredtest.NoUnhandled(t) // the failure it reports counts as handled
	ft := new(fakeT)
	other := errors.New("other")
	assert.Nil(t, deferredtest.FailureResultOf(ft, failedHere(errKit), other, deferred.ErrTimeout))
	msg := ft.fatal(t)
	assert.Contains(t, msg, `a failure matching "other" or "deferred: timed out"`)
	assert.Contains(t, msg, "found another failure instead: kit test error")
	assert.Contains(t, msg, "deferredtest_test.failedHere", "the failure's stack")
}

func TestFailureResultOfFailsOnAValue(t *testing.T) {
	ft := new(fakeT)
	assert.Nil(t, deferredtest.FailureResultOf(ft, deferred.Succeed("fine"), errKit))
	msg := ft.fatal(t)
	assert.Contains(t, msg, "a failure expected")
	assert.Contains(t, msg, `found a value instead: "fine"`)
}

func TestFailureResultOfFailsWithoutAResult(t *testing.T) {
	for name, d := range notFired() {
		t.Run(name, func(t *testing.T) {
			ft := new(fakeT)
			assert.Nil(t, deferredtest.FailureResultOf(ft, d))
			msg := ft.fatal(t)
			assert.Contains(t, msg, "found no result")
			assert.Contains(t, msg, d.String())
		})
	}
}

func TestAssertNoResultPassesWithoutAResult(t *testing.T) {
	for name, d := range notFired() {
		t.Run(name, func(t *testing.T) {
			ft := new(fakeT)
			deferredtest.AssertNoResult(ft, d)
			ft.passed(t)
		})
	}
}

func TestAssertNoResultFailsOnAValue(t *testing.T) {
	ft := new(fakeT)
	deferredtest.AssertNoResult(ft, deferred.Succeed(7))
	msg := ft.fatal(t)
	assert.Contains(t, msg, "no result expected")
	assert.Contains(t, msg, "found a value: 7")
}

func TestAssertNoResultFailsOnAFailureShowingItsStack(t *testing.T) {
	deferredtest.NoUnhandled(t) // the failure it reports counts as handled
	ft := new(fakeT)
	deferredtest.AssertNoResult(ft, failedHere(errKit))
	msg := ft.fatal(t)
	assert.Contains(t, msg, "found a failure: kit test error")
	assert.Contains(t, msg, "deferredtest_test.failedHere")
}

// dropFailed drops a Deferred holding an unhandled failure.
//
//go:noinline
func dropFailed(err error) { _ = failedHere(err) }

// recordHandler installs an unhandled-failure handler that records the
// errors of the failures it gets, restoring the previous one at t's end.
func recordHandler(t *testing.T) *recorded {
	r := new(recorded)
	prev := deferred.SetUnhandledHandler(r.add)
	t.Cleanup(func() { deferred.SetUnhandledHandler(prev) })
	return r
}

type recorded struct {
	mu  sync.Mutex
	got []string
}

func (r *recorded) add(f *deferred.Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, f.Error())
}

func (r *recorded) has(msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g == msg {
			return true
		}
	}
	return false
}

func TestNoUnhandledFailsOncePerDroppedFailureWithItsStack(t *testing.T) {
	ft := new(fakeT)
	deferredtest.NoUnhandled(ft)
	dropFailed(errors.New("dropped one"))
	dropFailed(errors.New("dropped two"))
	ft.end()

	require.Len(t, ft.errors, 2, "one Errorf per report: %q", ft.errors)
	all := strings.Join(ft.errors, "\n")
	for _, msg := range []string{"dropped one", "dropped two"} {
		assert.Equal(t, 1, strings.Count(all, "unhandled failure reported during the test: "+msg+"\n"), msg)
	}
	for _, e := range ft.errors {
		assert.Contains(t, e, "deferredtest_test.failedHere", "the failure's stack")
	}
	assert.Empty(t, ft.fatals)
	assert.NotContains(t, all, "canary", "the canaries are the kit's own")
}

func TestNoUnhandledPassesWhenEveryFailureIsHandled(t *testing.T) {
	ft := new(fakeT)
	deferredtest.NoUnhandled(ft)
	func() {
		d := failedHere(errKit)
		d.AddErrback(func(*deferred.Failure) (int, error) { return 0, nil })
		e := failedHere(errKit)
		deferredtest.FailureResultOf(ft, e, errKit)
		_ = deferred.Succeed(1)
	}()
	ft.end()
	ft.passed(t)
}

func TestNoUnhandledRestoresTheHandlerItFound(t *testing.T) {
	outside := recordHandler(t)
	ft := new(fakeT)
	deferredtest.NoUnhandled(ft)
	ft.end()

	prev := deferred.SetUnhandledHandler(nil)
	deferred.SetUnhandledHandler(prev)
	prev(deferred.NewFailure(errors.New("probe")))
	assert.True(t, outside.has("probe"), "the handler in place after the cleanup is the one from before")
	ft.passed(t)
}

func TestNoUnhandledDoesNotBlameATestForEarlierDrops(t *testing.T) {
	outside := recordHandler(t)
	dropFailed(errors.New("dropped before"))
	ft := new(fakeT)
	deferredtest.NoUnhandled(ft)
	ft.end()
	ft.passed(t)
	assert.True(t, outside.has("dropped before"), "the earlier drop goes to the handler from before")
}

func TestNoUnhandledNestedBothCountTheReportsMadeWhileTheyRun(t *testing.T) {
	outside := recordHandler(t)
	outer, inner := new(fakeT), new(fakeT)
	deferredtest.NoUnhandled(outer)
	deferredtest.NoUnhandled(inner)
	dropFailed(errors.New("during inner"))
	inner.end()
	dropFailed(errors.New("during outer only"))
	outer.end()

	require.Len(t, inner.errors, 1, "%q", inner.errors)
	assert.Contains(t, inner.errors[0], "during inner")
	require.Len(t, outer.errors, 2, "%q", outer.errors)
	assert.Contains(t, strings.Join(outer.errors, "\n"), "during inner")
	assert.Contains(t, strings.Join(outer.errors, "\n"), "during outer only")
	assert.Empty(t, outside.got, "nothing reached the handler from before")
}

func TestNoUnhandledFailsIfItsHandlerWasReplacedAndNotRestored(t *testing.T) {
	recordHandler(t)
	ft := new(fakeT)
	deferredtest.NoUnhandled(ft)
	deferred.SetUnhandledHandler(func(*deferred.Failure) {})
	ft.end()
	require.Len(t, ft.errors, 1)
	assert.Contains(t, ft.errors[0], "was replaced during the test and not restored")
}

func TestNoUnhandledAcceptsAHandlerRestoredBeforeItsCleanup(t *testing.T) {
	recordHandler(t)
	ft := new(fakeT)
	deferredtest.NoUnhandled(ft)
	prev := deferred.SetUnhandledHandler(func(*deferred.Failure) {})
	ft.Cleanup(func() { deferred.SetUnhandledHandler(prev) })
	ft.end()
	ft.passed(t)
}
