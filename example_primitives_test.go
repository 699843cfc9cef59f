package deferred_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/deferred-go/deferred"
)

func ExampleLock() {
	var lock deferred.Lock // the zero Lock is unlocked

	lock.Acquire().AddCallback(func(l *deferred.Lock) (*deferred.Lock, error) {
		fmt.Println("first holder")
		return l, nil
	})
	// The lock is held: this Acquire waits for the Release below.
	lock.Acquire().AddCallback(func(l *deferred.Lock) (*deferred.Lock, error) {
		fmt.Println("second holder")
		l.Release()
		return l, nil
	})
	fmt.Println("releasing")
	lock.Release()

	// RunLocked releases the lock once f's Deferred settles.
	done := deferred.RunLocked(&lock, func() *deferred.Deferred[string] {
		return deferred.Succeed("ran under the lock")
	})
	done.AddCallback(func(s string) (string, error) {
		fmt.Println(s, "- locked now:", lock.Locked())
		return s, nil
	})
	// Output:
	// first holder
	// releasing
	// second holder
	// ran under the lock - locked now: false
}

// TryAcquire takes the lock only if it is free now: a caller that has other
// work to do need not wait.
func ExampleLock_TryAcquire() {
	var lock deferred.Lock

	fmt.Println("first try:", lock.TryAcquire())
	fmt.Println("second try:", lock.TryAcquire()) // held: refused, nothing waits
	lock.Acquire().AddCallback(func(l *deferred.Lock) (*deferred.Lock, error) {
		fmt.Println("the waiter has it")
		return l, nil
	})
	lock.Release() // hands the lock to the waiter
	fmt.Println("try while it holds it:", lock.TryAcquire())
	lock.Release()
	fmt.Println("locked:", lock.Locked())
	// Output:
	// first try: true
	// second try: false
	// the waiter has it
	// try while it holds it: false
	// locked: false
}

// TryAcquire takes a token only if one is free now; a Release gives the
// token to a waiting Acquire first.
func ExampleSemaphore_TryAcquire() {
	sem := deferred.NewSemaphore(2)
	fmt.Println(sem.TryAcquire(), sem.TryAcquire(), sem.TryAcquire())
	sem.Acquire().AddCallback(func(s *deferred.Semaphore) (*deferred.Semaphore, error) {
		fmt.Println("waiter got a token; free:", s.Tokens())
		return s, nil
	})
	sem.Release()
	sem.Release()
	fmt.Println("free:", sem.Tokens())
	// Output:
	// true true false
	// waiter got a token; free: 0
	// free: 1
}

func ExampleSemaphore() {
	sem := deferred.NewSemaphore(2) // at most two jobs at once

	jobs := make([]*deferred.Deferred[string], 4)
	for i := range jobs {
		deferred.RunLimited(sem, func() *deferred.Deferred[string] {
			fmt.Println("start", i)
			jobs[i] = deferred.New[string]()
			return jobs[i]
		}).AddCallback(func(s string) (string, error) {
			fmt.Println("done", s)
			return s, nil
		})
	}
	// Jobs 0 and 1 run. A finished job gives its token back (and the next
	// waiting job starts) before its own callbacks see the result.
	_ = jobs[1].Callback("job 1")
	_ = jobs[0].Callback("job 0")
	_ = jobs[2].Callback("job 2")
	_ = jobs[3].Callback("job 3")
	fmt.Println("free tokens:", sem.Tokens())
	// Output:
	// start 0
	// start 1
	// start 2
	// done job 1
	// start 3
	// done job 0
	// done job 2
	// done job 3
	// free tokens: 2
}

// RunLocked runs one function at a time: the next starts when the
// Deferred of the one before has settled.
func ExampleRunLocked() {
	lock := deferred.NewLock()
	write := func(name string, done *deferred.Deferred[string]) *deferred.Deferred[string] {
		return deferred.RunLocked(lock, func() *deferred.Deferred[string] {
			fmt.Println("start", name)
			return done
		}).AddCallback(func(s string) (string, error) {
			fmt.Println("done", s)
			return s, nil
		})
	}

	first := deferred.New[string]()
	write("first", first)
	write("second", deferred.Succeed("second"))
	fmt.Println("waiting for the lock:", lock.Waiting())
	// RunLocked releases the lock as soon as first settles, so second
	// starts before first's own callbacks run.
	_ = first.Callback("first")
	fmt.Println("locked:", lock.Locked())
	// Output:
	// start first
	// waiting for the lock: 1
	// start second
	// done second
	// done first
	// locked: false
}

func ExampleQueue() {
	q := deferred.NewQueue[string](2, 0) // stores at most 2 values; any number of Gets may wait

	// Nothing stored yet: the Get waits for a Put.
	q.Get().AddCallback(func(s string) (string, error) {
		fmt.Println("got", s)
		return s, nil
	})
	_ = q.Put("a") // goes straight to the waiting Get
	_ = q.Put("b") // stored
	_ = q.Put("c") // stored
	if err := q.Put("d"); err != nil {
		fmt.Println("put d:", err)
	}
	q.Get().AddCallback(func(s string) (string, error) {
		fmt.Println("got", s, "at once")
		return s, nil
	})
	fmt.Println("still stored:", q.Len())
	// Output:
	// got a
	// put d: deferred: queue full
	// got b at once
	// still stored: 1
}

// A Queue with no limits stores every value and lets any number of Gets
// wait.
func ExampleQueue_unlimited() {
	handle := func(job string) (string, error) {
		fmt.Println("handling", job)
		return job, nil
	}

	q := deferred.NewQueue[string](0, 0) // no size or backlog limit
	q.Get().AddCallback(handle)          // fires when a value is Put

	fmt.Println("Gets waiting:", q.Waiting())
	if err := q.Put("job 1"); err != nil {
		fmt.Println(err)
	}
	// Output:
	// Gets waiting: 1
	// handling job 1
}

// PutWait gives a producer backpressure: its Deferred fires once the value
// is in the queue, and the producer puts its next value only then. A Get
// that makes room hands it to the waiting producer before the Get's own
// callbacks run.
func ExampleQueue_PutWait() {
	q := deferred.NewQueue[int](2, 0) // stores at most 2 values

	var produce func(n int)
	produce = func(n int) {
		if n > 5 {
			return
		}
		q.PutWait(n).AddCallback(func(struct{}) (struct{}, error) {
			fmt.Println("put", n)
			produce(n + 1)
			return struct{}{}, nil
		})
	}
	produce(1) // puts 1 and 2, then waits for room
	for range 5 {
		q.Get().AddCallback(func(v int) (int, error) {
			fmt.Println("got", v)
			return v, nil
		})
	}
	// Output:
	// put 1
	// put 2
	// put 3
	// got 1
	// put 4
	// got 2
	// put 5
	// got 3
	// got 4
	// got 5
}

// A Pool with a bounded backlog refuses work it has no room for.
func ExampleNewPoolWithBacklog() {
	pool := deferred.NewPoolWithBacklog(1, 1) // one running, one waiting
	ctx := context.Background()
	gate := make(chan struct{})
	work := func(name string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { <-gate; return name, nil }
	}

	a := deferred.Submit(ctx, pool, work("a")) // runs
	b := deferred.Submit(ctx, pool, work("b")) // waits for the slot
	_, err := deferred.Submit(ctx, pool, work("c")).Await(ctx)
	fmt.Println("c refused:", errors.Is(err, deferred.ErrPoolFull))

	close(gate)
	for _, d := range []*deferred.Deferred[string]{a, b} {
		v, err := d.Await(ctx)
		fmt.Println(v, err)
	}
	// Output:
	// c refused: true
	// a <nil>
	// b <nil>
}

// SubmitWait waits for room in the backlog instead of failing: its
// Deferred fires with the Deferred of f's result once f is let in.
func ExampleSubmitWait() {
	pool := deferred.NewPoolWithBacklog(1, 0) // one at a time, none waiting
	ctx := context.Background()
	gate := make(chan struct{})
	first := deferred.Submit(ctx, pool, func(context.Context) (string, error) {
		<-gate
		return "first", nil
	})

	admitted := deferred.SubmitWait(ctx, pool, func(context.Context) (string, error) {
		return "second", nil
	})
	fmt.Println("second let in:", admitted.Called())
	second := deferred.ThenDeferred(admitted, func(result *deferred.Deferred[string]) *deferred.Deferred[string] {
		return result // continue with f's result
	})

	close(gate) // first returns; its slot goes to second
	for _, d := range []*deferred.Deferred[string]{first, second} {
		v, err := d.Await(ctx)
		fmt.Println(v, err)
	}
	// Output:
	// second let in: false
	// first <nil>
	// second <nil>
}
