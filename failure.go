package deferred

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"
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
	pcs      *uintptr // the stack: npcs return PCs in the same allocation; see trace, and skip
	stage    uintptr  // the entry of the stage function whose error or panic made it, or 0
	value    any      // the recovered panic value, when panicked
	npcs     uint8
	panicked bool
	skip     int16
	marks    atomic.Uint32 // handled, reported: see unhandled.go
}

// stack returns f's recorded return PCs.
func (f *Failure) stack() []uintptr {
	if f.npcs == 0 {
		return nil
	}
	return unsafe.Slice(f.pcs, f.npcs)
}

// A Failure and the frames of its stack take one allocation, sized for the
// frames: one of these holds the Failure that withStack makes.
type (
	failure8 struct {
		Failure
		pcs [8]uintptr
	}
	failure16 struct {
		Failure
		pcs [16]uintptr
	}
	failure32 struct {
		Failure
		pcs [maxStackDepth]uintptr
	}
)

// withStack returns a new Failure holding the stack of its caller's caller
// as callers(skip) records it, the frames in the same allocation: one
// allocation for an error on its way into a chain, not two.
//
//go:noinline
func withStack(skip int) *Failure {
	var buf [maxStackDepth]uintptr
	n := callerPCs(buf[:]) // starts at withStack itself, logical frame 1
	if n <= 8 && n > 0 {
		// The common case, inlined: calling failureWithPCs for it was 3%
		// of FailurePath's instructions.
		return failure8With(buf[:n], skip)
	}
	return failureWithPCs(buf[:n], skip)
}

// failure8With is failureWithPCs for 1 to 8 pcs, small enough to inline.
func failure8With(pcs []uintptr, skip int) *Failure {
	x := new(failure8)
	n := copy(x.pcs[:], pcs)
	x.Failure.pcs, x.npcs, x.skip = &x.pcs[0], uint8(n), int16(skip-1)
	return &x.Failure
}

// withExactStack is withStack with runtime.Callers, which also sees what a
// frame-pointer walk cannot: the caller of a leaf function that has no
// frame of its own, where a nil dereference panicked. Panics are rare, so
// their Failures take it.
//
//go:noinline
func withExactStack(skip int) *Failure {
	var buf [maxStackDepth]uintptr
	n := runtime.Callers(1, buf[:]) // starts at withExactStack, as in withStack
	return failureWithPCs(buf[:n], skip)
}

// failureWithPCs makes a Failure holding pcs, in one allocation sized for
// them.
func failureWithPCs(buf []uintptr, skip int) *Failure {
	n := len(buf)
	var f *Failure
	var pcs []uintptr
	switch {
	case n > 0 && n <= 8:
		return failure8With(buf, skip)
	case n <= 8:
		x := new(failure8)
		f, pcs = &x.Failure, x.pcs[:n]
	case n <= 16:
		x := new(failure16)
		f, pcs = &x.Failure, x.pcs[:n]
	default:
		x := new(failure32)
		f, pcs = &x.Failure, x.pcs[:n]
	}
	copy(pcs, buf)
	if n > 0 {
		f.pcs, f.npcs = &pcs[0], uint8(n)
	}
	f.skip = int16(skip - 1)
	return f
}

// NewFailure wraps err in a Failure that records the caller's stack. If err
// already is a *Failure it is returned as is, so a Failure keeps its
// identity and original stack as it travels. NewFailure panics if err is nil
// or a nil *Failure: a Failure must always describe a real error.
func NewFailure(err error) *Failure {
	if isNil(err) {
		panic("deferred: NewFailure called with a nil error")
	}
	return wrapFailure(err, 4)
}

// isNil reports whether err is nil, or a nil *Failure in an error: a
// Failure that describes nothing, which the library treats as no error
// at all rather than carry it to a crash far away.
func isNil(err error) bool {
	f, ok := err.(*Failure)
	return err == nil || ok && f == nil
}

// failureOf is NewFailure for errors returned by stages: the recorded stack
// is the firing loop's, since the stage's own frame is gone by then.
func failureOf(err error) *Failure { return wrapFailure(err, 4) }

// wrapFailure returns err if it is a Failure and otherwise wraps it,
// recording the stack from logical frame skip on (callers' numbering: 2 is
// wrapFailure itself, 3 its caller).
func wrapFailure(err error, skip int) *Failure {
	if f, ok := err.(*Failure); ok && f != nil {
		return f
	}
	f := withStack(skip)
	f.err = err
	return f
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
	f := withExactStack(3)
	f.panicked, f.value = true, v
	if err, ok := v.(error); ok {
		f.err = fmt.Errorf("panic: %w", err)
	} else {
		f.err = &PanicError{Value: v}
	}
	return f
}

// A trace is a captured stack: return PCs, innermost first, of which the
// first skip logical frames (inlined calls counting) are not shown. The
// skipping happens when the trace is formatted, because only then are
// inlined frames told apart.
type trace struct {
	pcs  []uintptr
	skip int
}

// callers captures the stack of its caller's caller, as runtime.Callers
// (skip) would: skip 0 is runtime.Callers, 1 is callers, 2 its caller.
//
//go:noinline
func callers(skip int) trace {
	var buf [maxStackDepth]uintptr
	n := callerPCs(buf[:]) // starts at callers itself, logical frame 1
	pcs := make([]uintptr, n)
	copy(pcs, buf[:n])
	return trace{pcs: pcs, skip: skip - 1}
}

// isWrapper reports compiler-made wrappers, which runtime.Callers leaves
// out and a frame-pointer walk does not.
func isWrapper(fr runtime.Frame) bool {
	if fr.File == "<autogenerated>" {
		return true
	}
	i := strings.LastIndex(fr.Function, ".gowrap")
	return i >= 0 && strings.Trim(fr.Function[i+len(".gowrap"):], "0123456789") == ""
}

// each calls fn with every frame of t after the skipped ones.
func (t trace) each(fn func(runtime.Frame)) {
	frames := runtime.CallersFrames(t.pcs)
	for i := 0; ; i++ {
		fr, more := frames.Next()
		if i >= t.skip && fr.Function != "" && !isWrapper(fr) {
			fn(fr)
		}
		if !more {
			return
		}
	}
}

// Error returns the wrapped error's message. A nil or zero Failure, which
// the library never makes, says so rather than crash.
func (f *Failure) Error() string {
	switch {
	case f == nil:
		return "deferred: nil *Failure"
	case f.err == nil:
		return "deferred: empty Failure"
	}
	return f.err.Error()
}

// Unwrap returns the wrapped error, so errors.Is and errors.As see through
// the Failure.
func (f *Failure) Unwrap() error {
	if f == nil {
		return nil
	}
	return f.err
}

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
// A nil Failure has nothing to keep failing with: Trap returns nil.
func (f *Failure) Trap(targets ...error) error {
	if f == nil || f.Check(targets...) != nil {
		return nil
	}
	return f
}

// Stack returns the recorded stack, one "function\n\tfile:line" entry per
// frame, innermost first: where the Failure was created, or where the panic
// happened for a Failure made from a panic. The library's own frames are
// left out, so that the stack of a Failure made from a stage's error starts
// at the code that fired the Deferred, and that of a panic at the panic
// site; with SetDebugging(true) they are shown too.
func (f *Failure) Stack() string {
	if f == nil {
		return ""
	}
	var b strings.Builder
	all := debugging.Load()
	// A panic Failure was recorded inside the recovering function: skip up
	// to the runtime's panic frames so the stack starts at the panic site.
	skipping := f.panicked
	trace{pcs: f.stack(), skip: int(f.skip)}.each(func(fr runtime.Frame) {
		inPanic := isRuntimePanicFrame(fr.Function)
		if skipping && inPanic {
			skipping = false
		}
		if !skipping && !inPanic && (all || !inLibrary(fr.File)) {
			fmt.Fprintf(&b, "%s\n\t%s:%d\n", fr.Function, fr.File, fr.Line)
		}
	})
	return b.String()
}

// stageName returns the function name and file:line of the stage whose
// error or panic made f, or "" if a stage did not make it.
func (f *Failure) stageName() string {
	if f == nil || f.stage == 0 {
		return ""
	}
	fn := runtime.FuncForPC(f.stage)
	if fn == nil {
		return ""
	}
	file, line := fn.FileLine(f.stage)
	return fmt.Sprintf("%s (%s:%d)", fn.Name(), file, line)
}

// firstFrame returns the first frame of Stack as "function (file:line)".
func (f *Failure) firstFrame() string {
	st := f.Stack()
	fn, rest, ok := strings.Cut(st, "\n\t")
	if !ok {
		return ""
	}
	loc, _, _ := strings.Cut(rest, "\n")
	return fn + " (" + loc + ")"
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
func (f *Failure) PanicValue() (any, bool) {
	if f == nil {
		return nil, false
	}
	return f.value, f.panicked
}

// Format makes %+v print the message followed by the stack.
func (f *Failure) Format(s fmt.State, verb rune) {
	switch {
	case verb == 'v' && s.Flag('+'):
		if st := f.stageName(); st != "" {
			fmt.Fprintf(s, "%s\nstage: %s\n%s", f.Error(), st, f.Stack())
		} else {
			fmt.Fprintf(s, "%s\n%s", f.Error(), f.Stack())
		}
	case verb == 'q':
		fmt.Fprintf(s, "%q", f.Error())
	default:
		fmt.Fprint(s, f.Error())
	}
}
