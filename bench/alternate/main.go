// Command alternate measures deferred against the floor (bench/floor) shape
// by shape, alternating the two in one process: many short rounds, each
// timing one side then the other, and the median of the per-round ratios.
// A load that comes and goes on a shared machine then weighs on both sides
// alike, which running one side's benchmark six times and then the
// other's (as go test -count does for bench/run.sh) cannot promise.
//
// Usage, from the bench module (bench/):
//
//	go run ./alternate [-rounds 100] [-round 20ms]
//
// It prints, for each shape, both medians in ns per chain, the median
// ratio with its interquartile range, and the ratio of the two fastest
// rounds.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/bench/floor"
)

func add1(v int) (int, error) { return v + 1, nil }

// A shape is one kind of chain, built and run by each side.
type shape struct {
	name            string
	deferred, floor func()
}

func chain(n int) shape {
	return shape{
		name: fmt.Sprintf("chain of %d stages, then fire", n),
		deferred: func() {
			d := deferred.New[int]()
			for range n {
				d.AddCallback(add1)
			}
			d.Callback(0)
		},
		floor: func() {
			d := new(floor.Deferred[int])
			for range n {
				d.AddCallback(add1)
			}
			d.Callback(0)
		},
	}
}

func addToFired(n int) shape {
	return shape{
		name: fmt.Sprintf("%d stages added to a fired Deferred", n),
		deferred: func() {
			d := deferred.Succeed(0)
			for range n {
				d.AddCallback(add1)
			}
		},
		floor: func() {
			d := new(floor.Deferred[int])
			d.Callback(0)
			for range n {
				d.AddCallback(add1)
			}
		},
	}
}

// timeRound runs f for about d and returns its time per call in ns.
func timeRound(f func(), d time.Duration) float64 {
	const batch = 1000
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for range batch {
			f()
		}
		n += batch
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func main() {
	rounds := flag.Int("rounds", 100, "rounds per shape, each timing both sides")
	round := flag.Duration("round", 20*time.Millisecond, "time per side per round")
	flag.Parse()
	if *rounds < 4 || *round <= 0 {
		fmt.Fprintln(os.Stderr, "alternate: -rounds must be at least 4 and -round positive")
		os.Exit(2)
	}
	shapes := []shape{chain(3), chain(4), chain(5), chain(8), chain(16), chain(64), addToFired(8)}

	fmt.Printf("deferred ÷ floor, alternating: %d rounds of %v per side per shape\n", *rounds, *round)
	fmt.Printf("  %-38s %9s %9s  %6s  %-13s %s\n", "shape", "deferred", "floor", "ratio", "(p25–p75)", "fastest÷fastest")
	for _, s := range shapes {
		s.deferred() // warm both up
		s.floor()
		var ours, theirs, ratios []float64
		for i := range *rounds {
			var a, b float64
			if i%2 == 0 { // alternate which side goes first, too
				a = timeRound(s.deferred, *round)
				b = timeRound(s.floor, *round)
			} else {
				b = timeRound(s.floor, *round)
				a = timeRound(s.deferred, *round)
			}
			ours, theirs, ratios = append(ours, a), append(theirs, b), append(ratios, a/b)
		}
		slices.Sort(ours)
		slices.Sort(theirs)
		slices.Sort(ratios)
		q := func(x []float64, p int) float64 { return x[len(x)*p/100] }
		fmt.Printf("  %-38s %9.1f %9.1f  %5.2f×  (%.2f–%.2f)   %.2f×\n", s.name,
			q(ours, 50), q(theirs, 50), q(ratios, 50), q(ratios, 25), q(ratios, 75), ours[0]/theirs[0])
	}
}
