package deferred

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStringNilReceiver: String on a nil *Deferred gives a placeholder
// where every other method panics (those panics are in misuse_test.go).
func TestStringNilReceiver(t *testing.T) {
	var d *Deferred[int]
	assert.Equal(t, "<nil *Deferred[int]>", d.String())
}

func TestStringPending(t *testing.T) {
	d := New[int]()
	s := d.String()
	assert.Contains(t, s, "Deferred[int]")
	assert.Contains(t, s, fmt.Sprintf("%p", d), "names the Deferred's address")
	assert.Contains(t, s, "pending")
	assert.NotContains(t, s, "paused")
}

func TestStringWaitingOnAnother(t *testing.T) {
	inner := New[string]()
	d := Succeed("a").AddCallbackDeferred(func(string) *Deferred[string] { return inner })
	s := d.String()
	assert.Contains(t, s, "waiting on")
	assert.Contains(t, s, fmt.Sprintf("%p", inner), "names the Deferred it waits on")
	assert.NotContains(t, s, "pending")

	_ = inner.Callback("b")
	assert.Contains(t, d.String(), "current result: b", "once the inner one fires, the value shows")
}

func TestStringCurrentValue(t *testing.T) {
	d := Succeed(42)
	assert.Contains(t, d.String(), "current result: 42")

	d.AddCallback(func(v int) (int, error) { return v + 1, nil })
	assert.Contains(t, d.String(), "current result: 43", "shows the result at the current point of the chain")

	type point struct{ X, Y int }
	assert.Contains(t, Succeed(point{1, 2}).String(), "current result: {1 2}")
}

func TestStringFailure(t *testing.T) {
	d := Fail[int](errors.New("boom happened"))
	s := d.String()
	assert.Contains(t, s, "failure")
	assert.Contains(t, s, "boom happened")
	d.AddErrback(func(*Failure) (int, error) { return 7, nil })
	assert.Contains(t, d.String(), "current result: 7")
	assert.NotContains(t, d.String(), "failure")
}

func TestStringPaused(t *testing.T) {
	d := New[int]()
	d.Pause()
	s := d.String()
	assert.Contains(t, s, "pending")
	assert.Contains(t, s, "paused")

	_ = d.Callback(5)
	s = d.String()
	assert.Contains(t, s, "current result: 5")
	assert.Contains(t, s, "paused")

	d.Unpause()
	assert.NotContains(t, d.String(), "paused")
}

func TestStringFmtVerbsUseString(t *testing.T) {
	for _, d := range []*Deferred[int]{New[int](), Succeed(3)} {
		assert.Equal(t, d.String(), fmt.Sprintf("%v", d))
		//lint:ignore S1025 the point is that %s goes through String
		assert.Equal(t, d.String(), fmt.Sprintf("%s", d))
		assert.Equal(t, d.String(), fmt.Sprint(d))
	}
}

// selfDescribing is a value whose String uses the Deferred that holds it.
type selfDescribing struct{ d *Deferred[selfDescribing] }

func (s selfDescribing) String() string { return fmt.Sprintf("called=%v", s.d.Called()) }

// TestStringFormatsTheValueOutsideTheLock: String takes what it needs under
// the lock and formats it after, so a value whose String method calls a
// method of its own Deferred does not deadlock (issue 13, defect 3: it
// used to spin forever).
func TestStringFormatsTheValueOutsideTheLock(t *testing.T) {
	d := New[selfDescribing]()
	require.NoError(t, d.Callback(selfDescribing{d: d}))

	done := make(chan string, 1)
	go func() { done <- d.String() }()
	select {
	case s := <-done:
		assert.Contains(t, s, "current result: called=true")
	case <-time.After(time.Minute): // a guard against a hang, not a timing assertion
		t.Fatal("String deadlocked on a value that uses its own Deferred")
	}
}
