// Lowercase prints a web page in lower case: Twisted's getPage listing with
// two callbacks. The first callback's result is the second one's input, so
// the chain lower-cases the page, then prints it.
//
// Usage:
//
//	lowercase [-timeout duration] [URL]
//
// With no URL it fetches a page from a loopback server of its own, so it
// runs without a network; with an http:// or https:// URL it fetches that:
//
//	go run ./examples/lowercase
//	go run ./examples/lowercase https://go.dev/
//
// Output, with no argument:
//
//	<html><body>hello, deferred!</body></html>
//
// The -timeout flag (default 10s) bounds the fetch. The exit status is 0
// when the page was printed, 1 when the fetch failed (the error is on
// stderr), 2 for a bad flag or argument, and 130 after Ctrl-C. -h prints
// the usage.
package main

import (
	"bytes"
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

	"github.com/deferred-go/deferred/web"
)

const (
	name     = "lowercase"
	synopsis = "usage: lowercase [-timeout duration] [URL]"
	about    = `Lowercase prints the web page at URL in lower case. Without a URL it
fetches a page of a loopback server of its own, so it runs offline.`
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
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "<HTML><BODY>Hello, Deferred!</BODY></HTML>")
		}))
		defer srv.Close()
		url = srv.URL + "/"
	}

	d := web.GetPage(ctx, url, web.WithTimeout(timeout))
	d.AddCallback(func(page []byte) ([]byte, error) { // lowerCaseContents
		return bytes.ToLower(page), nil
	})
	d.AddCallback(func(page []byte) ([]byte, error) { // printContents
		_, err := fmt.Fprintf(stdout, "%s\n", page)
		return page, err
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
		fmt.Fprintf(stderr, "\nExit status: 0 once the page is printed, 1 if the fetch fails,\n"+
			"2 for a bad flag or argument, 130 after Ctrl-C.\n")
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
