package deferred

// Fuzz the chain rules against the reference model for longer than CI does:
//
//	go test -run '^$' -fuzz FuzzChain -fuzztime 5m .
//
// (add -parallel 1 on a shared machine). A failing input is saved under
// testdata/fuzz/FuzzChain and from then on runs with the seeds in
// `go test -run FuzzChain .`; the failure shows the model's trace and the
// library's side by side, and a trace lists the program's operations, so it
// reads as the reproduction. A bare "context deadline exceeded" at the end
// of -fuzztime, with no input saved, is a race in Go's fuzz coordinator
// (go.dev/issue/75804, fixed in Go 1.27), not a finding; a count such as
// -fuzztime 2000000x avoids it.
//
// FuzzChain decodes its bytes into a program of up to 40 operations on a
// few Deferreds (int and string ones, some with cancellers, some made by
// Succeed or Fail; Then adds more), runs it on the library and on the
// model in model_test.go, and requires equal traces: every stage with its
// input, what its side effect (a call on another Deferred) returned, the
// result of every Callback/Errback, every misuse panic, and at the end each
// Deferred's Called() and what reaches a last AddBoth.
//
// A stage may call runtime.Goexit (opGoexit), and so may a canceller.
// Once a program has one, the library side runs each operation on a
// goroutine of its own and waits for it, and an operation that a Goexit
// ended is traced as "-> goexit"; the model raises a sentinel panic
// instead (see model_test.go).
//
// Programs also share results (share.go, await.go): Observe makes a
// branch, numbered like a Deferred of Then, that later operations use like
// any other (stages, Cancel before and after it fired, Then, Observe);
// opFireBranch fires one by hand, as a program may; Peek traces the
// Outcome and ok; Await is called with a context that has ended already,
// the one case that does not block: the result if the Deferred holds it,
// else ctx.Err() with the Deferred cancelled. Unhandled-failure reports
// are not traced (FuzzChain sends them to a quiet handler), so the rule
// that a shared Failure is reported at most once is left to
// unhandled_test.go and share_test.go.
//
// The byte map of an operation's first byte (the bytes 224 and up coded
// the operations below opGoexit, by their remainder, before opGoexit and
// the sharing operations existed; no committed input used them):
//
//	  0–223  b % 16: opAddCallback … opMisuse, as always
//	224–229  opObserve
//	230–233  opPeek
//	234–237  opAwait
//	238–239  opFireBranch
//	240–255  opGoexit
//
// and a stage's side effect may be Peek (sePeek), coded by the bytes from
// sePeekBytes up where the side effect's kind is read.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Values, errors and the classes of failures, shared by the model and the
// library side.

// typ is the element type of a Deferred in a program: int or string.
type typ int

const (
	tInt typ = iota
	tStr
)

func (t typ) zero() any {
	if t == tInt {
		return 0
	}
	return ""
}

func (t typ) other() typ { return 1 - t }

func typeOf[T any]() typ {
	if _, ok := any(*new(T)).(int); ok {
		return tInt
	}
	return tStr
}

// value is the program's small number k as a value of type t.
func value(t typ, k int) any {
	if t == tInt {
		return k
	}
	return strconv.Itoa(k)
}

// bump is what a value-returning stage makes of its input: it keeps the
// history, so a trace shows which stages a value went through.
func bump(v any, k int) any {
	switch v := v.(type) {
	case int:
		return (v*10 + k) % 1000000
	case string:
		return v + string(rune('a'+k))
	}
	panic(fmt.Sprintf("bump of %T", v))
}

// convert is what Then's function does to the value before its action:
// int to string and back.
func convert(v any) any {
	switch v := v.(type) {
	case int:
		return "#" + strconv.Itoa(v)
	case string:
		return len(v)
	}
	panic(fmt.Sprintf("convert of %T", v))
}

// testErr is the error a program's stages return, Errback passes, or a
// stage panics with.
type testErr int

func (e testErr) Error() string { return "E" + strconv.Itoa(int(e)) }

// cancellerPanic is what a panicking canceller panics with.
const cancellerPanic = "PC"

// errorClass names an error for the trace.
func errorClass(err error) string {
	var te testErr
	switch {
	case errors.As(err, &te):
		return te.Error()
	case errors.Is(err, ErrCancelled):
		return "cancelled"
	case errors.Is(err, ErrAlreadyCalled):
		return "already"
	case errors.Is(err, ErrNilError):
		return "nilerr"
	case errors.Is(err, ErrGoexit):
		return "goexit"
	case strings.HasPrefix(err.Error(), "deferred: "):
		return "misuse"
	}
	return "other:" + err.Error()
}

// panicClass names a recovered panic value for the trace.
func panicClass(p any) string {
	switch p := p.(type) {
	case testErr:
		return "panic:" + p.Error()
	case string:
		if strings.HasPrefix(p, "deferred: ") {
			return "panic:misuse"
		}
		return "panic:" + p
	}
	return fmt.Sprintf("panic:%T:%v", p, p)
}

// failureClass names a library Failure the way the model names failures.
func failureClass(f *Failure) string {
	if p, ok := f.PanicValue(); ok {
		return panicClass(p)
	}
	return errorClass(f)
}

// Programs.

type cancelKind int

const (
	cancelNone    cancelKind = iota // New
	cancelValue                     // fires with value 7
	cancelError                     // fails with E5
	cancelNothing                   // does nothing
	cancelPanic                     // panics with cancellerPanic
	rootSucceed                     // not a canceller: Succeed(3)
	rootFail                        // not a canceller: Fail(E4)
	numCancelKinds
	cancelGoexit // calls runtime.Goexit (header bytes from opBytes up)
	cancelDetach // Observe's branch: takes its stage off the source (never in a header)
)

func (c cancelKind) String() string {
	return [...]string{"canceller none", "canceller fires 7", "canceller fails E5",
		"canceller does nothing", "canceller panics", "Succeed(3)", "Fail(E4)",
		"", "canceller calls Goexit", "Observe's canceller"}[c]
}

// cancelOf is the kind of Deferred that the header byte b codes: as
// before cancelGoexit existed, except that the bytes from opBytes up (as
// for opGoexit) are cancelGoexit.
func cancelOf(b int) cancelKind {
	if b >= opBytes {
		return cancelGoexit
	}
	return cancelKind(b % int(numCancelKinds))
}

type action int

const (
	actValue    action = iota // bump(input, arg)
	actError                  // E<arg>
	actPanicStr               // panic("P<arg>")
	actPanicErr               // panic(E<arg>)
	actPass                   // pass the result on unchanged (AddBoth: `return v, f`)
	numActions
	actConsume // the final AddBoth: zero value, no failure
	actGoexit  // runtime.Goexit, after the side effect (opGoexit only)
)

type seKind int

// Side effects: kinds 0..4 make none, so that most stages have none.
const (
	seNone     seKind = 0
	seCallback seKind = iota + 4
	seCancel
	sePause
	seUnpause
	seAddBoth
	numSeKinds
	sePeek // Peek, from the side-effect bytes sePeekBytes up
)

// sePeekBytes: a side effect's first byte from here up is sePeek; the
// bytes below code the other kinds by their remainder, as before sePeek
// existed (no committed input has a byte this high).
const sePeekBytes = 232

// sideEffect is a call a stage makes on a Deferred of the program before it
// returns (re-entrancy).
type sideEffect struct {
	kind seKind
	j, k int
}

// fnSpec is a stage function that returns a value.
type fnSpec struct {
	name string
	act  action
	arg  int
	se   sideEffect
}

// outcome is what fn returns for the input value v (the zero value of
// type t on the errback side), or its panic.
func (fn *fnSpec) outcome(v any, t typ) (any, error) {
	switch fn.act {
	case actValue:
		return bump(v, fn.arg), nil
	case actError:
		return t.zero(), testErr(fn.arg)
	case actPanicStr:
		panic("P" + strconv.Itoa(fn.arg))
	case actPanicErr:
		panic(testErr(fn.arg))
	}
	return t.zero(), nil // actConsume; actPass is the caller's
}

func finalSpec(i int) *fnSpec { return &fnSpec{name: "end d" + strconv.Itoa(i), act: actConsume} }

type dKind int

const (
	dSucceed dKind = iota // Succeed(bump(input, arg))
	dFail                 // Fail(E<arg>)
	dPool                 // the program's Deferred number arg
	dNil                  // nil
	dPanic                // panic("P<arg>")
	numDKinds
	dGoexit // runtime.Goexit, after the side effect (opGoexit only)
)

// dfnSpec is a stage function that returns a Deferred.
type dfnSpec struct {
	name string
	kind dKind
	arg  int
	se   sideEffect
}

func (fn *dfnSpec) panicValue() string { return "P" + strconv.Itoa(fn.arg) }

// system is what a program runs on: the model or the library. Deferreds
// are numbered in creation order; Then adds one.
type system interface {
	create(t typ, c cancelKind)
	addCallback(i int, fn *fnSpec)
	addErrback(i int, fn *fnSpec)
	addBoth(i int, fn *fnSpec)
	addCallbacks(i int, cb, eb *fnSpec)
	addCallbackDeferred(i int, fn *dfnSpec)
	addErrbackDeferred(i int, fn *dfnSpec)
	chain(i, j int) // j < 0: nil
	then(i int, fn *fnSpec, dfn *dfnSpec)
	callback(i, k int) (already bool)
	errback(i, k int) (already bool) // k < 0: nil error
	cancel(i int)
	pause(i int)
	unpause(i int)
	called(i int) bool
	final(i int)
	observe(i int)                    // appends the branch
	peek(i int) (out string, ok bool) // out: "v=…" or "f=…"
	await(i int) (out string)         // with an ended ctx: "v=…", "f=…" or "ctx"
}

// Operation codes: what the first byte of each operation codes (opOf, and
// the byte map at the top of this file).
const (
	opAddCallback = iota
	opAddErrback
	opAddBoth
	opAddCallbacks
	opAddCallbackDeferred
	opAddErrbackDeferred
	opChain
	opCallback
	opErrback
	opCancel
	opPause
	opUnpause
	opThen
	opThenDeferred
	opCalled
	opMisuse
	opGoexit     // a stage, or Then's function, that calls runtime.Goexit
	opObserve    // d.Observe(): a new Deferred, the branch
	opPeek       // d.Peek()
	opAwait      // d.Await(ctx) with ctx ended already
	opFireBranch // Callback or Errback on a branch
	numOps
)

// opBytes: the bytes below shareBytes code the operations before opGoexit
// by their remainder modulo opGoexit, as before opGoexit existed, so the
// committed corpus keeps its meaning; the 16 bytes from opBytes up code
// opGoexit, one byte in 16, and the 16 below them the sharing operations
// (see the byte map at the top of this file).
const (
	opBytes    = 256 - 16
	shareBytes = opBytes - 16
)

// shareOps: the first byte of each sharing operation, from shareBytes up.
var shareOps = [...]struct{ op, first int }{
	{opObserve, shareBytes}, {opPeek, shareBytes + 6}, {opAwait, shareBytes + 10}, {opFireBranch, shareBytes + 14},
}

// opOf is the operation that the byte b codes.
func opOf(b int) int {
	switch {
	case b >= opBytes:
		return opGoexit
	case b >= shareBytes:
		op := opObserve
		for _, s := range shareOps {
			if b >= s.first {
				op = s.op
			}
		}
		return op
	}
	return b % opGoexit
}

// opByte is the first byte that codes op.
func opByte(op int) byte {
	switch op {
	case opGoexit:
		return opBytes
	case opObserve, opPeek, opAwait, opFireBranch:
		for _, s := range shareOps {
			if s.op == op {
				return byte(s.first)
			}
		}
	}
	return byte(op)
}

const maxOps = 40

// interp decodes a program from bytes as it runs it on a system, and
// records the trace. Decoding depends only on the bytes and on which Then
// calls panicked, so the model and the library run the same program as long
// as their traces agree.
type interp struct {
	sys    system
	loops  func(i int) bool // would Cancel on i go round a waiting cycle?
	data   []byte
	pos    int
	types  []typ // of each Deferred
	roots  int   // Deferreds 0..roots-1 come from New; the rest from Then and Observe
	stages int
	trace  []string

	// run runs a top-level operation and returns its panic, or whether
	// it ended with a Goexit (the model's sentinel, or the real one on
	// the library's goroutine).
	run func(op func()) (p any, goexited bool)
	// goexits: the program has a stage or canceller that calls Goexit,
	// so the library side runs each operation on a goroutine of its own.
	goexits bool
	// branches: the Deferreds that Observe made, which opFireBranch fires.
	branches []int
}

func (in *interp) byte() int {
	if in.pos >= len(in.data) {
		return 0
	}
	in.pos++
	return int(in.data[in.pos-1])
}

func (in *interp) log(format string, args ...any) {
	in.trace = append(in.trace, fmt.Sprintf(format, args...))
}

// runProgram runs data on the system that mk makes and returns the trace.
func runProgram(data []byte, mk func(*interp) system) []string {
	in := &interp{data: data}
	in.sys = mk(in)
	h := in.byte()
	nInt, nStr := 1+h%4, (h/4)%3
	for i := 0; i < nInt+nStr; i++ {
		t := tInt
		if i >= nInt {
			t = tStr
		}
		c := cancelOf(in.byte())
		if c == cancelGoexit {
			in.goexits = true
		}
		in.log("d%d = New[%v](%v)", i, t, c)
		in.sys.create(t, c)
		in.types = append(in.types, t)
	}
	in.roots = len(in.types)
	for n := 0; n < maxOps && in.pos < len(in.data); n++ {
		in.step()
	}
	for i := range in.types {
		in.log("end d%d called=%v", i, in.sys.called(i))
		in.do(func() { in.sys.final(i) })
	}
	return in.trace
}

func (t typ) String() string {
	if t == tInt {
		return "int"
	}
	return "string"
}

// runBoth runs data on the model, then on the library, and returns both
// traces. The library side skips the Cancel calls that the model found
// would go round a cycle (the library has no way to tell, short of
// overflowing the stack).
func runBoth(data []byte) (model, library []string) {
	var loops []bool
	model = runProgram(data, func(in *interp) system {
		m := newModel(in)
		in.run = m.runOp
		in.loops = func(i int) bool {
			l := m.cancelLoops(i)
			loops = append(loops, l)
			return l
		}
		return m
	})
	library = runProgram(data, func(in *interp) system {
		in.run = func(op func()) (any, bool) {
			if in.goexits {
				return runOnGoroutine(op)
			}
			return runHere(op), false
		}
		in.loops = func(int) bool {
			if len(loops) == 0 {
				return true // the traces differ already: stay on the safe side
			}
			l := loops[0]
			loops = loops[1:]
			return l
		}
		return newLibSys(in)
	})
	return model, library
}

// do runs an operation and records its panic (a misuse panic, or a
// library bug) or its Goexit. It reports whether op did not return.
func (in *interp) do(op func()) (stopped bool) {
	p, goexited := in.run(op)
	switch {
	case goexited:
		in.log("  -> goexit")
		return true
	case p != nil:
		in.log("  -> %s", panicClass(p))
		return true
	}
	return false
}

// runHere runs op on the calling goroutine and returns its panic.
func runHere(op func()) (p any) {
	defer func() { p = recover() }()
	op()
	return nil
}

// runOnGoroutine runs op on a goroutine of its own, waits for it to end,
// and returns its panic, or whether it called runtime.Goexit.
func runOnGoroutine(op func()) (p any, goexited bool) {
	done := make(chan struct{})
	go func() {
		returned := false
		defer func() {
			if !returned {
				p = recover()
				goexited = p == nil
			}
			close(done)
		}()
		op()
		returned = true
	}()
	<-done
	return p, goexited
}

func (in *interp) pick() int { return in.byte() % len(in.types) }
func (in *interp) root() int { return in.byte() % in.roots }

// pickOf picks among the Deferreds of type t; extra is one more candidate
// (Then's new Deferred), or -1.
func (in *interp) pickOf(t typ, b int, roots bool, extra int) int {
	var cands []int
	n := len(in.types)
	if roots {
		n = in.roots
	}
	for i := 0; i < n; i++ {
		if in.types[i] == t {
			cands = append(cands, i)
		}
	}
	if extra >= 0 {
		cands = append(cands, extra)
	}
	if len(cands) == 0 {
		return -1
	}
	return cands[b%len(cands)]
}

func (in *interp) name() string {
	in.stages++
	return "s" + strconv.Itoa(in.stages)
}

func (in *interp) sideEffect() sideEffect {
	b := in.byte()
	kind, j, k := seKind(b%int(numSeKinds)), in.byte(), in.byte()%10
	if b >= sePeekBytes {
		kind = sePeek
	}
	switch kind {
	case seCallback:
		return sideEffect{kind: kind, j: j % in.roots, k: k}
	case seCancel, sePause, seUnpause, seAddBoth, sePeek:
		return sideEffect{kind: kind, j: j % len(in.types)}
	}
	return sideEffect{}
}

func (in *interp) fn() *fnSpec {
	fn := &fnSpec{name: in.name()}
	fn.act = action(in.byte() % int(numActions))
	fn.arg = in.byte() % 10
	fn.se = in.sideEffect()
	return fn
}

// dfn decodes a Deferred-returning function whose result has type t;
// extra is Then's new Deferred, a candidate for dPool, or -1.
func (in *interp) dfn(t typ, extra int) *dfnSpec {
	fn := &dfnSpec{name: in.name()}
	fn.kind = dKind(in.byte() % int(numDKinds))
	fn.arg = in.byte()
	if fn.kind == dPool {
		fn.arg = in.pickOf(t, fn.arg, false, extra)
	} else {
		fn.arg %= 10
	}
	fn.se = in.sideEffect()
	return fn
}

func (fn *fnSpec) String() string {
	var what string
	switch fn.act {
	case actValue:
		what = fmt.Sprintf("value %d", fn.arg)
	case actError:
		what = fmt.Sprintf("error E%d", fn.arg)
	case actPanicStr:
		what = fmt.Sprintf("panic P%d", fn.arg)
	case actPanicErr:
		what = fmt.Sprintf("panic E%d", fn.arg)
	case actPass:
		what = "pass"
	case actGoexit:
		what = "goexit"
	}
	return fmt.Sprintf("%s{%s%v}", fn.name, what, fn.se)
}

func (fn *dfnSpec) String() string {
	var what string
	switch fn.kind {
	case dSucceed:
		what = fmt.Sprintf("Succeed(value %d)", fn.arg)
	case dFail:
		what = fmt.Sprintf("Fail(E%d)", fn.arg)
	case dPool:
		what = fmt.Sprintf("d%d", fn.arg)
	case dNil:
		what = "nil"
	case dPanic:
		what = fmt.Sprintf("panic P%d", fn.arg)
	case dGoexit:
		what = "goexit"
	}
	return fmt.Sprintf("%s{%s%v}", fn.name, what, fn.se)
}

func (se sideEffect) String() string {
	switch se.kind {
	case seCallback:
		return fmt.Sprintf(", then d%d.Callback(%d)", se.j, se.k)
	case seCancel, sePause, seUnpause, seAddBoth:
		return fmt.Sprintf(", then d%d.%s", se.j, [...]string{"Cancel", "Pause", "Unpause", "AddBoth"}[se.kind-seCancel])
	case sePeek:
		return fmt.Sprintf(", then d%d.Peek", se.j)
	}
	return ""
}

// step decodes and runs one operation.
func (in *interp) step() {
	switch opOf(in.byte()) {
	case opAddCallback:
		i, fn := in.pick(), in.fn()
		in.log("d%d.AddCallback(%v)", i, fn)
		in.do(func() { in.sys.addCallback(i, fn) })
	case opAddErrback:
		i, fn := in.pick(), in.fn()
		in.log("d%d.AddErrback(%v)", i, fn)
		in.do(func() { in.sys.addErrback(i, fn) })
	case opAddBoth:
		i, fn := in.pick(), in.fn()
		in.log("d%d.AddBoth(%v)", i, fn)
		in.do(func() { in.sys.addBoth(i, fn) })
	case opAddCallbacks:
		i, cb, eb := in.pick(), in.fn(), in.fn()
		in.log("d%d.AddCallbacks(%v, %v)", i, cb, eb)
		in.do(func() { in.sys.addCallbacks(i, cb, eb) })
	case opAddCallbackDeferred:
		i := in.pick()
		fn := in.dfn(in.types[i], -1)
		in.log("d%d.AddCallbackDeferred(%v)", i, fn)
		in.do(func() { in.sys.addCallbackDeferred(i, fn) })
	case opAddErrbackDeferred:
		i := in.pick()
		fn := in.dfn(in.types[i], -1)
		in.log("d%d.AddErrbackDeferred(%v)", i, fn)
		in.do(func() { in.sys.addErrbackDeferred(i, fn) })
	case opChain:
		i := in.pick()
		j := in.pickOf(in.types[i], in.byte(), true, -1)
		in.log("d%d.Chain(d%d)", i, j)
		in.do(func() { in.sys.chain(i, j) })
	case opCallback:
		i, k := in.root(), in.byte()%10
		in.log("d%d.Callback(%d)", i, k)
		in.do(func() { in.log("  -> already=%v", in.sys.callback(i, k)) })
	case opErrback:
		i, k := in.root(), in.byte()%7
		if k == 6 {
			k = -1
		}
		in.log("d%d.Errback(E%d)", i, k)
		in.do(func() { in.log("  -> already=%v", in.sys.errback(i, k)) })
	case opCancel:
		i := in.pick()
		in.do(func() { in.cancel("", i) })
	case opPause:
		i := in.pick()
		in.log("d%d.Pause()", i)
		in.do(func() { in.sys.pause(i) })
	case opUnpause:
		i := in.pick()
		in.log("d%d.Unpause()", i)
		in.do(func() { in.sys.unpause(i) })
	case opThen:
		i, fn := in.pick(), in.fn()
		in.log("d%d = Then(d%d, %v)", len(in.types), i, fn)
		in.then(i, fn, nil)
	case opThenDeferred:
		i := in.pick()
		fn := in.dfn(in.types[i].other(), len(in.types))
		in.log("d%d = ThenDeferred(d%d, %v)", len(in.types), i, fn)
		in.then(i, nil, fn)
	case opCalled:
		i := in.pick()
		in.log("d%d.Called() = %v", i, in.sys.called(i))
	case opMisuse:
		i, which := in.pick(), in.byte()%3
		in.log("d%d misuse %d", i, which)
		in.do(func() {
			switch which {
			case 0:
				in.sys.addCallback(i, nil)
			case 1:
				in.sys.chain(i, -1)
			default:
				in.sys.then(i, nil, nil)
			}
		})
	case opGoexit:
		in.goexits = true
		i, which := in.pick(), in.byte()%6
		name, se := in.name(), in.sideEffect()
		fn := &fnSpec{name: name, act: actGoexit, se: se}
		dfn := &dfnSpec{name: name, kind: dGoexit, se: se}
		switch which {
		case 0:
			in.log("d%d.AddCallback(%v)", i, fn)
			in.do(func() { in.sys.addCallback(i, fn) })
		case 1:
			in.log("d%d.AddErrback(%v)", i, fn)
			in.do(func() { in.sys.addErrback(i, fn) })
		case 2:
			in.log("d%d.AddBoth(%v)", i, fn)
			in.do(func() { in.sys.addBoth(i, fn) })
		case 3:
			in.log("d%d.AddCallbackDeferred(%v)", i, dfn)
			in.do(func() { in.sys.addCallbackDeferred(i, dfn) })
		case 4:
			in.log("d%d = Then(d%d, %v)", len(in.types), i, fn)
			in.then(i, fn, nil)
		default:
			in.log("d%d = ThenDeferred(d%d, %v)", len(in.types), i, dfn)
			in.then(i, nil, dfn)
		}
	case opObserve:
		i := in.pick()
		n := len(in.types)
		in.log("d%d = d%d.Observe()", n, i)
		if !in.do(func() { in.sys.observe(i) }) {
			in.types = append(in.types, in.types[i])
			in.branches = append(in.branches, n)
		}
	case opPeek:
		i := in.pick()
		in.log("d%d.Peek()", i)
		in.do(func() {
			out, ok := in.sys.peek(i)
			in.log("  -> %s, %v", out, ok)
		})
	case opAwait:
		i := in.pick()
		// Await cancels a Deferred that does not hold its result: not
		// one whose Cancel would go round a waiting cycle (see cancel).
		if in.loops(i) {
			in.log("d%d.Await(ended ctx) skipped: waiting cycle", i)
			return
		}
		in.log("d%d.Await(ended ctx)", i)
		in.do(func() { in.log("  -> %s", in.sys.await(i)) })
	case opFireBranch:
		b, k := in.byte(), in.byte()%20
		if len(in.branches) == 0 {
			in.log("no branch to fire")
			return
		}
		i := in.branches[b%len(in.branches)]
		if k < 10 {
			in.log("d%d.Callback(%d)", i, k)
			in.do(func() { in.log("  -> already=%v", in.sys.callback(i, k)) })
		} else {
			in.log("d%d.Errback(E%d)", i, k-10)
			in.do(func() { in.log("  -> already=%v", in.sys.errback(i, k-10)) })
		}
	}
}

func (in *interp) then(i int, fn *fnSpec, dfn *dfnSpec) {
	if !in.do(func() { in.sys.then(i, fn, dfn) }) {
		in.types = append(in.types, in.types[i].other())
	}
}

// cancel cancels i unless that would go round a cycle of Deferreds waiting
// for each other, which overflows the stack (left out; see the report).
func (in *interp) cancel(by string, i int) {
	if in.loops(i) {
		in.log("%sd%d.Cancel() skipped: waiting cycle", by, i)
		return
	}
	in.log("%sd%d.Cancel()", by, i)
	in.sys.cancel(i)
}

// stageBody is the common part of every stage function: record the input,
// then make the side effect, which may panic (misuse) like user code.
func (in *interp) stageBody(name, side, input string, se sideEffect) {
	in.log("%s %s(%s)", name, side, input)
	by := name + ": "
	switch se.kind {
	case seCallback:
		in.log("%sd%d.Callback(%d)", by, se.j, se.k)
		in.log("%s-> already=%v", by, in.sys.callback(se.j, se.k))
	case seCancel:
		in.cancel(by, se.j)
	case sePause:
		in.log("%sd%d.Pause()", by, se.j)
		in.sys.pause(se.j)
	case seUnpause:
		in.log("%sd%d.Unpause()", by, se.j)
		in.sys.unpause(se.j)
	case seAddBoth:
		in.log("%sd%d.AddBoth(%s+)", by, se.j, name)
		in.sys.addBoth(se.j, &fnSpec{name: name + "+", act: actPass})
	case sePeek:
		in.log("%sd%d.Peek()", by, se.j)
		out, ok := in.sys.peek(se.j)
		in.log("%s-> %s, %v", by, out, ok)
	}
}

// The library side.

// libSys runs a program on the library. Its Deferreds are *Deferred[int]
// and *Deferred[string].
type libSys struct {
	in   *interp
	pool []any
}

func newLibSys(in *interp) *libSys { return &libSys{in: in} }

func (s *libSys) create(t typ, c cancelKind) {
	if t == tInt {
		s.pool = append(s.pool, libCreate[int](c))
	} else {
		s.pool = append(s.pool, libCreate[string](c))
	}
}

func libCreate[T any](c cancelKind) *Deferred[T] {
	switch c {
	case rootSucceed:
		return Succeed(value(typeOf[T](), 3).(T))
	case rootFail:
		return Fail[T](testErr(4))
	}
	return NewWithCanceller(libCanceller[T](c))
}

func libCanceller[T any](c cancelKind) func(*Deferred[T]) {
	switch c {
	case cancelValue:
		return func(d *Deferred[T]) { _ = d.Callback(value(typeOf[T](), 7).(T)) }
	case cancelError:
		return func(d *Deferred[T]) { _ = d.Errback(testErr(5)) }
	case cancelNothing:
		return func(*Deferred[T]) {}
	case cancelPanic:
		return func(*Deferred[T]) { panic(cancellerPanic) }
	case cancelGoexit:
		return func(*Deferred[T]) { runtime.Goexit() }
	}
	return nil
}

func describe[T any](v T, f *Failure) string {
	if f != nil {
		return "f=" + failureClass(f)
	}
	return fmt.Sprintf("v=%v", v)
}

// libFn makes the stage function for fn: it gets (v, nil) on the callback
// side and (zero, f) on the errback side.
func libFn[T any](in *interp, fn *fnSpec, side string) func(T, *Failure) (T, error) {
	return func(v T, f *Failure) (T, error) {
		in.stageBody(fn.name, side, describe(v, f), fn.se)
		if fn.act == actGoexit {
			runtime.Goexit()
		}
		if fn.act == actPass {
			if f == nil && side != "both" {
				return v, nil
			}
			return v, f // AddBoth's success side returns its nil *Failure: success
		}
		out, err := fn.outcome(any(v), typeOf[T]())
		return out.(T), err
	}
}

func libDfn[T any](s *libSys, fn *dfnSpec, side string) func(T, *Failure) *Deferred[T] {
	return func(v T, f *Failure) *Deferred[T] {
		s.in.stageBody(fn.name, side, describe(v, f), fn.se)
		switch fn.kind {
		case dSucceed:
			return Succeed(bump(any(v), fn.arg).(T))
		case dFail:
			return Fail[T](testErr(fn.arg))
		case dPool:
			if fn.arg == len(s.pool) {
				// ThenDeferred's function returning ThenDeferred's own
				// result while ThenDeferred runs: a real program's
				// variable would still be nil. The model calls both misuse.
				return nil
			}
			return s.pool[fn.arg].(*Deferred[T])
		case dNil:
			return nil
		case dGoexit:
			runtime.Goexit()
		}
		panic(fn.panicValue())
	}
}

func libAdd[T any](s *libSys, d *Deferred[T], method string, fn *fnSpec, fn2 *fnSpec) {
	if fn == nil {
		d.AddCallback(nil)
		return
	}
	switch method {
	case "cb":
		g := libFn[T](s.in, fn, "cb")
		d.AddCallback(func(v T) (T, error) { return g(v, nil) })
	case "eb":
		g := libFn[T](s.in, fn, "eb")
		d.AddErrback(func(f *Failure) (T, error) { return g(*new(T), f) })
	case "both":
		d.AddBoth(libFn[T](s.in, fn, "both"))
	case "cbs":
		g, h := libFn[T](s.in, fn, "cb"), libFn[T](s.in, fn2, "eb")
		d.AddCallbacks(func(v T) (T, error) { return g(v, nil) },
			func(f *Failure) (T, error) { return h(*new(T), f) })
	}
}

func libAddD[T any](s *libSys, d *Deferred[T], cbSide bool, fn *dfnSpec) {
	g := libDfn[T](s, fn, map[bool]string{true: "cbd", false: "ebd"}[cbSide])
	if cbSide {
		d.AddCallbackDeferred(func(v T) *Deferred[T] { return g(v, nil) })
	} else {
		d.AddErrbackDeferred(func(f *Failure) *Deferred[T] { return g(*new(T), f) })
	}
}

func (s *libSys) add(i int, method string, fn, fn2 *fnSpec) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		libAdd(s, d, method, fn, fn2)
	case *Deferred[string]:
		libAdd(s, d, method, fn, fn2)
	}
}

func (s *libSys) addCallback(i int, fn *fnSpec)      { s.add(i, "cb", fn, nil) }
func (s *libSys) addErrback(i int, fn *fnSpec)       { s.add(i, "eb", fn, nil) }
func (s *libSys) addBoth(i int, fn *fnSpec)          { s.add(i, "both", fn, nil) }
func (s *libSys) addCallbacks(i int, cb, eb *fnSpec) { s.add(i, "cbs", cb, eb) }
func (s *libSys) final(i int)                        { s.add(i, "both", finalSpec(i), nil) }
func (s *libSys) addCallbackDeferred(i int, fn *dfnSpec) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		libAddD(s, d, true, fn)
	case *Deferred[string]:
		libAddD(s, d, true, fn)
	}
}

func (s *libSys) addErrbackDeferred(i int, fn *dfnSpec) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		libAddD(s, d, false, fn)
	case *Deferred[string]:
		libAddD(s, d, false, fn)
	}
}

func libChain[T any](s *libSys, d *Deferred[T], j int) {
	if j < 0 {
		d.Chain(nil)
		return
	}
	d.Chain(s.pool[j].(*Deferred[T]))
}

func (s *libSys) chain(i, j int) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		libChain(s, d, j)
	case *Deferred[string]:
		libChain(s, d, j)
	}
}

func libThen[T, U any](s *libSys, d *Deferred[T], fn *fnSpec, dfn *dfnSpec) {
	var u *Deferred[U]
	switch {
	case fn != nil:
		g := libFn[U](s.in, fn, "then")
		u = Then(d, func(v T) (U, error) { return g(convert(any(v)).(U), nil) })
	case dfn != nil:
		g := libDfn[U](s, dfn, "then")
		u = ThenDeferred(d, func(v T) *Deferred[U] { return g(convert(any(v)).(U), nil) })
	default:
		u = Then[T, U](d, nil)
	}
	s.pool = append(s.pool, u)
}

func (s *libSys) then(i int, fn *fnSpec, dfn *dfnSpec) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		libThen[int, string](s, d, fn, dfn)
	case *Deferred[string]:
		libThen[string, int](s, d, fn, dfn)
	}
}

func (s *libSys) callback(i, k int) bool {
	var err error
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		err = d.Callback(k)
	case *Deferred[string]:
		err = d.Callback(strconv.Itoa(k))
	}
	return s.alreadyCalled(err)
}

func (s *libSys) errback(i, k int) bool {
	var err error
	if k >= 0 {
		err = testErr(k)
	}
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		err = d.Errback(err)
	case *Deferred[string]:
		err = d.Errback(err)
	}
	return s.alreadyCalled(err)
}

func (s *libSys) alreadyCalled(err error) bool {
	if err != nil && !errors.Is(err, ErrAlreadyCalled) {
		panic(fmt.Sprintf("firing returned %v", err))
	}
	return err != nil
}

func (s *libSys) cancel(i int) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		d.Cancel()
	case *Deferred[string]:
		d.Cancel()
	}
}

func (s *libSys) pause(i int) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		d.Pause()
	case *Deferred[string]:
		d.Pause()
	}
}

func (s *libSys) unpause(i int) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		d.Unpause()
	case *Deferred[string]:
		d.Unpause()
	}
}

func libObserve[T any](s *libSys, d *Deferred[T]) { s.pool = append(s.pool, d.Observe()) }

func (s *libSys) observe(i int) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		libObserve(s, d)
	case *Deferred[string]:
		libObserve(s, d)
	}
}

func libPeek[T any](d *Deferred[T]) (string, bool) {
	o, ok := d.Peek()
	return describe(o.Value, o.Failure), ok
}

func (s *libSys) peek(i int) (string, bool) {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		return libPeek(d)
	case *Deferred[string]:
		return libPeek(d)
	}
	return "", false
}

// libAwait calls Await with a context that has ended already.
func libAwait[T any](d *Deferred[T]) string {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := d.Await(ctx)
	var f *Failure
	switch {
	case err == nil:
		return describe(v, nil)
	case errors.Is(err, context.Canceled) && !errors.As(err, &f):
		if !isZero(v) {
			return fmt.Sprintf("ctx with v=%v", v)
		}
		return "ctx"
	case errors.As(err, &f) && err == error(f):
		if !isZero(v) {
			return fmt.Sprintf("f=%s with v=%v", failureClass(f), v)
		}
		return describe(v, f)
	}
	return "other error " + err.Error()
}

func isZero[T any](v T) bool { return any(v) == any(zeroOf[T]()) }

func (s *libSys) await(i int) string {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		return libAwait(d)
	case *Deferred[string]:
		return libAwait(d)
	}
	return ""
}

func (s *libSys) called(i int) bool {
	switch d := s.pool[i].(type) {
	case *Deferred[int]:
		return d.Called()
	case *Deferred[string]:
		return d.Called()
	}
	return false
}

// FuzzChain requires the library and the model to leave the same trace for
// every program (see the top of this file). Unhandled-failure reports of the
// Deferreds that programs drop go to a quiet handler while it runs.
func FuzzChain(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	// Programs drop failed Deferreds all the time: keep their reports quiet.
	fuzzQuietUnhandled(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		want, got := runBoth(data)
		if !slices.Equal(want, got) {
			t.Fatalf("the library's trace differs from the model's:\n%s", traceDiff(want, got))
		}
	})
}

// traceDiff lists two traces side by side, model on the left, and marks
// the lines that differ.
func traceDiff(want, got []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "   %-58s | %s\n", "MODEL", "LIBRARY")
	for i := 0; i < max(len(want), len(got)); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		mark := "  "
		if w != g {
			mark = "!!"
		}
		fmt.Fprintf(&b, "%s %-58s | %s\n", mark, w, g)
	}
	return b.String()
}

// fuzzQuietUnhandled sends unhandled-failure reports to a quiet handler
// until tb ends, and lets the reports of what tb's programs dropped arrive
// there before restoring the previous handler.
func fuzzQuietUnhandled(tb testing.TB) {
	prev := SetUnhandledHandler(func(*Failure) {})
	tb.Cleanup(func() {
		// Three canaries in turn: a Deferred a Goexit left behind can take
		// a few collections more to become unreachable.
		for range 3 {
			fuzzSettleUnhandled()
		}
		SetUnhandledHandler(prev)
	})
}

// fuzzSettleUnhandled collects garbage until the reports of the programs'
// dropped Deferreds have gone to the quiet handler, so that none reaches
// the handler restored after the fuzz target.
func fuzzSettleUnhandled() {
	canary := errors.New("fuzz canary")
	seen := make(chan struct{}, 1)
	SetUnhandledHandler(func(f *Failure) {
		if errors.Is(f, canary) {
			seen <- struct{}{}
		}
	})
	func() { Fail[int](canary) }()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		tick := time.NewTimer(5 * time.Millisecond)
		select {
		case <-seen:
			tick.Stop()
			return
		case <-tick.C:
		}
	}
}

// Seeds.

// seedProg assembles a program: a header, then operations.
type seedProg []byte

func newSeed(nInt, nStr int, cancellers ...cancelKind) seedProg {
	p := seedProg{byte(nInt - 1 + 4*nStr)}
	for _, c := range cancellers {
		if c == cancelGoexit {
			c = opBytes
		}
		p = append(p, byte(c))
	}
	return p
}

// op appends an operation: its code, then its operands (ints or
// the []int of fnB/dfnB).
func (p seedProg) op(code int, operands ...any) seedProg {
	p = append(p, opByte(code))
	for _, o := range operands {
		switch o := o.(type) {
		case int:
			p = append(p, byte(o))
		case []int:
			for _, b := range o {
				p = append(p, byte(b))
			}
		}
	}
	return p
}

// fnB encodes a value-returning stage function, with an optional side
// effect (kind, target, value).
func fnB(act action, arg int, se ...int) []int {
	return append([]int{int(act), arg}, seB(se)...)
}

// seB encodes an optional side effect (kind, target, value).
func seB(se []int) []int {
	se = append(slices.Clone(se), 0, 0, 0)[:3]
	if se[0] == int(sePeek) {
		se[0] = sePeekBytes
	}
	return se
}

// dfnB encodes a Deferred-returning stage function; for dPool, arg picks
// among the Deferreds of the right type, in creation order.
func dfnB(kind dKind, arg int, se ...int) []int {
	return append([]int{int(kind), arg}, seB(se)...)
}

// Kinds of opGoexit: what the stage that calls Goexit is.
const (
	goexitCallback = iota
	goexitErrback
	goexitBoth
	goexitCallbackDeferred
	goexitThen
	goexitThenDeferred
)

// goexitB encodes opGoexit's operands after the Deferred: the kind of
// stage, then an optional side effect made before the Goexit.
func goexitB(kind int, se ...int) []int {
	return append([]int{kind}, seB(se)...)
}

func fuzzSeeds() []seedProg {
	return []seedProg{
		// Values flow through callbacks; an error jumps to the errback,
		// which recovers.
		newSeed(1, 0, cancelNone).
			op(opAddCallback, 0, fnB(actValue, 1)).
			op(opAddCallback, 0, fnB(actError, 2)).
			op(opAddCallback, 0, fnB(actValue, 3)).
			op(opAddErrback, 0, fnB(actValue, 4)).
			op(opAddBoth, 0, fnB(actPass, 0)).
			op(opCallback, 0, 5),
		// Errback, AddCallbacks' two halves, panics with a string and an error.
		newSeed(2, 0, cancelNone, cancelNone).
			op(opAddCallbacks, 0, fnB(actValue, 1), fnB(actValue, 2)).
			op(opErrback, 0, 3).
			op(opAddCallback, 1, fnB(actPanicStr, 1)).
			op(opAddBoth, 1, fnB(actPass, 0)).
			op(opAddErrback, 1, fnB(actPanicErr, 2)).
			op(opCallback, 1, 1).
			op(opErrback, 0, 6),
		// A stage returns a pending Deferred; the outer chain waits for it.
		newSeed(2, 0, cancelNone, cancelNone).
			op(opAddCallbackDeferred, 0, dfnB(dPool, 1)).
			op(opAddCallback, 0, fnB(actValue, 2)).
			op(opCallback, 0, 1).
			op(opCalled, 0).
			op(opCallback, 1, 4),
		// Already-fired Deferreds returned by stages: Succeed, Fail, a
		// fired pool Deferred; nil and the stage's own Deferred are misuse.
		newSeed(2, 0, cancelNone, cancelNone).
			op(opCallback, 1, 9).
			op(opAddCallbackDeferred, 0, dfnB(dSucceed, 1)).
			op(opAddCallbackDeferred, 0, dfnB(dFail, 2)).
			op(opAddErrbackDeferred, 0, dfnB(dPool, 1)).
			op(opAddCallbackDeferred, 0, dfnB(dNil, 0)).
			op(opAddErrbackDeferred, 0, dfnB(dPool, 0)).
			op(opAddErrbackDeferred, 0, dfnB(dPanic, 3)).
			op(opCallback, 0, 2),
		// Pause counts; Unpause at 0 does nothing.
		newSeed(1, 0, cancelNone).
			op(opUnpause, 0).
			op(opPause, 0).
			op(opPause, 0).
			op(opCallback, 0, 3).
			op(opAddCallback, 0, fnB(actValue, 1)).
			op(opUnpause, 0).
			op(opCalled, 0).
			op(opUnpause, 0).
			op(opUnpause, 0),
		// Cancel without canceller: the next firing is swallowed, the one
		// after returns ErrAlreadyCalled.
		newSeed(1, 0, cancelNone).
			op(opAddErrback, 0, fnB(actPass, 0)).
			op(opCancel, 0).
			op(opCallback, 0, 1).
			op(opErrback, 0, 2).
			op(opCancel, 0),
		// Cancellers: fire with a value, with an error, do nothing, panic.
		newSeed(4, 0, cancelValue, cancelError, cancelNothing, cancelPanic).
			op(opCancel, 0).
			op(opCancel, 1).
			op(opCancel, 2).
			op(opCancel, 3).
			op(opCallback, 0, 1).
			op(opCallback, 2, 1).
			op(opErrback, 3, 1),
		// Cancel reaches the pending Deferred a fired one waits for.
		newSeed(2, 0, cancelNone, cancelNothing).
			op(opAddCallbackDeferred, 0, dfnB(dPool, 1)).
			op(opCallback, 0, 1).
			op(opCancel, 0).
			op(opCallback, 1, 2),
		// Then changes the type; the old handle may still fire but not
		// take stages; Then's result takes them.
		newSeed(1, 0, cancelNone).
			op(opAddCallback, 0, fnB(actValue, 1)).
			op(opThen, 0, fnB(actValue, 2)).
			op(opAddCallback, 1, fnB(actValue, 3)).
			op(opAddCallback, 0, fnB(actValue, 4)).
			op(opThen, 0, fnB(actValue, 4)).
			op(opCallback, 0, 6).
			op(opThen, 1, fnB(actError, 1)),
		// ThenDeferred waits for a pending Deferred of the new type;
		// cancelling Then's result cancels the source.
		newSeed(1, 1, cancelNone, cancelNone).
			op(opThenDeferred, 0, dfnB(dPool, 0)).
			op(opAddBoth, 2, fnB(actPass, 0)).
			op(opCallback, 0, 3).
			op(opCallback, 1, 5).
			op(opThen, 2, fnB(actPass, 0)).
			op(opCancel, 3),
		newSeed(1, 0, cancelError).
			op(opThen, 0, fnB(actValue, 1)).
			op(opCancel, 1).
			op(opCallback, 0, 1),
		// Chain: the other Deferred fires with our result, we go on with the
		// zero value; a fired other gives ErrAlreadyCalled.
		newSeed(3, 0, cancelNone, cancelNone, cancelNone).
			op(opAddCallback, 1, fnB(actValue, 1)).
			op(opChain, 0, 1).
			op(opAddBoth, 0, fnB(actPass, 0)).
			op(opChain, 0, 1).
			op(opAddBoth, 0, fnB(actPass, 0)).
			op(opCancel, 2).
			op(opChain, 0, 2).
			op(opErrback, 0, 4),
		// Stages with side effects: fire, cancel, pause, unpause another
		// Deferred, add a stage to their own.
		newSeed(3, 0, cancelNone, cancelValue, cancelNone).
			op(opAddCallback, 0, fnB(actValue, 1, int(seCallback), 2, 8)).
			op(opAddCallback, 0, fnB(actValue, 2, int(seCancel), 1)).
			op(opAddCallback, 0, fnB(actValue, 3, int(seAddBoth), 0)).
			op(opAddCallback, 0, fnB(actValue, 4, int(sePause), 0)).
			op(opAddCallback, 2, fnB(actValue, 5, int(seUnpause), 0)).
			op(opCallback, 0, 1),
		// Misuse: nil functions, Chain to nil and to itself.
		newSeed(1, 1, cancelNone, cancelNone).
			op(opMisuse, 0, 0).
			op(opMisuse, 1, 1).
			op(opMisuse, 0, 2).
			op(opChain, 1, 0).
			op(opErrback, 1, 2),
		// Nested waits: d0 waits for d1 waits for d2, fired innermost last.
		newSeed(3, 0, cancelNone, cancelNone, cancelNone).
			op(opAddCallbackDeferred, 0, dfnB(dPool, 1)).
			op(opAddErrbackDeferred, 1, dfnB(dPool, 2)).
			op(opCallback, 0, 1).
			op(opErrback, 1, 2).
			op(opPause, 2).
			op(opCallback, 2, 3).
			op(opUnpause, 2),
		// A stage calls Goexit: the rest of the chain runs, on the failure
		// side, and the Callback that ran it does not return.
		newSeed(1, 0, cancelNone).
			op(opAddCallback, 0, fnB(actValue, 1)).
			op(opGoexit, 0, goexitB(goexitCallback)).
			op(opAddCallback, 0, fnB(actValue, 2)).
			op(opAddErrback, 0, fnB(actValue, 3)).
			op(opCallback, 0, 1).
			op(opCalled, 0).
			op(opGoexit, 0, goexitB(goexitBoth)),
		// The Goexit comes from a side effect: the stage that fired the
		// other Deferred does not return either, and fails in turn.
		newSeed(2, 0, cancelNone, cancelNone).
			op(opGoexit, 1, goexitB(goexitCallback)).
			op(opAddErrback, 1, fnB(actValue, 4)).
			op(opAddCallback, 0, fnB(actValue, 1, int(seCallback), 1, 5)).
			op(opAddErrback, 0, fnB(actValue, 6)).
			op(opCallback, 0, 1),
		// An outer Deferred waits for one whose chain calls Goexit; a
		// Deferred-returning stage calls Goexit after pausing its own
		// Deferred; Then's function calls Goexit on a fired source.
		newSeed(3, 1, cancelNone, cancelNone, cancelNone, cancelNone).
			op(opAddCallbackDeferred, 0, dfnB(dPool, 1)).
			op(opAddErrback, 0, fnB(actValue, 2)).
			op(opGoexit, 1, goexitB(goexitBoth)).
			op(opCallback, 0, 1).
			op(opCallback, 1, 2).
			op(opGoexit, 2, goexitB(goexitCallbackDeferred, int(sePause), 2)).
			op(opAddBoth, 2, fnB(actPass, 0)).
			op(opCallback, 2, 3).
			op(opUnpause, 2).
			op(opGoexit, 3, goexitB(goexitThenDeferred)).
			op(opCallback, 3, 4).
			op(opGoexit, 0, goexitB(goexitThen)),
		// Cancel's canceller fires a chain that calls Goexit; a Chain
		// target's chain calls Goexit and the source goes on.
		newSeed(3, 0, cancelValue, cancelNone, cancelNone).
			op(opGoexit, 0, goexitB(goexitCallback)).
			op(opAddErrback, 0, fnB(actValue, 1)).
			op(opCancel, 0).
			op(opGoexit, 2, goexitB(goexitCallback)).
			op(opChain, 1, 2).
			op(opAddBoth, 1, fnB(actPass, 0)).
			op(opCallback, 1, 2).
			op(opGoexit, 1, goexitB(goexitErrback)).
			op(opErrback, 2, 3),
		// A canceller calls Goexit: its Deferred fails with ErrGoexit,
		// and so does the stage whose side effect cancelled it.
		newSeed(2, 0, cancelGoexit, cancelNone).
			op(opAddErrback, 0, fnB(actPass, 0)).
			op(opAddCallback, 1, fnB(actValue, 1, int(seCancel), 0)).
			op(opAddErrback, 1, fnB(actValue, 2)).
			op(opCallback, 1, 1).
			op(opCancel, 0).
			op(opCallback, 0, 3),
		// A branch gets the result at its point, runs its chain before
		// the rest of the source's, and leaves the source its result;
		// Peek and Await see it once it is there. An Await on a pending
		// branch cancels the branch alone.
		shareSeedPoint(),
		// Cancel on a branch before it fired takes it off the source and
		// fails it alone; a branch fired by hand refuses the source's
		// result; Cancel after the firing does nothing.
		shareSeedCancel(),
		// One branch's stage cancels another while the source runs: the
		// stage stays on the source, and the cancelled branch refuses it.
		newSeed(1, 0, cancelNone).
			op(opObserve, 0).
			op(opObserve, 0).
			op(opAddCallback, 1, fnB(actValue, 1, int(seCancel), 2)).
			op(opAddErrback, 2, fnB(actValue, 2)).
			op(opAddCallback, 0, fnB(actValue, 3)).
			op(opCallback, 0, 4).
			op(opPeek, 2).
			op(opFireBranch, 1, 5),
		// Await with an ended context: the result if there, else
		// ctx.Err() and a Cancel (through a canceller, of a paused
		// Deferred, of the Deferred a chain waits for); a handed-over
		// Deferred refuses Await, Peek and Observe.
		shareSeedAwait(),
		// A branch returned by a stage of another Deferred, whose chain
		// calls Goexit when the source fires it; Then on a branch.
		newSeed(2, 0, cancelNone, cancelNone).
			op(opObserve, 0).
			op(opGoexit, 2, goexitB(goexitCallback)).
			op(opAddErrback, 2, fnB(actValue, 3)).
			op(opAddCallbackDeferred, 1, dfnB(dPool, 2)).
			op(opAddCallback, 0, fnB(actValue, 4)).
			op(opCallback, 1, 1).
			op(opCallback, 0, 5).
			op(opThen, 2, fnB(actValue, 1)).
			op(opObserve, 1).
			op(opCancel, 1).
			op(opPeek, 4),
		// Stages Peek while chains run: their own Deferred, the source of
		// their branch, and the inner Deferred that gave them its result.
		newSeed(2, 0, cancelNone, cancelNone).
			op(opAddCallback, 0, fnB(actValue, 1, int(sePeek), 0)).
			op(opObserve, 0).
			op(opAddCallback, 2, fnB(actValue, 2, int(sePeek), 0)).
			op(opAddCallbackDeferred, 1, dfnB(dPool, 2)).
			op(opAddCallback, 1, fnB(actValue, 3, int(sePeek), 2)).
			op(opCallback, 1, 1).
			op(opCallback, 0, 4).
			op(opThen, 0, fnB(actValue, 4, int(sePeek), 0)),
		// A canceller that calls Goexit under Await.
		newSeed(1, 0, cancelGoexit).
			op(opObserve, 0).
			op(opAddErrback, 1, fnB(actValue, 6)).
			op(opAwait, 0).
			op(opAwait, 0).
			op(opAwait, 1),
	}
}

func shareSeedPoint() seedProg {
	return newSeed(1, 0, cancelNone).
		op(opAddCallback, 0, fnB(actValue, 1)).
		op(opObserve, 0).
		op(opAddCallback, 1, fnB(actValue, 2)).
		op(opAddCallback, 0, fnB(actValue, 3)).
		op(opPeek, 0).
		op(opObserve, 0).
		op(opAwait, 2).
		op(opCallback, 0, 5).
		op(opPeek, 0).
		op(opPeek, 1).
		op(opAwait, 1).
		op(opAwait, 0)
}

func shareSeedCancel() seedProg {
	return newSeed(1, 0, cancelNone).
		op(opObserve, 0).
		op(opAddErrback, 1, fnB(actValue, 4)).
		op(opCancel, 1).
		op(opFireBranch, 0, 3).
		op(opObserve, 0).
		op(opFireBranch, 1, 12).
		op(opAddBoth, 0, fnB(actPass, 0)).
		op(opCallback, 0, 1).
		op(opCancel, 2).
		op(opPeek, 2).
		op(opPeek, 0)
}

func shareSeedAwait() seedProg {
	return newSeed(4, 0, cancelValue, cancelNone, cancelNone, cancelNone).
		op(opAddCallback, 0, fnB(actValue, 1)).
		op(opAwait, 0).
		op(opAwait, 0).
		op(opPause, 1).
		op(opCallback, 1, 2).
		op(opAwait, 1).
		op(opPeek, 1).
		op(opUnpause, 1).
		op(opAddCallbackDeferred, 2, dfnB(dPool, 3)).
		op(opCallback, 2, 1).
		op(opAwait, 2).
		op(opPeek, 2).
		op(opThen, 0, fnB(actValue, 2)).
		op(opAwait, 0).
		op(opPeek, 0).
		op(opObserve, 0).
		op(opPeek, 4)
}

// The model checked against Twisted itself: each program's expected trace
// is what the same program, translated to Python, printed under Twisted
// 22.4. They pin the rules where the library and the model once disagreed.

func TestFuzzModelFollowsTwisted(t *testing.T) {
	fuzzQuietUnhandled(t) // programs drop failed Deferreds
	cases := []struct {
		name string
		prog seedProg
		want []string
	}{{
		// The continuation is appended to the inner Deferred when the outer
		// one starts waiting: stages added to the inner one later run after
		// it, with the zero value (Twisted: None).
		name: "inner's later stages run after the outer one",
		prog: newSeed(2, 0, cancelNone, cancelNone).
			op(opAddCallbackDeferred, 0, dfnB(dPool, 1)).
			op(opCallback, 0, 1).
			op(opAddCallback, 1, fnB(actValue, 5)).
			op(opCallback, 1, 2),
		want: []string{
			"d0 = New[int](canceller none)",
			"d1 = New[int](canceller none)",
			"d0.AddCallbackDeferred(s1{d1})",
			"d0.Callback(1)",
			"s1 cbd(v=1)",
			"  -> already=false",
			"d1.AddCallback(s2{value 5})",
			"d1.Callback(2)",
			"s2 cb(v=0)",
			"  -> already=false",
			"end d0 called=true",
			"end d0 both(v=2)",
			"end d1 called=true",
			"end d1 both(v=5)",
		},
	}, {
		// Chain: other's whole chain runs before the rest of d's, even when
		// one of other's stages adds a stage to d.
		name: "Chain runs other's chain first",
		prog: newSeed(2, 0, cancelNone, cancelNone).
			op(opAddCallback, 1, fnB(actValue, 1, int(seAddBoth), 0)).
			op(opAddCallback, 1, fnB(actValue, 2)).
			op(opChain, 0, 1).
			op(opAddCallback, 0, fnB(actValue, 3)).
			op(opCallback, 0, 1),
		want: []string{
			"d0 = New[int](canceller none)",
			"d1 = New[int](canceller none)",
			"d1.AddCallback(s1{value 1, then d0.AddBoth})",
			"d1.AddCallback(s2{value 2})",
			"d0.Chain(d1)",
			"d0.AddCallback(s3{value 3})",
			"d0.Callback(1)",
			"s1 cb(v=1)",
			"s1: d0.AddBoth(s1+)",
			"s2 cb(v=11)",
			"s3 cb(v=0)",
			"s1+ both(v=3)",
			"  -> already=false",
			"end d0 called=true",
			"end d0 both(v=3)",
			"end d1 called=true",
			"end d1 both(v=112)",
		},
	}, {
		// Then(d, f) is d.addCallback(f): cancelling while d is fired but
		// paused changes nothing, and the failure d's chain makes later
		// reaches Then's result.
		name: "cancel after the source fired",
		prog: newSeed(1, 0, cancelNone).
			op(opPause, 0).
			op(opCallback, 0, 1).
			op(opAddCallback, 0, fnB(actError, 2)).
			op(opThen, 0, fnB(actValue, 1)).
			op(opCancel, 1).
			op(opUnpause, 0),
		want: []string{
			"d0 = New[int](canceller none)",
			"d0.Pause()",
			"d0.Callback(1)",
			"  -> already=false",
			"d0.AddCallback(s1{error E2})",
			"d1 = Then(d0, s2{value 1})",
			"d1.Cancel()",
			"d0.Unpause()",
			"s1 cb(v=1)",
			"end d0 called=true",
			"  -> panic:misuse",
			"end d1 called=true",
			"end d1 both(f=E2)",
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _ := runBoth(c.prog)
			require.Equal(t, c.want, got)
		})
	}
}

// TestFuzzModelGoexit pins the model's Goexit rule to goexit.go's, on
// the library and the model alike: the stage that calls Goexit fails with
// ErrGoexit and its chain goes on; a stage whose side effect the Goexit
// unwinds does not return either, fails the same way, and its own chain
// goes on; the operation that started it all ends in the Goexit, and a
// Then whose function calls Goexit never gives its caller its Deferred.
func TestFuzzModelGoexit(t *testing.T) {
	fuzzQuietUnhandled(t) // programs drop failed Deferreds
	cases := []struct {
		name string
		prog seedProg
		want []string
	}{{
		name: "through a side effect",
		prog: newSeed(2, 0, cancelNone, cancelNone).
			op(opGoexit, 1, goexitB(goexitCallback)).
			op(opAddErrback, 1, fnB(actValue, 4)).
			op(opAddCallback, 0, fnB(actValue, 1, int(seCallback), 1, 5)).
			op(opAddCallback, 0, fnB(actValue, 2)).
			op(opAddErrback, 0, fnB(actValue, 6)).
			op(opCallback, 0, 1).
			op(opCalled, 1),
		want: []string{
			"d0 = New[int](canceller none)",
			"d1 = New[int](canceller none)",
			"d1.AddCallback(s1{goexit})",
			"d1.AddErrback(s2{value 4})",
			"d0.AddCallback(s3{value 1, then d1.Callback(5)})",
			"d0.AddCallback(s4{value 2})",
			"d0.AddErrback(s5{value 6})",
			"d0.Callback(1)",
			"s3 cb(v=1)",
			"s3: d1.Callback(5)",
			"s1 cb(v=5)",
			"s2 eb(f=goexit)",
			// No "s3: -> already": d1.Callback did not return to s3,
			// which fails with the Goexit; s4 is skipped.
			"s5 eb(f=goexit)",
			"  -> goexit",
			"d1.Called() = true",
			"end d0 called=true",
			"end d0 both(v=6)",
			"end d1 called=true",
			"end d1 both(v=4)",
		},
	}, {
		name: "Then's function on a fired source",
		prog: newSeed(1, 0, rootSucceed).
			op(opGoexit, 0, goexitB(goexitThen)).
			op(opAddCallback, 0, fnB(actValue, 1)).
			op(opThen, 0, fnB(actValue, 2)),
		want: []string{
			"d0 = New[int](Succeed(3))",
			"d1 = Then(d0, s1{goexit})",
			"s1 then(v=#3)",
			"  -> goexit",
			// d1 was never returned: the next Then's Deferred is d1 again,
			// and d0, handed over, takes no more stages.
			"d0.AddCallback(s2{value 1})",
			"  -> panic:misuse",
			"d1 = Then(d0, s3{value 2})",
			"  -> panic:misuse",
			"end d0 called=true",
			"  -> panic:misuse",
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			model, library := runBoth(c.prog)
			require.Equal(t, c.want, model, "the model")
			require.Equal(t, c.want, library, "the library")
		})
	}
}

// TestFuzzModelShare pins the model's sharing rules to share.go's and
// await.go's, on the library and the model alike: a branch fires with the
// result at its point of the source's chain, before the rest of it, and
// the source keeps its result; Cancel on a pending branch fails the branch
// alone and takes it off the source, and a branch that fired already
// refuses the source's result; Peek and Await give the result once the
// Deferred holds it, and Await with an ended context otherwise cancels
// the Deferred and gives ctx.Err().
func TestFuzzModelShare(t *testing.T) {
	fuzzQuietUnhandled(t) // programs drop failed Deferreds
	cases := []struct {
		name string
		prog seedProg
		want []string
	}{{
		name: "the result at the branch's point",
		prog: shareSeedPoint(),
		want: []string{
			"d0 = New[int](canceller none)",
			"d0.AddCallback(s1{value 1})",
			"d1 = d0.Observe()",
			"d1.AddCallback(s2{value 2})",
			"d0.AddCallback(s3{value 3})",
			"d0.Peek()",
			"  -> v=0, false",
			"d2 = d0.Observe()",
			"d2.Await(ended ctx)",
			"  -> ctx",
			"d0.Callback(5)",
			"s1 cb(v=5)",
			"s2 cb(v=51)", // the branch's chain first, with s1's result
			"s3 cb(v=51)", // the source's goes on with the same result
			"  -> already=false",
			"d0.Peek()",
			"  -> v=513, true",
			"d1.Peek()",
			"  -> v=512, true",
			"d1.Await(ended ctx)",
			"  -> v=512", // the result wins over the ended context
			"d0.Await(ended ctx)",
			"  -> v=513",
			"end d0 called=true",
			"end d0 both(v=513)",
			"end d1 called=true",
			"end d1 both(v=512)",
			"end d2 called=true",
			"end d2 both(f=cancelled)", // the Await cancelled the branch alone
		},
	}, {
		name: "cancelled and fired branches",
		prog: shareSeedCancel(),
		want: []string{
			"d0 = New[int](canceller none)",
			"d1 = d0.Observe()",
			"d1.AddErrback(s1{value 4})",
			"d1.Cancel()",
			"s1 eb(f=cancelled)",
			"d1.Callback(3)",
			"  -> already=true", // the branch's canceller is a canceller
			"d2 = d0.Observe()",
			"d2.Errback(E2)",
			"  -> already=false",
			"d0.AddBoth(s2{pass})",
			"d0.Callback(1)",
			"s2 both(v=1)", // d2 refused the result; d0 did not notice
			"  -> already=false",
			"d2.Cancel()",
			"d2.Peek()",
			"  -> f=E2, true",
			"d0.Peek()",
			"  -> v=1, true",
			"end d0 called=true",
			"end d0 both(v=1)",
			"end d1 called=true",
			"end d1 both(v=4)",
			"end d2 called=true",
			"end d2 both(f=E2)",
		},
	}, {
		name: "Await with an ended context",
		prog: shareSeedAwait(),
		want: []string{
			"d0 = New[int](canceller fires 7)",
			"d1 = New[int](canceller none)",
			"d2 = New[int](canceller none)",
			"d3 = New[int](canceller none)",
			"d0.AddCallback(s1{value 1})",
			"d0.Await(ended ctx)",
			"s1 cb(v=7)",
			"  -> ctx",
			"d0.Await(ended ctx)",
			"  -> v=71",
			"d1.Pause()",
			"d1.Callback(2)",
			"  -> already=false",
			"d1.Await(ended ctx)",
			"  -> ctx", // paused: no result, and Cancel does nothing
			"d1.Peek()",
			"  -> v=0, false",
			"d1.Unpause()",
			"d2.AddCallbackDeferred(s2{d3})",
			"d2.Callback(1)",
			"s2 cbd(v=1)",
			"  -> already=false",
			"d2.Await(ended ctx)",
			"  -> ctx", // cancels d3, which d2 waits for
			"d2.Peek()",
			"  -> f=cancelled, true",
			"d4 = Then(d0, s3{value 2})",
			"s3 then(v=#71)",
			"d0.Await(ended ctx)",
			"  -> panic:misuse",
			"d0.Peek()",
			"  -> panic:misuse",
			"d5 = d0.Observe()",
			"  -> panic:misuse",
			"d4.Peek()",
			"  -> v=#71c, true",
			"end d0 called=true",
			"  -> panic:misuse",
			"end d1 called=true",
			"end d1 both(v=2)",
			"end d2 called=true",
			"end d2 both(f=cancelled)",
			"end d3 called=true",
			"end d3 both(v=0)",
			"end d4 called=true",
			"end d4 both(v=#71c)",
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			model, library := runBoth(c.prog)
			require.Equal(t, c.want, model, "the model")
			require.Equal(t, c.want, library, "the library")
		})
	}
}
