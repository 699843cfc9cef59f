package deferred

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type failureTestError struct{ code int }

func (e *failureTestError) Error() string { return fmt.Sprintf("code %d", e.code) }

// failureTestMake creates a Failure; tests look for its name in the stack.
//
//go:noinline
func failureTestMake(err error) *Failure {
	return NewFailure(err)
}

//go:noinline
func failureTestErrback(d *Deferred[int], err error) {
	_ = d.Errback(err)
}

//go:noinline
func failureTestPanicker(int) (int, error) {
	panic("from the stage")
}

func TestFailureErrorsIsAsSeeThrough(t *testing.T) {
	target := &failureTestError{code: 7}
	f := NewFailure(fmt.Errorf("context: %w", target))
	assert.Equal(t, "context: code 7", f.Error())

	var got *failureTestError
	require.True(t, errors.As(f, &got))
	assert.Same(t, target, got)
	assert.True(t, errors.Is(f, target))
	assert.False(t, errors.Is(f, io.EOF))

	wrapped := fmt.Errorf("outer: %w", NewFailure(io.EOF))
	assert.ErrorIs(t, wrapped, io.EOF, "a Failure wrapped again is still seen through")
	var ff *Failure
	assert.True(t, errors.As(wrapped, &ff))
}

func TestFailureCheck(t *testing.T) {
	f := NewFailure(fmt.Errorf("read: %w", io.ErrUnexpectedEOF))
	assert.Equal(t, io.ErrUnexpectedEOF, f.Check(io.EOF, io.ErrUnexpectedEOF, fs.ErrNotExist),
		"returns the matching target")
	assert.Equal(t, io.ErrUnexpectedEOF, f.Check(io.ErrUnexpectedEOF, f), "returns the first match")
	assert.Nil(t, f.Check(io.EOF, fs.ErrNotExist), "no match: nil")
	assert.Nil(t, f.Check(), "no targets: nil")
}

func TestFailureTrap(t *testing.T) {
	f := NewFailure(fmt.Errorf("stat: %w", fs.ErrNotExist))
	assert.NoError(t, f.Trap(io.EOF, fs.ErrNotExist), "a match is handled: nil")
	err := f.Trap(io.EOF)
	require.Error(t, err)
	got, ok := err.(*Failure)
	require.True(t, ok, "no match: the Failure itself, got %T", err)
	assert.Same(t, f, got)
}

func TestFailureTrapInErrback(t *testing.T) {
	d := Fail[string](fs.ErrNotExist)
	var trapped, passed *Failure
	d.AddErrback(func(f *Failure) (string, error) {
		if err := f.Trap(io.EOF); err != nil {
			trapped = f
			return "", err // not ours: keep failing
		}
		return "eof", nil
	}).AddErrback(func(f *Failure) (string, error) {
		passed = f
		return "", f.Trap(fs.ErrNotExist)
	})
	require.NotNil(t, passed, "an untrapped failure goes on to the next errback")
	assert.Same(t, trapped, passed)
	var got string
	var failed bool
	d.AddCallbacks(func(s string) (string, error) {
		got = s
		return s, nil
	}, func(*Failure) (string, error) {
		failed = true
		return "", nil
	})
	assert.False(t, failed, "Trap returning nil recovers")
	assert.Equal(t, "", got)
}

func TestFailureNewFailureOfFailureIsSame(t *testing.T) {
	f := NewFailure(io.EOF)
	assert.Same(t, f, NewFailure(f))
	var err error = f
	assert.Same(t, f, NewFailure(err))
}

func TestFailureStageReturnsSamePointer(t *testing.T) {
	sent := NewFailure(io.EOF)
	var seen []*Failure
	d := New[int]()
	d.AddCallback(func(int) (int, error) { return 0, sent }).
		AddErrback(func(f *Failure) (int, error) {
			seen = append(seen, f)
			return 0, f // pass it on unchanged
		}).
		AddCallbacks(func(v int) (int, error) { return v, nil }, func(f *Failure) (int, error) {
			seen = append(seen, f)
			return 0, f
		}).
		AddBoth(func(_ int, f *Failure) (int, error) {
			seen = append(seen, f)
			return 0, nil
		})
	require.NoError(t, d.Callback(1))
	require.Len(t, seen, 3)
	for i, f := range seen {
		assert.Same(t, sent, f, "stage %d got a different *Failure", i)
	}
}

func TestFailureErrbackKeepsPointer(t *testing.T) {
	sent := NewFailure(io.EOF)
	var got *Failure
	d := New[int]()
	d.AddErrback(func(f *Failure) (int, error) {
		got = f
		return 0, nil
	})
	require.NoError(t, d.Errback(sent))
	assert.Same(t, sent, got, "Errback with a *Failure passes it as is")
}

// failureFirstFrame returns the function name of a stack's innermost entry.
func failureFirstFrame(stack string) string {
	line, _, _ := strings.Cut(stack, "\n")
	return line
}

func TestFailureStackNamesCreator(t *testing.T) {
	f := failureTestMake(io.EOF)
	assert.Equal(t, "github.com/deferred-go/deferred.failureTestMake", failureFirstFrame(f.Stack()),
		"the innermost frame is the function that created the Failure:\n%s", f.Stack())
	assert.Contains(t, f.Stack(), "TestFailureStackNamesCreator", "the callers follow")
	assert.Contains(t, f.Stack(), "failure_test.go:")

	d := New[int]()
	var got *Failure
	d.AddErrback(func(f *Failure) (int, error) {
		got = f
		return 0, nil
	})
	failureTestErrback(d, io.EOF)
	require.NotNil(t, got)
	assert.Equal(t, "github.com/deferred-go/deferred.failureTestErrback", failureFirstFrame(got.Stack()),
		"Errback's Failure starts at Errback's caller:\n%s", got.Stack())
}

func TestFailureStackOfPanicNamesPanicSite(t *testing.T) {
	var got *Failure
	Succeed(1).AddCallback(failureTestPanicker).AddErrback(func(f *Failure) (int, error) {
		got = f
		return 0, nil
	})
	require.NotNil(t, got)
	assert.Equal(t, "github.com/deferred-go/deferred.failureTestPanicker", failureFirstFrame(got.Stack()),
		"a panic's Failure starts at the panic site:\n%s", got.Stack())
	v, ok := got.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "from the stage", v)
}

func TestFailureFormat(t *testing.T) {
	f := failureTestMake(errors.New("it broke"))
	assert.Equal(t, "it broke", fmt.Sprintf("%v", f))
	assert.Equal(t, "it broke", fmt.Sprintf("%s", f))
	assert.Equal(t, `"it broke"`, fmt.Sprintf("%q", f))

	plus := fmt.Sprintf("%+v", f)
	assert.Equal(t, "it broke\n"+f.Stack(), plus, "%%+v prints the message, then the stack")
	assert.Contains(t, plus, "failureTestMake")
}

// TestFailureTypedNilIsANilError: a nil *Failure given where an error is
// expected is no error at all, so it never reaches a chain to crash the
// unhandled-failure report later (issue 13, defect 1).
func TestFailureTypedNilIsANilError(t *testing.T) {
	var nilFailure *Failure

	d := New[int]()
	require.NoError(t, d.Errback(nilFailure))
	_, f := Capture(d).Now(t)
	require.ErrorIs(t, f, ErrNilError, "Errback((*Failure)(nil)) fails as Errback(nil) does")
	assert.NotPanics(t, func() { _ = f.Error() + f.Stack() })

	_, f = Capture(Fail[int](nilFailure)).Now(t)
	require.ErrorIs(t, f, ErrNilError, "Fail((*Failure)(nil)) fails as Fail(nil) does")

	assert.PanicsWithValue(t, "deferred: NewFailure called with a nil error",
		func() { NewFailure(nilFailure) })
}

// TestFailureNilAndZeroMethodsDoNotCrash: a nil or zero Failure, which the
// library never makes, answers every method without a nil dereference.
func TestFailureNilAndZeroMethodsDoNotCrash(t *testing.T) {
	var nilFailure *Failure
	assert.Equal(t, "deferred: nil *Failure", nilFailure.Error())
	assert.Nil(t, nilFailure.Unwrap())
	assert.Nil(t, nilFailure.Check(ErrCancelled))
	assert.Nil(t, nilFailure.Trap(ErrCancelled), "nothing to keep failing with")
	assert.Equal(t, "", nilFailure.Stack())
	v, panicked := nilFailure.PanicValue()
	assert.Nil(t, v)
	assert.False(t, panicked)

	var zero Failure
	assert.Equal(t, "deferred: empty Failure", zero.Error())
	assert.Equal(t, "deferred: empty Failure", fmt.Sprintf("%+v", &zero)[:len("deferred: empty Failure")])
	assert.Nil(t, zero.Unwrap())
	assert.Equal(t, &zero, zero.Trap(ErrCancelled))
	assert.Equal(t, "", zero.Stack())
}
