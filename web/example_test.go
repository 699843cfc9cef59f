package web_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

// GetPage returns at once; the callbacks run when the body is in, and Await
// waits for them.
func ExampleGetPage() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<H1>Hello, Deferred!</H1>")
	}))
	defer srv.Close()

	d := web.GetPage(context.Background(), srv.URL)
	d.AddCallback(func(page []byte) ([]byte, error) {
		return bytes.ToLower(page), nil
	})
	d.AddCallback(func(page []byte) ([]byte, error) {
		fmt.Printf("%s\n", page)
		return page, nil
	})
	if _, err := d.Await(context.Background()); err != nil {
		fmt.Println("error:", err)
	}
	// Output: <h1>hello, deferred!</h1>
}

// A status other than 2xx fails the Deferred; errors.As finds the
// *StatusError inside the *deferred.Failure.
func ExampleStatusError() {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()

	d := web.GetPage(context.Background(), srv.URL+"/missing")
	d.AddErrback(func(f *deferred.Failure) ([]byte, error) {
		var se *web.StatusError
		if !errors.As(f, &se) {
			return nil, f // not an HTTP status: keep failing
		}
		fmt.Println("status:", se.StatusCode)
		return []byte("fallback page"), nil
	})
	page, err := d.Await(context.Background())
	fmt.Printf("%s %v\n", page, err)
	// Output:
	// status: 404
	// fallback page <nil>
}

// A fetch that takes too long fails as AddTimeout's Deferreds do: with an
// error matching deferred.ErrTimeout and context.DeadlineExceeded, whose
// Timeout method reports true. The request is aborted.
func ExampleWithTimeout() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	}))
	defer srv.Close()

	d := web.GetPage(context.Background(), srv.URL, web.WithTimeout(50*time.Millisecond))
	_, err := d.Await(context.Background())
	var te interface{ Timeout() bool }
	fmt.Println(errors.Is(err, deferred.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &te) && te.Timeout())
	fmt.Println(strings.Replace(err.Error(), srv.URL, "http://server", 1))
	// Output:
	// true true true
	// web: GET http://server: timed out after 50ms
}

// Cancelling the Deferred aborts the request.
func ExampleGetPage_cancel() {
	arrived := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // the client went away
	}))
	defer srv.Close()

	d := web.GetPage(context.Background(), srv.URL)
	<-arrived
	d.Cancel()
	_, err := d.Await(context.Background())
	fmt.Println(errors.Is(err, deferred.ErrCancelled))
	// Output: true
}
