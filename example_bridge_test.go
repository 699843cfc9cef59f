package deferred_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/deferred-go/deferred"
)

// CancelWhen ties a Deferred to a context without a goroutine: the
// Deferred is cancelled if the context ends first, and the context lets it
// go as soon as its result arrives.
func ExampleDeferred_CancelWhen() {
	ctx, stop := context.WithCancel(context.Background())

	fetch := deferred.NewWithCanceller(func(*deferred.Deferred[string]) {
		fmt.Println("fetch stopped")
	}).CancelWhen(ctx)
	done := deferred.New[string]().CancelWhen(ctx)
	_ = done.Callback("done") // fired first: ctx holds nothing of it now

	stop()
	_, err := fetch.Await(context.Background())
	fmt.Println(errors.Is(err, deferred.ErrCancelled), errors.Is(err, context.Canceled))
	v, err := done.Await(context.Background())
	fmt.Println(v, err)
	// Output:
	// fetch stopped
	// true true
	// done <nil>
}

// MaybeDeferred calls a function that returns a Deferred, and turns its
// panic into a failed Deferred, so that the caller has one chain to handle
// both.
func ExampleMaybeDeferred() {
	lookup := func(host string) *deferred.Deferred[string] {
		if host == "" {
			panic("lookup: empty host")
		}
		return deferred.Succeed("192.0.2.1")
	}
	for _, host := range []string{"example.com", ""} {
		deferred.MaybeDeferred(func() *deferred.Deferred[string] { return lookup(host) }).
			AddCallbacks(
				func(addr string) (string, error) {
					fmt.Println("address:", addr)
					return addr, nil
				},
				func(f *deferred.Failure) (string, error) {
					p, _ := f.PanicValue()
					fmt.Println("failed:", p)
					return "", nil
				},
			)
	}
	// Output:
	// address: 192.0.2.1
	// failed: lookup: empty host
}

// AsCompleted ranges over Deferreds in the order they settle. Breaking out
// leaves the others alone: they are not cancelled, and nothing of the
// range stays on them.
func ExampleAsCompleted() {
	replicas := []*deferred.Deferred[string]{
		deferred.New[string](), deferred.New[string](), deferred.New[string](),
	}
	_ = replicas[2].Callback("eu-west: 12ms") // settled before the range begins

	for i, o := range deferred.AsCompleted(context.Background(), replicas...) {
		fmt.Printf("replica %d: %s\n", i, o.Value)
		if i == 2 {
			_ = replicas[0].Callback("us-east: 80ms") // settles while the range runs
			continue
		}
		break // one more answer is enough
	}
	fmt.Println("replica 1 cancelled:", replicas[1].Called())
	// Output:
	// replica 2: eu-west: 12ms
	// replica 0: us-east: 80ms
	// replica 1 cancelled: false
}
