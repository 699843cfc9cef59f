package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	rpprof "runtime/pprof"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deferred-go/deferred"
)

// syncBuffer is a bytes.Buffer that the test may read while run writes
// to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingRE = regexp.MustCompile(`(?m)^fetchmany: serving net/http/pprof at http://(\S+)/debug/pprof/$`)

// rpprofCount returns how many Deferreds the pending profile holds.
func rpprofCount() int { return rpprof.Lookup(deferred.PendingProfileName).Count() }

// A pendingRecord is one stack of the pending profile, as net/http/pprof
// writes it with ?debug=1: how many Deferreds were created there, and
// the functions of the stack, innermost first.
type pendingRecord struct {
	count int
	funcs []string
}

var (
	totalRE  = regexp.MustCompile(`^github\.com/deferred-go/deferred\.pending profile: total (\d+)$`)
	recordRE = regexp.MustCompile(`^(\d+) @( 0x[0-9a-f]+)+$`)
	frameRE  = regexp.MustCompile(`^#\t0x[0-9a-f]+\t(\S+)\+0x[0-9a-f]+\t`)
)

// parsePendingProfile reads the text form of the pending profile.
func parsePendingProfile(t *testing.T, r io.Reader) (total int, records []pendingRecord) {
	t.Helper()
	sc := bufio.NewScanner(r)
	require.True(t, sc.Scan(), "an empty profile")
	m := totalRE.FindStringSubmatch(sc.Text())
	require.NotNil(t, m, "not the pending profile: %q", sc.Text())
	total = atoi(t, m[1])
	for sc.Scan() {
		line := sc.Text()
		if m := recordRE.FindStringSubmatch(line); m != nil {
			records = append(records, pendingRecord{count: atoi(t, strings.Fields(line)[0])})
		} else if m := frameRE.FindStringSubmatch(line); m != nil && len(records) > 0 {
			rec := &records[len(records)-1]
			rec.funcs = append(rec.funcs, m[1])
		}
	}
	require.NoError(t, sc.Err())
	return total, records
}

// runFunc is run's name in a stack of the test binary, where the main
// package has its import path (in the program it is main.run).
const runFunc = "github.com/deferred-go/deferred/examples/fetchmany.run"

// createdIn sums the counts of the records whose stack passes through fn.
func createdIn(records []pendingRecord, fn string) int {
	n := 0
	for _, r := range records {
		for _, f := range r.funcs {
			if f == fn {
				n += r.count
				break
			}
		}
	}
	return n
}

// TestFetchmanyDebugServesThePendingProfile runs fetchmany with -debug
// while the test's server holds the answer to the first of two fetches
// (-n 1: the second waits for its turn). While it holds it, the debug
// server serves the pending profile, with the Deferred of the fetch under
// way; then the server answers and the run ends as usual.
//
// Not parallel: -debug sets the library's pending profile rate, which is
// the process's, and puts it back when run returns.
func TestFetchmanyDebugServesThePendingProfile(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			close(arrived)
			<-release
		}
		w.Write([]byte("fine"))
	}))
	defer ts.Close()
	before := rpprofCount()

	var stdout bytes.Buffer
	var stderr syncBuffer
	result := make(chan int, 1)
	go func() {
		result <- run(context.Background(), []string{"-n", "1", "-timeout", noTimeout, "-debug", "127.0.0.1:0",
			ts.URL + "/held", ts.URL + "/next"}, &stdout, &stderr)
	}()
	// However the test ends, the held answer goes out and run returns
	// before the server closes.
	finish := sync.OnceValue(func() int {
		close(release)
		return <-result
	})
	defer finish()

	select {
	case <-arrived:
	case code := <-result:
		result <- code
		require.FailNow(t, "run returned before the first fetch arrived", "exit status %d, stderr:\n%s", code, stderr.String())
	}
	// The server is up before the first fetch starts, and said so.
	m := servingRE.FindStringSubmatch(stderr.String())
	require.NotNil(t, m, "no serving line on stderr:\n%s", stderr.String())
	addr := m[1]

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/debug/pprof/" + deferred.PendingProfileName + "?debug=1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	t.Logf("the pending profile, while /held is held:\n%s", body)
	total, records := parsePendingProfile(t, bytes.NewReader(body))

	// What is pending for certain: the first fetch's Deferreds, made before
	// its request went out. The second fetch's RunLimited Deferred and
	// List's may be pending too, or not made yet: run goes on meanwhile.
	assert.Equal(t, 1, createdIn(records, "github.com/deferred-go/deferred/web.GetPage"),
		"one fetch under way (-n 1): one Deferred of web.GetPage pending")
	assert.GreaterOrEqual(t, createdIn(records, "github.com/deferred-go/deferred.RunLimited[...]"), 1)
	sum := 0
	for _, r := range records {
		sum += r.count
	}
	assert.Equal(t, total, sum)
	assert.Equal(t, total, createdIn(records, runFunc), "a pending Deferred that this run did not make")

	code := finish()
	assert.Equal(t, 0, code)
	assert.Equal(t, "fetchmany: serving net/http/pprof at http://"+addr+"/debug/pprof/\n", stderr.String())
	s := parseSummary(t, stdout.String())
	assert.Equal(t, 2, s.ok)
	assert.Zero(t, deferred.SetPendingProfileFraction(0), "run left the pending profile on")
	assert.Equal(t, before, rpprofCount(), "Deferreds of the run still pending once it is over")
	_, err = client.Get("http://" + addr + "/debug/pprof/")
	assert.Error(t, err, "the debug server outlives the run")
}

// A -debug address that cannot be listened on is a failure (1), said
// before anything is fetched.
func TestFetchmanyDebugAddressInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	r := fetchmany(context.Background(), "-debug", ln.Addr().String(), "-pages", "1")

	assert.Equal(t, 1, r.Code)
	assert.Empty(t, r.Stdout)
	assert.Regexp(t, `^fetchmany: -debug: listen tcp `+regexp.QuoteMeta(ln.Addr().String())+`: bind: address already in use\n$`, r.Stderr)
}
