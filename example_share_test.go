package deferred_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/deferred-go/deferred"
)

// Several parts of a program wait for one shutdown signal. Each takes its
// own branch: the race a worker loses cancels its branch, never the shared
// Deferred, which still fires for everyone else.
func ExampleDeferred_Observe() {
	shutdown := deferred.New[string]()

	work := deferred.New[string]()
	first := deferred.Race(work, shutdown.Observe())
	_ = work.Callback("work done")
	r, _ := first.Await(context.Background())
	fmt.Println("race 1 won by input", r.Index, "with", r.Value)
	fmt.Println("shutdown cancelled by the race:", shutdown.Called())

	logged := shutdown.Observe()
	logged.AddCallback(func(reason string) (string, error) {
		fmt.Println("logger sees:", reason)
		return reason, nil
	})
	_ = shutdown.Callback("SIGTERM")
	reason, _ := shutdown.Await(context.Background())
	fmt.Println("shutdown still holds:", reason)
	// Output:
	// race 1 won by input 0 with work done
	// shutdown cancelled by the race: false
	// logger sees: SIGTERM
	// shutdown still holds: SIGTERM
}

// Done fits a Deferred into a select beside other channels; Peek then
// reads the result without taking it.
func ExampleDeferred_Done() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	page := deferred.New[string]()
	go func() { _ = page.Callback("<html>hello</html>") }()

	select {
	case <-page.Done():
		o, _ := page.Peek()
		fmt.Println("fetched:", o.Value)
	case <-ctx.Done():
		fmt.Println("gave up:", ctx.Err())
	}
	// Output:
	// fetched: <html>hello</html>
}

// Peek looks at a result without changing it: a failure it returns is
// still there for the chain, and still counts as unhandled until something
// handles it.
func ExampleDeferred_Peek() {
	errDisk := errors.New("disk on fire")
	d := deferred.Fail[int](errDisk)
	if o, ok := d.Peek(); ok {
		fmt.Println("holds a failure:", errors.Is(o.Failure, errDisk))
	}
	_, err := d.Await(context.Background()) // handles it: no report
	_, again := d.Await(context.Background())
	fmt.Println(err, "/", again)
	_, ok := deferred.New[int]().Peek()
	fmt.Println("a pending Deferred holds a result:", ok)
	// Output:
	// holds a failure: true
	// disk on fire / disk on fire
	// a pending Deferred holds a result: false
}
