// Getpage prints a web page: Twisted's classic getPage listing, in Go.
// web.GetPage returns a Deferred at once; the callback prints the page
// when it arrives, and Await waits for that, as reactor.run() would.
//
// With no argument it fetches a page from a loopback server of its own, so
// it runs without a network; with a URL it fetches that URL:
//
//	go run ./examples/getpage
//	go run ./examples/getpage https://go.dev/
//
// Output, with no argument:
//
//	<HTML><BODY>Hello, Deferred!</BODY></HTML>
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
	"strings"

	"github.com/deferred-go/deferred/web"
)

func main() {
	// Ctrl-C ends ctx, and Await then cancels the request.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "getpage:", err)
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
	_, err = d.Await(ctx) // returns once the chain has run, with its failure if any
	return err
}

// pageURL returns the URL in args or, with none, the URL of a page served
// on loopback, and a function that stops that server.
func pageURL(args []string) (url string, closeServer func(), err error) {
	switch len(args) {
	case 0:
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "<HTML><BODY>Hello, Deferred!</BODY></HTML>")
		}))
		return srv.URL + "/", srv.Close, nil
	case 1:
		if !strings.HasPrefix(args[0], "-") { // -h, --help: not a URL
			return args[0], func() {}, nil
		}
	}
	return "", nil, errors.New("usage: getpage [URL]")
}
