package deferred

// This file owns tracking: which Deferreds are pending (the runtime/pprof
// profile and the listing), and the report of a tracked Deferred that was
// collected before it fired.

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// PendingProfileName is the name of the runtime/pprof profile of pending
// Deferreds, by the stack that created them: with net/http/pprof it is at
// /debug/pprof/github.com/deferred-go/deferred.pending, and go tool pprof
// reads it like any other profile. SetPendingProfileFraction turns it on.
const PendingProfileName = "github.com/deferred-go/deferred.pending"

// ErrNeverFired is matched (errors.Is) by the failure reported to the
// unhandled handler for a tracked Deferred that had stages and was
// collected before it fired: its stages can never run, which is most often
// a producer that forgot to fire it. The failure's Stack is where the
// Deferred was created. A Deferred is tracked if the pending profile
// sampled it, or if it was created with SetDebugging(true). One lost chain
// gets one report: a Deferred made by Then, Chain's target, or a branch
// made by Observe is not reported if the tracked Deferred it comes from is.
var ErrNeverFired = errors.New("deferred: collected before it fired, with stages that can never run")

var (
	pendingRate atomic.Int64
	// tracking is debugging || pendingRate != 0: the one check a new
	// Deferred makes.
	tracking atomic.Bool

	pendingProfile = pprof.NewProfile(PendingProfileName)

	// pendingSet holds the tracked Deferreds that have not fired, for the
	// listing.
	pendingMu  sync.Mutex
	pendingSet = map[*pending]struct{}{}
)

// SetPendingProfileFraction records, on average, 1 in rate of the
// Deferreds created from now on in the profile named PendingProfileName,
// with the stack that created them, until they fire; they are then tracked
// (see ErrNeverFired and WritePending). 0, the default, records none and
// costs one atomic load per new Deferred; 1 records every one. It returns
// the previous rate, and panics if rate is negative.
func SetPendingProfileFraction(rate int) (previous int) {
	if rate < 0 {
		panic(fmt.Sprintf("deferred: SetPendingProfileFraction called with a negative rate (%d)", rate))
	}
	prev := pendingRate.Swap(int64(rate))
	pendingSampleIn.Store(sampleInterval(int64(rate)))
	updateTracking()
	return int(prev)
}

func updateTracking() { tracking.Store(debugging.Load() || pendingRate.Load() != 0) }

// pendingSampleIn counts down the new Deferreds to the next one the
// profile samples, as the runtime counts down allocated bytes for
// MemProfileRate: one atomic add a Deferred, where drawing a random number
// for each cost a tenth of Chain3.
var pendingSampleIn atomic.Int64

// sampleInterval draws the number of new Deferreds until the next sample:
// 1 at rate 1, otherwise exponentially distributed with mean rate, so that
// no pattern of creation hides from the profile.
func sampleInterval(rate int64) int64 {
	if rate <= 1 {
		return 1
	}
	return 1 + int64(rand.ExpFloat64()*float64(rate-1))
}

// sampleNew is what a new Deferred asks while tracking is on: whether it is
// tracked at all, and whether the profile samples it.
func sampleNew() (track, sampled bool) {
	hit := pendingSampleIn.Add(-1) <= 0
	return hit || debugging.Load(), hit
}

// A pending is a tracked Deferred's record. It holds no pointer to the
// Deferred, so that the profile, which keeps it, and the cleanup that
// reports a lost Deferred, whose argument it is, do not keep the Deferred
// alive.
type pending struct {
	created  time.Time
	typ      func() string // T's name, formatted when needed
	stack    trace         // where it was created
	sampled  bool          // in the profile
	stages   atomic.Bool
	upstream atomic.Bool // another tracked Deferred fires it and reports a lost chain
	// describe reports the Deferred's state and queued stages, through a
	// weak pointer; ok is false once it is gone.
	describe func() (state string, stages int, ok bool)
}

// track records d, new and not shared yet, as sampleNew decided; skip is
// the number of frames between track and the code that created d.
func (d *Deferred[T]) track(skip int, hit bool) {
	dbg := debugging.Load()
	sampled := false
	if hit {
		if r := pendingRate.Load(); r > 0 {
			sampled = true
			pendingSampleIn.Store(sampleInterval(r))
		}
	}
	if !dbg && !sampled {
		return
	}
	p := &pending{created: time.Now(), typ: typeName[T], stack: callers(skip + 2), sampled: sampled}
	r := d.rareLocked()
	if dbg {
		r.debug = &debugInfo{created: p.stack.String()}
	}
	wp := weak.Make(d)
	p.describe = func() (string, int, bool) {
		d := wp.Value()
		if d == nil {
			return "", 0, false
		}
		return d.describe()
	}
	r.pending = p
	r.lost = runtime.AddCleanup(d, lostDeferred, p)
	if sampled {
		// One more frame than runtime.Caller's skip would say: the
		// profile's stack then starts at the code that created d (checked
		// by TestPendingProfileThroughNetHTTPPprofAndGoToolPprof).
		pendingProfile.Add(p, skip+1)
	}
	pendingMu.Lock()
	pendingSet[p] = struct{}{}
	pendingMu.Unlock()
}

// untrack forgets p: its Deferred fired, or was collected.
func (p *pending) untrack() {
	if p.sampled {
		pendingProfile.Remove(p)
	}
	pendingMu.Lock()
	delete(pendingSet, p)
	pendingMu.Unlock()
}

// untrackLocked is untrack for d, which fires now. d.x.rare is not nil.
func (d *Deferred[T]) untrackLocked() {
	r := d.x.rare
	if p := r.pending; p != nil {
		r.pending = nil
		r.lost.Stop()
		p.untrack()
	}
}

// notePendingStageLocked notes that tracked d has a stage, so that it is
// reported if it is lost. add and pushLocked call it for the first stage
// of a Deferred that has side storage.
func (d *Deferred[T]) notePendingStageLocked() {
	if r := d.x.rare; r != nil && r.pending != nil {
		r.pending.stages.Store(true)
	}
}

// trackedLocked returns d's record if it is tracked and has not fired.
func (d *Deferred[T]) trackedLocked() *pending {
	if d.x == nil || d.x.rare == nil {
		return nil
	}
	return d.x.rare.pending
}

// fedBy notes that from, another Deferred, fires d (d is made by Then, a
// branch of from, or Chain's target): if both are tracked, a lost chain is
// reported by from alone. For String and the listing, d also says it waits
// on from.
func (d *Deferred[T]) fedBy(from trackedDeferred, how string) {
	up := from.trackedPending() != nil
	d.mu.Lock()
	r := d.rareLocked()
	r.waitsOn = fmt.Sprintf("waiting on %s (%s)", from.label(), how)
	if p := r.pending; p != nil && up {
		p.upstream.Store(true)
	}
	d.mu.Unlock()
}

// A trackedDeferred is a Deferred of any type, as fedBy sees its source.
type trackedDeferred interface {
	trackedPending() *pending
	label() string
}

func (d *Deferred[T]) trackedPending() *pending {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.trackedLocked()
}

func (d *Deferred[T]) label() string {
	return fmt.Sprintf("Deferred[%s] at %p", typeName[T](), d)
}

// describe returns d's state for the listing: pending, paused, or waiting
// on another Deferred, and how many stages it has queued.
func (d *Deferred[T]) describe() (string, int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	state := "pending"
	switch {
	case d.paused.Load() > 0:
		state = "paused"
	case d.x != nil && d.x.rare != nil && d.x.rare.waitsOn != "":
		state = d.x.rare.waitsOn
	}
	return state, int(d.n - d.head), true
}

// lostDeferred is the cleanup of a tracked Deferred: collected before it
// fired. With stages, and unless the Deferred feeding it reports the
// chain, it goes to the unhandled handler as a Failure matching
// ErrNeverFired, whose stack is where it was created.
func lostDeferred(p *pending) {
	p.untrack()
	if !p.stages.Load() || p.upstream.Load() {
		return
	}
	f := failureWithPCs(p.stack.pcs, p.stack.skip+1)
	f.err = &neverFiredError{typ: "Deferred[" + p.typ() + "]", site: p.stack.site()}
	reportUnhandled(f)
}

// neverFiredError is the error of a lost Deferred's report.
type neverFiredError struct{ typ, site string }

func (e *neverFiredError) Error() string {
	return fmt.Sprintf("deferred: %s created at %s was collected before it fired, with stages that can never run", e.typ, e.site)
}

func (e *neverFiredError) Is(target error) bool { return target == ErrNeverFired }

// WritePending writes to w one line per tracked Deferred that has not
// fired, oldest first: its type and address, its state (pending, paused,
// or waiting on another Deferred), its age, how many stages it has queued,
// and where it was created. Tracked Deferreds are those the pending profile
// sampled (SetPendingProfileFraction) and, with SetDebugging(true), every
// one. It is meant for logs and tests; the profile is for go tool pprof.
func WritePending(w io.Writer) error {
	pendingMu.Lock()
	ps := make([]*pending, 0, len(pendingSet))
	for p := range pendingSet {
		ps = append(ps, p)
	}
	pendingMu.Unlock()
	slices.SortFunc(ps, func(a, b *pending) int { return cmp.Compare(a.created.UnixNano(), b.created.UnixNano()) })
	now := time.Now()
	n := 0
	for _, p := range ps {
		state, stages, ok := p.describe()
		if !ok {
			continue // collected meanwhile
		}
		n++
		if _, err := fmt.Fprintf(w, "Deferred[%s] %s, %v old, %d stages, created at %s\n",
			p.typ(), state, now.Sub(p.created).Round(time.Millisecond), stages, p.stack.site()); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%d pending Deferreds tracked\n", n)
	return err
}

// String formats t as Stack does: one "function\n\tfile:line" entry per
// frame.
func (t trace) String() string {
	var b []byte
	t.each(func(fr runtime.Frame) {
		b = fmt.Appendf(b, "%s\n\t%s:%d\n", fr.Function, fr.File, fr.Line)
	})
	return string(b)
}

// site returns the first frame of t outside the library, as
// "function (file:line)".
func (t trace) site() string {
	s := "unknown"
	done := false
	t.each(func(fr runtime.Frame) {
		if !done && !inLibrary(fr.File) {
			s = fmt.Sprintf("%s (%s:%d)", fr.Function, fr.File, fr.Line)
			done = true
		}
	})
	return s
}

// libraryDir is the directory of this package's files.
var libraryDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

// inLibrary reports whether file is one of this package's own files (not
// a test file, not a subpackage).
func inLibrary(file string) bool {
	return filepath.Dir(file) == libraryDir && !strings.HasSuffix(file, "_test.go")
}
