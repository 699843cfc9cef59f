package deferred

import (
	"log/slog"
	"runtime"
	"sync/atomic"
)

var unhandledHandler atomic.Pointer[func(*Failure)]

// defaultUnhandled logs one structured error, Twisted's "Unhandled error in
// Deferred".
func defaultUnhandled(f *Failure) {
	slog.Error("deferred: unhandled error in Deferred", "error", f.Error(), "stack", f.Stack())
}

// SetUnhandledHandler sets the function that gets the failure of each
// Deferred that became unreachable while its chain ended in a failure no
// stage handled, and returns the previous one. A nil h restores the default,
// which logs one log/slog error with the failure and its stack. The handler
// runs on a runtime goroutine after a garbage collection finds the
// Deferred unreachable, so it must not block for long.
func SetUnhandledHandler(h func(*Failure)) (previous func(*Failure)) {
	var p *func(*Failure)
	if h != nil {
		p = &h
	}
	old := unhandledHandler.Swap(p)
	if old == nil {
		return defaultUnhandled
	}
	return *old
}

func reportUnhandled(f *Failure) {
	if h := unhandledHandler.Load(); h != nil {
		(*h)(f)
		return
	}
	defaultUnhandled(f)
}

// armCleanupLocked arranges for d's current failure to be reported if d
// becomes unreachable still holding it. (d.mu is held, or d is not shared
// yet.)
func (d *Deferred[T]) armCleanupLocked() {
	d.extLocked().cleanup = runtime.AddCleanup(d, reportUnhandled, d.failure)
	d.set(cleanupArmed, true)
}

// disarmCleanupLocked undoes armCleanupLocked: a stage is about to see the
// failure, or it has moved elsewhere.
func (d *Deferred[T]) disarmCleanupLocked() {
	d.set(cleanupArmed, false)
	d.x.cleanup.Stop()
}
