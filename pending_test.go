package deferred

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"runtime"
	rpprof "runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withPendingRate sets the pending profile's rate for the test.
func withPendingRate(t *testing.T, rate int) {
	prev := SetPendingProfileFraction(rate)
	t.Cleanup(func() { SetPendingProfileFraction(prev) })
}

// lostReports collects the ErrNeverFired reports made during the test.
type lostReports struct {
	mu  sync.Mutex
	got []*Failure
	aw  *awaitReports
}

func watchLost(t *testing.T) *lostReports {
	r := &lostReports{}
	r.aw = awaitWatchUnhandled(t) // settle's canaries
	prev := SetUnhandledHandler(nil)
	SetUnhandledHandler(func(f *Failure) {
		if errors.Is(f, ErrNeverFired) {
			r.mu.Lock()
			r.got = append(r.got, f)
			r.mu.Unlock()
			return
		}
		prev(f)
	})
	return r
}

func (r *lostReports) settle(t *testing.T) []*Failure {
	r.aw.settle(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Failure(nil), r.got...)
}

func pendingCount() int { return rpprof.Lookup(PendingProfileName).Count() }

func TestPendingProfileIsOffByDefault(t *testing.T) {
	require.Zero(t, SetPendingProfileFraction(0), "the pending profile is on by default")
	d := New[int]()
	d.AddCallback(func(v int) (int, error) { return v, nil })
	assert.Nil(t, d.x, "an untracked Deferred has side storage")
}

//go:noinline
func pendingSiteA() *Deferred[int] { return New[int]() }

//go:noinline
func pendingSiteB() *Deferred[string] { return NewWithCanceller[string](nil) }

func TestPendingProfileRecordsUntilTheFiring(t *testing.T) {
	withPendingRate(t, 1)
	before := pendingCount()
	as := []*Deferred[int]{pendingSiteA(), pendingSiteA(), pendingSiteA()}
	bs := []*Deferred[string]{pendingSiteB(), pendingSiteB()}
	assert.Equal(t, before+5, pendingCount())
	require.NoError(t, as[0].Callback(1))
	bs[0].Cancel()
	assert.Equal(t, before+3, pendingCount(), "fired Deferreds are still in the profile")
	for _, d := range as[1:] {
		_ = d.Callback(1)
	}
	_ = bs[1].Callback("")
	assert.Equal(t, before, pendingCount())
	_, _ = bs[0].Await(context.Background())
}

func TestPendingProfileSamplesOneInRate(t *testing.T) {
	withPendingRate(t, 10)
	before := pendingCount()
	ds := make([]*Deferred[int], 10_000)
	for i := range ds {
		ds[i] = New[int]()
	}
	got := pendingCount() - before
	// 1,000 expected; the binomial's standard deviation is 30.
	assert.InDelta(t, 1000, got, 200, "sampled %d of 10,000 at rate 10", got)
	for _, d := range ds {
		_ = d.Callback(0)
	}
}

// The profile keeps its key alive: the key must not be the Deferred.
func TestPendingProfileDoesNotKeepTheDeferredAlive(t *testing.T) {
	withPendingRate(t, 1)
	before := pendingCount()
	w := func() weak.Pointer[Deferred[int]] {
		return weak.Make(New[int]()) // no stage: never reported
	}()
	deadline := time.Now().Add(10 * time.Second) // a guard, not a timing assertion
	for (w.Value() != nil || pendingCount() != before) && time.Now().Before(deadline) {
		runtime.GC()
		runtime.Gosched()
	}
	assert.Nil(t, w.Value(), "the profile keeps a pending Deferred alive")
	assert.Equal(t, before, pendingCount(), "a collected Deferred stays in the profile")
}

//go:noinline
func lostSite() {
	d := New[int]()
	d.AddCallback(func(v int) (int, error) { return v, nil })
}

func TestLostDeferredIsReportedWithItsCreationSite(t *testing.T) {
	withPendingRate(t, 1)
	r := watchLost(t)
	lostSite()
	got := r.settle(t)
	require.Len(t, got, 1)
	assert.ErrorIs(t, got[0], ErrNeverFired)
	assert.Contains(t, got[0].Error(), "Deferred[int] created at github.com/deferred-go/deferred.lostSite")
	assert.True(t, strings.HasPrefix(got[0].Stack(), "github.com/deferred-go/deferred.lostSite\n"),
		"the stack does not start where the Deferred was created:\n%s", got[0].Stack())
}

func TestLostDeferredsOneReportPerChain(t *testing.T) {
	cases := []struct {
		name    string
		lose    func()
		reports int
	}{
		{"fired", func() {
			d := New[int]()
			d.AddCallback(func(v int) (int, error) { return v, nil })
			_ = d.Callback(1)
		}, 0},
		{"cancelled", func() {
			d := New[int]()
			d.AddErrback(func(*Failure) (int, error) { return 0, nil })
			d.Cancel()
		}, 0},
		{"never had a stage", func() { _ = New[int]() }, 0},
		{"a Then chain", func() {
			d := New[int]()
			u := Then(d, func(v int) (string, error) { return "", nil })
			Then(u, func(s string) (int, error) { return 0, nil }).AddCallback(func(v int) (int, error) { return v, nil })
		}, 1},
		{"a Deferred and the inner one it waits on", func() {
			inner := New[int]()
			outer := New[int]()
			outer.AddCallbackDeferred(func(int) *Deferred[int] { return inner })
			outer.AddCallback(func(v int) (int, error) { return v, nil })
			_ = outer.Callback(1)
		}, 1},
		{"a Chain target", func() {
			a, b := New[int](), New[int]()
			a.AddCallback(func(v int) (int, error) { return v, nil })
			b.Chain(a)
		}, 1},
		{"branches", func() {
			d := New[int]()
			d.Observe().AddCallback(func(v int) (int, error) { return v, nil })
			d.Observe()
		}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			withPendingRate(t, 1)
			r := watchLost(t)
			c.lose()
			assert.Len(t, r.settle(t), c.reports)
		})
	}
}

// With SetDebugging(true) every Deferred is tracked, without the profile.
func TestLostDeferredIsReportedWithDebugging(t *testing.T) {
	SetDebugging(true)
	t.Cleanup(func() { SetDebugging(false) })
	before := pendingCount()
	r := watchLost(t)
	lostSite()
	got := r.settle(t)
	require.Len(t, got, 1)
	assert.Equal(t, before, pendingCount(), "debugging alone put a Deferred in the profile")
}

func TestWritePendingListsStatesAgesStagesAndSites(t *testing.T) {
	withPendingRate(t, 1)
	var b bytes.Buffer
	a, src := pendingSiteA(), pendingSiteA()
	a.AddCallback(func(v int) (int, error) { return v, nil })
	a.AddCallback(func(v int) (int, error) { return v, nil })
	paused := pendingSiteA()
	paused.Pause()
	target := New[int]()
	src.Chain(target)
	u := Then(src, func(v int) (string, error) { return "", nil })
	require.NoError(t, WritePending(&b))
	out := b.String()
	t.Log("\n" + out)
	assert.Regexp(t, `Deferred\[int\] pending, [\d.]+[nµm]?s old, 2 stages, created at github.com/deferred-go/deferred.pendingSiteA \(.*pending_test.go:\d+\)`, out)
	assert.Contains(t, out, "Deferred[int] paused, ")
	assert.Contains(t, out, fmt.Sprintf("Deferred[int] waiting on Deferred[int] at %p (Chain)", src))
	assert.Contains(t, out, fmt.Sprintf("Deferred[string] waiting on Deferred[int] at %p (Then)", src))
	assert.Contains(t, out, "created at github.com/deferred-go/deferred.TestWritePendingListsStatesAgesStagesAndSites")
	for _, d := range []*Deferred[int]{a, src, paused} {
		_ = d.Callback(1)
	}
	paused.Unpause()
	b.Reset()
	require.NoError(t, WritePending(&b))
	assert.NotContains(t, b.String(), "pendingSiteA", "fired Deferreds are still listed")
	_ = u
}

// TestChainTargetStringSaysWhatItWaitsOn pins Twisted's
// test_reprWithChaining: a Deferred another was chained into says so.
func TestChainTargetStringSaysWhatItWaitsOn(t *testing.T) {
	a, b := New[int](), New[int]()
	b.Chain(a)
	assert.Contains(t, a.String(), fmt.Sprintf("waiting on Deferred[int] at %p (Chain)", b))
	require.NoError(t, b.Callback(3))
	assert.Contains(t, a.String(), "current result: 3")
}

// The pending profile through real tools: net/http/pprof serves it, and go
// tool pprof reads it and finds both creation sites with their counts.
func TestPendingProfileThroughNetHTTPPprofAndGoToolPprof(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to run go tool pprof")
	}
	withPendingRate(t, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	var keep []any
	for range 3 {
		keep = append(keep, pendingSiteA())
	}
	for range 5 {
		keep = append(keep, pendingSiteB())
	}
	url := "http://" + ln.Addr().String() + "/debug/pprof/" + PendingProfileName
	cmd := exec.Command(goBin, "tool", "pprof", "-top", "-nodecount=50", url)
	cmd.Env = append(os.Environ(), "PPROF_TMPDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("go tool pprof -top:\n%s", out)
	assert.Regexp(t, `(?m)^\s+3\s.*deferred\.pendingSiteA$`, string(out))
	assert.Regexp(t, `(?m)^\s+5\s.*deferred\.pendingSiteB$`, string(out))
	runtime.KeepAlive(keep)
}
