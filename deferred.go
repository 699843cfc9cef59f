package deferred

// This file owns the Deferred type, its state, and the producer's side:
// creating a Deferred and firing it. The stages are in stage.go, the loop
// that runs them in chain.go.

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// ErrAlreadyCalled is matched (errors.Is) by the error that Callback and
// Errback return when the Deferred has already fired.
var ErrAlreadyCalled = errors.New("deferred: already called")

// ErrNilError is matched by the failure of a Deferred on which Errback was
// called with a nil error or a nil *Failure, and by that of Fail(nil). The
// Deferred fails: a nil error never reads as success.
var ErrNilError = errors.New("deferred: Errback called with a nil error")

// A Deferred is a result of type T that is not there yet, and the chain of
// stages that will process it. Create one with New, NewWithCanceller,
// Succeed, Fail or Maybe. The zero Deferred is ready to use: it is a
// pending Deferred with no canceller, as New returns (without the records
// of SetDebugging).
//
// All methods may be called concurrently from any goroutine. The stages of
// one Deferred never run concurrently and always run in the order they were
// added. No lock is held while a stage runs, so a stage may call any method
// of its own Deferred. If a goroutine adds a stage while another goroutine is
// running the chain, the adding goroutine does not wait: the stage is queued
// and the running goroutine runs it.
//
// A Deferred must not be copied after first use. Its methods panic, naming
// themselves, when called on a nil *Deferred (String returns a placeholder
// instead).
type Deferred[T any] struct {
	mu     sync.Mutex
	paused atomic.Int32 // changed under mu; read without it between stages
	head   int32        // stages before head have run
	n      int32        // stages queued: inline[:min(n, 3)], then x.spill
	flags  flags
	kinds  [inlineStages]stageKind // what each inline pointer is

	value   T
	failure *Failure

	inline [inlineStages]unsafe.Pointer // the first stages; the rest are in x.spill

	// aux is the canceller (a func(*Deferred[T])) until d fires, and then
	// the Deferred a stage returned, while d's chain waits for it. The two
	// never overlap: firing drops the canceller, and only stages, which run
	// after the firing, return Deferreds. Sharing the word keeps a
	// Deferred[int] at 80 bytes. Use cancellerLocked and waitingLocked.
	aux unsafe.Pointer
	x   *extra[T] // what few Deferreds need, kept out of the common size
}

// flags are a Deferred's boolean states, one bit each, in one byte. They
// change under d.mu.
type flags uint8

const (
	// called: d has fired (Callback, Errback, Cancel).
	called flags = 1 << iota
	// running: a goroutine is running d's stages; only it runs them, and
	// only it moves head. Everybody else queues stages and leaves.
	running
	// cleanupArmed: d holds a failure no stage has seen, and x.cleanup
	// reports it if d is collected (unhandled.go).
	cleanupArmed
	// cancelled: Cancel has run on it (once).
	cancelled
	// suppressAlreadyCalled: the producer's next firing is expected, after
	// a Cancel that had no canceller to tell it, and is ignored.
	suppressAlreadyCalled
	// handedOver: Then or ThenDeferred took its chain over.
	handedOver
	// cancelsSource: made by Then or ThenDeferred. Until it fires, aux
	// points to the source (a cancelUpstream in thenBase), not to a
	// canceller, and Cancel cancels the source.
	cancelsSource
	// waitedFor: another Deferred waits for this one's result (nest.go).
	waitedFor
)

func (d *Deferred[T]) is(f flags) bool { return d.flags&f != 0 }

func (d *Deferred[T]) set(f flags, on bool) {
	if on {
		d.flags |= f
	} else {
		d.flags &^= f
	}
}

// cancellerLocked returns d's canceller, or nil. d has not fired.
func (d *Deferred[T]) cancellerLocked() func(*Deferred[T]) {
	return ptrFunc[func(*Deferred[T])](d.aux)
}

// waitingLocked returns the Deferred d's chain waits for, or nil.
func (d *Deferred[T]) waitingLocked() *Deferred[T] {
	if !d.is(called) {
		return nil
	}
	return (*Deferred[T])(d.aux)
}

// setWaitingLocked sets the Deferred d's chain waits for (nil: none). d has
// fired.
func (d *Deferred[T]) setWaitingLocked(w *Deferred[T]) { d.aux = unsafe.Pointer(w) }

// extra holds the fields of a Deferred that only some need.
type extra[T any] struct {
	cleanup runtime.Cleanup // reports an unhandled failure
	rare    *rareExtra      // what fewer still need: SetDebugging's records, Done's channel
	spill   []stage[T]      // stages past the inline ones: block, or what it grew into
	block   [spillBlock]stage[T]
}

// onlyStages reports whether x, the side storage of a Deferred with flags
// f, holds nothing but queued stages: no armed unhandled-failure report and
// no rare fields. The runner lets such storage go once its stages have run.
func (x *extra[T]) onlyStages(f flags) bool { return x.rare == nil && f&cleanupArmed == 0 }

// rareExtra holds what only Deferreds made with SetDebugging(true), or
// asked for Done before they held a result, need.
type rareExtra struct {
	debug   *debugInfo      // with SetDebugging(true)
	done    chan struct{}   // Done's channel, until d holds its result
	pending *pending        // tracked (pending.go), until d fires
	lost    runtime.Cleanup // reports d if it is collected before it fires
	waitsOn string          // "waiting on …": the Deferred that fires d, for String
}

// rareLocked returns d's rare fields, making them on first use. (d.mu is
// held, or d is not shared yet.)
func (d *Deferred[T]) rareLocked() *rareExtra {
	x := d.extLocked()
	if x.rare == nil {
		x.rare = new(rareExtra)
	}
	return x.rare
}

// spillBlock is how many stages past the inline ones fit in extra itself,
// so that a 4-stage chain costs two allocations. One makes extra[T] 64
// bytes, and a 4-stage chain then allocates as many bytes as the floor's
// in bench/ (144). The garbage collector's work grows with the bytes
// allocated: a block of five (128 bytes) made 4-stage chains 1.15× slower
// in one run, with no gain in instructions; a block of two made them 3%
// slower (alternating runs) for a 5-stage chain 0.77× as costly. Past the
// block the spill grows to spillGrowth (4), then doubles (growSpill): a
// 5-stage chain then costs about 1.10× the floor and an 8-stage one 0.91×,
// where growing to 8 at once left 5-stage chains at 1.17×.
//
// When the spill grows, the block keeps copies of the stages it held: the
// runner clears a stage's copy there too once it has run (clearRunLocked).
const spillBlock = 1

// extLocked returns d's extra fields, making them on first use. (d.mu is
// held, or d is not shared yet.)
func (d *Deferred[T]) extLocked() *extra[T] {
	if d.x == nil {
		d.x = new(extra[T])
	}
	return d.x
}

func (d *Deferred[T]) debug() *debugInfo {
	if d.x == nil || d.x.rare == nil {
		return nil
	}
	return d.x.rare.debug
}

// New returns a Deferred that has not fired. The producer fires it with
// Callback or Errback.
func New[T any]() *Deferred[T] {
	d := new(Deferred[T])
	if tracking.Load() {
		if track, sampled := sampleNew(); track {
			d.track(2, sampled)
		}
	}
	return d
}

// newFired returns a new Deferred for Succeed, Fail and Maybe, which fire
// it at once: it is never pending, so it is not tracked, but SetDebugging
// records where it was created.
func newFired[T any]() *Deferred[T] {
	d := new(Deferred[T])
	if debugging.Load() {
		d.rareLocked().debug = &debugInfo{created: stackString(4)}
	}
	return d
}

// NewWithCanceller returns a Deferred that has not fired and whose Cancel
// calls canceller, at most once and only if the Deferred has not fired yet.
// The canceller should stop the work and may fire the Deferred; if it does
// not, Cancel fails the Deferred with ErrCancelled. The Deferred drops the
// canceller when it fires. A nil canceller is the same as New.
func NewWithCanceller[T any](canceller func(*Deferred[T])) *Deferred[T] {
	d := new(Deferred[T])
	if tracking.Load() {
		if track, sampled := sampleNew(); track {
			d.track(2, sampled)
		}
	}
	d.aux = funcPtr(canceller)
	return d
}

// Succeed returns a Deferred already fired with v.
func Succeed[T any](v T) *Deferred[T] {
	d := newFired[T]()
	d.flags, d.value = called, v
	return d
}

// Fail returns a Deferred already failed with err (wrapped in a Failure
// unless it is one). A nil err fails with ErrNilError, and so does a nil
// *Failure.
func Fail[T any](err error) *Deferred[T] {
	d := newFired[T]()
	d.flags, d.failure = called, errbackFailure(err)
	d.armCleanupLocked()
	return d
}

// Maybe calls f now and returns a Deferred fired with its result: its value,
// its error as a Failure, or the Failure of its panic. It is Twisted's
// maybeDeferred for functions that return plain values. Maybe panics if f is
// nil.
func Maybe[T any](f func() (T, error)) *Deferred[T] {
	if f == nil {
		panic("deferred: Maybe called with a nil function")
	}
	d := newFired[T]()
	v, fl := callRecovering(f)
	d.flags, d.value, d.failure = called, v, fl
	if fl != nil {
		d.armCleanupLocked()
	}
	return d
}

// Callback fires d with the value v and runs its chain on the calling
// goroutine. If d has already fired, Callback changes nothing and returns an
// error matching ErrAlreadyCalled — except for the first call after Cancel
// failed a d that has no canceller, which is ignored and returns nil: that
// producer was never told to stop, and should not fail for finishing. (A
// canceller is expected to stop its producer, so after it a late firing is
// an error as usual, as in Twisted.)
func (d *Deferred[T]) Callback(v T) error {
	mustNotBeNil(d, "Callback")
	d.mu.Lock()
	if d.is(called) {
		return d.calledAgainUnlock()
	}
	d.fireLocked(v, nil, 3)
	d.runFiredAndUnlock()
	return nil
}

// Errback fires d with the failure err and runs its chain on the calling
// goroutine. err is wrapped in a Failure (recording the caller's stack)
// unless it already is one. A nil err, or a nil *Failure, is a mistake: d
// fails with a Failure matching ErrNilError. If d has already fired, Errback behaves as Callback
// does.
func (d *Deferred[T]) Errback(err error) error {
	mustNotBeNil(d, "Errback")
	f := errbackFailure(err)
	d.mu.Lock()
	if d.is(called) {
		return d.calledAgainUnlock()
	}
	d.fireLocked(zeroOf[T](), f, 3)
	d.runFiredAndUnlock()
	return nil
}

// errbackFailure is the Failure for Errback(err) and Fail(err): a nil err
// becomes ErrNilError, never a success.
func errbackFailure(err error) *Failure {
	if isNil(err) {
		err = ErrNilError
	}
	return wrapFailure(err, 5)
}

// calledAgainUnlock answers a second Callback or Errback, and unlocks d.mu.
func (d *Deferred[T]) calledAgainUnlock() error {
	if d.is(suppressAlreadyCalled) {
		d.set(suppressAlreadyCalled, false)
		d.mu.Unlock()
		return nil
	}
	err := d.alreadyCalledErrorLocked()
	d.mu.Unlock()
	return err
}

// fireLocked records the result; skip is the stack depth of the firing
// call, for SetDebugging. The rare work is in noteFiringLocked.
func (d *Deferred[T]) fireLocked(v T, f *Failure, skip int) {
	if d.flags&cancelsSource != 0 || d.x != nil && d.x.rare != nil {
		d.noteFiringLocked(skip + 1)
	}
	d.flags |= called
	d.value, d.failure = v, f
	d.aux = nil // the canceller; nothing waits yet
}

// noteFiringLocked does what fireLocked must do for a Deferred made by Then
// or with SetDebugging on.
func (d *Deferred[T]) noteFiringLocked(skip int) {
	if d.is(cancelsSource) {
		// Then's Deferred: drop its tie to the source, which a Deferred
		// kept after firing would otherwise keep alive, and the source its
		// own, down a whole chain of Thens.
		*(*cancelUpstream)(d.aux) = nil
	}
	if dbg := d.debug(); dbg != nil {
		dbg.fired = stackString(skip + 1)
	}
	if d.x != nil && d.x.rare != nil {
		d.untrackLocked()
	}
}

// mustNotBeNil panics, naming method, on a nil receiver: a clearer message
// than the nil dereference that would follow.
func mustNotBeNil[T any](d *Deferred[T], method string) {
	if d == nil {
		panicNilReceiver(method)
	}
}

func panicNilReceiver(method string) {
	panic("deferred: " + method + " called on a nil *Deferred")
}

func zeroOf[T any]() (z T) { return z }
