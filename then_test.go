package deferred

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// thenStackDepth returns how many frames the calling goroutine has, capped
// at the buffer size: a recursive firing loop shows up as a deep stack.
func thenStackDepth() int {
	var buf [4096]uintptr
	return runtime.Callers(0, buf[:])
}

func TestThenOldHandleCallbackFiresChain(t *testing.T) {
	d := New[int]()
	var seen []string
	d.AddCallback(func(v int) (int, error) {
		seen = append(seen, "before")
		return v * 2, nil
	})
	u := Then(d, func(v int) (string, error) {
		seen = append(seen, "then")
		return fmt.Sprint(v), nil
	})
	var got string
	u.AddCallback(func(s string) (string, error) {
		got = s
		return s, nil
	})
	require.Empty(t, seen, "nothing runs before the source fires")

	require.NoError(t, d.Callback(21))
	assert.Equal(t, []string{"before", "then"}, seen)
	assert.Equal(t, "42", got)
	assert.ErrorIs(t, d.Callback(1), ErrAlreadyCalled, "the old handle still fires once")
}

func TestThenFailureBeforeThenPassesToNew(t *testing.T) {
	boom := errors.New("boom")
	var original *Failure
	d := New[int]().AddCallback(func(int) (int, error) {
		original = NewFailure(boom)
		return 0, original
	})
	called := false
	u := Then(d, func(v int) (string, error) {
		called = true
		return "ok", nil
	})
	var got *Failure
	var next bool
	u.AddCallbacks(func(s string) (string, error) {
		next = true
		return s, nil
	}, func(f *Failure) (string, error) {
		got = f
		return "", nil
	})
	require.NoError(t, d.Callback(1))
	assert.False(t, called, "cb is a callback: a failure passes it by")
	assert.False(t, next, "the new Deferred must fail, not succeed")
	require.NotNil(t, got)
	assert.Same(t, original, got, "the failure reaches the new Deferred as the same *Failure")
	assert.ErrorIs(t, got, boom)
}

// TestChainValue pins Twisted's chainDeferred: other gets the value, and d
// goes on with None — here the zero value, on the callback side.
func TestChainValue(t *testing.T) {
	d := New[int]()
	other := New[int]()
	var otherGot []int
	other.AddCallback(func(v int) (int, error) {
		otherGot = append(otherGot, v)
		return v, nil
	})
	var dGot []int
	var dFailed bool
	d.Chain(other).AddCallbacks(func(v int) (int, error) {
		dGot = append(dGot, v)
		return v, nil
	}, func(f *Failure) (int, error) {
		dFailed = true
		return 0, nil
	})
	require.NoError(t, d.Callback(5))
	assert.Equal(t, []int{5}, otherGot)
	assert.Equal(t, []int{0}, dGot, "d continues with the zero value (Twisted: None)")
	assert.False(t, dFailed)
	assert.True(t, other.Called())
}

func TestChainFailure(t *testing.T) {
	boom := errors.New("boom")
	d := New[string]()
	other := New[string]()
	var otherGot *Failure
	other.AddErrback(func(f *Failure) (string, error) {
		otherGot = f
		return "", nil
	})
	var dGot []string
	var dFailed bool
	d.Chain(other).AddCallbacks(func(v string) (string, error) {
		dGot = append(dGot, v)
		return v, nil
	}, func(f *Failure) (string, error) {
		dFailed = true
		return "", nil
	})
	sent := NewFailure(boom)
	require.NoError(t, d.Errback(sent))
	require.NotNil(t, otherGot)
	assert.Same(t, sent, otherGot, "other gets d's failure itself")
	assert.Equal(t, []string{""}, dGot, "d continues with the zero value and no failure (Twisted: None)")
	assert.False(t, dFailed)
}

// fireLongChain makes a pending Deferred, extends it n times with link
// (each call gets the chain's current last Deferred and returns the new
// one), fires the first with v and returns what the last one's callback
// got, and how much deeper the stack was there than in the first one's
// callback. The stack limit is raised meanwhile, so a recursive hand-over
// shows as depth rather than as a crash.
func fireLongChain(t *testing.T, n, v int, link func(*Deferred[int]) *Deferred[int]) (got, extraDepth int) {
	t.Helper()
	old := debug.SetMaxStack(64 << 20)
	defer debug.SetMaxStack(old)

	first := New[int]()
	startDepth := 0
	first.AddCallback(func(x int) (int, error) {
		startDepth = thenStackDepth()
		return x, nil
	})
	last := first
	for range n {
		last = link(last)
	}
	endDepth := 0
	last.AddCallback(func(x int) (int, error) {
		got = x
		endDepth = thenStackDepth()
		return x, nil
	})
	require.NoError(t, first.Callback(v))
	return got, endDepth - startDepth
}

// TestChainMillionIterative links 1,000,000 Deferreds with Chain and fires
// the first: the last one's callback must run, on a bounded stack.
// TestChainRunsTargetBeforeTheRestWhenResumingFromInner: a chain that
// resumes once an inner Deferred fires, and then reaches a Chain stage,
// runs the Chain target's stages before its own next stage, which gets the
// zero value (Twisted: [('other', 5), ('outer-after', None)]).
func TestChainRunsTargetBeforeTheRestWhenResumingFromInner(t *testing.T) {
	var got []string
	record := func(who string) func(int) (int, error) {
		return func(v int) (int, error) {
			got = append(got, who+":"+strconv.Itoa(v))
			return v, nil
		}
	}
	inner := New[int]()
	other := New[int]()
	other.AddCallback(record("other"))
	outer := Succeed(1).AddCallbackDeferred(func(int) *Deferred[int] { return inner })
	outer.Chain(other).AddCallback(record("outer-after"))
	require.Empty(t, got)

	require.NoError(t, inner.Callback(5))
	assert.Equal(t, []string{"other:5", "outer-after:0"}, got)
}

func TestChainMillionIterative(t *testing.T) {
	got, extraDepth := fireLongChain(t, 1_000_000-1, 42, func(prev *Deferred[int]) *Deferred[int] {
		next := New[int]()
		prev.Chain(next)
		return next
	})
	assert.Equal(t, 42, got, "the last Deferred's callback gets the value")
	assert.Less(t, extraDepth, 50, "the chain must fire in a loop, not by recursion")
}

// TestThenHundredThousandLong builds 100,000 Then calls, each on the
// previous result, before firing, and fires the first.
func TestThenHundredThousandLong(t *testing.T) {
	const n = 100_000
	got, extraDepth := fireLongChain(t, n, 0, func(cur *Deferred[int]) *Deferred[int] {
		return Then(cur, func(v int) (int, error) { return v + 1, nil })
	})
	assert.Equal(t, n, got)
	assert.Less(t, extraDepth, 50, "Then hand-overs must run in a loop, not by recursion")
}

func TestThenDeferredHundredThousandLong(t *testing.T) {
	const n = 100_000
	got, extraDepth := fireLongChain(t, n, 0, func(cur *Deferred[int]) *Deferred[int] {
		return ThenDeferred(cur, func(v int) *Deferred[int] { return Succeed(v + 1) })
	})
	assert.Equal(t, n, got)
	assert.Less(t, extraDepth, 50, "ThenDeferred hand-overs must run in a loop, not by recursion")
}

// With debugging on, the Deferred that Then or ThenDeferred returns names
// the line that called them as its creation site, as New's does.
func TestThenDebuggingNamesTheCallerAsCreationSite(t *testing.T) {
	SetDebugging(true)
	t.Cleanup(func() { SetDebugging(false) })

	src1, src2 := New[int](), New[int]()
	defer func() { _, _ = src1.Callback(0), src2.Callback(0) }() // tracked: not lost
	created := coreNextLine()
	u := Then(src1, func(v int) (string, error) { return "", nil })
	createdDeferred := coreNextLine()
	w := ThenDeferred(src2, func(v int) *Deferred[string] { return Succeed("") })

	for _, c := range []struct {
		d    *Deferred[string]
		site string
	}{{u, created}, {w, createdDeferred}} {
		require.NoError(t, c.d.Callback("by hand"))
		err := c.d.Callback("again")
		require.ErrorIs(t, err, ErrAlreadyCalled)
		assert.Contains(t, err.Error(),
			"created at:\ngithub.com/deferred-go/deferred.TestThenDebuggingNamesTheCallerAsCreationSite\n\t"+c.site,
			"the creation stack starts at the caller")
	}
}

// thenCollected runs the collector until weak pointer w is cleared, a few
// times at most, and reports whether it was.
func thenCollected[P any](w weak.Pointer[P]) bool {
	for range 5 {
		runtime.GC()
		if w.Value() == nil {
			return true
		}
	}
	return false
}

// thenCapturing returns Then's (or ThenDeferred's) Deferred for src, with
// a function that holds a buffer, and a weak pointer to the buffer.
func thenCapturing(src *Deferred[int], deferred bool) (*Deferred[int], weak.Pointer[[1 << 16]byte]) {
	big := new([1 << 16]byte)
	if deferred {
		return ThenDeferred(src, func(v int) *Deferred[int] { return Succeed(v + int(big[0])) }), weak.Make(big)
	}
	return Then(src, func(v int) (int, error) { return v + int(big[0]), nil }), weak.Make(big)
}

// Once Then's Deferred has fired, keeping it does not keep the source
// alive, nor what the function given to Then holds: a Deferred kept after
// its result arrived must not hold the whole chain that led to it.
func TestThenFiredDeferredLetsSourceAndFunctionGo(t *testing.T) {
	for _, name := range []string{"Then", "ThenDeferred", "fired by hand"} {
		src := New[int]()
		wSrc := weak.Make(src)
		u, wBig := thenCapturing(src, name == "ThenDeferred")
		if name == "fired by hand" {
			require.NoError(t, u.Callback(7)) // the source never fires
			assert.True(t, thenCollected(wSrc), "%s: the source is still reachable through Then's Deferred", name)
			runtime.KeepAlive(u)
			continue
		}
		require.NoError(t, src.Callback(1))
		src = nil
		assert.True(t, thenCollected(wSrc), "%s: the source is still reachable through Then's Deferred", name)
		assert.True(t, thenCollected(wBig), "%s: the function's captures are still reachable", name)
		runtime.KeepAlive(u)
	}
}

// The serialising idiom tail = ThenDeferred(tail, ...), kept up for long,
// holds only the last tail, not every step before it.
func TestThenLongLivedTailDoesNotGrow(t *testing.T) {
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	tail := Succeed(0)
	before := heap()
	const steps = 100_000 // about 12 MiB if every step were kept
	for range steps {
		tail = ThenDeferred(tail, func(v int) *Deferred[int] { return Succeed(v + 1) })
	}
	after := heap()
	v, f := Capture(tail).Now(t)
	require.Nil(t, f)
	assert.Equal(t, steps, v)
	assert.Less(t, int64(after)-int64(before), int64(2<<20), "the heap grew by %d KiB", (int64(after)-int64(before))/1024)
}

// TestThenCancelOfAMillionLongChainRunsInALoop cancels the end of a
// 1,000,000-long Then chain: the source's canceller runs, and the failure
// reaches the end, with the stack no deeper in the canceller than where
// Cancel was called (issue 13, defect 5: it used to recurse once a link).
func TestThenCancelOfAMillionLongChainRunsInALoop(t *testing.T) {
	old := debug.SetMaxStack(64 << 20) // a recursion shows as depth, not as a crash
	defer debug.SetMaxStack(old)
	const n = 1_000_000

	cancelDepth := 0
	first := NewWithCanceller(func(*Deferred[int]) { cancelDepth = thenStackDepth() })
	last := first
	for range n {
		last = Then(last, func(v int) (int, error) { return v + 1, nil })
	}
	c := Capture(last)
	callDepth := thenStackDepth()
	last.Cancel()

	_, f := c.Now(t)
	require.ErrorIs(t, f, ErrCancelled)
	assert.Less(t, cancelDepth-callDepth, 50, "frames between Cancel and the source's canceller")
}
