package deferred

// Behaviours that no other test reached, each checked against Twisted 22.4
// where Twisted has it.

import (
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCoverChainRunsTargetBeforeTheRestWhenResumingFromInner: a chain that
// resumes once an inner Deferred fires, and then reaches a Chain stage,
// runs the Chain target's stages before its own next stage, which gets the
// zero value (Twisted: [('other', 5), ('outer-after', None)]).
func TestCoverChainRunsTargetBeforeTheRestWhenResumingFromInner(t *testing.T) {
	var got []string
	record := func(who string) func(int) (int, error) {
		return func(v int) (int, error) {
			got = append(got, who+":"+strconv.Itoa(v))
			return v, nil
		}
	}
	inner := New[int]()
	other := New[int]()
	other.AddCallback(record("other"))
	outer := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	outer.Chain(other).AddCallback(record("outer-after"))
	require.Empty(t, got)

	require.NoError(t, inner.Callback(5))
	assert.Equal(t, []string{"other:5", "outer-after:0"}, got)
}

// TestCoverChainTargetCancelledFirstSwallowsTheResult: Chain into a
// Deferred that was cancelled (no canceller) before d fired: the result
// is the producer's first firing after the Cancel, which is ignored, so
// d's chain goes on with the zero value and no failure, and the target
// keeps its ErrCancelled (Twisted: [('other', 'CancelledError'), ('d', None)]).
func TestCoverChainTargetCancelledFirstSwallowsTheResult(t *testing.T) {
	other := New[int]()
	d := New[int]()
	var dValue int
	var dFailure *Failure
	dRan := false
	d.Chain(other).AddBoth(func(v int, f *Failure) (int, error) {
		dRan, dValue, dFailure = true, v, f
		return 0, nil
	})
	other.Cancel()
	var otherFailure *Failure
	other.AddErrback(func(f *Failure) (int, error) {
		otherFailure = f
		return 0, nil
	})

	require.NoError(t, d.Callback(5))
	require.True(t, dRan)
	assert.Nil(t, dFailure, "the swallowed firing must not fail d")
	assert.Zero(t, dValue)
	assert.ErrorIs(t, otherFailure, ErrCancelled)
	// Only the first firing after Cancel is swallowed.
	assert.ErrorIs(t, other.Callback(6), ErrAlreadyCalled)
}

// TestCoverAddBothPassThroughOfNilFailure: AddBoth's `return v, f` passes
// a success on as a success, although f is a typed nil *Failure (a
// non-nil error interface), as AddBoth's doc comment promises.
func TestCoverAddBothPassThroughOfNilFailure(t *testing.T) {
	d := New[int]()
	d.AddBoth(func(v int, f *Failure) (int, error) { return v + 1, f })
	var got int
	var failed bool
	d.AddCallbacks(
		func(v int) (int, error) { got = v; return v, nil },
		func(*Failure) (int, error) { failed = true; return 0, nil },
	)
	require.NoError(t, d.Callback(1))
	assert.False(t, failed, "a typed nil *Failure read as a failure")
	assert.Equal(t, 2, got)

	// And a real failure passes on as one.
	errX := errors.New("x")
	e := New[int]()
	e.AddBoth(func(v int, f *Failure) (int, error) { return v, f })
	var gotF *Failure
	e.AddErrback(func(f *Failure) (int, error) { gotF = f; return 0, nil })
	require.NoError(t, e.Errback(errX))
	assert.ErrorIs(t, gotF, errX)
}
