// Errback asks for a page that does not exist and handles the failure in
// an errback: Twisted's getPage listing with an errorHandler, in Go. The
// 404 skips the callback; the errback gets a *deferred.Failure, finds the
// *web.StatusError inside it with errors.As, prints it, and returns no
// error, which marks the failure handled.
//
// With no argument it asks a loopback server of its own for a missing page,
// so it runs without a network; with a URL it fetches that URL:
//
//	go run ./examples/errback
//	go run ./examples/errback https://go.dev/does-not-exist
//
// Output, with no argument:
//
//	An error has occurred: 404 Not Found
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

func main() {
	// Ctrl-C ends ctx, and Await then cancels the request.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "errback:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, args []string) error {
	url, closeServer, err := pageURL(args)
	if err != nil {
		return err
	}
	defer closeServer()

	d := web.GetPage(ctx, url)
	d.AddCallback(func(page []byte) ([]byte, error) { // printContents
		_, err := fmt.Fprintf(w, "%s\n", page)
		return page, err
	})
	d.AddErrback(func(f *deferred.Failure) ([]byte, error) { // errorHandler
		var se *web.StatusError
		if errors.As(f, &se) {
			fmt.Fprintf(w, "An error has occurred: %s\n", se.Status)
		} else {
			fmt.Fprintf(w, "An error has occurred: %v\n", f)
		}
		return nil, nil // handled: the chain goes on as a success
	})
	_, err = d.Await(ctx) // returns once the chain has run, with its failure if any
	return err
}

// pageURL returns the URL in args or, with none, the URL of a missing page
// on a loopback server, and a function that stops that server.
func pageURL(args []string) (url string, closeServer func(), err error) {
	switch len(args) {
	case 0:
		mux := http.NewServeMux()
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "<HTML><BODY>Hello, Deferred!</BODY></HTML>")
		})
		srv := httptest.NewServer(mux) // any other path: 404 Not Found
		return srv.URL + "/does-not-exist", srv.Close, nil
	case 1:
		return args[0], func() {}, nil
	}
	return "", nil, errors.New("usage: errback [URL]")
}
