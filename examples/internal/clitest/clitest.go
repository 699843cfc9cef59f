// Package clitest holds the command-line conventions that every program
// in examples/ follows, as tables that each program's tests run. The
// programs stay standalone, copyable main packages; these tables keep them
// from drifting apart.
//
// The conventions: -h, -help and --help print the usage to stderr and exit
// 0; a bad flag or argument prints one message and the synopsis and exits
// 2; a failure exits 1 after saying what failed; Ctrl-C (the end of run's
// context) exits 130.
package clitest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Program is one example's entry point, as its main calls it.
type Program struct {
	Name string
	Run  func(ctx context.Context, args []string, stdout, stderr io.Writer) int

	// Synopsis is the first line of the usage, e.g. "usage: getpage [-timeout duration] [URL]".
	Synopsis string
}

// A Result is what a run of a program came to.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs p with args and ctx.
func (p Program) run(ctx context.Context, args ...string) Result {
	var stdout, stderr strings.Builder
	code := p.Run(ctx, args, &stdout, &stderr)
	return Result{code, stdout.String(), stderr.String()}
}

// TestFlags checks the conventions every program follows: help, a flag
// that does not exist, a -timeout that is not a positive duration.
func TestFlags(t *testing.T, p Program) {
	t.Helper()
	for _, help := range []string{"-h", "-help", "--help"} {
		t.Run(help, func(t *testing.T) {
			r := p.run(context.Background(), help)

			assert.Equal(t, 0, r.Code)
			assert.Empty(t, r.Stdout, "the usage goes to stderr")
			assert.True(t, strings.HasPrefix(r.Stderr, p.Synopsis+"\n\n"), "the usage starts with the synopsis:\n%s", r.Stderr)
			assert.Contains(t, r.Stderr, "\nFlags:\n", "and lists the flags")
			assert.Contains(t, r.Stderr, "  -timeout duration\n")
			assert.Contains(t, r.Stderr, "Exit status:", "and says what the exit status means")
		})
	}
	for _, tc := range []struct {
		args    []string
		message string // after "name: "
	}{
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"-timeout"}, "flag needs an argument: -timeout"},
		{[]string{"-timeout", "x"}, `invalid value "x" for flag -timeout: parse error`},
		{[]string{"-timeout", "0"}, "-timeout must be positive, not 0s"},
		{[]string{"-timeout", "-1s"}, "-timeout must be positive, not -1s"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			p.UsageError(t, tc.message, tc.args...)
		})
	}
}

// UsageError checks that p, run with args, exits 2 after printing message
// (prefixed with its name) and its synopsis, and nothing else.
func (p Program) UsageError(t *testing.T, message string, args ...string) {
	t.Helper()
	r := p.run(context.Background(), args...)

	assert.Equal(t, 2, r.Code)
	assert.Empty(t, r.Stdout)
	assert.Equal(t, p.Name+": "+message+"\n"+p.Synopsis+"\n", r.Stderr, "one message, then the synopsis")
}

// A Fetcher is a program of the getpage kind: it fetches the one URL it is
// given, or with none a page of a loopback server of its own.
type Fetcher struct {
	Program
	Default  string                   // what it prints when given no URL
	Page     func(body string) string // what it prints for a page with this body
	NotFound Result                   // its result for a 404; in Stderr, {name} and {url} stand for its name and the URL
}

// TestFetcher runs p through the table that every fetcher must pass: the
// flags, bad arguments, each kind of failure, a timeout and Ctrl-C.
func TestFetcher(t *testing.T, p Fetcher) {
	t.Helper()
	t.Run("flags", func(t *testing.T) { TestFlags(t, p.Program) })

	mux := http.NewServeMux()
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "A Page, <B>Bold</B>")
	})
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "oops", http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /silent", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	})
	arrived := make(chan struct{})
	mux.HandleFunc("GET /interrupted", func(w http.ResponseWriter, r *http.Request) {
		close(arrived) // one request only
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux) // any other path: 404
	defer srv.Close()
	refused := RefusedURL(t)

	for _, tc := range []struct {
		name string
		args []string
		want Result // in Stderr, {name}: the program's name, {url}: the URL, {addr}: its host:port
	}{
		{"no argument", nil, Result{0, p.Default, ""}},
		{"a page", []string{srv.URL + "/page"}, Result{0, p.Page("A Page, <B>Bold</B>"), ""}},
		{"a 404", []string{srv.URL + "/missing"}, p.NotFound},
		{"a 500", []string{srv.URL + "/broken"},
			Result{1, "", "{name}: web: GET {url}: 500 Internal Server Error\n"}},
		{"a refused connection", []string{refused},
			Result{1, "", "{name}: Get \"{url}\": dial tcp {addr}: connect: connection refused\n"}},
		{"a server that never answers", []string{"-timeout", "50ms", srv.URL + "/silent"},
			Result{1, "", "{name}: web: GET {url}: timed out after 50ms\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := p.run(context.Background(), tc.args...)

			url := ""
			if len(tc.args) > 0 {
				url = tc.args[len(tc.args)-1]
			}
			assert.Equal(t, tc.want.Code, r.Code)
			assert.Equal(t, tc.want.Stdout, r.Stdout)
			addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
			assert.Equal(t, strings.NewReplacer("{name}", p.Name, "{url}", url, "{addr}", addr).Replace(tc.want.Stderr), r.Stderr)
		})
	}

	t.Run("Ctrl-C", func(t *testing.T) {
		ctx, interrupt := context.WithCancel(context.Background())
		defer interrupt()
		go func() {
			select {
			case <-arrived: // the request is under way: press Ctrl-C
				interrupt()
			case <-ctx.Done():
			}
		}()
		r := p.run(ctx, srv.URL+"/interrupted")

		assert.Equal(t, Result{130, "", p.Name + ": interrupted\n"}, r)
	})

	for _, tc := range []struct {
		name, message string
		args          []string
	}{
		{"two URLs", "want at most one URL, not 2 arguments", []string{srv.URL + "/page", srv.URL + "/page"}},
		{"a URL after a flag's place", "want at most one URL, not 3 arguments", []string{srv.URL + "/page", "-timeout", "1s"}},
		{"a URL without a scheme", `URL "example.org" has no scheme: try http://example.org`, []string{"example.org"}},
		{"a host:port without a scheme", `URL "localhost:8080/x" has no scheme: try http://localhost:8080/x`, []string{"localhost:8080/x"}},
		{"another scheme", `URL "ftp://example.org/": want http:// or https://`, []string{"ftp://example.org/"}},
		{"a URL that does not parse", `parse "http://[::1": missing ']' in host`, []string{"http://[::1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.UsageError(t, tc.message, tc.args...)
		})
	}
}

// RefusedURL returns the URL of a loopback port that was just free: nothing
// listens on it, so a connection to it is refused.
func RefusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())
	return url
}
