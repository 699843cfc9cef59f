package deferred

import (
	"bytes"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// concGoroutineID returns the calling goroutine's id, read from its stack
// header, so a test can tell which goroutine ran a stage.
func concGoroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	b = b[:bytes.IndexByte(b, ' ')]
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

// concStageGuard counts the stages running right now; enter reports a
// second stage running at the same time as the first.
type concStageGuard struct {
	in      atomic.Int32
	overlap atomic.Int32
}

func (g *concStageGuard) enter() {
	if !g.in.CompareAndSwap(0, 1) {
		g.overlap.Add(1)
		g.in.Add(1)
	}
}

func (g *concStageGuard) exit() { g.in.Add(-1) }

// concAdders records the stages that several goroutines add to one
// Deferred, per of them each: stage i of goroutine g calls enter(g, i) as
// it starts and exit as it ends, and check then says whether the stages
// overlapped, whether any ran other than once, and whether each
// goroutine's ran in the order it added them.
type concAdders struct {
	guard  concStageGuard
	per    int
	counts []atomic.Int32
	seen   [][]int // seen[g] is written only by g's stages, which never overlap
}

func newConcAdders(adders, per int) *concAdders {
	return &concAdders{per: per, counts: make([]atomic.Int32, adders*per), seen: make([][]int, adders)}
}

func (a *concAdders) enter(g, i int) {
	a.guard.enter()
	a.counts[g*a.per+i].Add(1)
	a.seen[g] = append(a.seen[g], i)
}

func (a *concAdders) exit() { a.guard.exit() }

// check asserts the three rules, what prefixing its messages, and reports
// whether all held.
func (a *concAdders) check(t testing.TB, what string) bool {
	t.Helper()
	ok := assert.Zero(t, a.guard.overlap.Load(), "%sstages overlapped", what)
	for k := range a.counts {
		ok = assert.Equal(t, int32(1), a.counts[k].Load(), "%sstage %d ran %d times", what, k, a.counts[k].Load()) && ok
	}
	want := make([]int, a.per)
	for i := range want {
		want[i] = i
	}
	for g := range a.seen {
		ok = assert.Equal(t, want, a.seen[g], "%sgoroutine %d's stages out of order", what, g) && ok
	}
	return ok
}

// concWithin runs f on a new goroutine and fails the test if it has not
// returned within a generous deadline: a deadlock shows as a failure, not a
// hang. It waits for f on success.
func concWithin(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("%s: deadlocked", what)
	}
}

func TestConcMethodsFromAnyGoroutine(t *testing.T) {
	d := New[int]()
	var wg sync.WaitGroup
	var sum atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			d.AddCallback(func(v int) (int, error) {
				sum.Add(int64(i))
				return v, nil
			})
			_ = d.String()
			_ = d.Called()
		})
	}
	wg.Wait()
	fired := make(chan error)
	go func() { fired <- d.Callback(1) }()
	require.NoError(t, <-fired)
	assert.Equal(t, int64(0+1+2+3+4+5+6+7), sum.Load())
	assert.True(t, d.Called())
}

func TestConcStagesNeverOverlap(t *testing.T) {
	var guard concStageGuard
	d := New[int]()
	var ran atomic.Int32
	stage := func(v int) (int, error) {
		guard.enter()
		defer guard.exit()
		ran.Add(1)
		runtime.Gosched() // give another goroutine the chance to overlap
		return v + 1, nil
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	const adders, perAdder = 8, 50
	for range adders {
		wg.Go(func() {
			<-start
			for range perAdder {
				d.AddCallback(stage)
			}
		})
	}
	wg.Go(func() {
		<-start
		_ = d.Callback(0)
	})
	wg.Go(func() {
		<-start
		for range perAdder {
			d.Pause()
			d.Unpause()
		}
	})
	close(start)
	wg.Wait()
	assert.Zero(t, guard.overlap.Load(), "two stages of one Deferred ran at the same time")
	assert.Equal(t, int32(adders*perAdder), ran.Load())

	var final int
	d.AddCallback(func(v int) (int, error) {
		final = v
		return v, nil
	})
	assert.Equal(t, adders*perAdder, final, "each stage saw the previous one's result")
}

// TestConcAddWhileRunningDoesNotBlock: goroutine A runs the chain and blocks
// in stage 1 until goroutine B's AddCallback has returned; B's stage then
// runs after, on A's goroutine.
func TestConcAddWhileRunningDoesNotBlock(t *testing.T) {
	d := New[int]()
	inStage1 := make(chan struct{})
	bReturned := make(chan struct{})
	var aID uint64
	d.AddCallback(func(v int) (int, error) {
		aID = concGoroutineID()
		close(inStage1)
		<-bReturned
		return v, nil
	})

	aDone := make(chan error, 1)
	go func() { aDone <- d.Callback(1) }()
	<-inStage1

	var returned atomic.Bool
	var bStageRan atomic.Bool
	var bStageSawReturned bool
	var bStageID uint64
	concWithin(t, "AddCallback while another goroutine runs the chain", func() {
		d.AddCallback(func(v int) (int, error) {
			bStageSawReturned = returned.Load()
			bStageID = concGoroutineID()
			bStageRan.Store(true)
			return v, nil
		})
		returned.Store(true)
	})
	assert.False(t, bStageRan.Load(), "B's stage must not run before stage 1 has finished")
	bID := concGoroutineID()
	close(bReturned)
	require.NoError(t, <-aDone)

	assert.True(t, bStageRan.Load())
	assert.True(t, bStageSawReturned, "B's AddCallback returned before its stage ran")
	assert.Equal(t, aID, bStageID, "B's stage runs on A's goroutine")
	assert.NotEqual(t, bID, bStageID)
}

// TestConcStageCallsOwnMethods: a stage may call every method of its own
// Deferred without deadlock.
func TestConcStageCallsOwnMethods(t *testing.T) {
	d := New[int]()
	var order []string
	var callbackErr error
	var str string
	var called bool
	d.AddCallback(func(v int) (int, error) {
		order = append(order, "first")
		d.AddCallback(func(v int) (int, error) {
			order = append(order, "added by first")
			return v + 1, nil
		})
		d.Pause()
		d.Unpause()
		d.Cancel() // fired and not waiting: nothing to do
		callbackErr = d.Callback(99)
		_ = d.Errback(errors.New("ignored"))
		str = d.String()
		called = d.Called()
		return v, nil
	})
	var fireErr error
	concWithin(t, "stage calling its own Deferred", func() { fireErr = d.Callback(1) })
	require.NoError(t, fireErr)
	assert.Equal(t, []string{"first", "added by first"}, order, "the stage added from a stage runs after it")
	assert.ErrorIs(t, callbackErr, ErrAlreadyCalled)
	assert.Contains(t, str, "Deferred[int]")
	assert.True(t, called)

	var final int
	var failed bool
	d.AddCallbacks(func(v int) (int, error) {
		final = v
		return v, nil
	}, func(f *Failure) (int, error) {
		failed = true
		return 0, nil
	})
	assert.False(t, failed, "Cancel inside a stage of a fired Deferred changes nothing")
	assert.Equal(t, 2, final)
}

// TestConcStagePausesAndUnpausesFromAnotherGoroutine: a stage pauses its own
// Deferred; another goroutine's Unpause runs the rest.
func TestConcStagePausesAndUnpausesFromAnotherGoroutine(t *testing.T) {
	d := New[int]()
	paused := make(chan struct{})
	d.AddCallback(func(v int) (int, error) {
		d.Pause()
		close(paused)
		return v, nil
	})
	var rest atomic.Bool
	d.AddCallback(func(v int) (int, error) {
		rest.Store(true)
		return v, nil
	})
	require.NoError(t, d.Callback(1))
	<-paused
	assert.False(t, rest.Load(), "a paused chain stops before its next stage")
	concWithin(t, "Unpause from another goroutine", d.Unpause)
	assert.True(t, rest.Load())
}
