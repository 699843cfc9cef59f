package deferred_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/deferredtest"
)

// These tests of the core contract (the README's "The rules") and of
// Then and Chain use nothing but the API, so they live outside the package
// and check results with deferredtest, as a user's tests would: a result
// is read where it is, with SuccessResultOf or FailureResultOf, instead of
// with a stage added to catch it.

var (
	errKitA = errors.New("kit test error A")
	errKitB = errors.New("kit test error B")
)

// Constructors, Called and Cancel.

func TestCoreSucceedFail(t *testing.T) {
	deferredtest.NoUnhandled(t)
	s := deferred.Succeed("hi")
	assert.True(t, s.Called())
	assert.Equal(t, "hi", deferredtest.SuccessResultOf(t, s))

	fl := deferred.Fail[string](errKitA)
	assert.True(t, fl.Called())
	deferredtest.FailureResultOf(t, fl, errKitA)

	orig := deferred.NewFailure(errKitB)
	assert.Same(t, orig, deferredtest.FailureResultOf(t, deferred.Fail[string](orig)), "Fail keeps a *Failure as is")
}

func TestCoreFailureFromErrorIsNotPanic(t *testing.T) {
	pv, ok := deferredtest.FailureResultOf(t, deferred.Fail[int](errKitA)).PanicValue()
	assert.False(t, ok)
	assert.Nil(t, pv)
}

func TestCoreMaybe(t *testing.T) {
	calledNow := false
	d := deferred.Maybe(func() (int, error) { calledNow = true; return 8, nil })
	assert.True(t, calledNow, "Maybe calls f at once")
	assert.True(t, d.Called())
	assert.Equal(t, 8, deferredtest.SuccessResultOf(t, d))

	deferredtest.FailureResultOf(t, deferred.Maybe(func() (int, error) { return 1, errKitA }), errKitA)

	f := deferredtest.FailureResultOf(t, deferred.Maybe(func() (int, error) { panic("maybe boom") }))
	pv, ok := f.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "maybe boom", pv)
}

func TestCoreCancelWithoutCanceller(t *testing.T) {
	d := deferred.New[int]()
	assert.False(t, d.Called())
	d.Cancel()
	assert.True(t, d.Called())
	deferredtest.FailureResultOf(t, d, deferred.ErrCancelled)
}

func TestCoreCancelFiredDeferredDoesNothing(t *testing.T) {
	calls := 0
	d := deferred.NewWithCanceller(func(*deferred.Deferred[int]) { calls++ })
	require.NoError(t, d.Callback(3))
	d.Cancel()
	assert.Equal(t, 0, calls)
	assert.Equal(t, 3, deferredtest.SuccessResultOf(t, d))

	s := deferred.Succeed("x")
	s.Cancel()
	assert.Equal(t, "x", deferredtest.SuccessResultOf(t, s))
}

// Errbacks.

func TestCoreErrbackErrorKeepsFailing(t *testing.T) {
	d := deferred.New[int]()
	d.AddErrback(func(f *deferred.Failure) (int, error) { return 0, errKitB })
	require.NoError(t, d.Errback(errKitA))
	f := deferredtest.FailureResultOf(t, d, errKitB)
	assert.NotErrorIs(t, f, errKitA)
}

func TestCoreErrbackDeferred(t *testing.T) {
	t.Run("inner success recovers", func(t *testing.T) {
		inner := deferred.New[int]()
		d := deferred.New[int]()
		var gotF *deferred.Failure
		d.AddErrbackDeferred(func(f *deferred.Failure) *deferred.Deferred[int] { gotF = f; return inner })
		require.NoError(t, d.Errback(errKitA))
		assert.ErrorIs(t, gotF, errKitA)
		deferredtest.AssertNoResult(t, d) // the chain waits for the inner Deferred
		require.NoError(t, inner.Callback(7))
		assert.Equal(t, 7, deferredtest.SuccessResultOf(t, d))
	})
	t.Run("inner failure keeps failing", func(t *testing.T) {
		inner := deferred.New[int]()
		d := deferred.Fail[int](errKitA).AddErrbackDeferred(func(*deferred.Failure) *deferred.Deferred[int] { return inner })
		require.NoError(t, inner.Errback(errKitB))
		deferredtest.FailureResultOf(t, d, errKitB)
	})
	t.Run("skipped on success", func(t *testing.T) {
		ran := false
		d := deferred.Succeed(4).AddErrbackDeferred(func(*deferred.Failure) *deferred.Deferred[int] {
			ran = true
			return deferred.Succeed(0)
		})
		assert.False(t, ran)
		assert.Equal(t, 4, deferredtest.SuccessResultOf(t, d))
	})
}

// Then and ThenDeferred.

func TestThenOldHandleErrbackFailsNew(t *testing.T) {
	boom := errors.New("boom")
	d := deferred.New[int]()
	called := false
	u := deferred.Then(d, func(v int) (string, error) {
		called = true
		return "", nil
	})
	require.NoError(t, d.Errback(boom))
	assert.False(t, called, "cb must not see a failure")
	deferredtest.FailureResultOf(t, u, boom)
}

func TestThenCallbackErrorFailsNew(t *testing.T) {
	boom := errors.New("cb failed")
	u := deferred.Then(deferred.Succeed(3), func(v int) (string, error) { return "ignored", boom })
	deferredtest.FailureResultOf(t, u, boom)
}

func TestThenCallbackPanicFailsNew(t *testing.T) {
	u := deferred.Then(deferred.Succeed(3), func(v int) (string, error) { panic("then panicked") })
	pv, ok := deferredtest.FailureResultOf(t, u).PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "then panicked", pv)
}

func TestThenAlreadyFiredSourceRunsNow(t *testing.T) {
	u := deferred.Then(deferred.Succeed(5), func(v int) (string, error) { return strings.Repeat("x", v), nil })
	assert.Equal(t, "xxxxx", deferredtest.SuccessResultOf(t, u))
}

func TestThenCancelCancelsSource(t *testing.T) {
	cancellerRan := 0
	src := deferred.NewWithCanceller(func(*deferred.Deferred[int]) { cancellerRan++ })
	cbRan := false
	u := deferred.Then(src, func(v int) (string, error) {
		cbRan = true
		return "", nil
	})

	u.Cancel()
	assert.Equal(t, 1, cancellerRan, "cancelling the new Deferred runs the source's canceller")
	assert.True(t, src.Called(), "the source is cancelled")
	assert.False(t, cbRan)
	deferredtest.FailureResultOf(t, u, deferred.ErrCancelled)

	u.Cancel()
	assert.Equal(t, 1, cancellerRan, "the canceller runs at most once")
}

func TestThenDeferredWaitsForPendingInner(t *testing.T) {
	d := deferred.New[int]()
	inner := deferred.New[string]()
	var gotArg int
	u := deferred.ThenDeferred(d, func(v int) *deferred.Deferred[string] {
		gotArg = v
		return inner
	})

	require.NoError(t, d.Callback(7))
	assert.Equal(t, 7, gotArg)
	deferredtest.AssertNoResult(t, u) // the new Deferred waits for the returned one
	assert.Contains(t, u.String(), "waiting", "the new Deferred says what it waits on")

	require.NoError(t, inner.Callback("inner"))
	assert.Equal(t, "inner", deferredtest.SuccessResultOf(t, u))
}

func TestThenDeferredAlreadyFiredInner(t *testing.T) {
	u := deferred.ThenDeferred(deferred.Succeed(2), func(v int) *deferred.Deferred[string] {
		return deferred.Succeed(fmt.Sprintf("got %d", v))
	})
	assert.Equal(t, "got 2", deferredtest.SuccessResultOf(t, u))
}

func TestThenDeferredInnerFailureFailsNew(t *testing.T) {
	deferredtest.NoUnhandled(t)
	boom := errors.New("inner failed")
	for name, mk := range map[string]func() (*deferred.Deferred[string], func()){
		"pending": func() (*deferred.Deferred[string], func()) {
			inner := deferred.New[string]()
			return inner, func() { require.NoError(t, inner.Errback(boom)) }
		},
		"already failed": func() (*deferred.Deferred[string], func()) {
			return deferred.Fail[string](boom), func() {}
		},
	} {
		t.Run(name, func(t *testing.T) {
			inner, fire := mk()
			u := deferred.ThenDeferred(deferred.Succeed(1), func(int) *deferred.Deferred[string] { return inner })
			fire()
			deferredtest.FailureResultOf(t, u, boom)
		})
	}
}

func TestThenDeferredFailureBeforeThenPassesToNew(t *testing.T) {
	boom := errors.New("boom")
	called := false
	u := deferred.ThenDeferred(deferred.Fail[int](boom), func(int) *deferred.Deferred[string] {
		called = true
		return deferred.Succeed("")
	})
	assert.False(t, called)
	deferredtest.FailureResultOf(t, u, boom)
}

func TestThenDeferredCancelCancelsSource(t *testing.T) {
	cancellerRan := 0
	src := deferred.NewWithCanceller(func(*deferred.Deferred[int]) { cancellerRan++ })
	u := deferred.ThenDeferred(src, func(v int) *deferred.Deferred[string] { return deferred.Succeed("") })
	u.Cancel()
	assert.Equal(t, 1, cancellerRan)
	deferredtest.FailureResultOf(t, u, deferred.ErrCancelled)
}

// Chain.

func TestChainAlreadyFiredOtherFailsChain(t *testing.T) {
	deferredtest.NoUnhandled(t)
	d := deferred.New[int]()
	other := deferred.Succeed(1)
	d.Chain(other)
	require.NoError(t, d.Callback(5))
	deferredtest.FailureResultOf(t, d, deferred.ErrAlreadyCalled) // d's chain fails from the Chain stage
	assert.Equal(t, 1, deferredtest.SuccessResultOf(t, other), "other keeps its own result")
}

func TestChainAddedAfterFiring(t *testing.T) {
	d := deferred.Succeed(9)
	other := deferred.New[int]()
	d.Chain(other)
	assert.Equal(t, 9, deferredtest.SuccessResultOf(t, other))
}

// TestChainTargetCancelledFirstSwallowsTheResult: Chain into a
// Deferred that was cancelled (no canceller) before d fired: the result
// is the producer's first firing after the Cancel, which is ignored, so
// d's chain goes on with the zero value and no failure, and the target
// keeps its ErrCancelled (Twisted: [('other', 'CancelledError'), ('d', None)]).
func TestChainTargetCancelledFirstSwallowsTheResult(t *testing.T) {
	other := deferred.New[int]()
	d := deferred.New[int]()
	d.Chain(other)
	other.Cancel()

	require.NoError(t, d.Callback(5))
	assert.Zero(t, deferredtest.SuccessResultOf(t, d), "the swallowed firing must not fail d")
	deferredtest.FailureResultOf(t, other, deferred.ErrCancelled)
	// Only the first firing after Cancel is swallowed.
	assert.ErrorIs(t, other.Callback(6), deferred.ErrAlreadyCalled)
}
