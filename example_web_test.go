package deferred_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

// Examples that fetch pages with web.GetPage from a loopback server of
// their own, as the README's snippets do.

// Await blocks the goroutine that calls it, not the chain, until the
// Deferred holds its result.
func ExampleDeferred_Await_getPage() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<H1>Hello, Deferred!</H1>")
	}))
	defer srv.Close()
	ctx, url := context.Background(), srv.URL

	page, err := web.GetPage(ctx, url).AddTimeout(30 * time.Second).Await(ctx)
	fmt.Printf("%s %v\n", page, err)
	// Output: <H1>Hello, Deferred!</H1> <nil>
}

// Gather keeps the input order, whatever order the pages arrive in.
func ExampleGather_pages() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "page ", r.URL.Path)
	}))
	defer srv.Close()
	ctx := context.Background()
	get := func(url string) *deferred.Deferred[[]byte] { return web.GetPage(ctx, url) }
	a, b, c := srv.URL+"/a", srv.URL+"/b", srv.URL+"/c"

	pages := deferred.Gather(get(a), get(b), get(c)) // *Deferred[[][]byte], input order kept
	got, err := pages.Await(ctx)
	fmt.Printf("%q %v\n", got, err)
	// Output: ["page /a" "page /b" "page /c"] <nil>
}

// RunLimited starts a function when the semaphore has a token and gives
// the token back when the function's Deferred settles: here at most two
// fetches are in flight at once.
func ExampleRunLimited() {
	var mu sync.Mutex
	inFlight, most := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		fmt.Fprint(w, r.URL.Path)
	}))
	defer srv.Close()
	ctx := context.Background()
	var urls []string
	for i := range 6 {
		urls = append(urls, fmt.Sprintf("%s/page/%d", srv.URL, i))
	}

	sem := deferred.NewSemaphore(2) // at most 2 fetches in flight
	var ds []*deferred.Deferred[[]byte]
	for _, url := range urls {
		ds = append(ds, deferred.RunLimited(sem, func() *deferred.Deferred[[]byte] {
			return web.GetPage(ctx, url)
		}))
	}
	pages, err := deferred.Gather(ds...).Await(ctx)

	fmt.Printf("%q %v\n", pages, err)
	mu.Lock()
	fmt.Println("at most 2 in flight:", most <= 2)
	mu.Unlock()
	// Output:
	// ["/page/0" "/page/1" "/page/2" "/page/3" "/page/4" "/page/5"] <nil>
	// at most 2 in flight: true
}
