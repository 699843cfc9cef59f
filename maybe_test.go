package deferred

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin MaybeDeferred (issue 14), Twisted's maybeDeferred for a
// function that returns a Deferred.

var errMaybe = errors.New("maybe test error")

// Twisted 22.4: maybeDeferred(lambda: d) is d.
func TestMaybeDeferredReturnsTheFunctionsDeferredItself(t *testing.T) {
	d := New[int]()
	called := false
	got := MaybeDeferred(func() *Deferred[int] {
		called = true
		return d
	})
	require.True(t, called, "f was not called before MaybeDeferred returned")
	require.Same(t, d, got)

	// A fired one and a failed one likewise, results untouched.
	ok := Succeed(4)
	require.Same(t, ok, MaybeDeferred(func() *Deferred[int] { return ok }))
	v, f := Capture(ok).Now(t)
	assert.Equal(t, 4, v)
	assert.Nil(t, f)
	failed := Fail[int](errMaybe)
	require.Same(t, failed, MaybeDeferred(func() *Deferred[int] { return failed }))
	_, f = Capture(failed).Now(t)
	assert.ErrorIs(t, f, errMaybe)
}

func maybePanics() *Deferred[int] { panic(errMaybe) }

func TestMaybeDeferredPanicBecomesAFailure(t *testing.T) {
	d := MaybeDeferred(maybePanics)
	require.True(t, d.Called())
	_, f := Capture(d).Now(t)
	require.NotNil(t, f)
	assert.ErrorIs(t, f, errMaybe)
	p, ok := f.PanicValue()
	require.True(t, ok, "the Failure does not say it came from a panic")
	assert.Equal(t, errMaybe, p)
	assert.Contains(t, f.Stack(), "maybePanics", "the stack is not the panic site's")

	d = MaybeDeferred(func() *Deferred[int] { panic("not an error") })
	_, f = Capture(d).Now(t)
	var pe *PanicError
	require.ErrorAs(t, f, &pe)
	assert.Equal(t, "not an error", pe.Value)
}

func TestMaybeDeferredBadReturnFails(t *testing.T) {
	d := MaybeDeferred(func() *Deferred[int] { return nil })
	_, f := Capture(d).Now(t)
	require.ErrorIs(t, f, ErrInvalidReturn)
	assert.Contains(t, f.Error(), "nil *Deferred")

	handed := New[int]()
	Then(handed, func(v int) (string, error) { return "", nil })
	d = MaybeDeferred(func() *Deferred[int] { return handed })
	require.NotSame(t, handed, d)
	_, f = Capture(d).Now(t)
	require.ErrorIs(t, f, ErrInvalidReturn)
	assert.Contains(t, f.Error(), "handed over by Then")
}

// The failures MaybeDeferred makes are reported if nobody handles them.
func TestMaybeDeferredFailureIsReportedWhenUnhandled(t *testing.T) {
	w := listWatchUnhandled(t)
	func() { MaybeDeferred(maybePanics) }()
	w.collect(t)
	assert.Equal(t, 1, w.count(errMaybe))
}

func TestMaybeDeferredNilFunctionPanics(t *testing.T) {
	assert.PanicsWithValue(t, "deferred: MaybeDeferred called with a nil function", func() {
		MaybeDeferred[int](nil)
	})
}
