// Package bench compares deferred with other ways of doing the same work in
// Go: plain calls (the limit), a goroutine and a channel, errgroup for
// fan-out, and published promise/future modules. Every benchmark has one
// sub-benchmark per implementation, named impl=NAME, so that benchstat can
// put them side by side (see run.sh).
package bench

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/deferred-go/deferred"
	promise "github.com/fanliao/go-promise"
	"github.com/samber/mo"
	"golang.org/x/sync/errgroup"
)

// impl is one implementation of a benchmark's work.
type impl struct {
	name string
	run  func(b *testing.B)
}

// runImpls runs each implementation as a sub-benchmark impl=NAME.
func runImpls(b *testing.B, impls ...impl) {
	for _, im := range impls {
		b.Run("impl="+im.name, func(b *testing.B) {
			b.ReportAllocs()
			im.run(b)
		})
	}
}

// The stages. add1 is not inlined so that the direct calls stay calls.

//go:noinline
func add1(v int) (int, error) { return v + 1, nil }

var errBench = errors.New("bench")

func want(b *testing.B, got, want int) {
	if got != want {
		b.Fatalf("got %d, want %d", got, want)
	}
}

// BenchmarkChain3: three stages on a value that arrives later. Each
// implementation is handed the input through its producer side and runs to
// the final value.
func BenchmarkChain3(b *testing.B) {
	runImpls(b,
		impl{"direct", func(b *testing.B) {
			for b.Loop() {
				v, _ := add1(0)
				v, _ = add1(v)
				v, _ = add1(v)
				want(b, v, 3)
			}
		}},
		impl{"deferred", func(b *testing.B) {
			got := 0
			last := func(v int) (int, error) { got = v + 1; return got, nil }
			for b.Loop() {
				d := deferred.New[int]()
				d.AddCallback(add1).AddCallback(add1).AddCallback(last)
				d.Callback(0)
				want(b, got, 3)
			}
		}},
		impl{"gochan", func(b *testing.B) {
			for b.Loop() {
				in, out := make(chan int, 1), make(chan int, 1)
				go func() {
					v, _ := add1(<-in)
					v, _ = add1(v)
					v, _ = add1(v)
					out <- v
				}()
				in <- 0
				want(b, <-out, 3)
			}
		}},
		impl{"mo", func(b *testing.B) {
			for b.Loop() {
				f := mo.NewFuture(func(resolve func(int), _ func(error)) { resolve(0) }).
					Then(add1).Then(add1).Then(add1)
				v, _ := f.Collect()
				want(b, v, 3)
			}
		}},
		impl{"fanliao", func(b *testing.B) {
			// Pipe's plain-value form: each stage is a task of its own.
			stage := func(v any) (any, error) { return add1(v.(int)) }
			for b.Loop() {
				p := promise.NewPromise()
				f, _ := p.Future.Pipe(stage)
				f, _ = f.Pipe(stage)
				f, _ = f.Pipe(stage)
				p.Resolve(0)
				v, _ := f.Get()
				want(b, v.(int), 3)
			}
		}},
	)
}

// BenchmarkNested3: three stages, each returning a future that already has
// its value (a cache hit, say); the chain takes its value and goes on.
func BenchmarkNested3(b *testing.B) {
	runImpls(b,
		impl{"direct", func(b *testing.B) {
			// The limit: a fired future is just a value.
			for b.Loop() {
				v, _ := add1(0)
				v, _ = add1(v)
				v, _ = add1(v)
				want(b, v, 3)
			}
		}},
		impl{"deferred", func(b *testing.B) {
			next := func(v int) *deferred.Deferred[int] { return deferred.Succeed(v + 1) }
			got := 0
			last := func(v int) *deferred.Deferred[int] { got = v + 1; return deferred.Succeed(got) }
			for b.Loop() {
				d := deferred.New[int]()
				d.AddCallbackDeferred(next).AddCallbackDeferred(next).AddCallbackDeferred(last)
				d.Callback(0)
				want(b, got, 3)
			}
		}},
		impl{"gochan", func(b *testing.B) {
			// A fired future is a buffered channel holding its value.
			next := func(v int) <-chan int {
				c := make(chan int, 1)
				c <- v + 1
				return c
			}
			for b.Loop() {
				in, out := make(chan int, 1), make(chan int, 1)
				go func() {
					v := <-next(<-in)
					v = <-next(v)
					out <- <-next(v)
				}()
				in <- 0
				want(b, <-out, 3)
			}
		}},
		impl{"mo", func(b *testing.B) {
			// mo has no flat-map: a stage waits for the inner Future.
			next := func(v int) (int, error) {
				return mo.NewFuture(func(resolve func(int), _ func(error)) { resolve(v + 1) }).Collect()
			}
			for b.Loop() {
				f := mo.NewFuture(func(resolve func(int), _ func(error)) { resolve(0) }).
					Then(next).Then(next).Then(next)
				v, _ := f.Collect()
				want(b, v, 3)
			}
		}},
		impl{"fanliao", func(b *testing.B) {
			next := func(v any) *promise.Future { return promise.Wrap(v.(int) + 1) }
			for b.Loop() {
				p := promise.NewPromise()
				f, _ := p.Future.Pipe(next)
				f, _ = f.Pipe(next)
				f, _ = f.Pipe(next)
				p.Resolve(0)
				v, _ := f.Get()
				want(b, v.(int), 3)
			}
		}},
	)
}

// BenchmarkFailurePath: a failure passes through two error handlers and
// the third recovers with 1.
func BenchmarkFailurePath(b *testing.B) {
	runImpls(b,
		impl{"direct", func(b *testing.B) {
			pass := func(err error) (int, error) { return 0, err }
			recoverIt := func(error) (int, error) { return 1, nil }
			for b.Loop() {
				err := errBench
				v := 0
				if err != nil {
					v, err = pass(err)
				}
				if err != nil {
					v, err = pass(err)
				}
				if err != nil {
					v, _ = recoverIt(err)
				}
				want(b, v, 1)
			}
		}},
		impl{"deferred", func(b *testing.B) {
			pass := func(f *deferred.Failure) (int, error) { return 0, f }
			got := 0
			recoverIt := func(*deferred.Failure) (int, error) { got = 1; return 1, nil }
			for b.Loop() {
				d := deferred.New[int]()
				d.AddErrback(pass).AddErrback(pass).AddErrback(recoverIt)
				d.Errback(errBench)
				want(b, got, 1)
			}
		}},
		impl{"gochan", func(b *testing.B) {
			pass := func(err error) (int, error) { return 0, err }
			recoverIt := func(error) (int, error) { return 1, nil }
			for b.Loop() {
				in, out := make(chan error, 1), make(chan int, 1)
				go func() {
					err := <-in
					v := 0
					if err != nil {
						v, err = pass(err)
					}
					if err != nil {
						v, err = pass(err)
					}
					if err != nil {
						v, _ = recoverIt(err)
					}
					out <- v
				}()
				in <- errBench
				want(b, <-out, 1)
			}
		}},
		impl{"mo", func(b *testing.B) {
			pass := func(err error) (int, error) { return 0, err }
			recoverIt := func(error) (int, error) { return 1, nil }
			for b.Loop() {
				f := mo.NewFuture(func(_ func(int), reject func(error)) { reject(errBench) }).
					Catch(pass).Catch(pass).Catch(recoverIt)
				v, _ := f.Collect()
				want(b, v, 1)
			}
		}},
		impl{"fanliao", func(b *testing.B) {
			// Pipe needs a success half too; it passes the value on.
			ok := func(v any) *promise.Future { return promise.Wrap(v) }
			pass := func(v any) *promise.Future { return promise.Wrap(v) } // v is the error: stays rejected
			recoverIt := func(any) *promise.Future { return promise.Wrap(1) }
			for b.Loop() {
				p := promise.NewPromise()
				f, _ := p.Future.Pipe(ok, pass)
				f, _ = f.Pipe(ok, pass)
				f, _ = f.Pipe(ok, recoverIt)
				p.Reject(errBench)
				v, _ := f.Get()
				want(b, v.(int), 1)
			}
		}},
	)
}

const fanInputs = 1000

// BenchmarkAll1000: 1,000 inputs, each one add1 away from its value, all
// collected in order. The goroutine-based peers compute each input on a
// goroutine; impl=deferred has 1,000 pending Deferreds (created inside the
// loop), Gather, and a producer that fires them one by one, as an event
// loop would; impl=deferredgo makes each input with deferred.Go (one
// goroutine each) and waits for Gather with Await.
func BenchmarkAll1000(b *testing.B) {
	check := func(b *testing.B, vs []int) {
		if len(vs) != fanInputs || vs[0] != 1 || vs[fanInputs-1] != fanInputs {
			b.Fatalf("wrong results: len %d", len(vs))
		}
	}
	runImpls(b,
		impl{"direct", func(b *testing.B) {
			for b.Loop() {
				vs := make([]int, fanInputs)
				for i := range vs {
					vs[i], _ = add1(i)
				}
				check(b, vs)
			}
		}},
		impl{"deferred", func(b *testing.B) {
			ds := make([]*deferred.Deferred[int], fanInputs)
			var got []int
			keep := func(vs []int) ([]int, error) { got = vs; return vs, nil }
			for b.Loop() {
				for i := range ds {
					ds[i] = deferred.New[int]()
				}
				deferred.Gather(ds...).AddCallback(keep)
				for i, d := range ds {
					v, _ := add1(i)
					d.Callback(v)
				}
				check(b, got)
			}
		}},
		impl{"deferredgo", func(b *testing.B) {
			ctx := context.Background()
			ds := make([]*deferred.Deferred[int], fanInputs)
			for b.Loop() {
				for i := range ds {
					ds[i] = deferred.Go(ctx, func(context.Context) (int, error) { return add1(i) })
				}
				vs, err := deferred.Gather(ds...).Await(ctx)
				if err != nil {
					b.Fatal(err)
				}
				check(b, vs)
			}
		}},
		impl{"gochan", func(b *testing.B) {
			type result struct{ i, v int }
			for b.Loop() {
				ch := make(chan result, fanInputs)
				for i := range fanInputs {
					go func() {
						v, _ := add1(i)
						ch <- result{i, v}
					}()
				}
				vs := make([]int, fanInputs)
				for range fanInputs {
					r := <-ch
					vs[r.i] = r.v
				}
				check(b, vs)
			}
		}},
		impl{"waitgroup", func(b *testing.B) {
			for b.Loop() {
				vs := make([]int, fanInputs)
				var wg sync.WaitGroup
				for i := range fanInputs {
					wg.Go(func() { vs[i], _ = add1(i) })
				}
				wg.Wait()
				check(b, vs)
			}
		}},
		impl{"errgroup", func(b *testing.B) {
			for b.Loop() {
				vs := make([]int, fanInputs)
				var g errgroup.Group
				for i := range fanInputs {
					g.Go(func() (err error) {
						vs[i], err = add1(i)
						return err
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
				check(b, vs)
			}
		}},
		impl{"mo", func(b *testing.B) {
			// mo has no All: start every Future, then collect them in order.
			fs := make([]*mo.Future[int], fanInputs)
			for b.Loop() {
				for i := range fs {
					fs[i] = mo.NewFuture(func(resolve func(int), reject func(error)) {
						if v, err := add1(i); err != nil {
							reject(err)
						} else {
							resolve(v)
						}
					})
				}
				vs := make([]int, fanInputs)
				for i, f := range fs {
					v, err := f.Collect()
					if err != nil {
						b.Fatal(err)
					}
					vs[i] = v
				}
				check(b, vs)
			}
		}},
		impl{"fanliao", func(b *testing.B) {
			// Pending promises, WhenAll, then the producer resolves them.
			ps := make([]*promise.Promise, fanInputs)
			fs := make([]any, fanInputs)
			for b.Loop() {
				for i := range ps {
					ps[i] = promise.NewPromise()
					fs[i] = ps[i].Future
				}
				all := promise.WhenAll(fs...)
				for i, p := range ps {
					v, _ := add1(i)
					p.Resolve(v)
				}
				r, err := all.Get()
				if err != nil {
					b.Fatal(err)
				}
				rs := r.([]any)
				vs := make([]int, len(rs))
				for i, x := range rs {
					vs[i] = x.(int)
				}
				check(b, vs)
			}
		}},
	)
}
