package deferred

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

// stackTestInlined is small enough to be inlined: the trace must still
// show it as a frame of its own, as runtime.Callers does.
func stackTestInlined(f func()) { f() }

// TestStackMatchesRuntimeCallers pins that the fast stack capture (frame
// pointers on amd64) names the same frames as runtime.Callers, inlined
// calls and wrappers included.
func TestStackMatchesRuntimeCallers(t *testing.T) {
	var got trace
	var want []string
	stackTestInlined(func() {
		got = callers(2) // from here on, as runtime.Callers(1) below
		pcs := make([]uintptr, 64)
		pcs = pcs[:runtime.Callers(1, pcs)]
		frames := runtime.CallersFrames(pcs)
		for {
			fr, more := frames.Next()
			want = append(want, fr.Function)
			if !more {
				break
			}
		}
	})
	var names []string
	got.each(func(fr runtime.Frame) { names = append(names, fr.Function) })
	assert.Equal(t, want, names)
	assert.Contains(t, names, "github.com/deferred-go/deferred.stackTestInlined")
}
