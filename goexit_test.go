package deferred

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin what happens when user code run by the library calls
// runtime.Goexit, as t.FailNow, t.Fatal and testify's require do (issue 13,
// defect 2): the goroutine still leaves, but first the chain goes on with a
// failure matching ErrGoexit, instead of staying "running" forever.

// onLeavingGoroutine runs f on a new goroutine and reports, once that
// goroutine has ended, whether f returned (false: it called Goexit).
func onLeavingGoroutine(f func()) (returned bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
		returned = true
	}()
	<-done
	return returned
}

func goexitStage(int) (int, error) {
	runtime.Goexit()
	return 0, nil
}

func TestGoexitInAStageFailsTheRestOfTheChain(t *testing.T) {
	d := New[int]()
	d.AddCallback(goexitStage)
	var after []string
	d.AddCallback(func(v int) (int, error) { after = append(after, "callback"); return v, nil })
	d.AddErrback(func(f *Failure) (int, error) { after = append(after, "errback"); return 0, f })
	c := Capture(d)

	assert.False(t, onLeavingGoroutine(func() { _ = d.Callback(1) }), "the Goexit is not swallowed")

	_, f := c.Now(t)
	require.ErrorIs(t, f, ErrGoexit)
	assert.Equal(t, []string{"errback"}, after, "the rest of the chain ran, on the failure side")
	assert.Contains(t, f.Stack(), "goexitStage", "the stack shows where Goexit was called")

	d2 := New[int]()
	d2.AddCallback(goexitStage)
	assert.False(t, onLeavingGoroutine(func() { _ = d2.Callback(1) }))
	v, err := d2.Await(t.Context())
	assert.Zero(t, v)
	assert.ErrorIs(t, err, ErrGoexit, "Await does not block on a Deferred left running")
}

func TestGoexitInAStageAddedToAFiredDeferred(t *testing.T) {
	d := Succeed(1)
	assert.False(t, onLeavingGoroutine(func() { d.AddCallback(goexitStage) }))
	_, f := Capture(d).Now(t)
	require.ErrorIs(t, f, ErrGoexit, "the Deferred is not left running")
}

func TestGoexitInThensFunctionFailsItsDeferred(t *testing.T) {
	d := New[int]()
	u := Then(d, func(int) (string, error) { runtime.Goexit(); return "", nil })
	c := Capture(u)
	assert.False(t, onLeavingGoroutine(func() { _ = d.Callback(1) }))
	_, f := c.Now(t)
	require.ErrorIs(t, f, ErrGoexit)

	d2 := New[int]()
	u2 := ThenDeferred(d2, func(int) *Deferred[string] { runtime.Goexit(); return nil })
	c2 := Capture(u2)
	assert.False(t, onLeavingGoroutine(func() { _ = d2.Callback(1) }))
	_, f = c2.Now(t)
	require.ErrorIs(t, f, ErrGoexit)
}

func TestGoexitLeavesAListOverTheDeferredFiring(t *testing.T) {
	d := New[int]()
	d.AddCallback(goexitStage)
	c := Capture(List(d, Succeed(2)))
	assert.False(t, onLeavingGoroutine(func() { _ = d.Callback(1) }))
	outcomes, f := c.Now(t)
	require.Nil(t, f)
	require.Len(t, outcomes, 2)
	assert.ErrorIs(t, outcomes[0].Failure, ErrGoexit)
	assert.Equal(t, 2, outcomes[1].Value)
}

// TestGoexitInACombinedChainLetsTheInputGoOn: the combined Deferred's chain
// runs while the input that completed it is running; a Goexit there leaves
// the input's own later stages to run too.
func TestGoexitInACombinedChainLetsTheInputGoOn(t *testing.T) {
	d := New[int]()
	g := Gather(d)
	g.AddCallback(func([]int) ([]int, error) { runtime.Goexit(); return nil, nil })
	cg := Capture(g)
	ran := false
	d.AddCallback(func(v int) (int, error) { ran = true; return v, nil })
	assert.False(t, onLeavingGoroutine(func() { _ = d.Callback(1) }))
	_, f := cg.Now(t)
	require.ErrorIs(t, f, ErrGoexit)
	assert.True(t, ran, "the input's stage after the combinator's ran")
	_, f = Capture(d).Now(t)
	assert.Nil(t, f)
}

// TestGoexitInAChainTargetLetsTheSourceGoOn: the driver comes back to the
// source of a Chain after the target's chain; a Goexit in the target's
// chain still lets the source's later stages run.
func TestGoexitInAChainTargetLetsTheSourceGoOn(t *testing.T) {
	src, target := New[int](), New[int]()
	target.AddCallback(goexitStage)
	ct := Capture(target)
	src.Chain(target)
	after := -1
	src.AddCallback(func(v int) (int, error) { after = v; return v, nil })
	assert.False(t, onLeavingGoroutine(func() { _ = src.Callback(5) }))
	_, f := ct.Now(t)
	require.ErrorIs(t, f, ErrGoexit)
	assert.Equal(t, 0, after, "the source went on, with the zero value Chain leaves")
}

func TestGoexitInACancellerFailsTheDeferred(t *testing.T) {
	d := NewWithCanceller(func(*Deferred[int]) { runtime.Goexit() })
	c := Capture(d)
	assert.False(t, onLeavingGoroutine(d.Cancel))
	_, f := c.Now(t)
	require.ErrorIs(t, f, ErrGoexit)
}
