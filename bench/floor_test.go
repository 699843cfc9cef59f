package bench

import (
	"strconv"
	"sync"
	"testing"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/bench/floor"
)

// The floor benchmarks measure deferred against floor, a minimal
// goroutine-safe deferred (bench/floor), for each shape of chain: n stages
// added to a pending Deferred and then fired, stages added one by one to a
// fired one, and stages added by eight goroutines while a ninth fires.

// BenchmarkFloorChain: New, n callbacks, fire. (5 is the first shape
// whose spill outgrows the block in extra.)
func BenchmarkFloorChain(b *testing.B) {
	for _, n := range []int{3, 4, 5, 8, 16, 64} {
		b.Run("stages="+strconv.Itoa(n), func(b *testing.B) {
			runImpls(b,
				impl{"deferred", func(b *testing.B) {
					for b.Loop() {
						d := deferred.New[int]()
						for range n {
							d.AddCallback(add1)
						}
						d.Callback(0)
					}
				}},
				impl{"floor", func(b *testing.B) {
					for b.Loop() {
						d := new(floor.Deferred[int])
						for range n {
							d.AddCallback(add1)
						}
						d.Callback(0)
					}
				}},
			)
		})
	}
}

// BenchmarkFloorAddToFired: a fired Deferred, then eight callbacks, each
// run as it is added.
func BenchmarkFloorAddToFired(b *testing.B) {
	const n = 8
	runImpls(b,
		impl{"deferred", func(b *testing.B) {
			for b.Loop() {
				d := deferred.Succeed(0)
				for range n {
					d.AddCallback(add1)
				}
			}
		}},
		impl{"floor", func(b *testing.B) {
			for b.Loop() {
				d := new(floor.Deferred[int])
				d.Callback(0)
				for range n {
					d.AddCallback(add1)
				}
			}
		}},
	)
}

// BenchmarkFloorContended: eight goroutines add 1,000 callbacks each while
// a ninth fires the Deferred; the time is the wall time of the whole.
func BenchmarkFloorContended(b *testing.B) {
	const adders, per = 8, 1000
	run := func(b *testing.B, add func(), fire func(), check func() int) {
		var start, done sync.WaitGroup
		start.Add(1)
		done.Add(adders + 1)
		for range adders {
			go func() {
				defer done.Done()
				start.Wait()
				for range per {
					add()
				}
			}()
		}
		go func() {
			defer done.Done()
			start.Wait()
			fire()
		}()
		start.Done()
		done.Wait()
		if got := check(); got != adders*per {
			b.Fatalf("got %d, want %d", got, adders*per)
		}
	}
	runImpls(b,
		impl{"deferred", func(b *testing.B) {
			for b.Loop() {
				d := deferred.New[int]()
				run(b, func() { d.AddCallback(add1) }, func() { d.Callback(0) }, func() int {
					got := -1
					d.AddCallback(func(v int) (int, error) { got = v; return v, nil })
					return got
				})
			}
		}},
		impl{"floor", func(b *testing.B) {
			for b.Loop() {
				d := new(floor.Deferred[int])
				run(b, func() { d.AddCallback(add1) }, func() { d.Callback(0) }, func() int {
					v, _ := d.Value()
					return v
				})
			}
		}},
	)
}
