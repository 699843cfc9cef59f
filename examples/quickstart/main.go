// Quickstart is the README's first program: a producer fires a Deferred
// later, from another goroutine; two callbacks and an errback, added
// beforehand, run when it does. It needs no network.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/deferred-go/deferred"
)

// ErrNotFound is the failure the errback below knows how to handle.
var ErrNotFound = errors.New("not found")

// fetch stands for slow I/O: it returns a Deferred at once, and a producer
// goroutine fires it when the answer is in.
func fetch(path string) *deferred.Deferred[string] {
	d := deferred.New[string]()
	go func() {
		time.Sleep(10 * time.Millisecond) // the slow part
		var err error
		if path == "/hello" {
			err = d.Callback("<HTML>Hello, Deferred!</HTML>")
		} else {
			err = d.Errback(fmt.Errorf("%s: %w", path, ErrNotFound))
		}
		if err != nil { // d fired already: only one result counts
			fmt.Fprintln(os.Stderr, "fetch:", err)
		}
	}()
	return d
}

func run(w io.Writer) error {
	for _, path := range []string{"/hello", "/missing"} {
		d := fetch(path) // *deferred.Deferred[string], fires later

		d.AddCallback(func(page string) (string, error) {
			return strings.ToLower(page), nil
		})
		d.AddErrback(func(f *deferred.Failure) (string, error) {
			if err := f.Trap(ErrNotFound); err != nil {
				return "", err // not ours: keep failing
			}
			fmt.Fprintln(w, "recovering from:", f)
			return "<html>fallback</html>", nil // the next callback gets this
		})
		d.AddCallback(func(page string) (string, error) {
			_, err := fmt.Fprintln(w, path, "->", page)
			return page, err
		})

		// Block until the chain has run; an event-driven program would not wait.
		if _, err := d.Await(context.Background()); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}
