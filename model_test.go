package deferred

// This file is the reference model that FuzzChain checks the library
// against: the chain rules of the README and Twisted 22.4, written as plainly
// as possible. One goroutine, a slice of stages per Deferred, a loop that
// pops them, recursion where Twisted nests. It knows nothing about locks,
// trampolines or queues; where it is slow or deep, that is on purpose.
//
// Where the model departs from Twisted, it does so on purpose:
//   - the design (the README's "Differences from Twisted"): a panicking
//     canceller fails the Deferred instead of raising; Unpause at 0 does
//     nothing, and waiting for an inner Deferred is not a pause (Twisted
//     counts both in one counter); Errback(nil) fails with ErrNilError
//     ("nilerr");
//   - library choices: returning the Deferred itself, a handed-over
//     Deferred, a Deferred another one already waits for, one that waits
//     (through others, perhaps) for this one, or nil fails the chain
//     ("misuse"); Pause called by a stage stops its chain before the
//     next stage (Twisted only looks between chain steps);
//   - saner than a Twisted accident: a stage that returns a Deferred whose
//     chain is running right now waits for the end of that run (Twisted
//     takes its current result), and an inner Deferred that hands its result
//     to a paused outer one still runs its own later stages (Twisted leaves
//     them until something touches the inner Deferred again).
//
// runtime.Goexit has no Twisted twin either. goexit.go's rule: a stage (or
// Then's function) that calls it ends as if it had failed with ErrGoexit
// ("goexit"), and everything the library would then have done runs as
// usual, before the goroutine leaves; what does not run is user code
// waiting on the stack for a library call that the Goexit unwinds. The
// model says so with a sentinel panic, mGoexit: a stage that calls Goexit
// fails with "goexit" and marks the goroutine as exiting; the library call
// made by user code (the program, a stage's side effect, a canceller)
// that was under way then finishes its work and raises mGoexit to its
// caller instead of returning. A stage whose side effect raises it fails
// with "goexit" in turn, and its chain goes on; a canceller's Deferred
// is left as the canceller fired it, and fails with "goexit" if the
// canceller called Goexit before firing it; the program sees its
// operation end with "goexit", and Then's caller never gets Then's
// Deferred.
//
// Observe has no Twisted twin either, but comes close to Chain: a branch
// b of d is a stage of d that fires b with d's result as it stands there,
// as d.chainDeferred(b) would, except that d keeps its result (Twisted's
// would be None), and a b that has fired already (a program fired it,
// or cancelled it) makes no ErrAlreadyCalled failure in d: b refuses the
// result and d goes on. b's canceller takes that stage off d unless d's
// chain is running (then the stage stays, and b refuses it); it never
// fires b, so Cancel fails b with "cancelled", and a later firing of b is
// ErrAlreadyCalled as after any canceller. Peek gives d's result if d
// holds it: fired, not paused, not waiting, not running, no stage left.
// Await with a context that has ended gives that result too, and
// otherwise observes d (with a branch the program never sees) and
// cancels d, and gives ctx.Err().
//
// Apart from these, the model agrees with Twisted 22.4: random programs
// without Then, translated to Python, give the same traces there.
//
// Then has no Twisted twin: Then(d, cb) is Twisted's d.addCallback(cb), with
// the rest of the chain living on a new Deferred u. So cb runs as d's last
// stage and u fires with its result; Cancel on u before that is Cancel on d,
// exactly as d.cancel() would be in Twisted. Programs fire only Deferreds
// made by New (or Succeed/Fail), never Then's results.

import (
	"fmt"
)

// mResult is a result in the model: a value, or a failure named by its class
// (see failureClass), with v the zero value then.
type mResult struct {
	v any
	f string
}

func (r mResult) String() string {
	if r.f != "" {
		return "f=" + r.f
	}
	return fmt.Sprintf("v=%v", r.v)
}

func failed(t typ, class string) mResult { return mResult{v: t.zero(), f: class} }

// mStage is one entry of a model chain.
type mStage struct {
	cb, eb     *fnSpec  // AddCallback/AddErrback/AddCallbacks; a nil side passes the result on
	both       *fnSpec  // AddBoth
	cbd, ebd   *dfnSpec // AddCallbackDeferred/AddErrbackDeferred
	chain      *mDef    // Chain(other)
	continueTo *mDef    // a Deferred waiting for this one: give it our result
	then       *mThen   // Then/ThenDeferred: the hand-over, always the last stage
	branch     *mDef    // Observe: fire it with the result, which stays
}

type mThen struct {
	u   *mDef
	fn  *fnSpec  // Then
	dfn *dfnSpec // ThenDeferred
}

// mDef is a model Deferred.
type mDef struct {
	t         typ
	called    bool
	res       mResult
	stages    []mStage
	paused    int
	running   bool // its loop is on the call stack
	canceller cancelKind
	cancelled bool // Cancel ran its canceller
	suppress  bool // swallow the next firing (Cancel without canceller)
	waitingOn *mDef
	waitedBy  *mDef
	handedOv  bool  // Then was called on it
	source    *mDef // for Then's result: the Deferred whose chain feeds it
	observed  *mDef // for a branch: the Deferred it observes (canceller cancelDetach)
}

// model is a program's world: its Deferreds, by index, and the interpreter
// that records what stages see and runs their side effects.
type model struct {
	in   *interp
	pool []*mDef
	// exiting: a stage called Goexit during the library call under way,
	// which raises mGoexit when it is done (see api).
	exiting bool
}

// mGoexit is the model's runtime.Goexit: the sentinel a library call
// raises, once done, when a stage under it called Goexit.
type mGoexit struct{}

// api runs body, a library call made by user code. If a stage called
// Goexit meanwhile, the goroutine is leaving: body still does all its work
// (the library's recovers carry on the chains), then api raises mGoexit
// instead of returning to the caller, which is user code. Calls nest: a
// stage run by body may make calls of its own, which start with the
// goroutine not exiting, as the library runs them normally even inside
// the deferred calls of a Goexit.
func (m *model) api(body func()) {
	outer := m.exiting
	m.exiting = false
	defer func() {
		exited := m.exiting
		m.exiting = outer
		if exited {
			// Nothing panics after a Goexit: misuse panics come before
			// any chain runs.
			panic(mGoexit{})
		}
	}()
	body()
}

// runOp runs a program's operation and returns its panic, or whether it
// ended with the model's Goexit.
func (m *model) runOp(op func()) (p any, goexited bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(mGoexit); ok {
				goexited = true
				return
			}
			p = r
		}
	}()
	op()
	return nil, false
}

func newModel(in *interp) *model { return &model{in: in} }

func (m *model) create(t typ, c cancelKind) {
	d := &mDef{t: t, canceller: c}
	switch c {
	case rootSucceed:
		d.called, d.res, d.canceller = true, mResult{v: value(t, 3)}, cancelNone
	case rootFail:
		d.called, d.res, d.canceller = true, failed(t, errorClass(testErr(4))), cancelNone
	}
	m.pool = append(m.pool, d)
}

// run runs d's stages in order while d has a result, is not paused, is not
// waiting for another Deferred, and is not already running further up the
// stack (then that loop picks up what was added).
func (m *model) run(d *mDef) {
	if !d.called || d.running || d.paused > 0 || d.waitingOn != nil {
		return
	}
	d.running = true
	for len(d.stages) > 0 && d.paused == 0 && d.waitingOn == nil {
		st := d.stages[0]
		d.stages = d.stages[1:]
		if outer := st.continueTo; outer != nil {
			// The waiting Deferred goes first, then the rest of ours,
			// which sees the zero value (Twisted: None).
			outer.res, d.res = d.res, mResult{v: d.t.zero()}
			outer.waitingOn, d.waitedBy = nil, nil
			d.running = false
			m.run(outer)
			m.run(d)
			return
		}
		m.runStage(d, st)
	}
	d.running = false
}

// runStage runs one stage on d's current result and stores the new one.
func (m *model) runStage(d *mDef, st mStage) {
	in := d.res
	ok := in.f == ""
	switch {
	case st.branch != nil:
		// A branch that fired already (by hand, or cancelled) refuses
		// the result, and d does not notice.
		m.fire(st.branch, in)
	case st.chain != nil:
		d.res = mResult{v: d.t.zero()}
		if m.fire(st.chain, in) {
			d.res = failed(d.t, "already")
		}
	case st.both != nil:
		d.res = m.call(st.both, "both", in, d.t)
	case ok && st.cb != nil:
		d.res = m.call(st.cb, "cb", in, d.t)
	case !ok && st.eb != nil:
		d.res = m.call(st.eb, "eb", in, d.t)
	case ok && st.cbd != nil:
		m.waitFor(d, m.callD(st.cbd, "cbd", in, d.t))
	case !ok && st.ebd != nil:
		m.waitFor(d, m.callD(st.ebd, "ebd", in, d.t))
	case st.then != nil:
		m.handOver(d, st.then, in)
	}
}

// call runs a stage function: it records its input, does its side effect,
// then returns a value, an error or panics. A panic becomes a failure.
func (m *model) call(fn *fnSpec, side string, in mResult, t typ) (out mResult) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(mGoexit); ok {
				m.exiting = true
				out = failed(t, "goexit")
				return
			}
			out = failed(t, panicClass(p))
		}
	}()
	m.in.stageBody(fn.name, side, in.String(), fn.se)
	if fn.act == actGoexit {
		panic(mGoexit{})
	}
	if fn.act == actPass {
		return in
	}
	v, err := fn.outcome(in.v, t)
	if err != nil {
		return failed(t, errorClass(err))
	}
	return mResult{v: v}
}

// mDeferredOut is what a Deferred-returning stage function gave: a
// Deferred, or a failure (nil Deferred, panic).
type mDeferredOut struct {
	d    *mDef
	fail string
}

func (m *model) callD(fn *dfnSpec, side string, in mResult, t typ) (out mDeferredOut) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(mGoexit); ok {
				m.exiting = true
				out = mDeferredOut{fail: "goexit"}
				return
			}
			out = mDeferredOut{fail: panicClass(p)}
		}
	}()
	m.in.stageBody(fn.name, side, in.String(), fn.se)
	switch fn.kind {
	case dSucceed:
		return mDeferredOut{d: &mDef{t: t, called: true, res: mResult{v: bump(in.v, fn.arg)}}}
	case dFail:
		return mDeferredOut{d: &mDef{t: t, called: true, res: failed(t, errorClass(testErr(fn.arg)))}}
	case dPool:
		return mDeferredOut{d: m.pool[fn.arg]}
	case dNil:
		return mDeferredOut{fail: "misuse"}
	case dGoexit:
		panic(mGoexit{})
	default:
		panic(fn.panicValue())
	}
}

// waitFor makes outer go on with inner's result: now if inner has one and
// is idle, else once inner's chain reaches the continuation appended now.
func (m *model) waitFor(outer *mDef, out mDeferredOut) {
	inner := out.d
	switch {
	case inner == nil:
		outer.res = failed(outer.t, out.fail)
	case inner == outer, inner.handedOv, inner.waitedBy != nil, mWaitsFor(inner, outer):
		outer.res = failed(outer.t, "misuse")
	case inner.called && !inner.running && inner.paused == 0 && inner.waitingOn == nil && len(inner.stages) == 0:
		outer.res, inner.res = inner.res, mResult{v: inner.t.zero()}
	default:
		outer.waitingOn, inner.waitedBy = inner, outer
		inner.stages = append(inner.stages, mStage{continueTo: outer})
	}
}

// mWaitsFor reports whether d waits, directly or through others, for
// target: then target waiting for d would be a cycle, which the library
// refuses ("misuse") where Twisted would wait forever.
func mWaitsFor(d, target *mDef) bool {
	for ; d != nil; d = d.waitingOn {
		if d == target {
			return true
		}
	}
	return false
}

// handOver is the last stage of a Deferred that Then was called on: it
// fires the new Deferred u with cb's result, or with the failure.
func (m *model) handOver(d *mDef, th *mThen, in mResult) {
	d.res = mResult{v: d.t.zero()}
	u := th.u
	if in.f != "" {
		m.fire(u, failed(u.t, in.f))
		return
	}
	conv := convert(in.v)
	if th.fn != nil {
		m.fire(u, m.call(th.fn, "then", mResult{v: conv}, u.t))
		return
	}
	out := m.callD(th.dfn, "then", mResult{v: conv}, u.t)
	if out.d == nil {
		m.fire(u, failed(u.t, out.fail))
		return
	}
	// u fires and waits for the Deferred cb returned, as after a stage.
	u.called, u.res, u.canceller = true, mResult{v: u.t.zero()}, cancelNone
	m.waitFor(u, out)
	m.run(u)
}

// fire gives d its result and runs its chain. It reports true when d had
// already fired (ErrAlreadyCalled) — except for the first firing after a
// Cancel without canceller, which is swallowed.
func (m *model) fire(d *mDef, r mResult) (already bool) {
	if d.called {
		if d.suppress {
			d.suppress = false
			return false
		}
		return true
	}
	d.called, d.res, d.canceller = true, r, cancelNone
	m.run(d)
	return false
}

func (m *model) callback(i, k int) (already bool) {
	d := m.pool[i]
	m.api(func() { already = m.fire(d, mResult{v: value(d.t, k)}) })
	return already
}

func (m *model) errback(i, k int) (already bool) {
	d := m.pool[i]
	r := failed(d.t, "nilerr")
	if k >= 0 {
		r = failed(d.t, errorClass(testErr(k)))
	}
	m.api(func() { already = m.fire(d, r) })
	return already
}

// cancel: a fired Deferred passes the Cancel on to the Deferred it waits
// for; Then's result passes it on to its source; a pending one calls its
// canceller once and, unless that fired it, fails with "cancelled".
func (m *model) cancel(i int) { m.api(func() { m.cancelDef(m.pool[i]) }) }

func (m *model) cancelDef(d *mDef) {
	switch {
	case d.called:
		if d.waitingOn != nil {
			m.cancelDef(d.waitingOn)
		}
		return
	case d.source != nil:
		m.cancelDef(d.source)
		return
	case d.cancelled:
		return
	}
	d.cancelled = true
	c := d.canceller
	d.canceller = cancelNone
	fail := "cancelled"
	switch c {
	case cancelNone:
		d.suppress = true
	case cancelValue:
		m.canceller(func() { m.fire(d, mResult{v: value(d.t, 7)}) })
	case cancelError:
		m.canceller(func() { m.fire(d, failed(d.t, errorClass(testErr(5)))) })
	case cancelPanic:
		fail = panicClass(cancellerPanic)
	case cancelGoexit:
		// The canceller did not fire d: d fails with the Goexit, and
		// its chain runs, before the goroutine leaves.
		m.fire(d, failed(d.t, "goexit"))
		m.exiting = true
	case cancelDetach:
		m.detach(d)
	}
	if m.exiting {
		// The canceller fired d, whose chain called Goexit: Cancel is
		// left there, as the goroutine leaves.
		return
	}
	if !d.called {
		m.fire(d, failed(d.t, fail))
	}
}

// canceller runs a canceller that fires its Deferred by a library call.
// If a stage called Goexit meanwhile, the canceller does not return:
// the goroutine is marked as exiting again, for the Cancel under way.
func (m *model) canceller(fire func()) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(mGoexit); !ok {
				panic(p)
			}
			m.exiting = true
		}
	}()
	m.api(fire)
}

// cancelLoops reports whether Cancel on i would go round a cycle of
// Deferreds waiting for each other (Twisted: RecursionError).
func (m *model) cancelLoops(i int) bool {
	seen := map[*mDef]bool{}
	for d := m.pool[i]; d != nil; {
		if seen[d] {
			return true
		}
		seen[d] = true
		switch {
		case d.called:
			d = d.waitingOn
		default:
			d = d.source
		}
	}
	return false
}

func (m *model) pause(i int) { m.pool[i].paused++ }

func (m *model) unpause(i int) {
	d := m.pool[i]
	if d.paused > 0 {
		d.paused--
	}
	m.api(func() { m.run(d) })
}

func (m *model) called(i int) bool { return m.pool[i].called }

func (m *model) add(i int, st mStage) {
	d := m.pool[i]
	if st == (mStage{}) {
		panic("deferred: nil function")
	}
	if d.handedOv {
		panic("deferred: Add on a handed-over Deferred")
	}
	d.stages = append(d.stages, st)
	m.api(func() { m.run(d) })
}

func (m *model) addCallback(i int, fn *fnSpec) { m.add(i, mStage{cb: fn}) }
func (m *model) addErrback(i int, fn *fnSpec)  { m.add(i, mStage{eb: fn}) }
func (m *model) addBoth(i int, fn *fnSpec)     { m.add(i, mStage{both: fn}) }
func (m *model) addCallbacks(i int, cb, eb *fnSpec) {
	m.add(i, mStage{cb: cb, eb: eb})
}
func (m *model) addCallbackDeferred(i int, fn *dfnSpec) { m.add(i, mStage{cbd: fn}) }
func (m *model) addErrbackDeferred(i int, fn *dfnSpec)  { m.add(i, mStage{ebd: fn}) }

func (m *model) chain(i, j int) {
	if j < 0 || j == i {
		panic("deferred: Chain with nil or itself")
	}
	m.add(i, mStage{chain: m.pool[j]})
}

func (m *model) then(i int, fn *fnSpec, dfn *dfnSpec) {
	d := m.pool[i]
	if fn == nil && dfn == nil {
		panic("deferred: Then with a nil function")
	}
	if d.handedOv || d.waitedBy != nil {
		panic("deferred: Then on a handed-over or awaited Deferred")
	}
	u := &mDef{t: d.t.other(), source: d}
	m.pool = append(m.pool, u)
	d.stages = append(d.stages, mStage{then: &mThen{u: u, fn: fn, dfn: dfn}})
	d.handedOv = true
	defer func() {
		if p := recover(); p != nil {
			// A Goexit: Then does not return, so its caller never gets
			// u, which the program does not number.
			m.pool = m.pool[:len(m.pool)-1]
			panic(p)
		}
	}()
	m.api(func() { m.run(d) })
}

// final adds a last AddBoth that records what reaches the end of i's chain
// and consumes it.
func (m *model) final(i int) {
	d := m.pool[i]
	if d.handedOv {
		panic("deferred: Add on a handed-over Deferred")
	}
	d.stages = append(d.stages, mStage{both: finalSpec(i)})
	m.api(func() { m.run(d) })
}

// observe appends a branch of i to the pool: a pending Deferred whose
// canceller takes it off i's chain, fired by a stage of i's.
func (m *model) observe(i int) {
	d := m.pool[i]
	if d.handedOv {
		panic("deferred: Observe on a handed-over Deferred")
	}
	b := &mDef{t: d.t, canceller: cancelDetach, observed: d}
	m.pool = append(m.pool, b)
	d.stages = append(d.stages, mStage{branch: b})
	m.api(func() { m.run(d) })
}

// detach is a branch's canceller: it takes b's stage off the Deferred b
// observes, unless that one's chain is running (its loop will come to the
// stage, and b will refuse the result).
func (m *model) detach(b *mDef) {
	d := b.observed
	if d.running {
		return
	}
	for k, st := range d.stages {
		if st.branch == b {
			d.stages = append(d.stages[:k:k], d.stages[k+1:]...)
			return
		}
	}
}

// holds reports whether d holds its result: Done is closed.
func (d *mDef) holds() bool {
	return d.called && !d.running && d.paused == 0 && d.waitingOn == nil && len(d.stages) == 0
}

func (m *model) peek(i int) (string, bool) {
	d := m.pool[i]
	if d.handedOv {
		panic("deferred: Peek on a handed-over Deferred")
	}
	if !d.holds() {
		return mResult{v: d.t.zero()}.String(), false
	}
	return d.res.String(), true
}

// await is Await(ctx) with ctx ended already: the result if d holds it;
// else a branch the program never sees (its one stage takes the result
// silently) and Cancel on d, and ctx.Err().
func (m *model) await(i int) (out string) {
	d := m.pool[i]
	if d.handedOv {
		panic("deferred: Await on a handed-over Deferred")
	}
	if d.holds() {
		return d.res.String()
	}
	m.api(func() {
		b := &mDef{t: d.t, canceller: cancelDetach, observed: d}
		d.stages = append(d.stages, mStage{branch: b})
		m.run(d)
		m.cancelDef(d)
	})
	return "ctx"
}
