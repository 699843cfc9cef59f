package deferredtest

import (
	"errors"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deferred-go/deferred"
)

// NoUnhandled fails t, when t ends, once for each failure reported to the
// unhandled-failure handler while t ran: each Deferred the test dropped
// still holding a failure no stage handled (and, where the library tracks
// it, each one dropped with stages before it ever fired). t.Errorf shows
// the failure's error and stack. Call it first in the test:
//
//	func TestFetch(t *testing.T) {
//		deferredtest.NoUnhandled(t)
//		…
//	}
//
// NoUnhandled installs its handler with [deferred.SetUnhandledHandler] and,
// at t's cleanup, restores the one it found. Reports arrive only after a
// garbage collection finds a Deferred unreachable, so the cleanup collects
// garbage and waits until a canary Deferred, dropped holding a failure
// after the test's own, has been reported; the wait has a guard of 30
// seconds (or 1,000 collections), after which t fails saying so. Before it
// starts counting, NoUnhandled does the same to flush the reports of
// Deferreds dropped by earlier tests, which go to the handler installed
// before, so a test is not blamed for its predecessors. The cleanup runs
// after those t.Cleanup registered later, so the Deferreds they drop count.
// A Deferred still reachable then (from a package variable, say) is not
// reported: only garbage is.
//
// The handler is process-global and a report does not say which test
// dropped the Deferred, so NoUnhandled counts every report that arrives
// while it is active. Tests that use it at the same time — a test and its
// subtests, or tests run with t.Parallel — each get every report made
// while they run: a failure dropped by one is blamed on all. Keep tests
// that drop failed Deferreds on purpose out of parallel runs with tests
// that use NoUnhandled. A test that calls SetUnhandledHandler itself must
// restore the handler before NoUnhandled's cleanup runs (register its
// cleanup after calling NoUnhandled); if it does not, NoUnhandled takes
// the handler back and fails t, as reports may have gone elsewhere.
func NoUnhandled(t testing.TB) {
	t.Helper()
	acquire()
	settle(t) // reports from before this test go to the previous handler
	c := new(collector)
	kit.mu.Lock()
	kit.active[c] = struct{}{}
	kit.mu.Unlock()

	t.Cleanup(func() {
		t.Helper()
		reclaim(t)
		settle(t)
		kit.mu.Lock()
		delete(kit.active, c)
		kit.mu.Unlock()
		release()
		for _, f := range c.take() {
			t.Errorf("deferredtest: unhandled failure reported during the test: %s", describe(f))
		}
	})
}

// kit is the state the NoUnhandled calls in progress share.
var kit struct {
	mu     sync.Mutex
	users  int                     // NoUnhandled calls whose cleanup has not run
	saved  func(*deferred.Failure) // the handler before the first of them
	active map[*collector]struct{} // those counting reports
}

// A collector keeps the reports one NoUnhandled call counts.
type collector struct {
	mu  sync.Mutex
	got []*deferred.Failure
}

func (c *collector) add(f *deferred.Failure) {
	c.mu.Lock()
	c.got = append(c.got, f)
	c.mu.Unlock()
}

func (c *collector) take() []*deferred.Failure {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got
	c.got = nil
	return got
}

// dispatch is the handler NoUnhandled installs: a canary's report ends a
// wait; any other report goes to every collector counting, or, if none is,
// to the handler that was there before.
func dispatch(f *deferred.Failure) {
	var c *canary
	if errors.As(f, &c) {
		c.seen.Store(true)
		return
	}
	kit.mu.Lock()
	if len(kit.active) == 0 {
		saved := kit.saved
		kit.mu.Unlock()
		if saved != nil {
			saved(f)
		}
		return
	}
	for c := range kit.active {
		c.add(f)
	}
	kit.mu.Unlock()
}

// acquire installs dispatch for the first NoUnhandled call in progress.
func acquire() {
	kit.mu.Lock()
	defer kit.mu.Unlock()
	if kit.users == 0 {
		kit.saved = deferred.SetUnhandledHandler(dispatch)
		kit.active = make(map[*collector]struct{})
	}
	kit.users++
}

// reclaim puts dispatch back if something replaced it and did not restore
// it, and fails t then, as reports may have gone elsewhere.
func reclaim(t testing.TB) {
	t.Helper()
	if cur := deferred.SetUnhandledHandler(dispatch); !isDispatch(cur) {
		t.Errorf("deferredtest: the unhandled-failure handler NoUnhandled installed was replaced during the test " +
			"and not restored: failures reported meanwhile went elsewhere")
	}
}

// release restores the saved handler when the last NoUnhandled call ends.
func release() {
	kit.mu.Lock()
	defer kit.mu.Unlock()
	kit.users--
	if kit.users == 0 {
		// kit.saved stays: a report that reached dispatch just before the
		// swap goes on to it.
		deferred.SetUnhandledHandler(kit.saved)
	}
}

// isDispatch reports whether h is dispatch: func values compare by code.
func isDispatch(h func(*deferred.Failure)) bool {
	return reflect.ValueOf(h).Pointer() == reflect.ValueOf(dispatch).Pointer()
}

// A canary is the error of a Deferred dropped on purpose: once its report
// has arrived, the reports of Deferreds dropped before it have too.
type canary struct{ seen atomic.Bool }

func (*canary) Error() string { return "deferredtest: canary" }

// The guard on waiting for a canary: not a timing assertion, only what
// turns a report that never comes into a test failure instead of a hang.
// Inside a synctest bubble time stands still, and the count guards alone.
const (
	guardTime   = 30 * time.Second
	guardRounds = 1000
)

// settle drops two canaries, one after the other, and collects garbage
// until each is reported: cleanups may run concurrently, and the second
// one's round trip leaves time for the cleanups queued with the first.
func settle(t testing.TB) {
	t.Helper()
	for range 2 {
		c := new(canary)
		dropCanary(c)
		start := time.Now()
		for round := 0; !c.seen.Load(); round++ {
			if round == guardRounds || time.Since(start) > guardTime {
				t.Errorf("deferredtest: NoUnhandled gave up after %d garbage collections: "+
					"reports of Deferreds dropped during the test may be missing", round)
				return
			}
			runtime.GC()
			runtime.Gosched()
		}
	}
}

//go:noinline
func dropCanary(c *canary) { _ = deferred.Fail[struct{}](c) }
