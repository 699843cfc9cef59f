package deferred

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
)

// maxStackDepth bounds how many frames a Failure records.
const maxStackDepth = 32

// A Failure is an error together with the stack where it arose: where
// NewFailure wrapped it, or, for a Failure made from a recovered panic, the
// stack of the panic site. Failures travel down the errback side of a chain.
//
// errors.Is and errors.As see through a Failure to the error it wraps. A
// Failure is immutable once made and may be shared between goroutines.
type Failure struct {
	err      error
	pcs      []uintptr
	panicked bool
	value    any // the recovered panic value, when panicked
}

// NewFailure wraps err in a Failure that records the caller's stack. If err
// already is a *Failure it is returned as is, so a Failure keeps its
// identity and original stack as it travels. NewFailure panics if err is nil:
// a Failure must always describe a real error.
func NewFailure(err error) *Failure {
	if err == nil {
		panic("deferred: NewFailure called with a nil error")
	}
	if f, ok := err.(*Failure); ok && f != nil {
		return f
	}
	return &Failure{err: err, pcs: callers(3)}
}

// failureOf is NewFailure for errors returned by stages: the recorded stack
// is the firing loop's, since the stage's own frame is gone by then.
func failureOf(err error) *Failure {
	if f, ok := err.(*Failure); ok {
		return f
	}
	return &Failure{err: err, pcs: callers(3)}
}

// PanicError is the error inside a Failure made from a recovered panic
// whose value is not itself an error. Its Value is the panic value.
type PanicError struct {
	Value any
}

// Error reports the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// panicFailure builds the Failure for a recovered panic. It must be called
// from the deferred function that recovered, so that the stack it records
// still holds the frames of the panic site.
func panicFailure(v any) *Failure {
	f := &Failure{panicked: true, value: v, pcs: callers(3)}
	if err, ok := v.(error); ok {
		f.err = fmt.Errorf("panic: %w", err)
	} else {
		f.err = &PanicError{Value: v}
	}
	return f
}

func callers(skip int) []uintptr {
	var buf [maxStackDepth]uintptr
	n := runtime.Callers(skip, buf[:])
	pcs := make([]uintptr, n)
	copy(pcs, buf[:n])
	return pcs
}

// Error returns the wrapped error's message.
func (f *Failure) Error() string { return f.err.Error() }

// Unwrap returns the wrapped error, so errors.Is and errors.As see through
// the Failure.
func (f *Failure) Unwrap() error { return f.err }

// Check returns the first of targets that errors.Is(f, target) reports, or
// nil if none matches. It is Twisted's Failure.check.
func (f *Failure) Check(targets ...error) error {
	for _, t := range targets {
		if errors.Is(f, t) {
			return t
		}
	}
	return nil
}

// Trap returns nil if f matches one of targets (the errback handles it),
// and f otherwise, so that an errback can write
//
//	if err := f.Trap(ErrNotFound); err != nil {
//		return "", err // not ours: keep failing
//	}
//
// It is Twisted's Failure.trap, with a returned error in place of a re-raise.
func (f *Failure) Trap(targets ...error) error {
	if f.Check(targets...) != nil {
		return nil
	}
	return f
}

// Stack returns the recorded stack, one "function\n\tfile:line" entry per
// frame, innermost first: where the Failure was created, or where the panic
// happened for a Failure made from a panic.
func (f *Failure) Stack() string {
	var b strings.Builder
	frames := runtime.CallersFrames(f.pcs)
	// A panic Failure was recorded inside the recovering function: skip up
	// to the runtime's panic frames so the stack starts at the panic site.
	skipping := f.panicked
	for {
		fr, more := frames.Next()
		inPanic := isRuntimePanicFrame(fr.Function)
		if skipping && inPanic {
			skipping = false
		}
		if !skipping && !inPanic && fr.Function != "" {
			fmt.Fprintf(&b, "%s\n\t%s:%d\n", fr.Function, fr.File, fr.Line)
		}
		if !more {
			break
		}
	}
	return b.String()
}

// isRuntimePanicFrame hides the runtime's own panic machinery, so that a
// panic Failure's stack starts at the panic site.
func isRuntimePanicFrame(fn string) bool {
	return fn == "runtime.gopanic" || fn == "runtime.panicmem" ||
		fn == "runtime.sigpanic" || strings.HasPrefix(fn, "runtime.panic") ||
		strings.HasPrefix(fn, "runtime.goPanic")
}

// PanicValue returns the value recovered from a panic and true when the
// Failure was made from a panic inside a stage or canceller, and nil and
// false otherwise.
func (f *Failure) PanicValue() (any, bool) { return f.value, f.panicked }

// Format makes %+v print the message followed by the stack.
func (f *Failure) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('+'):
		fmt.Fprintf(s, "%s\n%s", f.Error(), f.Stack())
	case verb == 'q':
		fmt.Fprintf(s, "%q", f.Error())
	default:
		fmt.Fprint(s, f.Error())
	}
}
