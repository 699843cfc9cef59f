package deferred_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/deferred-go/deferred"
)

func ExampleDeferred_AddTimeout() {
	// A result that never comes: the timeout cancels the Deferred and the
	// cancellation's failure becomes a timeout, in Go's vocabulary too.
	never := deferred.New[string]().AddTimeout(10 * time.Millisecond)
	_, err := never.Await(context.Background())
	var te interface{ Timeout() bool }
	fmt.Println(err)
	fmt.Println(errors.Is(err, deferred.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &te) && te.Timeout())

	// A result in time stops the timer and passes unchanged.
	soon := deferred.Later(time.Millisecond, func() (string, error) { return "in time", nil })
	v, err := soon.AddTimeout(time.Hour).Await(context.Background())
	fmt.Println(v, err)
	// Output:
	// deferred: AddTimeout: timed out after 10ms
	// true true true
	// in time <nil>
}

func ExampleDeferred_AddTimeoutFunc() {
	// A price that does not come in time: the last known one stands in.
	price := deferred.New[float64]() // its producer is slow today
	price.AddTimeoutFunc(10*time.Millisecond, func(f *deferred.Failure) (float64, error) {
		fmt.Println("falling back:", f)
		return 9.99, nil
	})
	v, err := price.Await(context.Background())
	fmt.Println(v, err)
	// Output:
	// falling back: deferred: AddTimeoutFunc: timed out after 10ms
	// 9.99 <nil>
}

func ExampleDeferred_Await() {
	d := deferred.Later(time.Millisecond, func() (int, error) { return 20, nil })
	d.AddCallback(func(v int) (int, error) { return v + 1, nil })

	// Await blocks this goroutine, not the chain, and takes the result.
	v, err := d.Await(context.Background())
	fmt.Println(v, err)

	// A context that ends first cancels the Deferred.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = deferred.New[int]().Await(ctx)
	fmt.Println(err)
	// Output:
	// 21 <nil>
	// context canceled
}

func ExampleLater() {
	d := deferred.Later(time.Millisecond, func() (string, error) { return "", errors.New("too late") })
	_, err := d.Await(context.Background())
	fmt.Println(err)

	// Cancelled before its time: the function never runs.
	d = deferred.Later(time.Hour, func() (string, error) { panic("never called") })
	d.Cancel()
	_, err = d.Await(context.Background())
	fmt.Println(errors.Is(err, deferred.ErrCancelled))
	// Output:
	// too late
	// true
}

func ExampleGo() {
	d := deferred.Go(context.Background(), func(ctx context.Context) (string, error) {
		return strings.ToUpper("fetched"), nil // work done on another goroutine
	})
	d.AddCallback(func(s string) (string, error) { return s + "!", nil })
	v, err := d.Await(context.Background())
	fmt.Println(v, err)

	// Cancel cancels the function's context; the Deferred fails at once.
	slow := deferred.Go(context.Background(), func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	slow.Cancel()
	_, err = slow.Await(context.Background())
	fmt.Println(errors.Is(err, deferred.ErrCancelled))
	// Output:
	// FETCHED! <nil>
	// true
}

func ExamplePool() {
	// At most two functions run at once; the rest wait their turn.
	pool := deferred.NewPool(2)
	var mu sync.Mutex
	running, most := 0, 0
	square := func(n int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			defer func() { mu.Lock(); running--; mu.Unlock() }()
			return n * n, nil
		}
	}

	var ds []*deferred.Deferred[int]
	for n := 1; n <= 5; n++ {
		ds = append(ds, deferred.Submit(context.Background(), pool, square(n)))
	}
	var squares []int
	for _, d := range ds {
		v, _ := d.Await(context.Background())
		squares = append(squares, v)
	}
	pool.Wait()
	fmt.Println(squares, "at most 2 at once:", most <= 2)
	// Output:
	// [1 4 9 16 25] at most 2 at once: true
}
