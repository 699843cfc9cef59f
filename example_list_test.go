package deferred_test

import (
	"errors"
	"fmt"

	"github.com/deferred-go/deferred"
)

// List waits for every input and reports each one's outcome, in the order
// of its arguments, whatever order they settle in.
func ExampleList() {
	primary, mirror := deferred.New[string](), deferred.New[string]()
	deferred.List(primary, mirror).AddCallback(func(out []deferred.Outcome[string]) ([]deferred.Outcome[string], error) {
		for i, o := range out {
			if o.Failure != nil {
				fmt.Printf("%d failed: %v\n", i, o.Failure)
				continue
			}
			fmt.Printf("%d: %s\n", i, o.Value)
		}
		return out, nil
	})

	_ = mirror.Errback(errors.New("connection refused"))
	_ = primary.Callback("index.html")
	// Output:
	// 0: index.html
	// 1 failed: connection refused
}

// Gather fails as soon as one input fails; the *FirstError says which.
func ExampleGather() {
	a, b, c := deferred.New[int](), deferred.New[int](), deferred.New[int]()
	deferred.Gather(a, b, c).AddCallbacks(
		func(sizes []int) ([]int, error) {
			fmt.Println("sizes:", sizes)
			return sizes, nil
		},
		func(f *deferred.Failure) ([]int, error) {
			var first *deferred.FirstError
			if errors.As(f, &first) {
				fmt.Printf("input %d failed first: %v\n", first.Index, first.Failure)
			}
			return nil, nil
		},
	)

	_ = a.Callback(10)
	_ = c.Errback(errors.New("disk full"))
	_ = b.Errback(errors.New("timed out")) // too late: Gather has failed already
	// Output:
	// input 2 failed first: disk full
}

// Race takes the first input to succeed and cancels the others.
func ExampleRace() {
	slow := deferred.NewWithCanceller(func(*deferred.Deferred[string]) {
		fmt.Println("slow replica cancelled")
	})
	fast := deferred.New[string]()
	deferred.Race(slow, fast).AddCallback(func(w deferred.Indexed[string]) (deferred.Indexed[string], error) {
		fmt.Printf("input %d won: %s\n", w.Index, w.Value)
		return w, nil
	})

	_ = fast.Callback("pong")
	// Output:
	// slow replica cancelled
	// input 1 won: pong
}

// GatherFailFast stops the work still in flight as soon as one input
// fails: errgroup's rule, without a goroutine.
func ExampleGatherFailFast() {
	fetch := func(name string) *deferred.Deferred[string] {
		return deferred.NewWithCanceller(func(*deferred.Deferred[string]) {
			fmt.Println("stopped", name)
		})
	}
	a, b, c := fetch("a"), fetch("b"), fetch("c")
	deferred.GatherFailFast(a, b, c).AddErrback(func(f *deferred.Failure) ([]string, error) {
		var first *deferred.FirstError
		if errors.As(f, &first) {
			fmt.Printf("input %d failed first: %v\n", first.Index, first.Failure)
		}
		return nil, nil
	})

	_ = a.Callback("a.txt") // settled: left alone
	_ = b.Errback(errors.New("permission denied"))
	// Output:
	// stopped c
	// input 1 failed first: permission denied
}
