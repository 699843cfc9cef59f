package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the tests if a goroutine (a server, a connection, a
// fetch) outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), &stdout, &stderr, nil))
	s := parseSummary(t, stdout.String())
	missing, _ := expectedPages(200)

	assert.Equal(t, 200, s.total)
	assert.Equal(t, 10, s.limit)
	require.NotNil(t, s.server, "no loopback server line in:\n%s", stdout.String())
	// The server counted on its side what the client summed up from List.
	assert.Equal(t, 200, s.server.requests)
	assert.Equal(t, missing, s.server.notFound)
	assert.Equal(t, s.server.requests-s.server.notFound, s.ok)
	assert.Equal(t, s.server.notFound, s.failed)
	assert.Equal(t, map[string]int{"404 Not Found": s.server.notFound}, s.reasons)
	// The semaphore's bound, as the server saw it.
	assert.LessOrEqual(t, s.server.maxInFlight, 10)
	assert.GreaterOrEqual(t, s.server.maxInFlight, 1)
	assert.Empty(t, stderr.String(), "no progress line when stderr is not a terminal")
}

func TestFetchmanyNeverExceedsTheLimit(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3} {
		var stdout, stderr bytes.Buffer
		require.NoError(t, run(context.Background(), &stdout, &stderr, []string{"-n", strconv.Itoa(n), "-pages", "30"}))
		s := parseSummary(t, stdout.String())
		missing, _ := expectedPages(30)
		require.NotNil(t, s.server)
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
	// A port nobody listens on: listen, note it, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())

	urls := []string{ts.URL + "/ok", ts.URL + "/a", ts.URL + "/broken", ts.URL + "/b", ts.URL + "/ok", refused}
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), &stdout, &stderr, append([]string{"-n", "2"}, urls...)))
	s := parseSummary(t, stdout.String())

	assert.Equal(t, len(urls), s.total)
	assert.Equal(t, 2, s.ok)
	assert.Equal(t, 4, s.failed)
	assert.Equal(t, map[string]int{
		"404 Not Found":               2,
		"500 Internal Server Error":   1,
		"connect: connection refused": 1,
	}, s.reasons)
	assert.Nil(t, s.server, "no loopback server with URL arguments")
	assert.Contains(t, stdout.String(), "e.g. "+ts.URL+"/a\n", "the example URL is the first that failed that way")
}

func TestFetchmanyReportsTimeouts(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	// Slow pages take 100ms at least; fast ones answer at once.
	require.NoError(t, run(context.Background(), &stdout, &stderr, []string{"-pages", "20", "-timeout", "60ms"}))
	s := parseSummary(t, stdout.String())
	_, slow := expectedPages(20)
	require.Positive(t, slow)
	assert.GreaterOrEqual(t, s.reasons["timed out"], slow)
	assert.Equal(t, 20, s.ok+s.failed)

	// The server counts apart the requests the client gave up on: they
	// are neither answered nor counted as 404s.
	require.NotNil(t, s.server)
	missing, _ := expectedPages(20)
	assert.Equal(t, 20, s.server.requests)
	assert.Positive(t, s.server.abandoned)
	assert.LessOrEqual(t, s.server.abandoned, s.reasons["timed out"])
	assert.LessOrEqual(t, s.server.notFound, missing)
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
	require.NoError(t, run(context.Background(), &stdout, devNull, []string{"-pages", "40"}))
	assert.Equal(t, 40, parseSummary(t, stdout.String()).total)

	p := &progress{w: &buf, total: 3}
	p.done(true)
	p.done(false)
	p.finish()
	assert.Equal(t, "\r1/3 fetched: 1 ok, 0 failed\r2/3 fetched: 1 ok, 1 failed\n", buf.String())
}

func TestFetchmanyRejectsBadFlags(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	assert.Error(t, run(context.Background(), &stdout, &stderr, []string{"-n", "0"}))
	assert.Error(t, run(context.Background(), &stdout, &stderr, []string{"-bogus"}))
	assert.Empty(t, stdout.String())
}

func TestFetchmanyStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, &stdout, &stderr, []string{"-pages", "50"})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, stdout.String())
}
