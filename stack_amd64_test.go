//go:build !deferred_nofp

package deferred

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

// fpCallersHere is fpCallers called from a frame of its own, as
// callerPCs calls it.
//
//go:noinline
func fpCallersHere(buf []uintptr) int { return fpCallers(buf) }

// TestFPCallersWalksToTheFirstFrameUnaided: on an ordinary stack the
// frame-pointer walk ends at the goroutine's first frame sure of itself
// (a positive count, so callerPCs does not pay for runtime.Callers), with
// the frames runtime.Callers finds outside fpCallersHere.
func TestFPCallersWalksToTheFirstFrameUnaided(t *testing.T) {
	var buf [maxStackDepth]uintptr
	n := fpCallersHere(buf[:])
	pcs := make([]uintptr, maxStackDepth)
	pcs = pcs[:runtime.Callers(1, pcs)] // from this test's frame outwards
	if assert.Positive(t, n, "the walk should reach the first frame without doubt") {
		var got, want []string
		trace{pcs: buf[:n]}.each(func(fr runtime.Frame) { got = append(got, fr.Function) })
		trace{pcs: pcs}.each(func(fr runtime.Frame) { want = append(want, fr.Function) })
		assert.Equal(t, want, got)
		assert.Equal(t, "runtime.goexit", got[len(got)-1])
	}
}

// TestFPCallersStopsUnsureAtAFrameOfOverOneMiB: a frame larger than 1 MiB
// breaks the walk's bound on a frame, and it says so with a negative count.
func TestFPCallersStopsUnsureAtAFrameOfOverOneMiB(t *testing.T) {
	var buf [maxStackDepth]uintptr
	var n int
	stackTestBigFrame(1, func() trace {
		n = fpCallersHere(buf[:])
		return trace{}
	})
	assert.Negative(t, n)
}

// TestFPCallersStopsAtAFullBuffer: the walk fills buf and no more.
func TestFPCallersStopsAtAFullBuffer(t *testing.T) {
	var buf [3]uintptr
	assert.Equal(t, 3, fpCallersHere(buf[:2:2])+1, "two frames fill a buffer of two")
	assert.Zero(t, buf[2], "nothing written past the buffer's length")
}

// stackTestMediumFrame has a frame of about 240 KiB: large, but within the
// walk's bound.
//
//go:noinline
func stackTestMediumFrame(i int, f func()) {
	var b0, b1 [120 << 10]byte
	b0[i%len(b0)], b1[i%len(b1)] = byte(i), byte(i)
	stackTestSink = b0[i] + b1[i]
	f()
}

// TestFPCallersWalksPastAFrameUnderOneMiB: only frames of 1 MiB or more
// make the walk unsure.
func TestFPCallersWalksPastAFrameUnderOneMiB(t *testing.T) {
	var n int
	stackTestMediumFrame(1, func() {
		var buf [maxStackDepth]uintptr
		n = fpCallersHere(buf[:])
	})
	assert.Positive(t, n)
}
