// Command fetchmany fetches many web pages at once, at most -n at a time,
// and reports every failure instead of losing it.
//
// Each page is a Deferred from web.GetPage. A deferred.Semaphore keeps at
// most -n of them in flight: the pages waiting for their turn are Deferreds
// in the semaphore's queue, not goroutines. deferred.List collects every
// outcome, value or failure, in the order of the URLs.
//
// Usage:
//
//	fetchmany [-n count] [-timeout duration] [-pages count] [-debug addr] [URL ...]
//
// With URLs (http:// or https://), fetchmany fetches them. Without, it
// starts a web server on the loopback interface and fetches -pages of its
// pages: every tenth is missing (404) and every seventh is slow (100 to
// 300ms). -n (default 10) bounds the fetches in flight, -timeout (default
// 10s) each fetch. When stderr is a terminal, a progress line shows there
// while the pages come in. Output with the defaults (the port and the time
// vary):
//
//	200 URLs, at most 10 in flight:
//	  ok       180
//	  failed    20
//	  time    0.76s
//
//	failures by reason:
//	  20  404 Not Found  e.g. http://127.0.0.1:33693/page/9
//
//	loopback server: 200 requests, 20 answered 404, at most 10 in flight at once
//
// With -debug addr (e.g. localhost:6060), fetchmany serves net/http/pprof
// at http://addr/debug/pprof/ while it runs, and records every Deferred it
// creates in the pending profile until it fires, so that
//
//	go tool pprof -top http://localhost:6060/debug/pprof/github.com/deferred-go/deferred.pending
//
// shows, during a run, which Deferreds are pending and where they were
// created. It says the address on stderr when the server is up.
//
// The exit status is 0 when every page was fetched (the loopback server's
// missing pages aside: they are part of the demonstration), 1 when a fetch
// failed, 2 for a bad flag or argument, and 130 after Ctrl-C, which
// cancels the fetches still waiting or running and prints the summary of
// what came in before. -h prints the usage.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

const (
	name     = "fetchmany"
	synopsis = "usage: fetchmany [-n count] [-timeout duration] [-pages count] [-debug addr] [URL ...]"
	about    = `Fetchmany fetches the web pages at the URLs, at most -n at a time, and
prints a summary of what came in and why each failure failed. Without URLs
it fetches -pages pages of a loopback server of its own, so it runs offline.
With -debug, it serves net/http/pprof while it runs, the profile of pending
Deferreds included.`
)

func main() {
	// Ctrl-C ends ctx, which cancels the fetches; a second Ctrl-C, once
	// signals are no longer caught, ends the program at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are fetchmany's flags and arguments.
type options struct {
	n, pages int
	timeout  time.Duration
	debug    string // the address to serve net/http/pprof at, or ""
	urls     []string
}

// parseArgs returns the options in args and ok; or, for -h or a bad flag
// or argument, the exit status, after printing the usage or the error.
func parseArgs(args []string, stderr io.Writer) (opts options, status int, ok bool) {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(io.Discard) // the errors are printed below, once
	flags.IntVar(&opts.n, "n", 10, "fetch at most `count` pages at once")
	flags.DurationVar(&opts.timeout, "timeout", 10*time.Second, "give up on a fetch after `duration`")
	flags.IntVar(&opts.pages, "pages", 200, "without URLs, fetch `count` pages of the loopback server")
	flags.StringVar(&opts.debug, "debug", "", "serve net/http/pprof, pending Deferreds included, at `addr` (host:port) while running")
	err := flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stderr, "%s\n\n%s\n\nFlags:\n", synopsis, about)
		flags.SetOutput(stderr)
		flags.PrintDefaults()
		fmt.Fprintf(stderr, "\nExit status: 0 once every page is fetched (the loopback server's\n"+
			"missing pages aside), 1 if a fetch fails, 2 for a bad flag or argument,\n"+
			"130 after Ctrl-C, which prints the summary so far.\n")
		return opts, 0, false
	case err != nil:
	case opts.n < 1:
		err = fmt.Errorf("-n must be at least 1, not %d", opts.n)
	case opts.timeout <= 0:
		err = fmt.Errorf("-timeout must be positive, not %v", opts.timeout)
	case opts.pages < 0:
		err = fmt.Errorf("-pages must not be negative, not %d", opts.pages)
	case opts.debug != "" && !validAddr(opts.debug):
		err = fmt.Errorf("-debug wants host:port (e.g. localhost:6060), not %q", opts.debug)
	default:
		opts.urls = flags.Args()
		for _, u := range opts.urls {
			if err = checkURL(u); err != nil {
				break
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n%s\n", name, err, synopsis)
		return opts, 2, false
	}
	return opts, 0, true
}

// validAddr reports whether addr is a host:port that net.Listen could
// take: the host may be empty, the port must be there.
func validAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port != ""
}

// checkURL returns an error, with a hint if it can give one, for a URL
// that web.GetPage cannot fetch: without http:// or https://.
func checkURL(raw string) error {
	if !strings.Contains(raw, "://") {
		return fmt.Errorf("URL %q has no scheme: try http://%s", raw, raw)
	}
	u, err := neturl.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL %q: want http:// or https://", raw)
	}
	return nil
}

// run is the program: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, status, ok := parseArgs(args, stderr)
	if !ok {
		return status
	}
	if opts.debug != "" {
		stop, err := serveDebug(opts.debug, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "%s: -debug: %v\n", name, err)
			return 1
		}
		defer stop()
	}
	urls := opts.urls
	var site *demoSite
	if len(urls) == 0 {
		var err error
		if site, err = startDemoSite(opts.pages); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		defer site.Close()
		urls = site.URLs()
	}

	// An HTTP client of our own, so that its idle connections can be
	// closed when we are done.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = opts.n
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	var prog *progress
	if isTerminal(stderr) {
		prog = &progress{w: stderr, total: len(urls)}
	}

	start := time.Now()
	sem := deferred.NewSemaphore(opts.n)
	fetches := make([]*deferred.Deferred[[]byte], len(urls))
	for i, u := range urls {
		// RunLimited returns at once. It calls the function when it holds
		// one of sem's n tokens, now or when an earlier fetch gives one
		// back, and gives the token back when the Deferred the function
		// returned fires. A URL waiting for a token is a Deferred in sem's
		// queue: no goroutine waits for it.
		fetches[i] = deferred.RunLimited(sem, func() *deferred.Deferred[[]byte] {
			return web.GetPage(ctx, u, web.WithClient(client), web.WithTimeout(opts.timeout))
		})
		if prog != nil {
			// A stage that looks at the result and passes it on unchanged,
			// failure included: AddBoth's `return v, f`. It runs on the
			// goroutine that fires the fetch, one of net/http's.
			fetches[i].AddBoth(func(body []byte, f *deferred.Failure) ([]byte, error) {
				prog.done(f == nil)
				return body, f
			})
		}
	}

	// List fires once every fetch has settled, with one Outcome per URL,
	// in order. It takes each failure into its Outcome: none is reported
	// as unhandled, and none is lost, as the table below shows. If ctx
	// ends first (Ctrl-C), every fetch is cancelled: one waiting for a
	// token or running fails with ErrCancelled at once. A Cancel that
	// comes while one of the fetch's stages runs does nothing (as in
	// Twisted), so ctx's end also aborts the requests themselves (GetPage
	// got ctx): every fetch settles, one way or the other, and the List
	// fires with the outcomes as they stand. (Cancelling the List instead
	// would fail it, with nothing to sum up, if a fetch did not settle at
	// once.) Await blocks this goroutine until the List fires.
	all := deferred.List(fetches...)
	stop := context.AfterFunc(ctx, func() {
		for _, f := range fetches {
			f.Cancel() // a fetch that has settled ignores it
		}
	})
	defer stop()
	outcomes, err := all.Await(context.Background())
	elapsed := time.Since(start)
	prog.finish()
	if err != nil { // a fetch could not even be cancelled: nothing to sum up
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}

	writeSummary(stdout, urls, outcomes, opts.n, elapsed)
	if site != nil {
		fmt.Fprintf(stdout, "\nloopback server: %d requests, %d answered 404, ", site.requests.Load(), site.notFound.Load())
		if a := site.abandoned.Load(); a > 0 {
			fmt.Fprintf(stdout, "%d abandoned by the client, at most %d in flight at once (abandoned ones count until the server notices)\n",
				a, site.maxInFlight.Load())
		} else {
			fmt.Fprintf(stdout, "at most %d in flight at once\n", site.maxInFlight.Load())
		}
	}

	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "%s: interrupted\n", name)
		return 130
	}
	failed := 0
	for i, o := range outcomes {
		if o.Failure != nil && !(site != nil && site.meantToMiss(i, o.Failure)) {
			failed++
		}
	}
	switch {
	case failed == 0:
		return 0
	case site != nil:
		fmt.Fprintf(stderr, "%s: %d of %d fetches failed, besides the pages the loopback server is meant to miss\n", name, failed, len(urls))
	default:
		fmt.Fprintf(stderr, "%s: %d of %d fetches failed\n", name, failed, len(urls))
	}
	return 1
}

// writeSummary prints how many fetches succeeded and failed, and the
// failures grouped by reason, most frequent first, with one URL as an example.
func writeSummary(w io.Writer, urls []string, outcomes []deferred.Outcome[[]byte], n int, elapsed time.Duration) {
	type group struct {
		reason string
		count  int
		url    string // the first URL that failed this way
	}
	var groups []*group
	byReason := map[string]*group{}
	ok := 0
	for i, o := range outcomes {
		if o.Failure == nil {
			ok++
			continue
		}
		r := reason(o.Failure)
		g := byReason[r]
		if g == nil {
			g = &group{reason: r, url: urls[i]}
			byReason[r] = g
			groups = append(groups, g)
		}
		g.count++
	}
	slices.SortStableFunc(groups, func(a, b *group) int { return cmp.Compare(b.count, a.count) })

	fmt.Fprintf(w, "%d URLs, at most %d in flight:\n", len(urls), n)
	fmt.Fprintf(w, "  %-6s %5d\n", "ok", ok)
	fmt.Fprintf(w, "  %-6s %5d\n", "failed", len(outcomes)-ok)
	fmt.Fprintf(w, "  %-6s %5.2fs\n", "time", elapsed.Seconds())
	if len(groups) == 0 {
		return
	}
	fmt.Fprintf(w, "\nfailures by reason:\n")
	for _, g := range groups {
		fmt.Fprintf(w, "  %d  %s  e.g. %s\n", g.count, g.reason, g.url)
	}
}

// reason names why a fetch failed, in words that group alike failures:
// the HTTP status, a timeout, a cancellation, or the network error without
// the address.
func reason(f *deferred.Failure) string {
	var status *web.StatusError
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(f, &status):
		return status.Status
	case errors.Is(f, deferred.ErrTimeout):
		return "timed out"
	case errors.Is(f, deferred.ErrCancelled), errors.Is(f, context.Canceled): // Ctrl-C
		return "cancelled"
	case errors.As(f, &dns) && dns.IsNotFound:
		return "no such host"
	case errors.As(f, &op):
		return op.Err.Error() // e.g. "connect: connection refused"
	}
	return f.Error()
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress keeps a live line on a terminal. The fetches' stages run on
// many goroutines at once (each GetPage fires on its own), hence the lock.
type progress struct {
	w     io.Writer
	total int

	mu         sync.Mutex
	ok, failed int
}

func (p *progress) done(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		p.ok++
	} else {
		p.failed++
	}
	fmt.Fprintf(p.w, "\r%d/%d fetched: %d ok, %d failed", p.ok+p.failed, p.total, p.ok, p.failed)
}

// finish ends the progress line; a nil progress does nothing.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w)
}
