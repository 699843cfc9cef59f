package deferred

// This file speaks Go's error vocabulary: cancellations match
// context.Canceled and timeouts match context.DeadlineExceeded and report
// Timeout() == true, so that code written for context, errgroup or
// net/http reads the library's failures the way it reads theirs.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrCancelled is matched (errors.Is) by the failure of a Deferred that was
// cancelled and whose canceller did not fire it. ErrCancelled itself
// matches context.Canceled, so errors.Is(err, context.Canceled) holds for
// every cancellation failure as well.
var ErrCancelled error = &contextSentinel{msg: "deferred: cancelled", match: context.Canceled}

// ErrTimeout is matched (errors.Is) by the failure of a Deferred that
// AddTimeout or AddTimeoutFunc cancelled because its result did not come
// in time, by that of web.WithTimeout, and by that of a Deferred that
// CancelWhen cancelled because its context's deadline passed. It replaces
// the ErrCancelled failure of that cancellation, as Twisted's addTimeout
// turns CancelledError into TimeoutError: a timeout failure does not match
// ErrCancelled.
//
// ErrTimeout itself matches context.DeadlineExceeded and has a Timeout
// method that reports true, as net.Error's does. The error inside the
// failure of AddTimeout, AddTimeoutFunc and web.WithTimeout is a
// [*TimeoutError]; the one inside CancelWhen's wraps ErrTimeout and
// context.Cause of its context.
var ErrTimeout error = &timeoutSentinel{contextSentinel{msg: "deferred: timed out", match: context.DeadlineExceeded}}

// A contextSentinel is a sentinel error that also matches one of context's.
type contextSentinel struct {
	msg   string
	match error
}

func (e *contextSentinel) Error() string        { return e.msg }
func (e *contextSentinel) Is(target error) bool { return target == e.match }

// A timeoutSentinel is a contextSentinel that is a timeout.
type timeoutSentinel struct{ contextSentinel }

func (e *timeoutSentinel) Timeout() bool { return true }

// A TimeoutError is the error inside the failure of a timeout: AddTimeout's,
// AddTimeoutFunc's and web.WithTimeout's. It says what timed out and after
// how long, matches ErrTimeout and context.DeadlineExceeded (errors.Is),
// and its Timeout method reports true. errors.As reaches it through a
// [*Failure].
type TimeoutError struct {
	Op    string        // what timed out, e.g. "deferred: AddTimeout" or "web: GET https://example.com/"
	After time.Duration // the timeout that passed
}

// Error reports what timed out and after how long, e.g.
// "deferred: AddTimeout: timed out after 5s".
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: timed out after %v", e.Op, e.After)
}

// Unwrap returns ErrTimeout.
func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// Timeout reports true: the error is a timeout.
func (e *TimeoutError) Timeout() bool { return true }

// Timeout reports whether f is a timeout: whether the first error in the
// chain f wraps that has a Timeout method (as net.Error, *url.Error,
// context.DeadlineExceeded and [*TimeoutError] have) reports true. It is
// *url.Error's Timeout, seeing through wrapping as errors.As does, so that
// the error Await returns answers a type assertion
//
//	if te, ok := err.(interface{ Timeout() bool }); ok && te.Timeout() { … }
//
// the way a net/http error does. Every failure of AddTimeout,
// AddTimeoutFunc (unless its function changes it) and web.WithTimeout is a
// timeout, and so is CancelWhen's when its context's deadline passed; a
// cancellation is not. A *Failure has no Temporary method, so
// it is not a net.Error.
func (f *Failure) Timeout() bool {
	var t interface{ Timeout() bool }
	// From f.err, not f: f's own Timeout method would match itself.
	return f != nil && errors.As(f.err, &t) && t.Timeout()
}
