package deferred

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// TestDeferredSize pins the size of a Deferred[int] to its 80-byte size
// class: every Deferred is one allocation of this size, and a field added
// carelessly would move it to the next class and slow every chain down.
// Rare state belongs in extra.
func TestDeferredSize(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(Deferred[int]{}), uintptr(80))
	assert.Equal(t, 2*unsafe.Sizeof(uintptr(0)), unsafe.Sizeof(stage[int]{}), "a stage is a pointer and a kind")
}

// TestFailureSize pins a Failure with a short stack to one allocation, of
// at most 128 bytes on 64-bit machines (Failure and eight frames): the size
// class an error takes on its way into a chain. (The Failure keeps a pointer
// to its frames rather than a slice, which leaves room for the stage that
// made it.)
func TestFailureSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) == 8 {
		assert.Equal(t, uintptr(56), unsafe.Sizeof(Failure{}))
		assert.LessOrEqual(t, unsafe.Sizeof(failure8{}), uintptr(128))
	}
	allocs := testing.AllocsPerRun(100, func() { _ = NewFailure(errBench) })
	assert.Equal(t, 1.0, allocs, "a Failure and its stack in one allocation")
}
