package deferred

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stackTestInlined is small enough to be inlined: the trace must still
// show it as a frame of its own, as runtime.Callers does.
func stackTestInlined(f func()) { f() }

// runtimeCallerNames returns the functions of its caller's stack as
// runtime.Callers sees them, from the caller outwards.
//
//go:noinline
func runtimeCallerNames() []string {
	pcs := make([]uintptr, 64)
	pcs = pcs[:runtime.Callers(2, pcs)]
	var names []string
	frames := runtime.CallersFrames(pcs)
	for {
		fr, more := frames.Next()
		names = append(names, fr.Function)
		if !more {
			return names
		}
	}
}

// TestStackMatchesRuntimeCallers pins that the fast stack capture (frame
// pointers on amd64) names the same frames as runtime.Callers, inlined
// calls and wrappers included.
func TestStackMatchesRuntimeCallers(t *testing.T) {
	var got trace
	var want []string
	stackTestInlined(func() {
		got = callers(2) // from here on, as runtime.Callers(1) below
		want = runtimeCallerNames()
	})
	var names []string
	got.each(func(fr runtime.Frame) { names = append(names, fr.Function) })
	assert.Equal(t, want, names)
	assert.Contains(t, names, "github.com/deferred-go/deferred.stackTestInlined")
}

var stackTestSink byte

// stackTestBigFrame has a frame larger than 1 MiB, which the frame-pointer
// walk does not trust: the trace must still go on past it.
//
//go:noinline
func stackTestBigFrame(i int, f func() trace) trace {
	// Go keeps a variable on the stack up to 128 KiB: ten of 120 KiB.
	var b0, b1, b2, b3, b4, b5, b6, b7, b8, b9 [120 << 10]byte
	for _, b := range []*[120 << 10]byte{&b0, &b1, &b2, &b3, &b4, &b5, &b6, &b7, &b8, &b9} {
		b[i%len(b)] = byte(i)
	}
	stackTestSink = b0[i] + b1[i] + b2[i] + b3[i] + b4[i] + b5[i] + b6[i] + b7[i] + b8[i] + b9[i]
	return f()
}

// TestStackGoesOnPastAFrameOfOverOneMiB: the walk stopped at such a frame
// and lost every frame outside it (issue 13, defect 8); now it falls back
// to runtime.Callers and names the same frames.
func TestStackGoesOnPastAFrameOfOverOneMiB(t *testing.T) {
	var want []string
	got := stackTestBigFrame(1, func() trace {
		want = runtimeCallerNames()
		return callers(2)
	})
	var names []string
	got.each(func(fr runtime.Frame) { names = append(names, fr.Function) })
	assert.Equal(t, want, names)
	assert.Contains(t, names, "github.com/deferred-go/deferred.TestStackGoesOnPastAFrameOfOverOneMiB")
}

type stackTestLeafT struct{ x int }

// stackTestLeaf is a leaf small enough to have no frame of its own.
//
//go:noinline
func stackTestLeaf(p *stackTestLeafT) int { return p.x }

//go:noinline
func stackTestLeafCaller(p *stackTestLeafT) int { return stackTestLeaf(p) + 1 }

// TestStackOfANilDereferenceInAFramelessLeaf: the Failure of a nil
// dereference in a leaf function without a frame names the leaf and its
// caller (issue 13, defect 8: the frame-pointer walk lost the caller).
func TestStackOfANilDereferenceInAFramelessLeaf(t *testing.T) {
	d := New[int]()
	d.AddCallback(func(int) (int, error) { return stackTestLeafCaller(nil), nil })
	c := Capture(d)
	require.NoError(t, d.Callback(1))
	_, f := c.Now(t)
	require.NotNil(t, f)
	stack := f.Stack()
	assert.Contains(t, stack, "deferred.stackTestLeaf\n")
	assert.Contains(t, stack, "deferred.stackTestLeafCaller\n")
	assert.Contains(t, stack, "TestStackOfANilDereferenceInAFramelessLeaf")
}

// TestStackDeeperThanEightFrames: a Failure made 20 frames down keeps them
// all, in the allocation sized for 16 to 32 frames.
func TestStackDeeperThanEightFrames(t *testing.T) {
	var f *Failure
	var down func(n int)
	down = func(n int) {
		if n == 0 {
			f = NewFailure(errors.New("deep"))
			return
		}
		down(n - 1)
	}
	down(20)
	assert.GreaterOrEqual(t, strings.Count(f.Stack(), "TestStackDeeperThanEightFrames.func1"), 21)
}
