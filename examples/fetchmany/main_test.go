package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/deferred-go/deferred/examples/internal/clitest"
)

// TestMain fails the tests if a goroutine (a server, a connection, a
// fetch) outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noTimeout is a -timeout that no fetch reaches, however busy the machine:
// the tests that count what the server served must not depend on speed.
const noTimeout = "1h"

// fetchmany runs run with args.
func fetchmany(ctx context.Context, args ...string) clitest.Result {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return clitest.Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

// summary is what the test reads back from run's output.
type summary struct {
	total, limit, ok, failed int
	reasons                  map[string]int
	server                   *serverLine // nil without the loopback server
}

type serverLine struct{ requests, notFound, abandoned, maxInFlight int }

var (
	headRE   = regexp.MustCompile(`(?m)^(\d+) URLs, at most (\d+) in flight:$`)
	okRE     = regexp.MustCompile(`(?m)^  ok +(\d+)$`)
	failedRE = regexp.MustCompile(`(?m)^  failed +(\d+)$`)
	timeRE   = regexp.MustCompile(`(?m)^  time +\d+\.\d\ds$`)
	reasonRE = regexp.MustCompile(`(?m)^  (\d+)  (.+)  e\.g\. \S+$`)
	serverRE = regexp.MustCompile(`(?m)^loopback server: (\d+) requests, (\d+) answered 404, (?:(\d+) abandoned by the client, )?at most (\d+) in flight at once(?: \(abandoned ones count until the server notices\))?$`)
)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

func parseSummary(t *testing.T, out string) summary {
	t.Helper()
	var s summary
	m := headRE.FindStringSubmatch(out)
	require.NotNil(t, m, "no head line in:\n%s", out)
	s.total, s.limit = atoi(t, m[1]), atoi(t, m[2])
	m = okRE.FindStringSubmatch(out)
	require.NotNil(t, m, "no ok line in:\n%s", out)
	s.ok = atoi(t, m[1])
	m = failedRE.FindStringSubmatch(out)
	require.NotNil(t, m, "no failed line in:\n%s", out)
	s.failed = atoi(t, m[1])
	require.Regexp(t, timeRE, out)
	s.reasons = map[string]int{}
	for _, m := range reasonRE.FindAllStringSubmatch(out, -1) {
		s.reasons[m[2]] = atoi(t, m[1])
	}
	if m := serverRE.FindStringSubmatch(out); m != nil {
		s.server = &serverLine{requests: atoi(t, m[1]), notFound: atoi(t, m[2]), maxInFlight: atoi(t, m[4])}
		if m[3] != "" {
			s.server.abandoned = atoi(t, m[3])
		}
	}
	return s
}

// expectedPages counts, by the demo site's own rule, how many of its first
// n pages are missing and how many are slow.
func expectedPages(n int) (missing, slow int) {
	for i := range n {
		m, d := page(i)
		if m {
			missing++
		}
		if d > 0 {
			slow++
		}
	}
	return missing, slow
}

func TestFetchmanyDefaultsMatchWhatTheServerServed(t *testing.T) {
	t.Parallel()
	r := fetchmany(context.Background(), "-timeout", noTimeout)
	s := parseSummary(t, r.Stdout)
	missing, _ := expectedPages(200)

	assert.Equal(t, 0, r.Code, "the pages the server is meant to miss are no failure of the run")
	assert.Equal(t, 200, s.total)
	assert.Equal(t, 10, s.limit)
	require.NotNil(t, s.server, "no loopback server line in:\n%s", r.Stdout)
	// The server counted on its side what the client summed up from List.
	assert.Equal(t, 200, s.server.requests)
	assert.Equal(t, missing, s.server.notFound)
	assert.Equal(t, s.server.requests-s.server.notFound, s.ok)
	assert.Equal(t, s.server.notFound, s.failed)
	assert.Equal(t, map[string]int{"404 Not Found": s.server.notFound}, s.reasons)
	// The semaphore's bound, as the server saw it.
	assert.LessOrEqual(t, s.server.maxInFlight, 10)
	assert.GreaterOrEqual(t, s.server.maxInFlight, 1)
	assert.Empty(t, r.Stderr, "no progress line when stderr is not a terminal")
}

func TestFetchmanyNeverExceedsTheLimit(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		r := fetchmany(context.Background(), "-n", strconv.Itoa(n), "-pages", "30", "-timeout", noTimeout)
		s := parseSummary(t, r.Stdout)
		missing, _ := expectedPages(30)
		require.NotNil(t, s.server)
		assert.Equal(t, 0, r.Code)
		assert.Equal(t, n, s.limit)
		assert.Equal(t, 30, s.server.requests)
		assert.Equal(t, 30-missing, s.ok)
		assert.LessOrEqual(t, s.server.maxInFlight, n, "-n %d", n)
		if n == 1 {
			assert.Equal(t, 1, s.server.maxInFlight)
		}
	}
}

func TestFetchmanyGroupsFailuresOfGivenURLsByReason(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte("fine"))
		case "/broken":
			http.Error(w, "oops", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	refused := clitest.RefusedURL(t)

	urls := []string{ts.URL + "/ok", ts.URL + "/a", ts.URL + "/broken", ts.URL + "/b", ts.URL + "/ok", refused}
	r := fetchmany(context.Background(), append([]string{"-n", "2", "-timeout", noTimeout}, urls...)...)
	s := parseSummary(t, r.Stdout)

	assert.Equal(t, len(urls), s.total)
	assert.Equal(t, 2, s.ok)
	assert.Equal(t, 4, s.failed)
	assert.Equal(t, map[string]int{
		"404 Not Found":               2,
		"500 Internal Server Error":   1,
		"connect: connection refused": 1,
	}, s.reasons)
	assert.Nil(t, s.server, "no loopback server with URL arguments")
	assert.Contains(t, r.Stdout, "e.g. "+ts.URL+"/a\n", "the example URL is the first that failed that way")
	// A 404 of a URL given is a failure like any other.
	assert.Equal(t, 1, r.Code)
	assert.Equal(t, "fetchmany: 4 of 6 fetches failed\n", r.Stderr)
}

func TestFetchmanyExitsZeroWhenEveryURLIsFetched(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("fine"))
	}))
	defer ts.Close()

	r := fetchmany(context.Background(), "-timeout", noTimeout, ts.URL+"/a", ts.URL+"/b")

	assert.Equal(t, 0, r.Code)
	assert.Empty(t, r.Stderr)
	s := parseSummary(t, r.Stdout)
	assert.Equal(t, 2, s.ok)
	assert.Equal(t, 0, s.failed)
}

// TestFetchmanyReportsTimeouts checks only what holds at any speed: a slow
// page (100ms or more) always outlasts a 60ms timeout, but on a busy
// machine a fast one may too, and a request may time out before it reaches
// the server, before the server notices it was abandoned, or after the
// server answered it.
func TestFetchmanyReportsTimeouts(t *testing.T) {
	t.Parallel()
	r := fetchmany(context.Background(), "-pages", "20", "-timeout", "60ms")
	s := parseSummary(t, r.Stdout)
	missing, slow := expectedPages(20)
	require.Positive(t, slow)

	assert.Equal(t, 20, s.ok+s.failed)
	assert.GreaterOrEqual(t, s.reasons["timed out"], slow)
	assert.LessOrEqual(t, s.reasons["404 Not Found"], missing)
	assert.Equal(t, s.failed, s.reasons["timed out"]+s.reasons["404 Not Found"], "no other reason: %v", s.reasons)
	require.NotNil(t, s.server)
	assert.LessOrEqual(t, s.server.requests, 20)
	assert.LessOrEqual(t, s.server.abandoned, s.reasons["timed out"])
	// A 404 the server sent may still reach the client after its timeout:
	// the client then counts a timeout. It never sees a 404 not sent.
	assert.LessOrEqual(t, s.reasons["404 Not Found"], s.server.notFound, "the client saw no 404 the server did not send")
	assert.LessOrEqual(t, s.server.notFound, missing, "the server sent 404s only for the missing pages")

	// A timeout is a failure of the run, unlike the pages the server is
	// meant to miss.
	assert.Equal(t, 1, r.Code)
	assert.Equal(t, fmt.Sprintf("fetchmany: %d of 20 fetches failed, besides the pages the loopback server is meant to miss\n",
		s.reasons["timed out"]), r.Stderr)
}

// TestFetchmanySiteCountsAbandonedRequests checks the loopback server's
// own count of the requests the client gave up on, without a network.
func TestFetchmanySiteCountsAbandonedRequests(t *testing.T) {
	t.Parallel()
	s := &demoSite{pages: 20}
	gaveUp, cancel := context.WithCancel(context.Background())
	cancel()
	for _, i := range []string{"0", "3", "9"} { // fast, slow, missing
		req := httptest.NewRequestWithContext(gaveUp, "GET", "/page/"+i, nil)
		req.SetPathValue("i", i)
		w := httptest.NewRecorder()

		s.servePage(w, req)

		assert.Empty(t, w.Body.String(), "page %s: nobody reads an answer", i)
	}
	req := httptest.NewRequest("GET", "/page/9", nil)
	req.SetPathValue("i", "9")
	s.servePage(httptest.NewRecorder(), req)

	assert.Equal(t, int64(4), s.requests.Load())
	assert.Equal(t, int64(3), s.abandoned.Load())
	assert.Equal(t, int64(1), s.notFound.Load(), "an abandoned request is not answered 404")
	assert.Equal(t, int64(0), s.inFlight.Load())
	assert.Equal(t, int64(1), s.maxInFlight.Load())
}

func TestFetchmanyWritesProgressOnlyToATerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	assert.False(t, isTerminal(&buf))
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	require.NoError(t, err)
	defer f.Close()
	assert.False(t, isTerminal(f), "a regular file is not a terminal")
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devNull.Close()
	assert.True(t, isTerminal(devNull), "a character device passes the check")

	// The terminal path, with fetches settling on many goroutines: the
	// race detector checks the progress line's locking.
	var stdout bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"-pages", "40", "-timeout", noTimeout}, &stdout, devNull))
	assert.Equal(t, 40, parseSummary(t, stdout.String()).total)

	p := &progress{w: &buf, total: 3}
	p.done(true)
	p.done(false)
	p.finish()
	assert.Equal(t, "\r1/3 fetched: 1 ok, 0 failed\r2/3 fetched: 1 ok, 1 failed\n", buf.String())
}

func TestFetchmanyFlags(t *testing.T) {
	t.Parallel()
	p := clitest.Program{Name: name, Run: run, Synopsis: synopsis}
	clitest.TestFlags(t, p)
	for _, tc := range []struct {
		message string
		args    []string
	}{
		{`invalid value "x" for flag -n: parse error`, []string{"-n", "x"}},
		{"-n must be at least 1, not 0", []string{"-n", "0"}},
		{"-pages must not be negative, not -1", []string{"-pages", "-1"}},
		{`-debug wants host:port (e.g. localhost:6060), not "6060"`, []string{"-debug", "6060"}},
		{`-debug wants host:port (e.g. localhost:6060), not "localhost:"`, []string{"-debug", "localhost:"}},
		{"flag needs an argument: -debug", []string{"-debug"}},
		{`URL "example.org" has no scheme: try http://example.org`, []string{"http://127.0.0.1:1/", "example.org"}},
		{`URL "ftp://example.org/": want http:// or https://`, []string{"ftp://example.org/"}},
	} {
		p.UsageError(t, tc.message, tc.args...)
	}
}

// TestFetchmanyCtrlCPrintsWhatItHas interrupts a run of three fetches,
// one at a time, while the second one waits for its answer: the first is
// in, the other two are cancelled, and the summary says so.
func TestFetchmanyCtrlCPrintsWhatItHas(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			close(arrived)
			<-r.Context().Done()
			return
		}
		w.Write([]byte("fine"))
	}))
	defer ts.Close()
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	go func() {
		select {
		case <-arrived:
			interrupt()
		case <-ctx.Done():
		}
	}()

	r := fetchmany(ctx, "-n", "1", "-timeout", noTimeout, ts.URL+"/first", ts.URL+"/wait", ts.URL+"/never")

	assert.Equal(t, 130, r.Code)
	assert.Equal(t, "fetchmany: interrupted\n", r.Stderr)
	s := parseSummary(t, r.Stdout)
	assert.Equal(t, 3, s.total)
	assert.Equal(t, 1, s.ok)
	assert.Equal(t, 2, s.failed)
	assert.Equal(t, map[string]int{"cancelled": 2}, s.reasons)
	assert.Contains(t, r.Stdout, "e.g. "+ts.URL+"/wait\n")
}
