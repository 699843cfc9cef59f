package deferred

import (
	"log/slog"
	"runtime"
	"sync/atomic"
)

var unhandledHandler atomic.Pointer[func(*Failure)]

// defaultUnhandled logs one structured error, Twisted's "Unhandled error in
// Deferred": the error, the stage that failed, the first frame of the
// stack, and then the stack. In a terminal the first of its lines says
// what failed, where.
func defaultUnhandled(f *Failure) {
	attrs := []any{"error", f.Error()}
	if st := f.stageName(); st != "" {
		attrs = append(attrs, "stage", st)
	}
	if at := f.firstFrame(); at != "" {
		attrs = append(attrs, "at", at)
	}
	attrs = append(attrs, "stack", f.Stack())
	slog.Error("deferred: unhandled error in Deferred", attrs...)
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

// A Failure may be held by several Deferreds at once: a Deferred and the
// branches that Observe made of it, or an Await that returned it. It is
// reported once at most, and not at all if any of them handled it.
const (
	// markHandled: a stage that got the Failure returned another result,
	// an Await returned it, or a combinator consumed it.
	markHandled uint32 = 1 << iota
	// markReported: it went to the unhandled handler.
	markReported
)

// markHandledIfReplaced marks f handled if a stage that got it returned
// the result (_, nf): anything but f itself passing on. f may be nil.
func markHandledIfReplaced(f, nf *Failure) {
	if f != nil && nf != f {
		f.marks.Or(markHandled)
	}
}

// reportUnhandled gives f to the unhandled handler, unless it was handled
// or reported already.
func reportUnhandled(f *Failure) { reportUnhandledWith(f, nil) }

// unhandledReport is the argument of a Deferred's cleanup: its failure,
// and with SetDebugging(true) where the Deferred was created and first
// fired.
type unhandledReport struct {
	f   *Failure
	dbg *debugInfo
}

func reportUnhandledFrom(r unhandledReport) { reportUnhandledWith(r.f, r.dbg) }

// reportUnhandledWith is reportUnhandled for a Deferred with SetDebugging's
// records, dbg (or nil): the handler gets a Failure whose message adds
// them, as Twisted's "(debug: C: Deferred was created: … I: First Invoker
// was: …)", and which wraps f.
func reportUnhandledWith(f *Failure, dbg *debugInfo) {
	for {
		m := f.marks.Load()
		if m != 0 {
			return // handled, or reported by another holder
		}
		if f.marks.CompareAndSwap(m, markReported) {
			break
		}
	}
	if dbg != nil {
		f = withDebugNote(f, dbg)
	}
	if h := unhandledHandler.Load(); h != nil {
		(*h)(f)
		return
	}
	defaultUnhandled(f)
}

// withDebugNote returns a Failure like f whose message adds dbg.
func withDebugNote(f *Failure, dbg *debugInfo) *Failure {
	g := &Failure{err: &debugNote{f: f, dbg: dbg}, pcs: f.pcs, npcs: f.npcs, skip: f.skip,
		stage: f.stage, panicked: f.panicked, value: f.value}
	g.marks.Store(markReported)
	return g
}

// debugNote is the error of withDebugNote's Failure.
type debugNote struct {
	f   *Failure
	dbg *debugInfo
}

func (e *debugNote) Error() string {
	fired := e.dbg.fired
	if fired == "" {
		fired = "(never fired)\n"
	}
	return e.f.Error() + "\n(debug: C: Deferred was created:\n" + e.dbg.created + "I: First Invoker was:\n" + fired + ")"
}

func (e *debugNote) Unwrap() error { return e.f }

// armCleanupLocked arranges for d's current failure to be reported if d
// becomes unreachable still holding it. (d.mu is held, or d is not shared
// yet.)
func (d *Deferred[T]) armCleanupLocked() {
	if dbg := d.debug(); dbg != nil {
		d.extLocked().cleanup = runtime.AddCleanup(d, reportUnhandledFrom, unhandledReport{d.failure, dbg})
	} else {
		d.extLocked().cleanup = runtime.AddCleanup(d, reportUnhandled, d.failure)
	}
	d.set(cleanupArmed, true)
}

// disarmCleanupLocked undoes armCleanupLocked: a stage is about to see the
// failure, or it has moved elsewhere.
func (d *Deferred[T]) disarmCleanupLocked() {
	d.set(cleanupArmed, false)
	d.x.cleanup.Stop()
}
