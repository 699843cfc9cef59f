//go:build !deferred_nofp

package deferred

import "runtime"

// fpCallers is in stack_amd64.s. Following frame pointers costs a few
// nanoseconds a frame where runtime.Callers costs tens, which is the
// difference between a failure path that costs about as much as a success
// path and one dominated by its stack trace.
//
//go:noescape
func fpCallers(buf []uintptr) int

// callerPCs stores in buf the return addresses of the frames from the
// function calling it outwards: the same PCs as runtime.Callers(2, buf)
// called there, which it asks itself when the frame-pointer walk is unsure.
//
//go:noinline
func callerPCs(buf []uintptr) int {
	if n := fpCallers(buf); n >= 0 {
		return n
	}
	return runtime.Callers(2, buf)
}
