package deferred

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin the core contract of Deferred (the README's "The rules";
// issue 2). Where a rule was unclear it was run in Twisted 22.4 first; the
// result is noted beside the test.

var (
	errCoreA    = errors.New("core test error A")
	errCoreB    = errors.New("core test error B")
	errCoreBoom = errors.New("core test panic error")
)

// coreNextLine returns "file:line" of the line after its call site: the
// panic site in the stage literals below.
func coreNextLine() string {
	_, file, line, _ := runtime.Caller(1)
	return fmt.Sprintf("%s:%d", file, line+1)
}

// coreFirstFrame returns the function and "file:line" of the first frame
// of f's stack.
func coreFirstFrame(t *testing.T, f *Failure) (fn, loc string) {
	t.Helper()
	lines := strings.Split(f.Stack(), "\n")
	require.GreaterOrEqual(t, len(lines), 2, "stack too short: %q", f.Stack())
	return lines[0], strings.TrimSpace(lines[1])
}

// coreGoroutineID returns the id of the calling goroutine.
func coreGoroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	return strings.Fields(string(buf))[1] // "goroutine 18 [running]: ..."
}

// Rule 1: stages and how results flow.

func TestCoreStagesRunInOrderAndFeedEachOther(t *testing.T) {
	d := New[int]()
	var seen []int
	d.AddCallback(func(v int) (int, error) { seen = append(seen, v); return v + 1, nil })
	d.AddCallback(func(v int) (int, error) { seen = append(seen, v); return v * 10, nil })
	d.AddCallback(func(v int) (int, error) { seen = append(seen, v); return v - 3, nil })
	assert.Empty(t, seen, "no stage may run before the Deferred fires")

	require.NoError(t, d.Callback(1))
	assert.Equal(t, []int{1, 2, 20}, seen)
	v, f := Capture(d).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 17, v)
}

func TestCoreErrorSkipsToNextErrbackAndErrbackRecovers(t *testing.T) {
	d := New[int]()
	var trail []string
	d.AddCallback(func(v int) (int, error) { trail = append(trail, "cb1"); return 0, errCoreA })
	d.AddCallback(func(v int) (int, error) { trail = append(trail, "cb2"); return v, nil })
	d.AddBoth(func(v int, f *Failure) (int, error) {
		// AddBoth sees the failure too; passing it on keeps failing.
		trail = append(trail, "both")
		return v, f
	})
	d.AddErrback(func(f *Failure) (int, error) {
		trail = append(trail, "eb1")
		assert.ErrorIs(t, f, errCoreA)
		return 42, nil // recover
	})
	d.AddErrback(func(f *Failure) (int, error) { trail = append(trail, "eb2"); return 0, nil })
	d.AddCallback(func(v int) (int, error) { trail = append(trail, fmt.Sprint("cb3:", v)); return v + 1, nil })

	require.NoError(t, d.Callback(1))
	assert.Equal(t, []string{"cb1", "both", "eb1", "cb3:42"}, trail)
	v, f := Capture(d).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 43, v)
}

func TestCoreAddCallbacksIsOneLevel(t *testing.T) {
	t.Run("cb error goes to the next errback, not eb", func(t *testing.T) {
		d := New[int]()
		var trail []string
		d.AddCallbacks(
			func(int) (int, error) { trail = append(trail, "cb"); return 0, errCoreA },
			func(*Failure) (int, error) { trail = append(trail, "eb"); return 1, nil },
		)
		d.AddErrback(func(f *Failure) (int, error) {
			trail = append(trail, "next-eb")
			assert.ErrorIs(t, f, errCoreA)
			return 0, f
		})
		require.NoError(t, d.Callback(1))
		assert.Equal(t, []string{"cb", "next-eb"}, trail)
		_, f := Capture(d).Now(t)
		assert.ErrorIs(t, f, errCoreA)
	})
	t.Run("failure runs eb, not cb", func(t *testing.T) {
		d := New[int]()
		var trail []string
		d.AddCallbacks(
			func(int) (int, error) { trail = append(trail, "cb"); return 0, nil },
			func(f *Failure) (int, error) {
				trail = append(trail, "eb")
				assert.ErrorIs(t, f, errCoreA)
				return 5, nil
			},
		)
		require.NoError(t, d.Errback(errCoreA))
		assert.Equal(t, []string{"eb"}, trail)
		v, f := Capture(d).Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 5, v)
	})
}

func TestCoreAddBoth(t *testing.T) {
	t.Run("success gives the value and a nil failure", func(t *testing.T) {
		var gotV int
		gotF := &Failure{} // must be overwritten with nil
		d := Succeed(7).AddBoth(func(v int, f *Failure) (int, error) {
			gotV, gotF = v, f
			return v * 2, nil
		})
		assert.Equal(t, 7, gotV)
		assert.Nil(t, gotF)
		v, f := Capture(d).Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 14, v)
	})
	t.Run("failure gives the zero value and the failure", func(t *testing.T) {
		src := New[int]()
		var gotV = -1
		var gotF *Failure
		src.AddBoth(func(v int, f *Failure) (int, error) {
			gotV, gotF = v, f
			return 3, nil // recovers
		})
		require.NoError(t, src.Errback(errCoreA))
		assert.Equal(t, 0, gotV)
		require.NotNil(t, gotF)
		assert.ErrorIs(t, gotF, errCoreA)
		v, f := Capture(src).Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 3, v)
	})
}

// TestCoreAddBothPassThroughOfNilFailure: AddBoth's `return v, f` passes
// a success on as a success, although f is a typed nil *Failure (a
// non-nil error interface), as AddBoth's doc comment promises.
func TestCoreAddBothPassThroughOfNilFailure(t *testing.T) {
	d := New[int]()
	d.AddBoth(func(v int, f *Failure) (int, error) { return v + 1, f })
	var got int
	var failed bool
	d.AddCallbacks(
		func(v int) (int, error) { got = v; return v, nil },
		func(*Failure) (int, error) { failed = true; return 0, nil },
	)
	require.NoError(t, d.Callback(1))
	assert.False(t, failed, "a typed nil *Failure read as a failure")
	assert.Equal(t, 2, got)

	// And a real failure passes on as one.
	errX := errors.New("x")
	e := New[int]()
	e.AddBoth(func(v int, f *Failure) (int, error) { return v, f })
	eEnd := Capture(e)
	require.NoError(t, e.Errback(errX))
	_, gotF := eEnd.Now(t)
	assert.ErrorIs(t, gotF, errX)
}

func TestCoreErrbackPassingFailureKeepsPointer(t *testing.T) {
	orig := NewFailure(errCoreA)
	d := New[int]()
	var seen []*Failure
	pass := func(f *Failure) (int, error) { seen = append(seen, f); return 0, f }
	d.AddErrback(pass).AddErrback(pass).AddCallback(func(v int) (int, error) { return v, nil }).AddErrback(pass)
	require.NoError(t, d.Errback(orig))
	require.Len(t, seen, 3)
	for i, f := range seen {
		assert.Same(t, orig, f, "errback %d", i)
	}
	_, f := Capture(d).Now(t)
	assert.Same(t, orig, f)
}

func TestCoreStagesRunOnFiringOrAddingGoroutine(t *testing.T) {
	d := New[int]()
	var ranOn string
	d.AddCallback(func(v int) (int, error) { ranOn = coreGoroutineID(); return v, nil })

	firedOn := make(chan string)
	go func() {
		id := coreGoroutineID()
		assert.NoError(t, d.Callback(1))
		firedOn <- id
	}()
	firer := <-firedOn
	assert.Equal(t, firer, ranOn, "a stage added before firing runs on the firing goroutine")

	// d has fired: a new stage runs at once, on this goroutine, before
	// AddCallback returns.
	ranOn = ""
	d.AddCallback(func(v int) (int, error) { ranOn = coreGoroutineID(); return v + 1, nil })
	assert.Equal(t, coreGoroutineID(), ranOn, "a stage added after firing runs on the adding goroutine")
	v, f := Capture(d).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 2, v)
}

// Rule 2: a panic in any stage becomes a *Failure with the panic site's stack.

func TestCorePanicInStageBecomesFailure(t *testing.T) {
	type panicCase struct {
		name string
		// run makes a stage panic with value p and returns the resulting
		// failure and the panic site's "file:line".
		run func(t *testing.T, p any) (f *Failure, site string)
	}
	cases := []panicCase{
		{"AddCallback", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := New[int]()
			d.AddCallback(func(int) (int, error) {
				site = coreNextLine()
				panic(p)
			})
			require.NotPanics(t, func() { assert.NoError(t, d.Callback(1)) })
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddCallback added after firing", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Succeed(1)
			require.NotPanics(t, func() {
				d.AddCallback(func(int) (int, error) {
					site = coreNextLine()
					panic(p)
				})
			})
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddErrback", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Fail[int](errCoreA).AddErrback(func(*Failure) (int, error) {
				site = coreNextLine()
				panic(p)
			})
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddBoth on success", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Succeed(1).AddBoth(func(int, *Failure) (int, error) {
				site = coreNextLine()
				panic(p)
			})
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddBoth on failure", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Fail[int](errCoreA).AddBoth(func(int, *Failure) (int, error) {
				site = coreNextLine()
				panic(p)
			})
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddCallbacks callback", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Succeed(1).AddCallbacks(func(int) (int, error) {
				site = coreNextLine()
				panic(p)
			}, func(f *Failure) (int, error) { return 0, f })
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddCallbacks errback", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Fail[int](errCoreA).AddCallbacks(func(v int) (int, error) { return v, nil },
				func(*Failure) (int, error) {
					site = coreNextLine()
					panic(p)
				})
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddCallbackDeferred", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] {
				site = coreNextLine()
				panic(p)
			})
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"AddErrbackDeferred", func(t *testing.T, p any) (*Failure, string) {
			var site string
			d := Fail[int](errCoreA).AddErrbackDeferred(func(*Failure) *Deferred[int] {
				site = coreNextLine()
				panic(p)
			})
			_, f := Capture(d).Now(t)
			return f, site
		}},
		{"Then", func(t *testing.T, p any) (*Failure, string) {
			var site string
			src := New[int]()
			u := Then(src, func(int) (string, error) {
				site = coreNextLine()
				panic(p)
			})
			require.NotPanics(t, func() { assert.NoError(t, src.Callback(1)) })
			_, f := Capture(u).Now(t)
			return f, site
		}},
		{"ThenDeferred", func(t *testing.T, p any) (*Failure, string) {
			var site string
			u := ThenDeferred(Succeed(1), func(int) *Deferred[string] {
				site = coreNextLine()
				panic(p)
			})
			_, f := Capture(u).Now(t)
			return f, site
		}},
		{"Maybe", func(t *testing.T, p any) (*Failure, string) {
			var site string
			var d *Deferred[int]
			require.NotPanics(t, func() {
				d = Maybe(func() (int, error) {
					site = coreNextLine()
					panic(p)
				})
			})
			_, f := Capture(d).Now(t)
			return f, site
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := "boom in " + c.name
			f, site := c.run(t, p)
			require.NotNil(t, f, "the panic must become the chain's failure")
			pv, ok := f.PanicValue()
			assert.True(t, ok)
			assert.Equal(t, p, pv)
			assert.Contains(t, f.Error(), p)
			fn, loc := coreFirstFrame(t, f)
			assert.Equal(t, site, loc, "first frame must be the panic site; stack:\n%s", f.Stack())
			assert.True(t, strings.HasPrefix(fn, "github.com/deferred-go/deferred.TestCorePanicInStageBecomesFailure."),
				"first frame must be the test's function literal, got %q", fn)
		})
		t.Run(c.name+" with an error value", func(t *testing.T) {
			f, _ := c.run(t, errCoreBoom)
			require.NotNil(t, f)
			assert.ErrorIs(t, f, errCoreBoom)
			pv, ok := f.PanicValue()
			assert.True(t, ok)
			assert.Equal(t, errCoreBoom, pv)
		})
	}
}

func TestCoreRuntimePanicInStageBecomesFailure(t *testing.T) {
	var site string
	var nums []int
	d := Succeed(3).AddCallback(func(i int) (int, error) {
		site = coreNextLine()
		return nums[i], nil // index out of range
	})
	_, f := Capture(d).Now(t)
	require.NotNil(t, f)
	pv, ok := f.PanicValue()
	require.True(t, ok)
	_, isRuntimeErr := pv.(runtime.Error)
	assert.True(t, isRuntimeErr, "panic value: %T", pv)
	var re runtime.Error
	assert.ErrorAs(t, f, &re)
	_, loc := coreFirstFrame(t, f)
	assert.Equal(t, site, loc, "stack:\n%s", f.Stack())
}

// Rule 3: a stage returning a *Deferred pauses the chain.

func TestCoreCallbackDeferredWaitsForInner(t *testing.T) {
	inner := New[int]()
	inner.AddCallback(func(v int) (int, error) { return v + 100, nil }) // inner's own chain runs first
	d := New[int]()
	var seen []int
	d.AddCallbackDeferred(func(v int) *Deferred[int] { seen = append(seen, v); return inner })
	d.AddCallback(func(v int) (int, error) { seen = append(seen, v); return v * 2, nil })

	require.NoError(t, d.Callback(1))
	assert.Equal(t, []int{1}, seen, "the next stage must wait for the inner Deferred")
	assert.Contains(t, d.String(), "waiting")

	require.NoError(t, inner.Callback(10))
	assert.Equal(t, []int{1, 110}, seen)
	v, f := Capture(d).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 220, v)
}

func TestCoreCallbackDeferredInnerFailure(t *testing.T) {
	inner := New[int]()
	d := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	cbRan := false
	d.AddCallback(func(v int) (int, error) { cbRan = true; return v, nil })
	var got *Failure
	d.AddErrback(func(f *Failure) (int, error) { got = f; return 0, f })
	assert.Nil(t, got)

	orig := NewFailure(errCoreA)
	require.NoError(t, inner.Errback(orig))
	assert.False(t, cbRan)
	assert.Same(t, orig, got, "the outer errback gets the inner failure itself")
	_, f := Capture(d).Now(t)
	assert.ErrorIs(t, f, errCoreA)
}

// TestCoreMillionNestedDeferreds checks that resolution is iterative: each
// Deferred waits on the next, and firing the innermost one resolves
// 1,000,000 levels on a goroutine stack capped at 64 MiB (a recursive
// implementation dies with a stack overflow).
func TestCoreMillionNestedDeferreds(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(64 << 20))
	const n = 1_000_000

	// Each Deferred gets its stage before the one outside links to it: a
	// stage added to an inner Deferred after that runs after the hand-over
	// (Twisted's continuation), on the zero value.
	ds := make([]*Deferred[int], n+1)
	for i := range ds {
		ds[i] = New[int]()
	}
	for i := range n {
		next := ds[i+1]
		ds[i].AddCallbackDeferred(func(int) *Deferred[int] { return next })
	}
	outer := ds[0]
	got, reached := 0, false
	outer.AddCallback(func(v int) (int, error) { got, reached = v, true; return v, nil })
	for i := range n {
		if err := ds[i].Callback(0); err != nil { // ds[i] now waits on ds[i+1]
			t.Fatal(err)
		}
	}
	cur := ds[n]
	ds = nil
	assert.False(t, reached)
	assert.Contains(t, outer.String(), "waiting")

	require.NoError(t, cur.Callback(42)) // the innermost fires last
	require.True(t, reached)
	assert.Equal(t, 42, got)
	v, f := Capture(outer).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 42, v)
}

// TestCoreMillionStagesReturningFiredDeferreds checks the other shape of
// the trampoline: one chain of 1,000,000 stages, each returning an
// already-fired Deferred.
func TestCoreMillionStagesReturningFiredDeferreds(t *testing.T) {
	defer debug.SetMaxStack(debug.SetMaxStack(64 << 20))
	const n = 1_000_000

	d := New[int]()
	step := func(v int) *Deferred[int] { return Succeed(v + 1) }
	for range n {
		d.AddCallbackDeferred(step)
	}
	require.NoError(t, d.Callback(0))
	v, f := Capture(d).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, n, v)
}

// Rule 4: a Deferred fires once.

func TestCoreSecondFireErrorsAndChangesNothing(t *testing.T) {
	t.Run("Callback then Callback or Errback", func(t *testing.T) {
		d := New[int]()
		runs := 0
		d.AddCallback(func(v int) (int, error) { runs++; return v, nil })
		require.NoError(t, d.Callback(1))
		assert.ErrorIs(t, d.Callback(2), ErrAlreadyCalled)
		assert.ErrorIs(t, d.Errback(errCoreA), ErrAlreadyCalled)
		assert.Equal(t, 1, runs, "no stage may run again")
		v, f := Capture(d).Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 1, v)
	})
	t.Run("Errback then Callback or Errback", func(t *testing.T) {
		d := New[int]()
		runs := 0
		d.AddErrback(func(f *Failure) (int, error) { runs++; return 0, f })
		require.NoError(t, d.Errback(errCoreA))
		assert.ErrorIs(t, d.Callback(2), ErrAlreadyCalled)
		assert.ErrorIs(t, d.Errback(errCoreB), ErrAlreadyCalled)
		assert.Equal(t, 1, runs)
		_, f := Capture(d).Now(t)
		assert.ErrorIs(t, f, errCoreA)
		assert.NotErrorIs(t, f, errCoreB)
	})
	t.Run("Succeed and Fail are fired", func(t *testing.T) {
		assert.ErrorIs(t, Succeed(1).Callback(2), ErrAlreadyCalled)
		d := Fail[int](errCoreA)
		assert.ErrorIs(t, d.Errback(errCoreB), ErrAlreadyCalled)
		Capture(d).Now(t)
	})
}

// TestCoreFireAfterCancelIsSwallowedOnce matches Twisted 22.4: after cancel()
// on a Deferred without canceller, the first callback() passes silently and
// the second raises AlreadyCalledError.
func TestCoreFireAfterCancelIsSwallowedOnce(t *testing.T) {
	for _, name := range []string{"Callback", "Errback"} {
		t.Run(name, func(t *testing.T) {
			d := New[int]()
			d.Cancel()
			fire := func() error {
				if name == "Callback" {
					return d.Callback(5)
				}
				return d.Errback(errCoreA)
			}
			assert.NoError(t, fire(), "the first fire after Cancel is swallowed")
			assert.ErrorIs(t, fire(), ErrAlreadyCalled, "the second one is not")
			_, f := Capture(d).Now(t)
			assert.ErrorIs(t, f, ErrCancelled, "the swallowed fire changes nothing")
			assert.NotErrorIs(t, f, errCoreA)
		})
	}
}

func TestCoreDebuggingShowsCreationAndFirstFire(t *testing.T) {
	SetDebugging(true)
	t.Cleanup(func() { SetDebugging(false) })

	created := coreNextLine()
	d := New[int]()
	fired := coreNextLine()
	require.NoError(t, d.Callback(1))

	err := d.Callback(2)
	require.ErrorIs(t, err, ErrAlreadyCalled)
	msg := err.Error()
	assert.Contains(t, msg, "TestCoreDebuggingShowsCreationAndFirstFire")
	assert.Contains(t, msg, created, "creation site")
	assert.Contains(t, msg, fired, "first firing site")
	assert.Less(t, strings.Index(msg, created), strings.Index(msg, fired))

	err = d.Errback(errCoreA)
	require.ErrorIs(t, err, ErrAlreadyCalled)
	assert.Contains(t, err.Error(), fired)

	SetDebugging(false)
	plain := New[int]()
	require.NoError(t, plain.Callback(1))
	assert.Equal(t, ErrAlreadyCalled.Error(), plain.Callback(2).Error(), "no sites without debugging")
}

// Rule 5: Cancel.

func TestCoreCancellerThatDoesNotFire(t *testing.T) {
	calls := 0
	d := NewWithCanceller(func(*Deferred[int]) { calls++ })
	d.Cancel()
	assert.Equal(t, 1, calls)
	// Twisted 22.4 (checked): with a canceller that did not fire, cancel()
	// does not set _suppressAlreadyCalled, so a later callback() raises
	// AlreadyCalledError.
	assert.ErrorIs(t, d.Callback(1), ErrAlreadyCalled)
	_, f := Capture(d).Now(t)
	require.NotNil(t, f)
	assert.ErrorIs(t, f, ErrCancelled)
}

func TestCoreCancellerThatFiresWins(t *testing.T) {
	t.Run("value", func(t *testing.T) {
		d := NewWithCanceller(func(d *Deferred[int]) { assert.NoError(t, d.Callback(9)) })
		d.Cancel()
		// The canceller fired d, so nothing is suppressed.
		assert.ErrorIs(t, d.Callback(1), ErrAlreadyCalled)
		v, f := Capture(d).Now(t)
		assert.Nil(t, f)
		assert.Equal(t, 9, v)
	})
	t.Run("failure", func(t *testing.T) {
		d := NewWithCanceller(func(d *Deferred[int]) { assert.NoError(t, d.Errback(errCoreB)) })
		d.Cancel()
		_, f := Capture(d).Now(t)
		require.NotNil(t, f)
		assert.ErrorIs(t, f, errCoreB)
		assert.NotErrorIs(t, f, ErrCancelled)
	})
}

// TestCoreCancellerRunsAtMostOnce: in Twisted 22.4 a canceller that calls
// cancel() again recurses until RecursionError; the contract here is at
// most one run.
func TestCoreCancellerRunsAtMostOnce(t *testing.T) {
	t.Run("Cancel twice", func(t *testing.T) {
		calls := 0
		d := NewWithCanceller(func(*Deferred[int]) { calls++ })
		d.Cancel()
		d.Cancel()
		assert.Equal(t, 1, calls)
		_, f := Capture(d).Now(t)
		assert.ErrorIs(t, f, ErrCancelled)
	})
	t.Run("re-entrant Cancel", func(t *testing.T) {
		calls := 0
		d := NewWithCanceller(func(d *Deferred[int]) {
			calls++
			d.Cancel()
		})
		d.Cancel()
		assert.Equal(t, 1, calls)
		// The canceller did not fire d itself: as in the plain case, the
		// producer is expected to be stopped, so nothing is suppressed.
		assert.ErrorIs(t, d.Callback(1), ErrAlreadyCalled)
		_, f := Capture(d).Now(t)
		assert.ErrorIs(t, f, ErrCancelled)
	})
	t.Run("concurrent Cancel", func(t *testing.T) {
		var mu sync.Mutex
		calls := 0
		d := NewWithCanceller(func(*Deferred[int]) { mu.Lock(); calls++; mu.Unlock() })
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(d.Cancel)
		}
		wg.Wait()
		assert.Equal(t, 1, calls)
		_, f := Capture(d).Now(t)
		assert.ErrorIs(t, f, ErrCancelled)
	})
}

type coreToken struct{ _ [64]byte }

// coreWithTrackedCanceller returns a Deferred whose canceller holds the
// only strong reference to an object, and a weak pointer to that object.
//
//go:noinline
func coreWithTrackedCanceller() (*Deferred[int], weak.Pointer[coreToken]) {
	tok := new(coreToken)
	wp := weak.Make(tok)
	d := NewWithCanceller(func(*Deferred[int]) { runtime.KeepAlive(tok) })
	return d, wp
}

// coreCollected runs the collector until wp's object is gone, a few times
// at most, and reports whether it is.
func coreCollected(wp weak.Pointer[coreToken]) bool {
	for range 5 {
		runtime.GC()
		if wp.Value() == nil {
			return true
		}
	}
	return false
}

func TestCoreCancellerDroppedOnFire(t *testing.T) {
	d, wp := coreWithTrackedCanceller()
	runtime.GC()
	require.NotNil(t, wp.Value(), "control: a pending Deferred keeps its canceller")

	require.NoError(t, d.Callback(1))
	assert.True(t, coreCollected(wp), "the canceller must be dropped once the Deferred fires")
	assert.True(t, d.Called()) // d is still alive here
	runtime.KeepAlive(d)
	Capture(d).Now(t)
}

func TestCoreCancelWaitingCancelsInner(t *testing.T) {
	innerCalls := 0
	inner := NewWithCanceller(func(*Deferred[int]) { innerCalls++ })
	var innerF *Failure
	inner.AddErrback(func(f *Failure) (int, error) { innerF = f; return 0, f })
	outerCalls := 0
	outer := NewWithCanceller(func(*Deferred[int]) { outerCalls++ })
	outer.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	require.NoError(t, outer.Callback(1))

	outer.Cancel()
	assert.Equal(t, 0, outerCalls, "outer fired already: its own canceller is not called")
	assert.Equal(t, 1, innerCalls)
	assert.True(t, inner.Called())
	_, f := Capture(outer).Now(t)
	require.NotNil(t, f)
	assert.ErrorIs(t, f, ErrCancelled)
	assert.Same(t, innerF, f, "outer goes on with the inner Deferred's failure")
}

func TestCorePanickingCanceller(t *testing.T) {
	var site string
	d := NewWithCanceller(func(*Deferred[int]) {
		site = coreNextLine()
		panic("canceller boom")
	})
	require.NotPanics(t, d.Cancel)
	assert.True(t, d.Called())
	_, f := Capture(d).Now(t)
	require.NotNil(t, f)
	pv, ok := f.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "canceller boom", pv)
	_, loc := coreFirstFrame(t, f)
	assert.Equal(t, site, loc, "stack:\n%s", f.Stack())
}

// Rule 5b: Pause and Unpause.

func TestCorePauseCounts(t *testing.T) {
	t.Run("fired", func(t *testing.T) {
		d := Succeed(1)
		d.Pause()
		d.Pause()
		ran := false
		d.AddCallback(func(v int) (int, error) { ran = true; return v, nil })
		assert.False(t, ran)
		assert.Contains(t, d.String(), "paused")
		d.Unpause()
		assert.False(t, ran, "two Pauses need two Unpauses")
		d.Unpause()
		assert.True(t, ran)
		Capture(d).Now(t)
	})
	t.Run("pending", func(t *testing.T) {
		d := New[int]()
		d.Pause()
		d.Pause()
		ran := false
		d.AddCallback(func(v int) (int, error) { ran = true; return v, nil })
		require.NoError(t, d.Callback(1))
		assert.False(t, ran)
		d.Unpause()
		assert.False(t, ran)
		d.Unpause()
		assert.True(t, ran)
		Capture(d).Now(t)
	})
}

// TestCoreUnpauseWithoutPause: Twisted 22.4 counts below zero here
// (paused == -2) and the chain never runs; we ignore the extra Unpauses.
func TestCoreUnpauseWithoutPause(t *testing.T) {
	for _, fired := range []bool{false, true} {
		t.Run(fmt.Sprint("fired=", fired), func(t *testing.T) {
			d := New[int]()
			if fired {
				require.NoError(t, d.Callback(1))
			}
			d.Unpause()
			d.Unpause()
			d.Pause()
			ran := false
			d.AddCallback(func(v int) (int, error) { ran = true; return v, nil })
			if !fired {
				require.NoError(t, d.Callback(1))
			}
			assert.False(t, ran, "one Pause still pauses after extra Unpauses")
			d.Unpause()
			assert.True(t, ran)
			Capture(d).Now(t)
		})
	}
}

func TestCorePausedInnerKeepsOuterWaiting(t *testing.T) {
	inner := Succeed(5)
	inner.Pause()
	outer := Succeed(0)
	got := -1
	outer.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	outer.AddCallback(func(v int) (int, error) { got = v; return v, nil })
	assert.Contains(t, outer.String(), "waiting")
	assert.Equal(t, -1, got)

	inner.Unpause()
	assert.Equal(t, 5, got)
	assert.NotContains(t, outer.String(), "waiting")
	Capture(outer).Now(t)
}

// Constructors and Called.

func TestCoreNewWithNilCancellerIsNew(t *testing.T) {
	for name, mk := range map[string]func() *Deferred[int]{
		"New":                   New[int],
		"NewWithCanceller(nil)": func() *Deferred[int] { return NewWithCanceller[int](nil) },
	} {
		t.Run(name, func(t *testing.T) {
			d := mk()
			assert.False(t, d.Called())
			d.Cancel()
			assert.True(t, d.Called())
			// Like New: no canceller, so the producer's first fire is swallowed.
			assert.NoError(t, d.Callback(1))
			assert.ErrorIs(t, d.Callback(1), ErrAlreadyCalled)
			_, f := Capture(d).Now(t)
			assert.ErrorIs(t, f, ErrCancelled)
		})
	}
}

func TestCoreCalled(t *testing.T) {
	d := New[int]()
	assert.False(t, d.Called())
	d.AddCallback(func(v int) (int, error) { return v, nil })
	assert.False(t, d.Called(), "adding stages does not fire")
	require.NoError(t, d.Callback(1))
	assert.True(t, d.Called())

	e := New[int]()
	require.NoError(t, e.Errback(errCoreA))
	assert.True(t, e.Called())
	Capture(e).Now(t)

	w := New[int]()
	inner := New[int]()
	w.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	require.NoError(t, w.Callback(1))
	assert.True(t, w.Called(), "a Deferred waiting on another has fired")
	require.NoError(t, inner.Callback(2))
	Capture(w).Now(t)
}

// Misuse panics.

// TestCoreStageAddedToInnerAfterLinkRunsAfterHandOver pins Twisted's
// continuation order: once an outer Deferred waits for an inner one, the
// inner's result goes to the outer at that point of the inner's chain; a
// stage added to the inner later runs after, on the zero value (Twisted:
// None), and does not change what the outer gets.
func TestCoreStageAddedToInnerAfterLinkRunsAfterHandOver(t *testing.T) {
	inner := New[int]()
	outer := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	var order []string
	outer.AddCallback(func(v int) (int, error) { order = append(order, "outer got "+strconv.Itoa(v)); return v, nil })
	inner.AddCallback(func(v int) (int, error) {
		order = append(order, "late stage got "+strconv.Itoa(v))
		return v*10 + 5, nil
	})
	require.NoError(t, inner.Callback(2))
	assert.Equal(t, []string{"outer got 2", "late stage got 0"}, order)
	v, f := Capture(outer).Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 2, v)
}

// TestCoreChainRunsTargetFirstEvenWhenItAddsToSource pins Chain's order
// under re-entrancy (Twisted's chainDeferred): the target's whole chain runs
// before the rest of the source's, and a stage the target adds to the
// source runs after the source's own later stages.
func TestCoreChainRunsTargetFirstEvenWhenItAddsToSource(t *testing.T) {
	src, target := New[int](), New[int]()
	var order []string
	note := func(s string) func(int) (int, error) {
		return func(v int) (int, error) { order = append(order, s); return v, nil }
	}
	target.AddCallback(func(v int) (int, error) {
		order = append(order, "target 1")
		src.AddCallback(note("added to source by target"))
		return v, nil
	})
	target.AddCallback(note("target 2"))
	src.Chain(target)
	src.AddCallback(note("source after Chain"))
	require.NoError(t, src.Callback(1))
	assert.Equal(t, []string{"target 1", "target 2", "source after Chain", "added to source by target"}, order)
}

// TestCoreDeferredOfFailureKeepsCallbacksAndErrbacksApart: in a
// Deferred[*Failure] a callback and an errback have the same signature; a
// value still goes to the callback only, a failure to the errback only.
func TestCoreDeferredOfFailureKeepsCallbacksAndErrbacksApart(t *testing.T) {
	var got []string
	d := New[*Failure]()
	d.AddCallback(func(v *Failure) (*Failure, error) { got = append(got, "callback: "+v.Error()); return v, nil })
	d.AddErrback(func(f *Failure) (*Failure, error) { got = append(got, "errback: "+f.Error()); return nil, nil })
	require.NoError(t, d.Callback(NewFailure(errCoreA)))
	assert.Equal(t, []string{"callback: core test error A"}, got)

	got = nil
	e := New[*Failure]()
	e.AddCallback(func(v *Failure) (*Failure, error) { got = append(got, "callback"); return v, nil })
	e.AddErrback(func(f *Failure) (*Failure, error) { got = append(got, "errback: "+f.Error()); return nil, nil })
	require.NoError(t, e.Errback(errCoreA))
	assert.Equal(t, []string{"errback: core test error A"}, got)
}

// TestCoreStagePausesThenPanics: a stage that pauses its own Deferred and
// then panics leaves the chain paused, holding the panic's Failure, which
// the next errback gets once Unpause resumes the chain. (Twisted 22.4 looks
// at the pause only between chain steps, so there the errback runs at
// once: ['pause and panic', 'errback'] before unpause. Pause's doc and the
// README's "Differences from Twisted" say why we stop.) Both ways a chain
// runs are covered: plain stages only, and with a stage that may return a
// Deferred, which the general loop runs.
func TestCoreStagePausesThenPanics(t *testing.T) {
	for _, general := range []bool{false, true} {
		t.Run(fmt.Sprint("general=", general), func(t *testing.T) {
			d := New[int]()
			var seen []string
			d.AddCallback(func(v int) (int, error) {
				seen = append(seen, "pause and panic")
				d.Pause()
				panic("boom")
			})
			d.AddCallback(func(v int) (int, error) {
				seen = append(seen, "callback")
				return v, nil
			})
			if general {
				d.AddCallbackDeferred(func(v int) *Deferred[int] {
					seen = append(seen, "callback returning a Deferred")
					return Succeed(v)
				})
			}
			var got *Failure
			d.AddErrback(func(f *Failure) (int, error) {
				seen = append(seen, "errback")
				got = f
				return 7, nil
			})
			require.NoError(t, d.Callback(1))
			assert.Equal(t, []string{"pause and panic"}, seen, "paused: nothing after the panicking stage runs")
			d.Unpause()
			assert.Equal(t, []string{"pause and panic", "errback"}, seen)
			require.NotNil(t, got)
			pv, panicked := got.PanicValue()
			assert.True(t, panicked)
			assert.Equal(t, "boom", pv)
			v, f := Capture(d).Now(t)
			assert.Nil(t, f)
			assert.Equal(t, 7, v)
		})
	}
}

// TestCoreInnerRestRunsWhenTheWaitingChainTouchesIt: an inner Deferred
// hands its result to the outer one waiting for it, whose chain goes on
// first; the inner one is not running meanwhile, so an outer stage that
// adds a stage to it runs the inner's rest right there. Twisted 22.4, the
// same program: ['s2', 's4', 'x', 's3'].
func TestCoreInnerRestRunsWhenTheWaitingChainTouchesIt(t *testing.T) {
	var seen []string
	note := func(name string) func(int) (int, error) {
		return func(v int) (int, error) { seen = append(seen, name); return v, nil }
	}
	d0, d1 := New[int](), New[int]()
	d1.AddErrbackDeferred(func(*Failure) *Deferred[int] { return d0 })
	d1.Cancel()
	d1.AddErrback(func(f *Failure) (int, error) {
		seen = append(seen, "s2")
		d0.AddCallback(note("x"))
		return 0, errors.New("E8")
	})
	d1.AddErrback(func(f *Failure) (int, error) {
		seen = append(seen, "s3")
		return 0, nil
	})
	d0.AddCallback(note("s4"))
	require.NoError(t, d0.Errback(errors.New("E0")))
	assert.Equal(t, []string{"s2", "s4", "x", "s3"}, seen)
	_, f := Capture(d1).Now(t)
	assert.Nil(t, f)
	v, f := Capture(d0).Now(t)
	assert.Nil(t, f)
	assert.Zero(t, v)
}

// TestCoreZeroDeferredIsPendingAndUsable pins the doc of Deferred: the zero
// value is a pending Deferred with no canceller, as New returns.
func TestCoreZeroDeferredIsPendingAndUsable(t *testing.T) {
	var d Deferred[int]
	assert.False(t, d.Called())
	c := Capture(d.AddCallback(func(v int) (int, error) { return v + 1, nil }))
	require.NoError(t, d.Callback(1))
	v, f := c.Now(t)
	assert.Nil(t, f)
	assert.Equal(t, 2, v)
	assert.ErrorIs(t, d.Callback(3), ErrAlreadyCalled)

	var cancelled Deferred[string]
	cancelled.Cancel()
	_, f = Capture(&cancelled).Now(t)
	assert.ErrorIs(t, f, ErrCancelled, "no canceller: Cancel fails it with ErrCancelled")
	assert.NoError(t, cancelled.Callback("late"), "the producer's first late firing is ignored, as for New")
}

// nestLine makes n Deferreds, each of a[0..n-2] with a stage that returns
// the next, and a[n-1] with a stage that returns a[0], closing a ring; it
// fires a[0..n-2] in the order given, then a[n-1], and returns what
// reaches the end of a[0]'s chain.
func nestLine(t *testing.T, n int, order []int) *Failure {
	t.Helper()
	a := make([]*Deferred[int], n)
	for i := range a {
		a[i] = New[int]()
	}
	for i := range a {
		next := a[(i+1)%n]
		a[i].AddCallbackDeferred(func(int) *Deferred[int] { return next })
	}
	c := Capture(a[0])
	for _, i := range order {
		require.NoError(t, a[i].Callback(i))
	}
	require.NoError(t, a[n-1].Callback(n-1))
	_, f := c.Now(t)
	return f
}

// TestNestRefusesEveryCycleWhateverTheOrder: a stage returning a Deferred
// that waits, through any number of others, for its own Deferred fails
// with ErrInvalidReturn, whether the line was built from the outside in,
// from the inside out, or in a random order (issue 13, defect 4: the check
// walks the shorter of the two lines it joins).
func TestNestRefusesEveryCycleWhateverTheOrder(t *testing.T) {
	for _, n := range []int{2, 3, 10, 1000} {
		down := make([]int, n-1)
		for i := range down {
			down[i] = i
		}
		up := make([]int, n-1)
		for i := range up {
			up[i] = n - 2 - i
		}
		random := append([]int(nil), down...)
		rand.New(rand.NewPCG(uint64(n), 1)).Shuffle(len(random), func(i, j int) { random[i], random[j] = random[j], random[i] })
		for name, order := range map[string][]int{"outside in": down, "inside out": up, "random": random} {
			f := nestLine(t, n, order)
			require.ErrorIs(t, f, ErrInvalidReturn, "n=%d, %s", n, name)
			assert.Contains(t, f.Error(), "waits for this one", "n=%d, %s", n, name)
		}
	}
}

// TestNestBuiltInsideOutIsNotQuadratic builds a nest of 100,000 Deferreds
// from the inside out, each new outer one waiting for the last: with the
// old walk down the whole nest at every link this took minutes. It counts
// the cycle check's steps, which must stay a few per link, and checks the
// result; BenchmarkNestedDeepInsideOut shows the cost per level.
func TestNestBuiltInsideOutIsNotQuadratic(t *testing.T) {
	const n = 100_000
	steps := 0
	testHookCycleStep = func() { steps++ }
	defer func() { testHookCycleStep = nil }()
	inner := New[int]()
	last := inner
	for range n {
		prev := last
		last = Succeed(0).AddCallbackDeferred(func(int) *Deferred[int] { return prev })
	}
	assert.LessOrEqual(t, steps, 2*n, "cycle-check steps for %d links: more than a few each means a walk down the nest", n)
	c := Capture(last)
	require.NoError(t, inner.Callback(7))
	v, f := c.Now(t)
	require.Nil(t, f)
	assert.Equal(t, 7, v)
}

// TestCoreFiredDeferredLetsItsStageStorageGo: once a Deferred with more
// stages than it holds inline has run them all, the side storage they
// spilled into is garbage, however long the Deferred itself is kept
// (issue 13, defect 9).
func TestCoreFiredDeferredLetsItsStageStorageGo(t *testing.T) {
	for _, stages := range []int{4, 8, 64} {
		d := New[int]()
		for range stages {
			d.AddCallback(func(v int) (int, error) { return v + 1, nil })
		}
		require.NotNil(t, d.x, "%d stages spill", stages)
		side := weak.Make(d.x)
		require.NoError(t, d.Callback(0))
		v, f := Capture(d).Now(t)
		require.Nil(t, f)
		require.Equal(t, stages, v)

		runtime.GC()
		runtime.GC()
		assert.Nil(t, side.Value(), "%d stages: the spill outlives the run", stages)
		runtime.KeepAlive(d)
	}
}

// TestCoreErrbacksPassOverSuccessAndCallbacksOverFailure pins the side
// each kind of stage runs on, for chains short enough to run from the
// inline stages and long enough to spill: a callback never sees a failure,
// an errback never a value (issue 13: flipping the test in the runner's
// direct call of errbacks went unnoticed).
func TestCoreErrbacksPassOverSuccessAndCallbacksOverFailure(t *testing.T) {
	for _, stages := range []int{3, 4, 9} {
		var ran []string
		d := New[int]()
		for i := range stages {
			if i%2 == 0 {
				d.AddCallback(func(v int) (int, error) { ran = append(ran, "cb"); return v + 1, nil })
			} else {
				d.AddErrback(func(f *Failure) (int, error) { ran = append(ran, "eb"); return 0, f })
			}
		}
		require.NoError(t, d.Callback(0))
		v, f := Capture(d).Now(t)
		require.Nil(t, f)
		assert.Equal(t, (stages+1)/2, v, "%d stages: every callback, on success", stages)
		assert.NotContains(t, ran, "eb", "%d stages: no errback on success", stages)

		ran = nil
		d = New[int]()
		for i := range stages {
			if i%2 == 0 {
				d.AddErrback(func(f *Failure) (int, error) { ran = append(ran, "eb"); return 0, f })
			} else {
				d.AddCallback(func(v int) (int, error) { ran = append(ran, "cb"); return v, nil })
			}
		}
		require.NoError(t, d.Errback(errors.New("boom")))
		_, f = Capture(d).Now(t)
		require.Error(t, f)
		assert.NotContains(t, ran, "cb", "%d stages: no callback on failure", stages)
		assert.Len(t, ran, (stages+1)/2, "%d stages: every errback, on failure", stages)
	}
}

// Twisted 22.4: once a Deferred's result has gone to another — taken by
// the outer chain a stage returned it to, handed to it at the waiting
// point, or passed on by chainDeferred — the Deferred goes on with None: a
// stage added to it later gets None, and the result, value or failure, is
// the other's alone. (succeed(7) returned from outer's stage, then
// inner.addBoth(r) gets None; fail(E) likewise, and outer's errback gets
// E; d.chainDeferred(other); d.callback(3); d.addBoth(r) gets None.)
// Here the zero value and no failure.
func TestCoreDeferredReusedAfterItsResultWentElsewhereHoldsTheZeroValue(t *testing.T) {
	returned := func(inner *Deferred[int]) *Captured[int] {
		return Capture(Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner }))
	}
	chained := func(inner *Deferred[int]) *Captured[int] {
		other := New[int]()
		out := Capture(other)
		inner.Chain(other)
		return out
	}
	cases := []struct {
		name    string
		pending bool // inner fires after give, not before
		// give makes inner's result go to another Deferred, and returns
		// what that one got.
		give func(inner *Deferred[int]) *Captured[int]
	}{
		{"fired inner taken by the outer chain", false, returned},
		{"pending inner delivering to the chain waiting for it", true, returned},
		{"Chain from a fired Deferred", false, chained},
		{"Chain from a pending Deferred", true, chained},
	}
	for _, c := range cases {
		for _, failing := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/failing=%v", c.name, failing), func(t *testing.T) {
				fire := func(d *Deferred[int]) {
					if failing {
						require.NoError(t, d.Errback(errCoreA))
					} else {
						require.NoError(t, d.Callback(7))
					}
				}
				inner := New[int]()
				if !c.pending {
					fire(inner)
				}
				got := c.give(inner)
				if c.pending {
					fire(inner)
				}
				v, f := got.Now(t)
				if failing {
					require.NotNil(t, f, "the other Deferred gets the failure")
					require.ErrorIs(t, f, errCoreA)
				} else {
					require.Nil(t, f)
					require.Equal(t, 7, v, "the other Deferred gets the value")
				}

				later, lf := Capture(inner).Now(t)
				assert.Nil(t, lf, "a stage added to inner afterwards sees no failure")
				assert.Zero(t, later, "a stage added to inner afterwards sees the zero value")
			})
		}
	}
}
