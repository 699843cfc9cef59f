package deferred

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Captured is what reached the end of a Deferred's chain, as [Capture]
// recorded it. Read its fields directly only on the goroutine that fired
// the Deferred, or after Now or Wait returned; Get and Wait may be called
// from any goroutine.
//
// Capture and Captured are the tests' one result-capture helper. They are
// exported from this test file (the export_test.go idiom) so that the
// external tests in misuse_test.go use the same one; the package itself
// exports nothing of the kind.
type Captured[T any] struct {
	mu      sync.Mutex
	done    chan struct{}
	Fired   bool
	Value   T
	Failure *Failure
}

// Capture adds a last stage to d that records d's result and handles it
// (a failure is consumed, so it is not reported as unhandled; a value is
// passed on), and returns the record.
func Capture[T any](d *Deferred[T]) *Captured[T] {
	c := &Captured[T]{done: make(chan struct{})}
	d.AddBoth(func(v T, f *Failure) (T, error) {
		c.mu.Lock()
		c.Fired, c.Value, c.Failure = true, v, f
		c.mu.Unlock()
		close(c.done)
		return v, nil
	})
	return c
}

// Get returns what has reached the end of the chain so far.
func (c *Captured[T]) Get() (fired bool, v T, f *Failure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Fired, c.Value, c.Failure
}

// Now returns the result, failing the test if the chain has not reached
// the captured stage yet: for chains that must have run by now.
func (c *Captured[T]) Now(t testing.TB) (T, *Failure) {
	t.Helper()
	fired, v, f := c.Get()
	require.True(t, fired, "the chain did not reach its end")
	return v, f
}

// Wait waits, from another goroutine than the one that fires, for the
// result. It never sleeps for timing: the guard only turns a lost result
// into a test failure rather than a hang.
func (c *Captured[T]) Wait(t testing.TB) (T, *Failure) {
	t.Helper()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.Now(t)
	case <-timer.C:
		t.Error("the chain never reached its end: a result was lost")
		var zero T
		return zero, NewFailure(errors.New("lost"))
	}
}
