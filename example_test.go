package deferred_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/deferred-go/deferred"
)

var errTooMany = errors.New("too many items")

// A producer hands out a Deferred and fires it later, here from another
// goroutine; the consumer's stages run, in order, when it does. An error
// travels down the errback side until an errback recovers.
func Example() {
	d := deferred.New[int]()
	go func() { // the producer
		if err := d.Callback(25); err != nil {
			fmt.Println(err) // d had fired already
		}
	}()

	d.AddCallback(func(n int) (int, error) {
		if n > 10 {
			return 0, fmt.Errorf("%d: %w", n, errTooMany)
		}
		return n, nil
	})
	d.AddCallback(func(n int) (int, error) {
		fmt.Println("never runs: the callback before failed")
		return n, nil
	})
	d.AddErrback(func(f *deferred.Failure) (int, error) {
		if err := f.Trap(errTooMany); err != nil {
			return 0, err // not ours: keep failing
		}
		fmt.Println("errback:", f)
		return 10, nil // recovered: the next callback gets 10
	})
	d.AddCallback(func(n int) (int, error) {
		return n * 2, nil
	})

	// Await waits here until the chain has run, and returns its result.
	n, err := d.Await(context.Background())
	fmt.Println(n, err)
	// Output:
	// errback: 25: too many items
	// 20 <nil>
}

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

// ThenDeferred changes the type of the chain with a function that answers
// later: the chain waits for the Deferred it returns.
func ExampleThenDeferred() {
	totals := map[int]*deferred.Deferred[float64]{} // lookups not answered yet
	lookupTotal := func(order int) *deferred.Deferred[float64] {
		fmt.Println("looking up order", order)
		totals[order] = deferred.New[float64]()
		return totals[order]
	}

	d := deferred.New[string]()
	n := deferred.Then(d, strconv.Atoi)          // *Deferred[int]
	sum := deferred.ThenDeferred(n, lookupTotal) // lookupTotal returns *Deferred[float64]
	sum.AddCallback(func(total float64) (float64, error) {
		fmt.Printf("total: %.2f\n", total)
		return total, nil
	})

	_ = d.Callback("42")
	fmt.Println("waiting for the lookup")
	_ = totals[42].Callback(19.99)
	// Output:
	// looking up order 42
	// waiting for the lookup
	// total: 19.99
}

// AddCallbacks adds a callback and an errback at the same level: the
// errback handles a failure from before, never the callback's own error.
func ExampleDeferred_AddCallbacks() {
	parse := func(s string) (string, error) {
		if s == "" {
			return "", errors.New("empty reply")
		}
		return strings.TrimSpace(s), nil
	}
	retry := func(f *deferred.Failure) (string, error) {
		fmt.Println("errback at the same level:", f)
		return "retried", nil
	}
	report := func(f *deferred.Failure) (string, error) {
		fmt.Println("errback of the next level:", f)
		return "", nil
	}

	d := deferred.Succeed("")
	d.AddCallbacks(parse, retry) // parse fails; retry does not see it
	d.AddErrback(report)

	d = deferred.Fail[string](errors.New("connection reset"))
	d.AddCallbacks(parse, retry) // the failure skips parse and reaches retry
	d.AddErrback(report)
	// Output:
	// errback of the next level: empty reply
	// errback at the same level: connection reset
}

// AddBoth runs its function on success and failure alike, like a finally
// clause; the *Failure is nil on success.
func ExampleDeferred_AddBoth() {
	closeConn := func(reply string, f *deferred.Failure) (string, error) {
		fmt.Println("closing the connection, failed:", f != nil)
		if f != nil {
			return "", f // keep failing
		}
		return reply, nil
	}

	ok := deferred.New[string]()
	ok.AddBoth(closeConn)
	_ = ok.Callback("250 OK")

	bad := deferred.New[string]()
	bad.AddBoth(closeConn)
	bad.AddErrback(func(f *deferred.Failure) (string, error) {
		fmt.Println("still failing:", f)
		return "", nil
	})
	_ = bad.Errback(errors.New("421 closing"))
	// Output:
	// closing the connection, failed: false
	// closing the connection, failed: true
	// still failing: 421 closing
}

// Succeed hands out a result that is already there, say from a cache: a
// stage added to it runs at once.
func ExampleSucceed() {
	cache := map[string]string{"example.org": "192.0.2.1"}
	resolve := func(host string) *deferred.Deferred[string] {
		if addr, ok := cache[host]; ok {
			return deferred.Succeed(addr)
		}
		return deferred.New[string]() // a real lookup would fire this later
	}

	resolve("example.org").AddCallback(func(addr string) (string, error) {
		fmt.Println("address:", addr)
		return addr, nil
	})
	fmt.Println("after AddCallback")
	// Output:
	// address: 192.0.2.1
	// after AddCallback
}

// Fail hands out a failure that is already there, say for bad input: an
// errback added to it runs at once.
func ExampleFail() {
	d := deferred.Fail[int](strconv.ErrSyntax)
	d.AddErrback(func(f *deferred.Failure) (int, error) {
		fmt.Println("failed:", f, errors.Is(f, strconv.ErrSyntax))
		return 0, nil
	})
	// Output: failed: invalid syntax true
}

// The canceller stops the work behind a Deferred. If it does not fire the
// Deferred itself, Cancel fails it with ErrCancelled; it may instead fire it,
// here with a partial result.
func ExampleNewWithCanceller() {
	var work *time.Timer
	d := deferred.NewWithCanceller(func(d *deferred.Deferred[string]) {
		fmt.Println("canceller: work stopped:", work.Stop())
	})
	work = time.AfterFunc(time.Hour, func() { _ = d.Callback("done") })
	d.Cancel()
	_, err := d.Await(context.Background())
	fmt.Println(errors.Is(err, deferred.ErrCancelled))

	partial := deferred.NewWithCanceller(func(d *deferred.Deferred[string]) {
		_ = d.Callback("the first 3 of 10 rows")
	})
	partial.Cancel()
	v, err := partial.Await(context.Background())
	fmt.Println(v, err)
	// Output:
	// canceller: work stopped: true
	// true
	// the first 3 of 10 rows <nil>
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

var errDiskFull = errors.New("disk full")

// A Deferred collected by the garbage collector while it still holds a
// failure nobody handled is reported to the unhandled handler.
func ExampleSetUnhandledHandler() {
	reported := make(chan *deferred.Failure, 1)
	previous := deferred.SetUnhandledHandler(func(f *deferred.Failure) {
		if !errors.Is(f, errDiskFull) {
			return // another Deferred's failure: not this example's concern
		}
		select {
		case reported <- f:
		default: // reported already
		}
	})
	defer func() { deferred.SetUnhandledHandler(previous) }() // restore it

	func() {
		d := deferred.New[int]()
		_ = d.Errback(errDiskFull) // no errback handles it, and d is dropped
	}()

	// The report comes after a garbage collection has found d unreachable.
	for range 1000 {
		runtime.GC()
		select {
		case f := <-reported:
			fmt.Println("unhandled:", f)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	fmt.Println("no report after 1000 collections")
	// Output: unhandled: disk full
}
