//go:build !amd64 || deferred_nofp

package deferred

import "runtime"

// callerPCs stores in buf the return addresses of the frames from the
// function calling it outwards.
//
//go:noinline
func callerPCs(buf []uintptr) int { return runtime.Callers(2, buf) }
