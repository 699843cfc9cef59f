package deferredtest_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/deferredtest"
)

// testing/synctest is the fake clock for code that uses Deferreds: inside a
// synctest.Test bubble, time moves only when every goroutine of the bubble
// is blocked, and then it jumps to the next timer. An hour's timeout fires
// at once, at exactly one hour of the bubble's time.

// TestAddTimeoutFiresInstantlyInABubble waits for the timeout with Await.
func TestAddTimeoutFiresInstantlyInABubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		d := deferred.New[string]().AddTimeout(time.Hour) // a reply that never comes
		deferredtest.AssertNoResult(t, d)

		_, err := d.Await(t.Context()) // the bubble's clock jumps an hour ahead
		require.ErrorIs(t, err, deferred.ErrTimeout)
		assert.Equal(t, time.Hour, time.Since(start))
	})
}

// TestAddTimeoutStepByStepInABubble moves the bubble's clock by hand and
// looks at the Deferred at each step.
func TestAddTimeoutStepByStepInABubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := deferred.New[string]().AddTimeout(time.Hour)

		time.Sleep(time.Hour - time.Nanosecond)
		synctest.Wait()
		deferredtest.AssertNoResult(t, d)

		time.Sleep(time.Nanosecond)
		synctest.Wait() // the timer's goroutine has cancelled d
		deferredtest.FailureResultOf(t, d, deferred.ErrTimeout)
	})
}

// TestNoUnhandledInsideABubble: NoUnhandled works on a bubble's t too, its
// cleanup running inside the bubble, where time stands still.
func TestNoUnhandledInsideABubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := new(fakeT)
		deferredtest.NoUnhandled(ft)
		_ = deferred.New[int]().AddTimeout(time.Minute)
		time.Sleep(time.Minute) // the timeout fails the dropped Deferred
		synctest.Wait()
		ft.end()
		require.Len(t, ft.errors, 1, "%q", ft.errors)
		assert.Contains(t, ft.errors[0], "unhandled failure reported during the test: deferred: AddTimeout: timed out after 1m0s")
	})
}
