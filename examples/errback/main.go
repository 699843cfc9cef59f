// Errback asks for a page that does not exist and handles the failure in
// an errback: Twisted's getPage listing with an errorHandler, in Go. The
// 404 skips the callback; the errback gets a *deferred.Failure, finds the
// *web.StatusError inside it with errors.As, prints it, and returns no
// error, which marks the failure handled. Any other failure it returns,
// and the chain goes on failing.
//
// Usage:
//
//	errback [-timeout duration] [URL]
//
// With no URL it asks a loopback server of its own for a missing page, so
// it runs without a network; with an http:// or https:// URL it fetches
// that:
//
//	go run ./examples/errback
//	go run ./examples/errback https://go.dev/does-not-exist
//
// Output, with no argument:
//
//	An error has occurred: 404 Not Found
//
// The -timeout flag (default 10s) bounds the fetch. The exit status is 0
// when the page was printed or was not found (the errback handled it), 1
// when the fetch failed otherwise (the error is on stderr), 2 for a bad
// flag or argument, and 130 after Ctrl-C. -h prints the usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

const (
	name     = "errback"
	synopsis = "usage: errback [-timeout duration] [URL]"
	about    = `Errback prints the web page at URL or, if there is none (404), says so.
Without a URL it asks a loopback server of its own for a missing page,
so it runs offline.`
)

func main() {
	// Ctrl-C ends ctx, and Await then cancels the request; a second
	// Ctrl-C, once signals are no longer caught, ends the program at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the program: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	url, timeout, status, ok := parseArgs(args, stderr)
	if !ok {
		return status
	}
	if url == "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "<HTML><BODY>Hello, Deferred!</BODY></HTML>")
		})
		srv := httptest.NewServer(mux) // any other path: 404 Not Found
		defer srv.Close()
		url = srv.URL + "/does-not-exist"
	}

	d := web.GetPage(ctx, url, web.WithTimeout(timeout))
	d.AddCallback(func(page []byte) ([]byte, error) { // printContents
		_, err := fmt.Fprintf(stdout, "%s\n", page)
		return page, err
	})
	d.AddErrback(func(f *deferred.Failure) ([]byte, error) { // errorHandler
		var se *web.StatusError
		if errors.As(f, &se) && se.StatusCode == http.StatusNotFound {
			fmt.Fprintf(stdout, "An error has occurred: %s\n", se.Status)
			return nil, nil // handled: the chain goes on as a success
		}
		return nil, f // not ours to handle: the chain goes on failing
	})
	_, err := d.Await(ctx) // returns once the chain has run, with its failure if any
	return exitStatus(ctx, err, stderr)
}

// parseArgs returns the URL in args ("" for none), the -timeout flag and
// ok; or, for -h or a bad flag or argument, the exit status, after printing
// the usage or the error.
func parseArgs(args []string, stderr io.Writer) (url string, timeout time.Duration, status int, ok bool) {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(io.Discard) // the errors are printed below, once
	flags.DurationVar(&timeout, "timeout", 10*time.Second, "give up on the fetch after `duration`")
	err := flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stderr, "%s\n\n%s\n\nFlags:\n", synopsis, about)
		flags.SetOutput(stderr)
		flags.PrintDefaults()
		fmt.Fprintf(stderr, "\nExit status: 0 once the page or the 404 is printed, 1 if the fetch\n"+
			"fails otherwise, 2 for a bad flag or argument, 130 after Ctrl-C.\n")
		return "", 0, 0, false
	case err != nil:
	case timeout <= 0:
		err = fmt.Errorf("-timeout must be positive, not %v", timeout)
	case flags.NArg() > 1:
		err = fmt.Errorf("want at most one URL, not %d arguments", flags.NArg())
	case flags.NArg() == 1:
		url = flags.Arg(0)
		err = checkURL(url)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n%s\n", name, err, synopsis)
		return "", 0, 2, false
	}
	return url, timeout, 0, true
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

// exitStatus prints err, if any, and returns the exit status for it.
func exitStatus(ctx context.Context, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil: // Ctrl-C, whatever the error it caused
		fmt.Fprintf(stderr, "%s: interrupted\n", name)
		return 130
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}
