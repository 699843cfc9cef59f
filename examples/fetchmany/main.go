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
//	fetchmany [-n 10] [-timeout 10s] [-pages 200] [URL ...]
//
// With URLs, fetchmany fetches them. Without, it starts a web server on the
// loopback interface and fetches -pages of its pages: every tenth is missing
// (404) and every seventh is slow (100 to 300ms). When stderr is a terminal,
// a progress line shows there while the pages come in. Output with the
// defaults (the port and the time vary):
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
	"os"
	"os/signal"
	"slices"
	"sync"
	"time"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Stdout, os.Stderr, os.Args[1:])
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the usage is printed already
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetchmany:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdout, stderr io.Writer, args []string) error {
	flags := flag.NewFlagSet("fetchmany", flag.ContinueOnError)
	flags.SetOutput(stderr)
	n := flags.Int("n", 10, "the most fetches in flight at once")
	timeout := flags.Duration("timeout", 10*time.Second, "the time limit of each fetch")
	pages := flags.Int("pages", 200, "how many pages of the loopback server to fetch, without URLs")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *timeout <= 0 || *pages < 0 {
		return errors.New("-n must be at least 1, -timeout positive, -pages not negative")
	}

	urls := flags.Args()
	var site *demoSite
	if len(urls) == 0 {
		var err error
		if site, err = startDemoSite(*pages); err != nil {
			return err
		}
		defer site.Close()
		urls = site.URLs()
	}

	// An HTTP client of our own, so that its idle connections can be
	// closed when we are done.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = *n
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	var prog *progress
	if isTerminal(stderr) {
		prog = &progress{w: stderr, total: len(urls)}
	}

	start := time.Now()
	sem := deferred.NewSemaphore(*n)
	fetches := make([]*deferred.Deferred[[]byte], len(urls))
	for i, u := range urls {
		// RunLimited returns at once. It calls the function when it holds
		// one of sem's n tokens, now or when an earlier fetch gives one
		// back, and gives the token back when the Deferred the function
		// returned fires. A URL waiting for a token is a Deferred in sem's
		// queue: no goroutine waits for it.
		fetches[i] = deferred.RunLimited(sem, func() *deferred.Deferred[[]byte] {
			return web.GetPage(ctx, u, web.WithClient(client), web.WithTimeout(*timeout))
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
	// as unhandled, and none is lost, as the table below shows. Await
	// blocks this goroutine until then; if ctx ends first (Ctrl-C), it
	// cancels the List, which cancels every fetch still waiting or running.
	outcomes, err := deferred.List(fetches...).Await(ctx)
	elapsed := time.Since(start)
	prog.finish()
	if err == nil {
		err = ctx.Err() // interrupted, though every fetch had settled
	}
	if err != nil {
		return err
	}

	writeSummary(stdout, urls, outcomes, *n, elapsed)
	if site != nil {
		fmt.Fprintf(stdout, "\nloopback server: %d requests, %d answered 404, ", site.requests.Load(), site.notFound.Load())
		if a := site.abandoned.Load(); a > 0 {
			fmt.Fprintf(stdout, "%d abandoned by the client, at most %d in flight at once (abandoned ones count until the server notices)\n",
				a, site.maxInFlight.Load())
		} else {
			fmt.Fprintf(stdout, "at most %d in flight at once\n", site.maxInFlight.Load())
		}
	}
	return nil
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
// the HTTP status, a timeout, or the network error without the address.
func reason(f *deferred.Failure) string {
	var status *web.StatusError
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(f, &status):
		return status.Status
	case errors.Is(f, deferred.ErrTimeout):
		return "timed out"
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
