// Package deferred is a Go port of Twisted's Deferred: a Deferred[T] stands
// for a result that is not there yet, and holds a chain of stages that run
// when it arrives.
//
// A consumer adds paired stages: callbacks, which see a value, and errbacks,
// which see a *Failure. A producer fires the Deferred once, with Callback(v)
// or Errback(err). The stages then run in the order they were added, each
// result feeding the next:
//
//   - a callback's (v, nil) goes to the next callback;
//   - a callback's (_, err) goes to the next errback, as a *Failure;
//   - an errback's (v, nil) recovers: the next callback gets v;
//   - an errback's (_, err) keeps failing;
//   - a panic in a stage is recovered and becomes a *Failure holding the panic
//     value and the stack of the panic site;
//   - a stage that returns a *Deferred (AddCallbackDeferred, ThenDeferred, …)
//     pauses the chain until that Deferred has a result, which then goes on
//     down the chain. This is done in a loop, not by recursion, so chains of
//     any length and depth run on a small goroutine stack.
//
// Nothing here starts a goroutine. Stages run on the goroutine that fires the
// Deferred or, if it has already fired, on the goroutine that adds them,
// exactly as in Twisted. Every method may be called from any goroutine; see
// Deferred for the guarantees.
//
// Stages keep the type of their Deferred. To change it, use Then or
// ThenDeferred, which hand the chain over to a new *Deferred[U].
//
// A failure that nobody handles is not lost: when a Deferred whose chain ends
// in a failure becomes unreachable, the failure goes to the handler set with
// SetUnhandledHandler (by default, one log/slog error with its stack).
package deferred

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"
)

// ErrAlreadyCalled is matched (errors.Is) by the error that Callback and
// Errback return when the Deferred has already fired.
var ErrAlreadyCalled = errors.New("deferred: already called")

// ErrCancelled is matched (errors.Is) by the failure of a Deferred that was
// cancelled and whose canceller did not fire it.
var ErrCancelled = errors.New("deferred: cancelled")

// ErrNilError is matched by the failure of a Deferred on which Errback was
// called with a nil error. The Deferred fails: a nil error never reads as
// success.
var ErrNilError = errors.New("deferred: Errback called with a nil error")

// A Deferred is a result of type T that is not there yet, and the chain of
// stages that will process it. Create one with New, NewWithCanceller,
// Succeed, Fail or Maybe; the zero Deferred is not usable.
//
// All methods may be called concurrently from any goroutine. The stages of
// one Deferred never run concurrently and always run in the order they were
// added. No lock is held while a stage runs, so a stage may call any method
// of its own Deferred. If a goroutine adds a stage while another goroutine is
// running the chain, the adding goroutine does not wait: the stage is queued
// and the running goroutine runs it.
//
// A Deferred must not be copied. Its methods panic, naming themselves, when
// called on a nil *Deferred (String returns a placeholder instead).
type Deferred[T any] struct {
	mu     spinLock
	paused atomic.Int32 // changed under mu; read without it between stages
	head   int32        // stages before head have run
	n      int32        // stages queued: inline[:min(n, 3)], then x.spill

	called       bool
	running      bool
	cleanupArmed bool
	flags        flags // the rarer states
	kinds        [inlineStages]stageKind

	value   T
	failure *Failure

	inline [inlineStages]unsafe.Pointer // the first stages (kinds says what they are); the rest are in x.spill

	// aux is the canceller (a func(*Deferred[T])) until d fires, and then
	// the Deferred a stage returned, while d's chain waits for it. The two
	// never overlap: firing drops the canceller, and only stages, which run
	// after the firing, return Deferreds. Sharing the word keeps a
	// Deferred[int] at 80 bytes. Use canceller, waiting and setWaiting.
	aux unsafe.Pointer
	x   *extra[T] // what few Deferreds need, kept out of the common size
}

// canceller returns d's canceller, or nil. d has not fired, and d.mu is
// held.
func (d *Deferred[T]) canceller() func(*Deferred[T]) { return ptrFunc[func(*Deferred[T])](d.aux) }

// waiting returns the Deferred d's chain waits for, or nil. d.mu is held.
func (d *Deferred[T]) waiting() *Deferred[T] {
	if !d.called {
		return nil
	}
	return (*Deferred[T])(d.aux)
}

// setWaiting sets the Deferred d's chain waits for (nil: none). d has
// fired, and d.mu is held.
func (d *Deferred[T]) setWaiting(w *Deferred[T]) { d.aux = unsafe.Pointer(w) }

// extra holds the fields of a Deferred that only some need.
type extra[T any] struct {
	cleanup runtime.Cleanup // reports an unhandled failure
	debug   *debugInfo      // with SetDebugging(true)
	spill   []stage[T]      // stages past the inline ones
}

// flags are a Deferred's rarer states, one bit each, kept in one byte so
// that a Deferred[int] fits 96 bytes. They change under d.mu.
type flags uint8

const (
	// cancelled: Cancel has run on it (once).
	cancelled flags = 1 << iota
	// suppressAlreadyCalled: the producer's next firing is expected, after
	// a Cancel that had no canceller to tell it, and is ignored.
	suppressAlreadyCalled
	// handedOver: Then or ThenDeferred took its chain over.
	handedOver
	// cancelUpstream: made by Then or ThenDeferred. Until it fires, aux
	// points to the source (an interface{ Cancel() } in thenBase), not to
	// a canceller, and Cancel cancels the source.
	cancelUpstream
	// waitedFor: another Deferred waits for this one's result (link).
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

// ext returns d's extra fields, making them on first use. d.mu is held (or
// d is not shared yet).
func (d *Deferred[T]) ext() *extra[T] {
	if d.x == nil {
		d.x = new(extra[T])
	}
	return d.x
}

func (d *Deferred[T]) debug() *debugInfo {
	if d.x == nil {
		return nil
	}
	return d.x.debug
}

// New returns a Deferred that has not fired. The producer fires it with
// Callback or Errback.
func New[T any]() *Deferred[T] {
	d := new(Deferred[T])
	if debugging.Load() {
		d.ext().debug = &debugInfo{created: stackString(3)}
	}
	return d
}

// NewWithCanceller returns a Deferred that has not fired and whose Cancel
// calls canceller, at most once and only if the Deferred has not fired yet.
// The canceller should stop the work and may fire the Deferred; if it does
// not, Cancel fails the Deferred with ErrCancelled. The Deferred drops the
// canceller when it fires. A nil canceller is the same as New.
func NewWithCanceller[T any](canceller func(*Deferred[T])) *Deferred[T] {
	d := New[T]()
	d.aux = funcPtr(canceller)
	return d
}

// Succeed returns a Deferred already fired with v.
func Succeed[T any](v T) *Deferred[T] {
	d := New[T]()
	d.called, d.value = true, v
	return d
}

// Fail returns a Deferred already failed with err (wrapped in a Failure
// unless it is one). A nil err fails with ErrNilError.
func Fail[T any](err error) *Deferred[T] {
	d := New[T]()
	d.called, d.failure = true, errbackFailure(err)
	d.armCleanup()
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
	d := New[T]()
	v, fl := call(f)
	d.called, d.value, d.failure = true, v, fl
	if fl != nil {
		d.armCleanup()
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
	if d.called {
		return d.calledAgain()
	}
	d.fire(v, nil, 3)
	switch {
	case d.n == 0: // no stage: nothing to run, and no failure to report
		d.mu.Unlock()
	case d.paused.Load() == 0:
		d.runOwned() // it has just fired: nobody runs or waits on it yet
	default:
		d.runNow()
	}
	return nil
}

// runNow runs d's chain on this goroutine if nobody else is running it.
// d.mu is held; it is released.
func (d *Deferred[T]) runNow() {
	if !d.runnable() {
		d.noteIdle()
		d.mu.Unlock()
		return
	}
	d.runOwned()
}

// runOwned is runNow for a runnable d. d.mu is held; it is released.
func (d *Deferred[T]) runOwned() {
	d.running = true
	if d.n == 1 && d.kinds[0] == kindSlot && !d.cleanupArmed && d.runSlotAlone() {
		return
	}
	if d.plainQueued() && d.runPlain() {
		return
	}
	if next, resume := d.run(); next != nil || resume != nil {
		driveFrom(next, resume)
	}
}

// Errback fires d with the failure err and runs its chain on the calling
// goroutine. err is wrapped in a Failure (recording the caller's stack)
// unless it already is one. A nil err is a mistake: d fails with a Failure
// matching ErrNilError. If d has already fired, Errback behaves as Callback
// does.
func (d *Deferred[T]) Errback(err error) error {
	mustNotBeNil(d, "Errback")
	f := errbackFailure(err)
	d.mu.Lock()
	if d.called {
		return d.calledAgain()
	}
	var zero T
	d.fire(zero, f, 3)
	d.runNow()
	return nil
}

// errbackFailure is the Failure for Errback(err) and Fail(err): a nil err
// becomes ErrNilError, never a success.
func errbackFailure(err error) *Failure {
	if err == nil {
		err = ErrNilError
	}
	return wrapFailure(err, 5)
}

// calledAgain handles a second Callback or Errback. d.mu is held; it is
// released.
func (d *Deferred[T]) calledAgain() error {
	if d.is(suppressAlreadyCalled) {
		d.set(suppressAlreadyCalled, false)
		d.mu.Unlock()
		return nil
	}
	err := d.alreadyCalledError()
	d.mu.Unlock()
	return err
}

// fire records the result. d.mu is held.
func (d *Deferred[T]) fire(v T, f *Failure, skip int) {
	d.called, d.value, d.failure = true, v, f
	if d.is(cancelUpstream) {
		// Then's Deferred: drop its tie to the source, which a Deferred
		// kept after firing would otherwise keep alive, and the source its
		// own, down a whole chain of Thens.
		*(*interface{ Cancel() })(d.aux) = nil
	}
	d.aux = nil // the canceller; nothing waits yet
	if d.x != nil && d.x.debug != nil {
		d.x.debug.fired = stackString(skip + 1)
	}
}

// AddCallbacks adds a stage of two halves: cb runs if the chain holds a
// value at this point, eb if it holds a failure. They form one level: eb
// never sees an error returned by cb; the next errback does. AddCallbacks
// returns d. It panics if cb or eb is nil, or if d's chain was handed over
// by Then or ThenDeferred.
func (d *Deferred[T]) AddCallbacks(cb func(T) (T, error), eb func(*Failure) (T, error)) *Deferred[T] {
	if cb == nil || eb == nil {
		panic("deferred: AddCallbacks called with a nil function")
	}
	return d.add(pairStageOf(cb, eb), "AddCallbacks")
}

// AddCallback adds a callback: cb gets the value, and its (v, nil) passes v
// on while its (_, err) fails the chain from here. A failure passes cb by.
// AddCallback returns d. It panics if cb is nil, or if d's chain was handed
// over by Then or ThenDeferred.
func (d *Deferred[T]) AddCallback(cb func(T) (T, error)) *Deferred[T] {
	if cb == nil {
		panic("deferred: AddCallback called with a nil function")
	}
	return d.add(callbackStage(cb), "AddCallback")
}

// AddErrback adds an errback: eb gets the failure, and its (v, nil)
// recovers with v while its (_, err) keeps failing with err (return the
// Failure itself to pass it on unchanged). A value passes eb by. AddErrback
// returns d. It panics if eb is nil, or if d's chain was handed over by
// Then or ThenDeferred.
func (d *Deferred[T]) AddErrback(eb func(*Failure) (T, error)) *Deferred[T] {
	if eb == nil {
		panic("deferred: AddErrback called with a nil function")
	}
	return d.add(errbackStage(eb), "AddErrback")
}

// AddBoth adds f as both callback and errback: it gets the value and a nil
// *Failure, or the zero value and the failure. Returning that nil *Failure
// as the error counts as success, so `return v, f` passes any result on.
// AddBoth returns d. It panics if f is nil, or if d's chain was handed over
// by Then or ThenDeferred.
func (d *Deferred[T]) AddBoth(f func(T, *Failure) (T, error)) *Deferred[T] {
	if f == nil {
		panic("deferred: AddBoth called with a nil function")
	}
	return d.add(bothStage(f), "AddBoth")
}

// AddCallbackDeferred adds a callback that returns a Deferred: the chain
// waits for it and goes on with its result, value or failure. A returned
// Deferred the chain cannot wait for — nil, d itself, one whose chain Then
// handed over, one another Deferred already waits for, or one that waits
// for d — fails the chain with an error matching ErrInvalidReturn.
// AddCallbackDeferred returns d. It panics if cb is nil, or if d's chain
// was handed over by Then or ThenDeferred.
func (d *Deferred[T]) AddCallbackDeferred(cb func(T) *Deferred[T]) *Deferred[T] {
	if cb == nil {
		panic("deferred: AddCallbackDeferred called with a nil function")
	}
	return d.add(callbackDeferredStage(cb), "AddCallbackDeferred")
}

// AddErrbackDeferred adds an errback that returns a Deferred: the chain
// waits for it and goes on with its result, value or failure. A returned
// Deferred the chain cannot wait for fails the chain with an error matching
// ErrInvalidReturn, as for AddCallbackDeferred. AddErrbackDeferred returns
// d. It panics if eb is nil, or if d's chain was handed over by Then or
// ThenDeferred.
func (d *Deferred[T]) AddErrbackDeferred(eb func(*Failure) *Deferred[T]) *Deferred[T] {
	if eb == nil {
		panic("deferred: AddErrbackDeferred called with a nil function")
	}
	return d.add(errbackDeferredStage(eb), "AddErrbackDeferred")
}

// Chain makes other fire with d's result at this point of d's chain, like
// Twisted's chainDeferred: other's chain runs, then d's chain goes on with
// the zero value (the result now belongs to other, which also reports it if
// it is a failure nobody handles). If other has already fired, d's chain
// fails from here with an ErrAlreadyCalled error. Chains of any length fire
// in a loop, not by recursion. Chain returns d. It panics if other is nil
// or is d, or if d's chain was handed over by Then or ThenDeferred.
func (d *Deferred[T]) Chain(other *Deferred[T]) *Deferred[T] {
	if other == nil {
		panic("deferred: Chain called with a nil *Deferred")
	}
	if other == d {
		panic("deferred: Chain called with the Deferred itself")
	}
	return d.add(chainStage(other), "Chain")
}

func (d *Deferred[T]) add(st stage[T], method string) *Deferred[T] {
	mustNotBeNil(d, method)
	d.mu.Lock()
	if d.is(handedOver) {
		d.mu.Unlock()
		panic(handedOverMessage(method))
	}
	d.push(st)
	if !d.called { // the common case: nothing to run yet
		d.mu.Unlock()
		return d
	}
	d.runNow()
	return d
}

// mustNotBeNil panics, naming method, on a nil receiver: a clearer message
// than the nil dereference that would follow.
func mustNotBeNil[T any](d *Deferred[T], method string) {
	if d == nil {
		panic("deferred: " + method + " called on a nil *Deferred")
	}
}

func handedOverMessage(method string) string {
	return "deferred: " + method + " on a Deferred whose chain was handed over by Then or ThenDeferred; use the Deferred that Then returned"
}

// Then adds cb as the last stage of d and returns a new Deferred[U] that
// carries the chain on with cb's result: cb's (u, nil) gives u, its
// (_, err) and any failure reaching this point fail the new Deferred. Go
// methods cannot have type parameters, which is why Then is a function.
//
// d's chain is handed over: adding stages to d afterwards, or calling Then
// on it again, panics. The producer may still fire d. Cancelling either
// Deferred is cancelling d, as if they were one Deferred: before d fires it
// runs d's canceller and the failure reaches the new Deferred through cb's
// place in the chain; after, it cancels the Deferred d's chain waits for, if
// any, and otherwise does nothing, and the result still arrives. Then panics
// if d or cb is nil, or if another Deferred is waiting for d.
func Then[T, U any](d *Deferred[T], cb func(T) (U, error)) *Deferred[U] {
	if cb == nil {
		panic("deferred: Then called with a nil function")
	}
	if d == nil {
		panic("deferred: Then called with a nil *Deferred")
	}
	l := &thenLink[T, U]{cb: cb}
	l.init(d, l)
	d.handOver("Then", &l.h)
	return &l.u
}

// ThenDeferred is Then for a cb that returns a Deferred: the new Deferred
// fires with that Deferred's result. A returned Deferred it cannot wait for
// (nil, or one whose chain Then handed over, say) fails it with an error
// matching ErrInvalidReturn. ThenDeferred panics if d or cb is nil, or if
// d's chain was already handed over or another Deferred is waiting for d.
func ThenDeferred[T, U any](d *Deferred[T], cb func(T) *Deferred[U]) *Deferred[U] {
	if cb == nil {
		panic("deferred: ThenDeferred called with a nil function")
	}
	if d == nil {
		panic("deferred: ThenDeferred called with a nil *Deferred")
	}
	l := &thenDeferredLink[T, U]{cb: cb}
	l.init(d, l)
	d.handOver("ThenDeferred", &l.h)
	return &l.u
}

// A handoff is the last stage of a Deferred whose chain Then or
// ThenDeferred took over: it moves the result to the Deferred they returned
// and returns that one, to be driven on.
type handoff[T any] interface {
	handoff(v T, f *Failure) node
}

// thenBase is what Then and ThenDeferred allocate, in one piece with the
// function they were given: the Deferred they return, and the two ties to
// the source d. d's last stage points at h; u's Cancel goes to up.
type thenBase[T, U any] struct {
	u  Deferred[U]
	h  handoff[T]            // the link itself
	up interface{ Cancel() } // d
}

// init ties u to d, h being the link that embeds b. What New does for a
// Deferred it makes is done here for u.
func (b *thenBase[T, U]) init(d *Deferred[T], h handoff[T]) {
	if debugging.Load() {
		b.u.ext().debug = &debugInfo{created: stackString(4)}
	}
	b.h, b.up = h, d
	b.u.aux = unsafe.Pointer(&b.up) // see cancelUpstream
	b.u.set(cancelUpstream, true)
}

type thenLink[T, U any] struct {
	thenBase[T, U]
	cb func(T) (U, error)
}

// handoff runs once; it drops cb, so that the link, which lives as long as
// the Deferred it returned, does not keep what cb holds.
func (l *thenLink[T, U]) handoff(v T, f *Failure) node {
	cb := l.cb
	l.cb = nil
	if f != nil {
		return l.u.settleOrReport(zeroOf[U](), f)
	}
	rv, rf := call(func() (U, error) { return cb(v) })
	return l.u.settleOrReport(rv, rf)
}

type thenDeferredLink[T, U any] struct {
	thenBase[T, U]
	cb func(T) *Deferred[U]
}

// handoff runs once, and drops cb as thenLink's does.
func (l *thenDeferredLink[T, U]) handoff(v T, f *Failure) node {
	cb := l.cb
	l.cb = nil
	if f != nil {
		return l.u.settleOrReport(zeroOf[U](), f)
	}
	_, rf, inner := runStage(callbackDeferredStage(func(U) *Deferred[U] { return cb(v) }), zeroOf[U](), nil)
	if rf != nil {
		return l.u.settleOrReport(zeroOf[U](), rf)
	}
	return l.u.settleWaiting(inner)
}

// settleOrReport is settle for Then's hand-over. If somebody fired u by
// hand first, a failure arriving now has nowhere to go: it is reported as
// unhandled rather than lost.
func (d *Deferred[T]) settleOrReport(v T, f *Failure) node {
	n, err := d.settle(v, f)
	if err != nil && f != nil {
		reportUnhandled(f)
	}
	return n
}

// handOver marks d as handed over and adds h, which carries the result to
// the Deferred that takes over, as d's last stage.
func (d *Deferred[T]) handOver(method string, h *handoff[T]) {
	d.mu.Lock()
	switch {
	case d.is(handedOver):
		d.mu.Unlock()
		panic(handedOverMessage(method))
	case d.is(waitedFor):
		d.mu.Unlock()
		panic("deferred: " + method + " on a Deferred that another Deferred is waiting for")
	}
	d.set(handedOver, true)
	d.push(handoffStage(h))
	d.runNow()
}

// Pause stops d's chain before its next stage until a matching Unpause.
// Pauses count: n Pauses need n Unpauses.
func (d *Deferred[T]) Pause() {
	mustNotBeNil(d, "Pause")
	d.mu.Lock()
	d.paused.Add(1)
	d.mu.Unlock()
}

// Unpause undoes one Pause and, when none is left, runs the rest of the
// chain on the calling goroutine if d has fired. Unpause on a Deferred that
// is not paused does nothing (Twisted would count below zero and never run
// the chain again).
func (d *Deferred[T]) Unpause() {
	mustNotBeNil(d, "Unpause")
	d.mu.Lock()
	if d.paused.Load() > 0 {
		d.paused.Add(-1)
	}
	d.runNow()
}

// Cancel asks for d's result to be abandoned. If d has not fired, Cancel
// calls its canceller (once, however often Cancel is called); if the
// canceller does not fire d, or there is none, d fails with a Failure
// matching ErrCancelled. Without a canceller, the producer's first later
// Callback or Errback is then ignored; a canceller is expected to have
// stopped the producer, so after one a later firing returns
// ErrAlreadyCalled as usual. If d has fired and its chain waits for a
// Deferred returned by a stage, that Deferred is cancelled instead.
// Otherwise Cancel does nothing. A panicking canceller does not make Cancel
// panic: d fails with the panic's Failure.
func (d *Deferred[T]) Cancel() {
	mustNotBeNil(d, "Cancel")
	d.mu.Lock()
	for d.called {
		// Fired: cancel what the chain waits for, down a nest of any depth.
		w := d.waiting()
		d.mu.Unlock()
		if w == nil {
			return
		}
		d = w
		d.mu.Lock()
	}
	if d.is(cancelUpstream) {
		// Then's Deferred: cancelling it is cancelling the source, whose
		// result, cancelled or not, arrives through the hand-over. A
		// source that has fired ignores the Cancel, as in Twisted.
		up := *(*interface{ Cancel() })(d.aux)
		d.mu.Unlock()
		up.Cancel()
		return
	}
	if d.is(cancelled) {
		d.mu.Unlock()
		return
	}
	d.set(cancelled, true)
	c := d.canceller()
	d.aux = nil
	d.mu.Unlock()

	var f *Failure
	if c != nil {
		f = runCanceller(c, d)
	}
	d.mu.Lock()
	if d.called {
		d.mu.Unlock()
		return
	}
	if f == nil {
		f = withStack(2)
		f.err = ErrCancelled
	}
	if c == nil {
		// Nobody told the producer: let its eventual firing pass quietly.
		d.set(suppressAlreadyCalled, true)
	}
	var zero T
	d.fire(zero, f, 2)
	d.runNow()
}

func runCanceller[T any](c func(*Deferred[T]), d *Deferred[T]) (f *Failure) {
	defer func() {
		if p := recover(); p != nil {
			f = panicFailure(p)
		}
	}()
	c(d)
	return nil
}

// Called reports whether d has fired (Callback, Errback or Cancel).
func (d *Deferred[T]) Called() bool {
	mustNotBeNil(d, "Called")
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.called
}

// String describes d for debugging and %v: its type, address and state —
// pending, paused, waiting for another Deferred, or its current value or
// failure — like Twisted's repr.
func (d *Deferred[T]) String() string {
	if d == nil {
		return "<nil *Deferred[" + typeName[T]() + "]>"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "<Deferred[%s] at %p", typeName[T](), d)
	switch {
	case !d.called:
		b.WriteString(" pending")
	case d.waiting() != nil:
		fmt.Fprintf(&b, " waiting on Deferred at %p", d.waiting())
	case d.failure != nil:
		fmt.Fprintf(&b, " current result: failure: %v", d.failure.Error())
	default:
		fmt.Fprintf(&b, " current result: %v", any(d.value))
	}
	if d.paused.Load() > 0 {
		b.WriteString(" (paused)")
	}
	b.WriteString(">")
	return b.String()
}

func typeName[T any]() string {
	return fmt.Sprintf("%T", (*T)(nil))[1:]
}

// Debugging and unhandled failures.

var debugging atomic.Bool

type debugInfo struct {
	created, fired string
}

// SetDebugging turns on (or off) recording, for each Deferred created from
// now on, of where it was created and where it first fired. ErrAlreadyCalled
// errors then show both, which finds the second producer quickly. It costs a
// stack capture per Deferred, so it is off by default.
func SetDebugging(on bool) { debugging.Store(on) }

func stackString(skip int) string {
	var b strings.Builder
	callers(skip + 1).each(func(fr runtime.Frame) {
		fmt.Fprintf(&b, "%s\n\t%s:%d\n", fr.Function, fr.File, fr.Line)
	})
	return b.String()
}

// alreadyCalledError returns the error for a second firing. d.mu is held.
func (d *Deferred[T]) alreadyCalledError() error {
	dbg := d.debug()
	if dbg == nil {
		return ErrAlreadyCalled
	}
	return fmt.Errorf("%w\ncreated at:\n%sfirst fired at:\n%s", ErrAlreadyCalled, dbg.created, dbg.fired)
}
