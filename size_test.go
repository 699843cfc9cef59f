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
	assert.Equal(t, uintptr(16), unsafe.Sizeof(stage[int]{}), "a stage is a pointer and a kind")
}
