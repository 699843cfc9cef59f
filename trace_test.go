package deferred_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	rtrace "runtime/trace"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	xtrace "golang.org/x/exp/trace"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/deferredtest"
)

// These tests record an execution trace with runtime/trace while chains
// run, read it back with golang.org/x/exp/trace, and look for what
// `go tool trace` shows: a task per run of a chain, named after the
// Deferred's type, and a region per stage that ran, named after the
// stage's function, within it.

const traceTestPkg = "github.com/deferred-go/deferred_test."

var errTraceTest = errors.New("trace test error")

// The stages, package-level functions so that their names are known.

func traceStageOne(v int) (int, error) { return v + 1, nil }
func traceStageTwo(v int) (int, error) { return v * 10, nil }
func traceUnused(*deferred.Failure) (int, error) {
	panic("traceUnused runs on a failure only")
}
func traceRecover(f *deferred.Failure) (int, error)       { return 7, nil }
func tracePanics(int) (int, error)                        { panic("traced boom") }
func traceGoexit(int) (int, error)                        { runtime.Goexit(); return 0, nil }
func tracePassOn(v int, f *deferred.Failure) (int, error) { return v, f }

// A userEvent is a task or region event of the recorded trace.
type userEvent struct {
	kind xtrace.EventKind
	name string // the task's or region's type
	task xtrace.TaskID
	g    xtrace.GoID
}

// recordTrace runs f while runtime/trace records, and returns the task
// beginnings and the region beginnings and ends of the trace, in order.
func recordTrace(t *testing.T, f func()) []userEvent {
	t.Helper()
	var buf bytes.Buffer
	if err := rtrace.Start(&buf); err != nil {
		t.Skipf("runtime/trace records already (go test -trace?): %v", err)
	}
	f()
	rtrace.Stop()

	r, err := xtrace.NewReader(&buf)
	require.NoError(t, err)
	var evs []userEvent
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		switch ev.Kind() {
		case xtrace.EventTaskBegin:
			evs = append(evs, userEvent{ev.Kind(), ev.Task().Type, ev.Task().ID, ev.Goroutine()})
		case xtrace.EventRegionBegin, xtrace.EventRegionEnd:
			evs = append(evs, userEvent{ev.Kind(), ev.Region().Type, ev.Region().Task, ev.Goroutine()})
		}
	}
	return evs
}

// stageRegions returns the beginnings of the regions of evs named after
// this file's functions, with the package path cut off.
func stageRegions(evs []userEvent) []userEvent {
	var rs []userEvent
	for _, e := range evs {
		if e.kind == xtrace.EventRegionBegin && strings.HasPrefix(e.name, traceTestPkg) {
			e.name = strings.TrimPrefix(e.name, traceTestPkg)
			rs = append(rs, e)
		}
	}
	return rs
}

// regionNames returns the names of rs.
func regionNames(rs []userEvent) []string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.name
	}
	return names
}

// taskOf returns the beginning of the task id of evs.
func taskOf(t *testing.T, evs []userEvent, id xtrace.TaskID) userEvent {
	t.Helper()
	for _, e := range evs {
		if e.kind == xtrace.EventTaskBegin && e.task == id {
			return e
		}
	}
	t.Fatalf("no task %d in the trace", id)
	return userEvent{}
}

// assertRegionsEnd checks that each region of evs named after this file's
// functions ends, on the goroutine it began on.
func assertRegionsEnd(t *testing.T, evs []userEvent) {
	t.Helper()
	open := map[xtrace.GoID][]string{}
	for _, e := range evs {
		if !strings.HasPrefix(e.name, traceTestPkg) {
			continue
		}
		if e.kind == xtrace.EventRegionBegin {
			open[e.g] = append(open[e.g], e.name)
		} else if e.kind == xtrace.EventRegionEnd {
			st := open[e.g]
			if assert.NotEmpty(t, st, "region %s ends without beginning", e.name) {
				assert.Equal(t, st[len(st)-1], e.name, "regions end innermost first")
				open[e.g] = st[:len(st)-1]
			}
		}
	}
	for g, st := range open {
		assert.Empty(t, st, "regions left open on goroutine %d", g)
	}
}

func TestTraceTaskAndStageRegions(t *testing.T) {
	d := deferred.New[int]()
	d.AddCallback(traceStageOne).AddCallback(traceStageTwo)
	evs := recordTrace(t, func() { require.NoError(t, d.Callback(1)) })
	assert.Equal(t, 20, deferredtest.SuccessResultOf(t, d))

	rs := stageRegions(evs)
	require.Equal(t, []string{"traceStageOne", "traceStageTwo"}, regionNames(rs))
	require.NotEqual(t, xtrace.NoTask, rs[0].task, "a stage's region belongs to a task")
	assert.Equal(t, rs[0].task, rs[1].task, "one task for the chain's run")
	task := taskOf(t, evs, rs[0].task)
	assert.Equal(t, "deferred: Deferred[int] fired", task.name)
	assert.Equal(t, task.g, rs[0].g, "the stages run on the goroutine that fired d")
	assertRegionsEnd(t, evs)
}

func TestTraceRegionsOnlyForStagesThatRun(t *testing.T) {
	d := deferred.New[int]()
	d.AddCallback(traceStageOne). // skipped: d fails
					AddErrback(traceRecover).
					AddCallbacks(traceStageTwo, traceUnused) // the callback half runs
	evs := recordTrace(t, func() { require.NoError(t, d.Errback(errTraceTest)) })
	assert.Equal(t, 70, deferredtest.SuccessResultOf(t, d))
	assert.Equal(t, []string{"traceRecover", "traceStageTwo"}, regionNames(stageRegions(evs)))
	assertRegionsEnd(t, evs)
}

func TestTraceStageAddedToFiredDeferred(t *testing.T) {
	d := deferred.Succeed(1) // fired and idle: a stage added runs at once
	evs := recordTrace(t, func() { d.AddCallback(traceStageOne) })
	assert.Equal(t, 2, deferredtest.SuccessResultOf(t, d))

	rs := stageRegions(evs)
	require.Equal(t, []string{"traceStageOne"}, regionNames(rs))
	assert.Equal(t, "deferred: Deferred[int] fired", taskOf(t, evs, rs[0].task).name)
	assertRegionsEnd(t, evs)
}

func TestTraceChainThatWaitsIsTwoTasks(t *testing.T) {
	inner := deferred.New[int]()
	d := deferred.New[int]()
	d.AddCallbackDeferred(func(int) *deferred.Deferred[int] { return inner }).AddCallback(traceStageTwo)
	evs := recordTrace(t, func() {
		require.NoError(t, d.Callback(1))
		deferredtest.AssertNoResult(t, d)
		require.NoError(t, inner.Callback(5))
	})
	assert.Equal(t, 50, deferredtest.SuccessResultOf(t, d))

	rs := stageRegions(evs)
	require.Equal(t, []string{"TestTraceChainThatWaitsIsTwoTasks.func1", "traceStageTwo"}, regionNames(rs))
	assert.NotEqual(t, rs[0].task, rs[1].task, "the chain's run after its wait is a task of its own")
	for _, r := range rs {
		assert.Equal(t, "deferred: Deferred[int] fired", taskOf(t, evs, r.task).name)
	}
	assertRegionsEnd(t, evs)
}

func TestTraceKeepsPanicsAndGoexit(t *testing.T) {
	panicked := deferred.New[int]()
	panicked.AddCallback(tracePanics).AddCallback(traceStageOne)
	exited := deferred.New[int]()
	exited.AddCallback(traceGoexit).AddBoth(tracePassOn)
	evs := recordTrace(t, func() {
		require.NoError(t, panicked.Callback(1))
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = exited.Callback(1) // the goroutine leaves in it
		}()
		<-done
	})

	f := deferredtest.FailureResultOf(t, panicked)
	pv, ok := f.PanicValue()
	assert.True(t, ok)
	assert.Equal(t, "traced boom", pv)
	deferredtest.FailureResultOf(t, exited, deferred.ErrGoexit)

	assert.Equal(t, []string{"tracePanics", "traceGoexit", "tracePassOn"}, regionNames(stageRegions(evs)),
		"traceStageOne is skipped: the chain fails")
	assertRegionsEnd(t, evs)
}
