package deferred_test

// This file checks what every exported function and method of deferred and
// deferred/web gives a bad input: a panic whose message starts with the
// package name and names the misuse, or an error (or a failure) matching
// an exported sentinel — and that the doc comment says which.

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

// misuseNilCtx is a nil context.Context, passed where the API forbids it.
var misuseNilCtx context.Context

func misuseOK(v int) (int, error)                { return v, nil }
func misuseEB(*deferred.Failure) (int, error)    { return 0, nil }
func misuseDef(v int) *deferred.Deferred[int]    { return deferred.Succeed(v) }
func misuseInner() *deferred.Deferred[int]       { return deferred.Succeed(1) }
func misuseWork(context.Context) (int, error)    { return 1, nil }
func misuseNow() (int, error)                    { return 1, nil }
func misuseToString(v int) (string, error)       { return fmt.Sprint(v), nil }
func misuseToDef(int) *deferred.Deferred[string] { return deferred.Succeed("") }

// misuseHandedOver returns a Deferred whose chain Then has taken over.
func misuseHandedOver() *deferred.Deferred[int] {
	d := deferred.New[int]()
	deferred.Then(d, misuseOK)
	return d
}

// misuseAwaited returns a Deferred that another Deferred's stage returned
// and that this other one now waits for.
func misuseAwaited() *deferred.Deferred[int] {
	inner := deferred.New[int]()
	deferred.Succeed(1).AddCallbackDeferred(func(int) *deferred.Deferred[int] { return inner })
	return inner
}

// misuseFailureOf returns the failure d's chain holds now, consuming it, or
// an error saying that it holds none: the table's reading of the shared
// capture helper (testutil_test.go).
func misuseFailureOf[T any](d *deferred.Deferred[T]) error {
	if _, _, f := deferred.Capture(d).Get(); f != nil {
		return f
	}
	return errors.New("the Deferred did not fail")
}

// misuseCase is one bad input. One of panics, is and text is set, or is
// and text together: panics is the whole panic message after the package
// prefix, is the exported sentinel the error must match, text what the
// error's message must hold after the prefix.
type misuseCase struct {
	fn     string // the doc comment to check: "Maybe", "Deferred.AddCallback", "web.GetPage", "Deferred" (the type's)
	name   string
	run    func() error
	panics string
	is     error
	text   string
	// doc is what fn's doc comment says about this input (case ignored);
	// empty where the doc comment is silent, which the test lists.
	doc string
	// intact, if set, runs after run and says what the misuse changed
	// that it must not have: a misuse answered by a panic adds nothing.
	intact func() error
}

// misuseOnNew is c, a misuse of a new Deferred by use, which must leave
// that Deferred as it was: it still fires and passes its value on.
func misuseOnNew(c misuseCase, use func(d *deferred.Deferred[int])) misuseCase {
	d := deferred.New[int]()
	c.run = func() error { use(d); return nil }
	c.intact = func() error { return misuseStillPasses(d, 2) }
	return c
}

// misuseStillPasses fires d with v and checks that v reaches the end of
// its chain as a value.
func misuseStillPasses(d *deferred.Deferred[int], v int) error {
	if err := d.Callback(v); err != nil {
		return err
	}
	if fired, got, f := deferred.Capture(d).Get(); !fired || f != nil || got != v {
		return fmt.Errorf("Callback(%d) reached the end as (fired %v, %d, %v)", v, fired, got, f)
	}
	return nil
}

var (
	errMisuseA = errors.New("misuse test error A")
	errMisuseB = errors.New("misuse test error B")
)

// misuseInputs is c, a combinator given a bad input after good ones,
// which must leave the good inputs' results as they were (List: "the
// inputs' results are then left as they were"): a failed input keeps its
// failure, a pending one (given twice) its later value, another pending one
// its later failure. The bad input is the fifth, input 4.
func misuseInputs(c misuseCase, combine func(...*deferred.Deferred[int]), bad *deferred.Deferred[int]) misuseCase {
	failed, pendingV, pendingF := deferred.Fail[int](errMisuseA), deferred.New[int](), deferred.New[int]()
	c.run = func() error { combine(failed, pendingV, pendingF, pendingV, bad); return nil }
	c.intact = func() error {
		if err := misuseFailureOf(failed); !errors.Is(err, errMisuseA) {
			return fmt.Errorf("the failed input's failure was consumed: %w", err)
		}
		if err := misuseStillPasses(pendingV, 3); err != nil {
			return fmt.Errorf("the pending input: %w", err)
		}
		if err := pendingF.Errback(errMisuseB); err != nil {
			return err
		}
		if err := misuseFailureOf(pendingF); !errors.Is(err, errMisuseB) {
			return fmt.Errorf("the pending input's failure was consumed: %w", err)
		}
		return nil
	}
	return c
}

// misuseHandOvers are the two ways a Deferred's chain is handed over.
var misuseHandOvers = []struct {
	name     string
	handOver func(*deferred.Deferred[int])
}{
	{"Then", func(d *deferred.Deferred[int]) { deferred.Then(d, misuseToString) }},
	{"ThenDeferred", func(d *deferred.Deferred[int]) { deferred.ThenDeferred(d, misuseToDef) }},
}

// misuseAfterHandOver is every use of a Deferred that its chain's hand-over
// forbids, each answered by a panic naming the method.
func misuseAfterHandOver() []misuseCase {
	uses := []struct {
		fn, method, doc string
		use             func(d *deferred.Deferred[int]) error
	}{
		{"Deferred.AddCallback", "AddCallback", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.AddCallback(misuseOK); return nil }},
		{"Deferred.AddErrback", "AddErrback", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.AddErrback(misuseEB); return nil }},
		{"Deferred.AddCallbacks", "AddCallbacks", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.AddCallbacks(misuseOK, misuseEB); return nil }},
		{"Deferred.AddBoth", "AddBoth", "if d's chain was handed over", func(d *deferred.Deferred[int]) error {
			d.AddBoth(func(v int, _ *deferred.Failure) (int, error) { return v, nil })
			return nil
		}},
		{"Deferred.AddCallbackDeferred", "AddCallbackDeferred", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.AddCallbackDeferred(misuseDef); return nil }},
		{"Deferred.AddErrbackDeferred", "AddErrbackDeferred", "if d's chain was handed over", func(d *deferred.Deferred[int]) error {
			d.AddErrbackDeferred(func(*deferred.Failure) *deferred.Deferred[int] { return nil })
			return nil
		}},
		{"Deferred.Chain", "Chain", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.Chain(deferred.New[int]()); return nil }},
		{"Then", "Then", "calling Then on it again, panics", func(d *deferred.Deferred[int]) error { deferred.Then(d, misuseToString); return nil }},
		{"ThenDeferred", "ThenDeferred", "if d's chain was already handed over", func(d *deferred.Deferred[int]) error { deferred.ThenDeferred(d, misuseToDef); return nil }},
		{"Deferred.AddTimeout", "AddTimeout", "or if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.AddTimeout(time.Hour); return nil }},
		{"Deferred.Await", "Await", "if d's chain was handed over", func(d *deferred.Deferred[int]) error {
			_, err := d.Await(context.Background())
			return err
		}},
		{"Deferred.Observe", "Observe", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.Observe(); return nil }},
		{"Deferred.Done", "Done", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.Done(); return nil }},
		{"Deferred.Peek", "Peek", "if d's chain was handed over", func(d *deferred.Deferred[int]) error { d.Peek(); return nil }},
		{"Deferred.AddTimeoutFunc", "AddTimeoutFunc", "or if d's chain was handed over", func(d *deferred.Deferred[int]) error {
			d.AddTimeoutFunc(time.Hour, misuseEB)
			return nil
		}},
		{"Deferred.CancelWhen", "CancelWhen", "or if d's chain was handed over", func(d *deferred.Deferred[int]) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d.CancelWhen(ctx)
			return nil
		}},
	}
	var cases []misuseCase
	for _, h := range misuseHandOvers {
		for _, u := range uses {
			cases = append(cases, misuseCase{fn: u.fn, name: "after " + h.name, run: func() error {
				d := deferred.New[int]()
				h.handOver(d)
				return u.use(d)
			}, panics: u.method + " on a Deferred whose chain was handed over by Then or ThenDeferred; use the Deferred that Then returned", doc: u.doc})
		}
	}
	return cases
}

// misuseNilReceiver is every method of Deferred called on a nil *Deferred:
// a panic naming the method, not a runtime nil dereference.
func misuseNilReceiver() []misuseCase {
	var d *deferred.Deferred[int]
	var cases []misuseCase
	for _, m := range []struct {
		method string
		call   func() error
	}{
		{"Callback", func() error { return d.Callback(1) }},
		{"Errback", func() error { return d.Errback(errMisuseA) }},
		{"AddCallback", func() error { d.AddCallback(misuseOK); return nil }},
		{"Pause", func() error { d.Pause(); return nil }},
		{"Unpause", func() error { d.Unpause(); return nil }},
		{"Cancel", func() error { d.Cancel(); return nil }},
		{"Called", func() error { d.Called(); return nil }},
		{"Await", func() error { _, err := d.Await(context.Background()); return err }},
		{"Observe", func() error { d.Observe(); return nil }},
		{"Done", func() error { d.Done(); return nil }},
		{"Peek", func() error { d.Peek(); return nil }},
		{"AddTimeout", func() error { d.AddTimeout(time.Second); return nil }},
		{"AddTimeoutFunc", func() error { d.AddTimeoutFunc(time.Second, misuseEB); return nil }},
		{"CancelWhen", func() error { d.CancelWhen(context.Background()); return nil }},
	} {
		cases = append(cases, misuseCase{fn: "Deferred", name: "nil receiver/" + m.method, run: m.call,
			panics: m.method + " called on a nil *Deferred", doc: "its methods panic, naming themselves, when called on a nil *Deferred"})
	}
	return cases
}

func misuseCases() []misuseCase {
	d := func() *deferred.Deferred[int] { return deferred.New[int]() }
	cases := []misuseCase{
		// Creating.
		{fn: "Maybe", name: "nil f", run: func() error { deferred.Maybe[int](nil); return nil },
			panics: "Maybe called with a nil function", doc: "panics if f is nil"},
		{fn: "Fail", name: "nil error", run: func() error { return misuseFailureOf(deferred.Fail[int](nil)) },
			is: deferred.ErrNilError, doc: "nil err fails with ErrNilError"},
		{fn: "MaybeDeferred", name: "nil f", run: func() error { deferred.MaybeDeferred[int](nil); return nil },
			panics: "MaybeDeferred called with a nil function", doc: "panics if f is nil"},
		{fn: "NewFailure", name: "nil error", run: func() error { deferred.NewFailure(nil); return nil },
			panics: "NewFailure called with a nil error", doc: "panics if err is nil"},
		{fn: "Go", name: "nil ctx", run: func() error { deferred.Go(misuseNilCtx, misuseWork); return nil },
			panics: "Go called with a nil context.Context", doc: "panics if ctx or f is nil"},
		{fn: "Go", name: "nil f", run: func() error { deferred.Go[int](context.Background(), nil); return nil },
			panics: "Go called with a nil function", doc: "panics if ctx or f is nil"},
		{fn: "Later", name: "negative delay", run: func() error { deferred.Later(-time.Nanosecond, misuseNow); return nil },
			panics: "Later called with a negative delay (-1ns)", doc: "panics if delay is negative"},
		{fn: "Later", name: "nil f", run: func() error { deferred.Later[int](time.Second, nil); return nil },
			panics: "Later called with a nil function", doc: "or f is nil"},

		// Producer side.
		{fn: "Deferred.Callback", name: "second Callback", run: func() error {
			x := d()
			_ = x.Callback(1)
			return x.Callback(2)
		}, is: deferred.ErrAlreadyCalled, doc: "returns an error matching ErrAlreadyCalled"},
		{fn: "Deferred.Callback", name: "Callback after Errback", run: func() error {
			x := d()
			_ = x.Errback(errors.New("x"))
			_ = misuseFailureOf(x)
			return x.Callback(2)
		}, is: deferred.ErrAlreadyCalled, doc: "returns an error matching ErrAlreadyCalled"},
		{fn: "Deferred.Callback", name: "second firing after Cancel without canceller", run: func() error {
			x := d()
			x.Cancel()
			_ = misuseFailureOf(x)
			if err := x.Callback(1); err != nil {
				return fmt.Errorf("the first firing after Cancel was not ignored: %w", err)
			}
			return x.Callback(2)
		}, is: deferred.ErrAlreadyCalled, doc: "except for the first call after Cancel"},
		{fn: "Deferred.Cancel", name: "firing after Cancel with a canceller", run: func() error {
			x := deferred.NewWithCanceller(func(*deferred.Deferred[int]) {})
			x.Cancel()
			_ = misuseFailureOf(x)
			return x.Callback(1)
		}, is: deferred.ErrAlreadyCalled, doc: "returns ErrAlreadyCalled as usual"},
		{fn: "Deferred.Errback", name: "Errback after Callback", run: func() error {
			x := d()
			_ = x.Callback(1)
			return x.Errback(errors.New("x"))
		}, is: deferred.ErrAlreadyCalled, doc: "behaves as Callback does"},
		{fn: "Deferred.Errback", name: "nil error", run: func() error {
			x := d()
			x.AddCallback(func(int) (int, error) { return 0, errors.New("Errback(nil) read as a success") })
			if err := x.Errback(nil); err != nil {
				return fmt.Errorf("Errback(nil) returned %w", err)
			}
			return misuseFailureOf(x)
		}, is: deferred.ErrNilError, doc: "matching ErrNilError"},

		// Consumer side: nil functions.
		misuseOnNew(misuseCase{fn: "Deferred.AddCallback", name: "nil cb",
			panics: "AddCallback called with a nil function", doc: "panics if cb is nil"}, func(x *deferred.Deferred[int]) { x.AddCallback(nil) }),
		misuseOnNew(misuseCase{fn: "Deferred.AddErrback", name: "nil eb",
			panics: "AddErrback called with a nil function", doc: "panics if eb is nil"}, func(x *deferred.Deferred[int]) { x.AddErrback(nil) }),
		misuseOnNew(misuseCase{fn: "Deferred.AddCallbacks", name: "nil cb",
			panics: "AddCallbacks called with a nil function", doc: "panics if cb or eb is nil"}, func(x *deferred.Deferred[int]) { x.AddCallbacks(nil, misuseEB) }),
		misuseOnNew(misuseCase{fn: "Deferred.AddCallbacks", name: "nil eb",
			panics: "AddCallbacks called with a nil function", doc: "panics if cb or eb is nil"}, func(x *deferred.Deferred[int]) { x.AddCallbacks(misuseOK, nil) }),
		misuseOnNew(misuseCase{fn: "Deferred.AddBoth", name: "nil f",
			panics: "AddBoth called with a nil function", doc: "panics if f is nil"}, func(x *deferred.Deferred[int]) { x.AddBoth(nil) }),
		misuseOnNew(misuseCase{fn: "Deferred.AddCallbackDeferred", name: "nil cb",
			panics: "AddCallbackDeferred called with a nil function", doc: "panics if cb is nil"}, func(x *deferred.Deferred[int]) { x.AddCallbackDeferred(nil) }),
		misuseOnNew(misuseCase{fn: "Deferred.AddErrbackDeferred", name: "nil eb",
			panics: "AddErrbackDeferred called with a nil function", doc: "panics if eb is nil"}, func(x *deferred.Deferred[int]) { x.AddErrbackDeferred(nil) }),
		misuseOnNew(misuseCase{fn: "Then", name: "nil cb",
			panics: "Then called with a nil function", doc: "panics if d or cb is nil"}, func(x *deferred.Deferred[int]) { deferred.Then[int, string](x, nil) }),
		misuseOnNew(misuseCase{fn: "ThenDeferred", name: "nil cb",
			panics: "ThenDeferred called with a nil function", doc: "panics if d or cb is nil"}, func(x *deferred.Deferred[int]) { deferred.ThenDeferred[int, string](x, nil) }),

		// Nil Deferreds as arguments.
		{fn: "Then", name: "nil d", run: func() error { deferred.Then(nil, misuseToString); return nil },
			panics: "Then called with a nil *Deferred", doc: "panics if d or cb is nil"},
		{fn: "ThenDeferred", name: "nil d", run: func() error { deferred.ThenDeferred(nil, misuseToDef); return nil },
			panics: "ThenDeferred called with a nil *Deferred", doc: "panics if d or cb is nil"},
		misuseOnNew(misuseCase{fn: "Deferred.Chain", name: "nil other",
			panics: "Chain called with a nil *Deferred", doc: "panics if other is nil"}, func(x *deferred.Deferred[int]) { x.Chain(nil) }),
		misuseOnNew(misuseCase{fn: "Deferred.Chain", name: "itself",
			panics: "Chain called with the Deferred itself", doc: "or is d"}, func(x *deferred.Deferred[int]) { x.Chain(x) }),
		{fn: "List", name: "nil input", run: func() error { deferred.List(d(), nil); return nil },
			panics: "List: input 1 is nil", doc: "panics, naming the position, if an input is nil"},
		{fn: "Gather", name: "nil input", run: func() error { deferred.Gather(nil, d()); return nil },
			panics: "Gather: input 0 is nil", doc: "panics on a bad input as List does"},
		{fn: "Race", name: "nil input", run: func() error { deferred.Race(d(), d(), nil); return nil },
			panics: "Race: input 2 is nil", doc: "panics on a bad input as List does"},
		{fn: "GatherFailFast", name: "nil input", run: func() error { deferred.GatherFailFast(d(), nil); return nil },
			panics: "GatherFailFast: input 1 is nil", doc: "panics on a bad input as List does"},
		{fn: "AsCompleted", name: "nil input", run: func() error { deferred.AsCompleted(context.Background(), d(), nil); return nil },
			panics: "AsCompleted: input 1 is nil", doc: "at the call and naming the position, if an input is nil"},
		{fn: "List", name: "nil input 33 of 40", run: func() error {
			ds := make([]*deferred.Deferred[int], 40)
			for i := range ds {
				ds[i] = d()
			}
			ds[33] = nil
			deferred.List(ds...)
			return nil
		}, panics: "List: input 33 is nil", doc: "panics, naming the position, if an input is nil"},
		misuseInputs(misuseCase{fn: "List", name: "nil input after good ones",
			panics: "List: input 4 is nil", doc: "the inputs' results are then left as they were"},
			func(ds ...*deferred.Deferred[int]) { deferred.List(ds...) }, nil),
		misuseInputs(misuseCase{fn: "Gather", name: "nil input after good ones",
			panics: "Gather: input 4 is nil", doc: "panics on a bad input as List does"},
			func(ds ...*deferred.Deferred[int]) { deferred.Gather(ds...) }, nil),
		misuseInputs(misuseCase{fn: "Race", name: "nil input after good ones",
			panics: "Race: input 4 is nil", doc: "panics on a bad input as List does"},
			func(ds ...*deferred.Deferred[int]) { deferred.Race(ds...) }, nil),
		// A failed input before the bad one: GatherFailFast must not have
		// cancelled the pending inputs on it before panicking.
		misuseInputs(misuseCase{fn: "GatherFailFast", name: "nil input after good ones",
			panics: "GatherFailFast: input 4 is nil", doc: "panics on a bad input as List does"},
			func(ds ...*deferred.Deferred[int]) { deferred.GatherFailFast(ds...) }, nil),
		misuseInputs(misuseCase{fn: "AsCompleted", name: "nil input after good ones",
			panics: "AsCompleted: input 4 is nil", doc: "at the call and naming the position, if an input is nil"},
			func(ds ...*deferred.Deferred[int]) { deferred.AsCompleted(context.Background(), ds...) }, nil),
		{fn: "AsCompleted", name: "nil ctx", run: func() error { deferred.AsCompleted(misuseNilCtx, d()); return nil },
			panics: "AsCompleted called with a nil context.Context", doc: "and if ctx is nil"},
		{fn: "RunLocked", name: "nil lock", run: func() error { deferred.RunLocked(nil, misuseInner); return nil },
			panics: "RunLocked called with a nil *Lock", doc: "panics if l or f is nil"},
		{fn: "RunLocked", name: "nil f", run: func() error { deferred.RunLocked[int](deferred.NewLock(), nil); return nil },
			panics: "RunLocked called with a nil function", doc: "panics if l or f is nil"},
		{fn: "RunLimited", name: "nil semaphore", run: func() error { deferred.RunLimited(nil, misuseInner); return nil },
			panics: "RunLimited called with a nil *Semaphore", doc: "panics if s or f is nil"},
		{fn: "RunLimited", name: "nil f", run: func() error { deferred.RunLimited[int](deferred.NewSemaphore(1), nil); return nil },
			panics: "RunLimited called with a nil function", doc: "panics if s or f is nil"},

		// Stages that return a bad Deferred: failures matching
		// ErrInvalidReturn, whose message names the case.
		{fn: "Deferred.AddCallbackDeferred", name: "cb returns nil", run: func() error {
			return misuseFailureOf(deferred.Succeed(1).
				AddCallbackDeferred(func(int) *deferred.Deferred[int] { return nil }).
				AddCallback(func(int) (int, error) { return 0, errors.New("a nil *Deferred read as a success") }))
		}, is: deferred.ErrInvalidReturn, text: "nil *Deferred", doc: "fails the chain with an error matching ErrInvalidReturn"},
		{fn: "Deferred.AddErrbackDeferred", name: "eb returns nil", run: func() error {
			return misuseFailureOf(deferred.Fail[int](errors.New("x")).AddErrbackDeferred(func(*deferred.Failure) *deferred.Deferred[int] { return nil }))
		}, is: deferred.ErrInvalidReturn, text: "nil *Deferred", doc: "fails the chain with an error matching ErrInvalidReturn"},
		{fn: "ThenDeferred", name: "cb returns nil", run: func() error {
			return misuseFailureOf(deferred.ThenDeferred(deferred.Succeed(1), func(int) *deferred.Deferred[string] { return nil }))
		}, is: deferred.ErrInvalidReturn, text: "nil *Deferred", doc: "(nil, or one whose chain Then handed over, say) fails it with an error matching ErrInvalidReturn"},
		{fn: "RunLocked", name: "f returns nil", run: func() error {
			return misuseFailureOf(deferred.RunLocked(deferred.NewLock(), func() *deferred.Deferred[int] { return nil }))
		}, text: "nil *Deferred", doc: "nil Deferred from f, releases l too and fails the returned Deferred"},
		// Twisted 22.4 only warns ("Callback returned the Deferred it was
		// attached to") and the chain hangs for ever; we fail it instead.
		{fn: "Deferred.AddCallbackDeferred", name: "cb returns its own Deferred", run: func() error {
			x := d()
			x.AddCallbackDeferred(func(int) *deferred.Deferred[int] { return x })
			_ = x.Callback(1)
			return misuseFailureOf(x)
		}, is: deferred.ErrInvalidReturn, text: "the Deferred it belongs to", doc: "d itself"},
		{fn: "Deferred.AddCallbackDeferred", name: "cb of a fired Deferred returns its own Deferred", run: func() error {
			x := deferred.Succeed(1)
			x.AddCallbackDeferred(func(int) *deferred.Deferred[int] { return x })
			return misuseFailureOf(x)
		}, is: deferred.ErrInvalidReturn, text: "the Deferred it belongs to", doc: "d itself"},
		{fn: "Deferred.AddCallbackDeferred", name: "cb returns a handed-over Deferred", run: func() error {
			h := misuseHandedOver()
			return misuseFailureOf(deferred.Succeed(1).AddCallbackDeferred(func(int) *deferred.Deferred[int] { return h }))
		}, is: deferred.ErrInvalidReturn, text: "handed over", doc: "one whose chain Then handed over"},
		{fn: "Deferred.AddCallbackDeferred", name: "cb returns a Deferred another waits for", run: func() error {
			w := misuseAwaited()
			return misuseFailureOf(deferred.Succeed(1).AddCallbackDeferred(func(int) *deferred.Deferred[int] { return w }))
		}, is: deferred.ErrInvalidReturn, text: "already waits for", doc: "one another Deferred already waits for"},
		{fn: "Deferred.AddCallbackDeferred", name: "cb returns a Deferred that waits for this one", run: func() error {
			var waiter *deferred.Deferred[int]
			x := d().AddCallbackDeferred(func(int) *deferred.Deferred[int] { return waiter })
			waiter = deferred.Succeed(1).AddCallbackDeferred(func(int) *deferred.Deferred[int] { return x })
			_ = x.Callback(1)
			return misuseFailureOf(waiter) // x's failure went on to waiter
		}, is: deferred.ErrInvalidReturn, text: "waits for this one", doc: "one that waits for d"},

		// A handle used after Then: see also misuseAfterHandOver.
		{fn: "Then", name: "on a Deferred another waits for", run: func() error { deferred.Then(misuseAwaited(), misuseToString); return nil },
			panics: "Then on a Deferred that another Deferred is waiting for", doc: "if another Deferred is waiting for d"},
		{fn: "List", name: "handed-over input", run: func() error { deferred.List(d(), misuseHandedOver()); return nil },
			panics: "List: input 1 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "or its chain was handed over"},
		{fn: "Gather", name: "handed-over input", run: func() error { deferred.Gather(misuseHandedOver()); return nil },
			panics: "Gather: input 0 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "panics on a bad input as List does"},
		{fn: "Race", name: "handed-over input", run: func() error { deferred.Race(d(), misuseHandedOver()); return nil },
			panics: "Race: input 1 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "panics on a bad input as List does"},
		{fn: "GatherFailFast", name: "handed-over input", run: func() error { deferred.GatherFailFast(d(), misuseHandedOver()); return nil },
			panics: "GatherFailFast: input 1 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "panics on a bad input as List does"},
		{fn: "AsCompleted", name: "handed-over input", run: func() error { deferred.AsCompleted(context.Background(), d(), misuseHandedOver()); return nil },
			panics: "AsCompleted: input 1 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "or its chain was handed over by Then or ThenDeferred"},
		misuseInputs(misuseCase{fn: "List", name: "handed-over input after good ones",
			panics: "List: input 4 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "the inputs' results are then left as they were"},
			func(ds ...*deferred.Deferred[int]) { deferred.List(ds...) }, misuseHandedOver()),
		misuseInputs(misuseCase{fn: "Gather", name: "handed-over input after good ones",
			panics: "Gather: input 4 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "panics on a bad input as List does"},
			func(ds ...*deferred.Deferred[int]) { deferred.Gather(ds...) }, misuseHandedOver()),
		misuseInputs(misuseCase{fn: "Race", name: "handed-over input after good ones",
			panics: "Race: input 4 was handed over by Then or ThenDeferred; pass the Deferred that Then returned", doc: "panics on a bad input as List does"},
			func(ds ...*deferred.Deferred[int]) { deferred.Race(ds...) }, misuseHandedOver()),
		{fn: "Deferred.Chain", name: "other already fired", run: func() error {
			x := d().Chain(deferred.Succeed(2))
			_ = x.Callback(1)
			return misuseFailureOf(x)
		}, is: deferred.ErrAlreadyCalled, doc: "fails from here with an ErrAlreadyCalled error"},

		// Control and waiting.
		{fn: "Deferred.AddTimeout", name: "negative timeout", run: func() error { d().AddTimeout(-time.Nanosecond); return nil },
			panics: "AddTimeout called with a negative timeout (-1ns)", doc: "panics if timeout is negative"},
		{fn: "Deferred.AddTimeoutFunc", name: "negative timeout", run: func() error { d().AddTimeoutFunc(-time.Nanosecond, misuseEB); return nil },
			panics: "AddTimeoutFunc called with a negative timeout (-1ns)", doc: "panics if timeout is negative"},
		misuseOnNew(misuseCase{fn: "Deferred.AddTimeoutFunc", name: "nil onTimeout",
			panics: "AddTimeoutFunc called with a nil function", doc: "or onTimeout is nil"}, func(x *deferred.Deferred[int]) { x.AddTimeoutFunc(time.Hour, nil) }),
		misuseOnNew(misuseCase{fn: "Deferred.CancelWhen", name: "nil ctx",
			panics: "CancelWhen called with a nil context.Context", doc: "panics if ctx is nil"}, func(x *deferred.Deferred[int]) { x.CancelWhen(misuseNilCtx) }),
		// A ctx that can never end takes CancelWhen's shortcut, which
		// checks the hand-over on its own.
		{fn: "Deferred.CancelWhen", name: "after Then, a ctx that never ends", run: func() error {
			misuseHandedOver().CancelWhen(context.Background())
			return nil
		}, panics: "CancelWhen on a Deferred whose chain was handed over by Then or ThenDeferred; use the Deferred that Then returned", doc: "or if d's chain was handed over"},
		{fn: "Deferred.Await", name: "nil ctx", run: func() error {
			_, err := d().Await(misuseNilCtx)
			return err
		}, panics: "Await called with a nil context.Context", doc: "panics if ctx is nil"},
		{fn: "Race", name: "no inputs", run: func() error { return misuseFailureOf(deferred.Race[int]()) },
			is: deferred.ErrNoInputs, doc: "fails at once with ErrNoInputs"},

		// Primitives.
		{fn: "NewPool", name: "limit 0", run: func() error { deferred.NewPool(0); return nil },
			panics: "NewPool called with a limit below 1", doc: "panics if n is less than 1"},
		{fn: "NewPool", name: "negative limit", run: func() error { deferred.NewPool(-1); return nil },
			panics: "NewPool called with a limit below 1", doc: "panics if n is less than 1"},
		{fn: "NewPoolWithBacklog", name: "limit 0", run: func() error { deferred.NewPoolWithBacklog(0, 1); return nil },
			panics: "NewPoolWithBacklog called with a limit below 1", doc: "panics if n is less than 1"},
		{fn: "NewPoolWithBacklog", name: "negative backlog", run: func() error { deferred.NewPoolWithBacklog(1, -1); return nil },
			panics: "NewPoolWithBacklog called with a negative backlog", doc: "or backlog is negative"},
		{fn: "Submit", name: "nil pool", run: func() error { deferred.Submit(context.Background(), nil, misuseWork); return nil },
			panics: "Submit called with a Pool not made by NewPool", doc: "panics if p was not made by NewPool"},
		{fn: "Submit", name: "zero Pool", run: func() error { deferred.Submit(context.Background(), new(deferred.Pool), misuseWork); return nil },
			panics: "Submit called with a Pool not made by NewPool", doc: "panics if p was not made by NewPool"},
		{fn: "Submit", name: "nil ctx", run: func() error { deferred.Submit(misuseNilCtx, deferred.NewPool(1), misuseWork); return nil },
			panics: "Submit called with a nil context.Context", doc: "or if ctx or f is nil"},
		{fn: "Submit", name: "nil f", run: func() error { deferred.Submit[int](context.Background(), deferred.NewPool(1), nil); return nil },
			panics: "Submit called with a nil function", doc: "or if ctx or f is nil"},
		{fn: "SubmitWait", name: "nil pool", run: func() error { deferred.SubmitWait(context.Background(), nil, misuseWork); return nil },
			panics: "SubmitWait called with a Pool not made by NewPool", doc: "panics as Submit does"},
		{fn: "SubmitWait", name: "zero Pool", run: func() error { deferred.SubmitWait(context.Background(), new(deferred.Pool), misuseWork); return nil },
			panics: "SubmitWait called with a Pool not made by NewPool", doc: "panics as Submit does"},
		{fn: "SubmitWait", name: "nil ctx", run: func() error { deferred.SubmitWait(misuseNilCtx, deferred.NewPool(1), misuseWork); return nil },
			panics: "SubmitWait called with a nil context.Context", doc: "panics as Submit does"},
		{fn: "SubmitWait", name: "nil f", run: func() error { deferred.SubmitWait[int](context.Background(), deferred.NewPool(1), nil); return nil },
			panics: "SubmitWait called with a nil function", doc: "panics as Submit does"},
		{fn: "NewSemaphore", name: "0 tokens", run: func() error { deferred.NewSemaphore(0); return nil },
			panics: "NewSemaphore called with 0 tokens; a Semaphore needs at least 1", doc: "panics if n is less than 1"},
		{fn: "NewSemaphore", name: "-1 tokens", run: func() error { deferred.NewSemaphore(-1); return nil },
			panics: "NewSemaphore called with -1 tokens; a Semaphore needs at least 1", doc: "panics if n is less than 1"},
		{fn: "Semaphore.Acquire", name: "zero Semaphore", run: func() error { new(deferred.Semaphore).Acquire(); return nil },
			panics: "Semaphore used without NewSemaphore (the zero Semaphore has no tokens)", doc: "panics on a Semaphore not made by NewSemaphore"},
		{fn: "Semaphore.TryAcquire", name: "zero Semaphore", run: func() error { new(deferred.Semaphore).TryAcquire(); return nil },
			panics: "Semaphore used without NewSemaphore (the zero Semaphore has no tokens)", doc: "panics on a Semaphore not made by NewSemaphore"},
		{fn: "Semaphore.Release", name: "zero Semaphore", run: func() error { new(deferred.Semaphore).Release(); return nil },
			panics: "Semaphore used without NewSemaphore (the zero Semaphore has no tokens)", doc: "on a Semaphore not made by NewSemaphore"},
		misuseSemaphoreRelease("no token held", func(*deferred.Semaphore) {}),
		misuseSemaphoreRelease("more Releases than Acquires", func(s *deferred.Semaphore) {
			s.Acquire()
			s.Release()
		}),
		{fn: "Lock.Release", name: "unlocked", run: func() error { deferred.NewLock().Release(); return nil },
			panics: "Release of a Lock that is not locked", doc: "panics if l is not locked"},
		{fn: "Lock.Release", name: "zero Lock", run: func() error { new(deferred.Lock).Release(); return nil },
			panics: "Release of a Lock that is not locked", doc: "panics if l is not locked"},
		{fn: "Lock.Release", name: "zero Lock released twice", run: func() error {
			var l deferred.Lock
			l.Acquire()
			l.Release()
			l.Release()
			return nil
		}, panics: "Release of a Lock that is not locked", doc: "panics if l is not locked"},
		{fn: "Queue.Put", name: "over size", run: func() error {
			q := deferred.NewQueue[int](1, 0)
			_ = q.Put(1)
			return q.Put(2)
		}, is: deferred.ErrQueueFull, doc: "returns ErrQueueFull"},
		{fn: "Queue.Get", name: "over backlog", run: func() error {
			q := deferred.NewQueue[int](0, 1)
			waiting := q.Get()
			defer func() { waiting.Cancel(); _ = misuseFailureOf(waiting) }()
			return misuseFailureOf(q.Get())
		}, is: deferred.ErrQueueBacklog, doc: "has already failed with ErrQueueBacklog"},

		// web.
		{fn: "web.GetPage", name: "nil ctx", run: func() error { web.GetPage(misuseNilCtx, "http://127.0.0.1/"); return nil },
			panics: "GetPage called with a nil context.Context", doc: "panics if ctx"},
		{fn: "web.GetPage", name: "nil Option", run: func() error { web.GetPage(context.Background(), "http://127.0.0.1/", nil); return nil },
			panics: "GetPage called with a nil Option (option 0)", doc: "or one of opts is nil"},
		{fn: "web.WithClient", name: "nil client", run: func() error { web.WithClient(nil); return nil },
			panics: "WithClient called with a nil *http.Client", doc: "panics if c is nil"},
		{fn: "web.WithTimeout", name: "negative", run: func() error { web.WithTimeout(-time.Second); return nil },
			panics: "WithTimeout called with a non-positive duration -1s", doc: "panics if d is not positive"},
		{fn: "web.WithTimeout", name: "zero", run: func() error { web.WithTimeout(0); return nil },
			panics: "WithTimeout called with a non-positive duration 0s", doc: "panics if d is not positive"},
		{fn: "web.WithMaxBody", name: "negative", run: func() error { web.WithMaxBody(-1); return nil },
			panics: "WithMaxBody called with a negative size -1", doc: "panics if n is negative"},
	}
	cases = append(cases, misuseAfterHandOver()...)
	return append(cases, misuseNilReceiver()...)
}

// misuseSemaphoreRelease is a Release of a Semaphore(2) with no token
// held, after prepare: a panic that changes nothing.
func misuseSemaphoreRelease(name string, prepare func(*deferred.Semaphore)) misuseCase {
	s := deferred.NewSemaphore(2)
	return misuseCase{fn: "Semaphore.Release", name: name,
		run:    func() error { prepare(s); s.Release(); return nil },
		panics: "Release of a Semaphore with no token held (more Releases than Acquires)", doc: "panics if no token is held",
		intact: func() error {
			if n := s.Tokens(); n != 2 {
				return fmt.Errorf("the bad Release changed the free tokens to %d of 2", n)
			}
			return nil
		}}
}

// misuseRun runs f and returns its panic message, if it panicked.
func misuseRun(f func() error) (panicked bool, msg string, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			switch v := p.(type) {
			case string:
				msg = v
			case error:
				msg = v.Error()
			default:
				msg = fmt.Sprint(v)
			}
		}
	}()
	return false, "", f()
}

// misuseDocs returns the doc comments of the exported types, functions
// and methods of the package in dir, keyed "Name" or "Type.Name", with
// their lines joined by spaces.
func misuseDocs(t *testing.T, dir, prefix string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	docs := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, spec := range gd.Specs {
					ts := spec.(*ast.TypeSpec)
					doc := ts.Doc
					if doc == nil && len(gd.Specs) == 1 {
						doc = gd.Doc
					}
					if ts.Name.IsExported() && doc != nil {
						docs[prefix+ts.Name.Name] = strings.Join(strings.Fields(doc.Text()), " ")
					}
				}
				continue
			}
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || !fd.Name.IsExported() || fd.Doc == nil {
				continue
			}
			key := fd.Name.Name
			if fd.Recv != nil {
				typ := fd.Recv.List[0].Type
				if star, ok := typ.(*ast.StarExpr); ok {
					typ = star.X
				}
				switch x := typ.(type) {
				case *ast.IndexExpr:
					typ = x.X
				case *ast.IndexListExpr:
					typ = x.X
				}
				key = typ.(*ast.Ident).Name + "." + key
			}
			docs[prefix+key] = strings.Join(strings.Fields(fd.Doc.Text()), " ")
		}
	}
	return docs
}

// TestMisuseAnswers: each bad input gets the answer its row names — a
// panic "deferred: …"/"web: …" naming the misuse, an error matching the
// sentinel, or a failure naming the misuse — never a silent success, and
// the doc comment of the function says so. Rows whose doc comment is
// silent are logged.
func TestMisuseAnswers(t *testing.T) {
	docs := misuseDocs(t, ".", "")
	for k, v := range misuseDocs(t, "web", "web.") {
		docs[k] = v
	}
	var silent []string
	for _, c := range misuseCases() {
		t.Run(c.fn+"/"+c.name, func(t *testing.T) {
			panicked, msg, err := misuseRun(c.run)
			prefix := "deferred: "
			if strings.HasPrefix(c.fn, "web.") {
				prefix = "web: "
			}
			switch {
			case c.panics != "":
				require.True(t, panicked, "no panic; returned %v", err)
				assert.Equal(t, prefix+c.panics, msg)
			case c.is != nil:
				require.False(t, panicked, "panicked: %s", msg)
				assert.ErrorIs(t, err, c.is)
				if c.text != "" {
					assert.True(t, strings.HasPrefix(err.Error(), prefix), "error %q does not start with %q", err, prefix)
					assert.Contains(t, err.Error(), c.text)
				}
			default:
				require.False(t, panicked, "panicked: %s", msg)
				require.Error(t, err, "a silent success")
				assert.True(t, strings.HasPrefix(err.Error(), prefix), "error %q does not start with %q", err, prefix)
				assert.Contains(t, err.Error(), c.text)
			}
			if c.intact != nil {
				assert.NoError(t, c.intact(), "the misuse changed what it must leave alone")
			}

			doc, ok := docs[c.fn]
			require.True(t, ok, "no doc comment for %s", c.fn)
			if c.doc == "" {
				silent = append(silent, c.fn+": "+c.name)
				return
			}
			assert.Contains(t, strings.ToLower(doc), strings.ToLower(c.doc), "the doc comment of %s does not say so", c.fn)
		})
	}
	t.Logf("doc comments silent on %d misuses:\n\t%s", len(silent), strings.Join(silent, "\n\t"))
}

// TestMisuseWebBadURLFailsAtOnce: GetPage with a URL that cannot make a
// request returns a Deferred that has already failed, with the client's
// error, as its doc comment says; nothing is fetched.
func TestMisuseWebBadURLFailsAtOnce(t *testing.T) {
	d := web.GetPage(context.Background(), "http://[::1]:namedport/")
	require.True(t, d.Called(), "a bad URL must fail the Deferred before GetPage returns")
	var ue *url.Error
	assert.ErrorAs(t, misuseFailureOf(d), &ue, "not the client's error")
}

// TestMisuseFiringThenTargetLosesNoFailure: the producer side of the
// Deferred that Then or ThenDeferred returned belongs to the hand-over,
// but nothing stops a caller from firing it. When the callback's result
// then fails, that failure has nowhere to go; it must still not vanish:
// it goes to the unhandled-failure handler (ThenDeferred does so today).
func TestMisuseFiringThenTargetLosesNoFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(d *deferred.Deferred[int], err error) *deferred.Deferred[string]
	}{
		{"Then", func(d *deferred.Deferred[int], err error) *deferred.Deferred[string] {
			return deferred.Then(d, func(int) (string, error) { return "", err })
		}},
		{"ThenDeferred", func(d *deferred.Deferred[int], err error) *deferred.Deferred[string] {
			return deferred.ThenDeferred(d, func(int) *deferred.Deferred[string] { return deferred.Fail[string](err) })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errCb := errors.New("callback failure after the target was fired by hand")
			reported := make(chan struct{}, 1)
			prev := deferred.SetUnhandledHandler(func(f *deferred.Failure) {
				if errors.Is(f, errCb) {
					reported <- struct{}{}
				}
			})
			defer func() { deferred.SetUnhandledHandler(prev) }()

			d := deferred.New[int]()
			u := tc.make(d, errCb)
			require.NoError(t, u.Callback("fired by hand"))
			require.NoError(t, d.Callback(1))

			deadline := time.Now().Add(5 * time.Second) // a guard, not a timing assertion
			for {
				select {
				case <-reported:
					return
				default:
				}
				if time.Now().After(deadline) {
					t.Fatal("the callback's failure was lost: never reported as unhandled")
				}
				runtime.GC()
				time.Sleep(time.Millisecond) // let the cleanup goroutine run
			}
		})
	}
}
