package deferred

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errReport = errors.New("report: no such page")

//go:noinline
func reportFailingStage(v int) (int, error) { return 0, errReport }

//go:noinline
func reportPanickingStage(v int) (int, error) { panic("report: boom") }

// reportFailure fires a Deferred whose one stage is stage, and returns the
// failure it holds.
func reportFailure(t *testing.T, stage func(int) (int, error)) *Failure {
	t.Helper()
	d := New[int]()
	d.AddCallback(stage)
	require.NoError(t, d.Callback(1))
	o, ok := d.Peek()
	require.True(t, ok)
	require.NotNil(t, o.Failure)
	o.Failure.marks.Or(markHandled) // no report from these tests
	return o.Failure
}

func TestFailureNamesTheStageThatFailed(t *testing.T) {
	for _, c := range []struct {
		name  string
		stage func(int) (int, error)
		fn    string
	}{
		{"an error", reportFailingStage, "deferred.reportFailingStage"},
		{"a panic", reportPanickingStage, "deferred.reportPanickingStage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := reportFailure(t, c.stage)
			assert.Regexp(t, `^github.com/deferred-go/deferred\.`+strings.TrimPrefix(c.fn, "deferred.")+` \(.*report_test.go:\d+\)$`, f.stageName())
			assert.Contains(t, fmt.Sprintf("%+v", f), "\nstage: github.com/deferred-go/"+c.fn+" (")
		})
	}
}

func TestFailureNamesTheStageOfAnErrbackAndOfAPair(t *testing.T) {
	errOther := errors.New("other")
	d := Fail[int](errReport)
	d.AddErrback(func(f *Failure) (int, error) { return 0, f }) // passes it on: not its failure
	d.AddCallbacks(func(v int) (int, error) { return v, nil }, func(*Failure) (int, error) { return 0, errOther })
	o, ok := d.Peek()
	require.True(t, ok)
	require.ErrorIs(t, o.Failure, errOther)
	assert.Contains(t, o.Failure.stageName(), "TestFailureNamesTheStageOfAnErrbackAndOfAPair.func3",
		"the pair's errback made the failure")
	_, _ = d.Await(t.Context())
}

func TestFailurePassedOnKeepsItsStage(t *testing.T) {
	d := New[int]()
	d.AddCallback(reportFailingStage)
	d.AddErrback(func(f *Failure) (int, error) { return 0, f })
	require.NoError(t, d.Callback(1))
	o, _ := d.Peek()
	assert.Contains(t, o.Failure.stageName(), "reportFailingStage")
	_, _ = d.Await(t.Context())
}

// The stack of a Failure made from a stage's error starts at the code that
// fired the Deferred: the library's frames are left out, unless debugging.
func TestFailureStackStartsAtUserCode(t *testing.T) {
	f := reportFailure(t, reportFailingStage)
	st := f.Stack()
	assert.True(t, strings.HasPrefix(st, "github.com/deferred-go/deferred.reportFailure\n"), "stack:\n%s", st)
	assert.NotContains(t, st, "runStages", "library frames in the stack")
	assert.NotContains(t, st, "(*Deferred[...]).Callback")

	SetDebugging(true)
	defer SetDebugging(false)
	assert.Contains(t, f.Stack(), "runStages", "with debugging, the library frames are shown")
}

func TestFailurePanicStackStartsAtThePanicSite(t *testing.T) {
	f := reportFailure(t, reportPanickingStage)
	assert.True(t, strings.HasPrefix(f.Stack(), "github.com/deferred-go/deferred.reportPanickingStage\n"), "stack:\n%s", f.Stack())
}

// captureSlog sends the default slog logger's output to a buffer for the
// test.
func captureSlog(t *testing.T) *unhandledLogBuffer {
	var b unhandledLogBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&b, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return &b
}

// The default report's first line says the error, the failing stage and
// the first frame of user code, before the stack.
func TestDefaultReportSaysErrorStageAndFirstFrameFirst(t *testing.T) {
	out := captureSlog(t)
	f := reportFailure(t, reportFailingStage)
	defaultUnhandled(f)
	line := out.String()
	t.Log(line)
	e := strings.Index(line, `error="report: no such page"`)
	st := strings.Index(line, `stage="github.com/deferred-go/deferred.reportFailingStage (`)
	at := strings.Index(line, `at="github.com/deferred-go/deferred.reportFailure (`)
	stack := strings.Index(line, "stack=")
	require.True(t, e >= 0 && st >= 0 && at >= 0 && stack >= 0, "a part is missing: %s", line)
	assert.True(t, e < st && st < at && at < stack, "not in the order error, stage, at, stack: %s", line)
}

// TestUnhandledReportWithDebuggingSaysWhereCreatedAndFirstFired pins
// Twisted's test_errorLogDebugInfo: with debugging, the report says where
// the Deferred was created and first fired.
func TestUnhandledReportWithDebuggingSaysWhereCreatedAndFirstFired(t *testing.T) {
	SetDebugging(true)
	defer SetDebugging(false)
	reports := awaitWatchUnhandled(t, errReport)
	var got []*Failure
	var mu sync.Mutex
	prev := SetUnhandledHandler(nil)
	SetUnhandledHandler(func(f *Failure) {
		if errors.Is(f, errReport) {
			mu.Lock()
			got = append(got, f)
			mu.Unlock()
		}
		prev(f)
	})
	func() {
		d := New[int]()
		d.AddCallback(reportFailingStage)
		_ = d.Callback(1)
	}()
	reports.settle(t)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1)
	msg := got[0].Error()
	assert.Contains(t, msg, "report: no such page\n(debug: C: Deferred was created:\ngithub.com/deferred-go/deferred.TestUnhandledReportWithDebuggingSaysWhereCreatedAndFirstFired")
	assert.Contains(t, msg, "I: First Invoker was:\ngithub.com/deferred-go/deferred.TestUnhandledReportWithDebuggingSaysWhereCreatedAndFirstFired")
	assert.Contains(t, got[0].stageName(), "reportFailingStage")
}

// With debugging, a panic's stack shows the library's frames too, but it
// still starts at the panic site, not in the code that recovered it.
func TestFailurePanicStackStartsAtThePanicSiteWithDebugging(t *testing.T) {
	SetDebugging(true)
	defer SetDebugging(false)
	f := reportFailure(t, reportPanickingStage)
	assert.True(t, strings.HasPrefix(f.Stack(), "github.com/deferred-go/deferred.reportPanickingStage\n"), "stack:\n%s", f.Stack())
}
