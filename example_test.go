package deferred_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/deferred-go/deferred"
)

// A producer hands out a Deferred now and fires it later; the stages the
// consumer added run, in order, when it does.
func ExampleNew() {
	d := deferred.New[string]()
	d.AddCallback(func(page string) (string, error) {
		return strings.ToLower(page), nil
	})
	d.AddCallback(func(page string) (string, error) {
		fmt.Println("got:", page)
		return page, nil
	})

	// Later, when the result is there:
	d.Callback("<HTML>Hello</HTML>")
	// Output: got: <html>hello</html>
}

func ExampleDeferred_Callback() {
	d := deferred.Succeed(1) // already fired
	err := d.Callback(2)
	fmt.Println(errors.Is(err, deferred.ErrAlreadyCalled))
	// Output: true
}

var errNotFound = errors.New("404 not found")

// An errback sees the failure; returning a value recovers the chain.
func ExampleDeferred_AddErrback() {
	d := deferred.New[string]()
	d.AddCallback(func(page string) (string, error) {
		fmt.Println("never runs: the fetch failed")
		return page, nil
	})
	d.AddErrback(func(f *deferred.Failure) (string, error) {
		if err := f.Trap(errNotFound); err != nil {
			return "", err // not ours: keep failing
		}
		fmt.Println("errback:", f)
		return "<html>fallback</html>", nil
	})
	d.AddCallback(func(page string) (string, error) {
		fmt.Println("recovered with:", page)
		return page, nil
	})

	d.Errback(errNotFound)
	// Output:
	// errback: 404 not found
	// recovered with: <html>fallback</html>
}

// Then changes the type of the chain; the Deferred it returns carries on.
func ExampleThen() {
	d := deferred.New[string]()
	n := deferred.Then(d, strconv.Atoi)
	n.AddCallback(func(v int) (int, error) {
		fmt.Println("doubled:", v*2)
		return v, nil
	})
	n.AddErrback(func(f *deferred.Failure) (int, error) {
		fmt.Println("bad number:", f)
		return 0, nil
	})

	d.Callback("21")
	// Output: doubled: 42
}

// A stage that returns a Deferred makes the chain wait for it.
func ExampleDeferred_AddCallbackDeferred() {
	lookup := deferred.New[string]()
	d := deferred.Succeed("example.org")
	d.AddCallbackDeferred(func(host string) *deferred.Deferred[string] {
		fmt.Println("resolving", host)
		return lookup // not fired yet: d waits
	})
	d.AddCallback(func(addr string) (string, error) {
		fmt.Println("address:", addr)
		return addr, nil
	})

	fmt.Println(d.Called(), "- waiting")
	lookup.Callback("192.0.2.1")
	// Output:
	// resolving example.org
	// true - waiting
	// address: 192.0.2.1
}

// Cancel fails a Deferred that nobody will fire any more.
func ExampleDeferred_Cancel() {
	d := deferred.NewWithCanceller(func(d *deferred.Deferred[int]) {
		fmt.Println("canceller: stopping the work")
	})
	d.AddErrback(func(f *deferred.Failure) (int, error) {
		fmt.Println("cancelled:", errors.Is(f, deferred.ErrCancelled))
		return 0, nil
	})
	d.Cancel()
	// Output:
	// canceller: stopping the work
	// cancelled: true
}

// Maybe turns an ordinary call, even one that panics, into a Deferred.
func ExampleMaybe() {
	d := deferred.Maybe(func() (int, error) {
		var ports []int
		return ports[3], nil // panics: index out of range
	})
	d.AddErrback(func(f *deferred.Failure) (int, error) {
		v, panicked := f.PanicValue()
		fmt.Println(panicked, v)
		return 0, nil
	})
	// Output: true runtime error: index out of range [3] with length 0
}

// Chain passes one Deferred's result to another.
func ExampleDeferred_Chain() {
	a, b := deferred.New[int](), deferred.New[int]()
	b.AddCallback(func(v int) (int, error) {
		fmt.Println("b got", v)
		return v, nil
	})
	a.Chain(b)
	a.Callback(7)
	// Output: b got 7
}

func ExampleFailure_Trap() {
	f := deferred.NewFailure(fmt.Errorf("fetch: %w", errNotFound))
	fmt.Println(f.Trap(errNotFound) == nil)
	fmt.Println(f.Trap(deferred.ErrCancelled) == f)
	// Output:
	// true
	// true
}
