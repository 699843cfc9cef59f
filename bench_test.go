package deferred

import (
	"errors"
	"fmt"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Benchmarks of the core and its helpers. Each reports allocations; the
// per-unit metrics (ns/stage, ns/input, ns/level) let costs of different
// sizes be compared directly. bench/ compares the same work with other
// libraries; bench/run.sh runs both and tabulates them.

func add1(v int) (int, error) { return v + 1, nil }

// BenchmarkFire0: New and Callback with no stage: the floor under every
// other benchmark, and most of what each input of Gather1000 costs.
func BenchmarkFire0(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		d := New[int]()
		d.Callback(0)
	}
}

// BenchmarkChain3: New, three callbacks, fire.
func BenchmarkChain3(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		d := New[int]()
		d.AddCallback(add1).AddCallback(add1).AddCallback(add1)
		d.Callback(0)
	}
}

// BenchmarkChain3Tracked: Chain3 with the pending profile at rate 0 (off,
// the default), 100 (1 Deferred in 100 recorded) and 1 (every Deferred
// recorded with its creation stack, then taken out of the profile as it
// fires). Rate 0 against BenchmarkChain3 of the commit before tracking is
// the cost of the off switch; rate 1 is the cost of tracking a Deferred.
func BenchmarkChain3Tracked(b *testing.B) {
	for _, rate := range []int{0, 100, 1} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			b.ReportAllocs()
			prev := SetPendingProfileFraction(rate)
			defer SetPendingProfileFraction(prev)
			for b.Loop() {
				d := New[int]()
				d.AddCallback(add1).AddCallback(add1).AddCallback(add1)
				d.Callback(0)
			}
		})
	}
}

// BenchmarkPprofAddRemove: what runtime/pprof itself charges for one
// Deferred in the pending profile, Profile.Add (which walks the whole
// stack, 32 frames at most) and Profile.Remove, called as deep as New
// calls it in BenchmarkChain3Tracked. A hundredth of it is the least that
// rate 100 can add to a Deferred, whatever the library does around it.
func BenchmarkPprofAddRemove(b *testing.B) {
	p := benchProfile()
	b.ReportAllocs()
	for b.Loop() {
		r := benchNewRecord(p)
		p.Remove(r)
	}
}

var benchProfileOnce = sync.OnceValue(func() *pprof.Profile {
	return pprof.NewProfile("github.com/deferred-go/deferred.benchmark")
})

func benchProfile() *pprof.Profile { return benchProfileOnce() }

// benchNewRecord and benchTrack stand for New and track.
//
//go:noinline
func benchNewRecord(p *pprof.Profile) *pending {
	r := new(pending)
	benchTrack(p, r)
	return r
}

//go:noinline
func benchTrack(p *pprof.Profile, r *pending) { p.Add(r, 2) }

// BenchmarkChain3Fired: stages added after the fire.
func BenchmarkChain3Fired(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		d := Succeed(0)
		d.AddCallback(add1).AddCallback(add1).AddCallback(add1)
	}
}

// BenchmarkNested3: three stages each returning an already-fired Deferred.
func BenchmarkNested3(b *testing.B) {
	b.ReportAllocs()
	next := func(v int) *Deferred[int] { return Succeed(v + 1) }
	for b.Loop() {
		d := New[int]()
		d.AddCallbackDeferred(next).AddCallbackDeferred(next).AddCallbackDeferred(next)
		d.Callback(0)
	}
}

var errBench = errors.New("bench")

// BenchmarkFailurePath: Errback through three errbacks, the last recovering.
func BenchmarkFailurePath(b *testing.B) {
	b.ReportAllocs()
	pass := func(f *Failure) (int, error) { return 0, f }
	recoverIt := func(f *Failure) (int, error) { return 1, nil }
	for b.Loop() {
		d := New[int]()
		d.AddErrback(pass).AddErrback(pass).AddErrback(recoverIt)
		d.Errback(errBench)
	}
}

// BenchmarkFailurePathPrewrapped is BenchmarkFailurePath fired with a
// ready *Failure, which Errback takes as is: the difference between the two
// is the cost of wrapping an error (the stack capture).
func BenchmarkFailurePathPrewrapped(b *testing.B) {
	b.ReportAllocs()
	pass := func(f *Failure) (int, error) { return 0, f }
	recoverIt := func(f *Failure) (int, error) { return 1, nil }
	f := NewFailure(errBench)
	for b.Loop() {
		d := New[int]()
		d.AddErrback(pass).AddErrback(pass).AddErrback(recoverIt)
		d.Errback(f)
	}
}

// BenchmarkThen3: a pending Deferred, three Then stages changing the type
// each time (int -> int64 -> float64 -> string), then the fire.
func BenchmarkThen3(b *testing.B) {
	b.ReportAllocs()
	toInt64 := func(v int) (int64, error) { return int64(v) + 1, nil }
	toFloat := func(v int64) (float64, error) { return float64(v) + 1, nil }
	toString := func(v float64) (string, error) {
		if v == 2 {
			return "two", nil
		}
		return "other", nil
	}
	for b.Loop() {
		d := New[int]()
		s := Then(Then(Then(d, toInt64), toFloat), toString)
		d.Callback(0)
		_ = s
	}
}

// BenchmarkChainPending compares stages queued on a pending Deferred and run
// by the fire with stages run one by one as they are added to a fired one.
func BenchmarkChainPending(b *testing.B) {
	const stages = 100
	b.Run("added=before", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := New[int]()
			for range stages {
				d.AddCallback(add1)
			}
			d.Callback(0)
		}
		reportPer(b, stages, "ns/stage")
	})
	b.Run("added=after", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := New[int]()
			d.Callback(0)
			for range stages {
				d.AddCallback(add1)
			}
		}
		reportPer(b, stages, "ns/stage")
	})
}

// reportPer reports the time of one unit of work when each op does n.
func reportPer(b *testing.B, n int, unit string) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), unit)
}

const fanInputs = 1000

// pendingInputs fills ds with new pending Deferreds.
func pendingInputs(ds []*Deferred[int]) {
	for i := range ds {
		ds[i] = New[int]()
	}
}

// benchFanIn times combine over 1,000 new pending inputs, then every input
// fired in order, and reports ns/input. With madeUntimed, the inputs are
// made while the timer is stopped.
func benchFanIn(b *testing.B, name string, madeUntimed bool, combine func(...*Deferred[int]) interface{ Called() bool }) {
	ds := make([]*Deferred[int], fanInputs)
	b.ReportAllocs()
	for b.Loop() {
		if madeUntimed {
			b.StopTimer()
		}
		pendingInputs(ds)
		if madeUntimed {
			b.StartTimer()
		}
		c := combine(ds...)
		for i, d := range ds {
			d.Callback(i)
		}
		if !c.Called() {
			b.Fatal(name + " did not fire")
		}
	}
	reportPer(b, fanInputs, "ns/input")
}

// BenchmarkGather1000: 1,000 new pending inputs, Gather, then every input
// fired. The cost of creating the inputs is included (ns/input is per
// input, everything counted).
func BenchmarkGather1000(b *testing.B) {
	benchFanIn(b, "Gather", false, func(ds ...*Deferred[int]) interface{ Called() bool } { return Gather(ds...) })
}

// BenchmarkGather1000Pending is Gather's own cost: the 1,000 inputs are
// made while the timer is stopped, so what is timed is Gather and the
// inputs' Callbacks, each running Gather's stage.
func BenchmarkGather1000Pending(b *testing.B) {
	benchFanIn(b, "Gather", true, func(ds ...*Deferred[int]) interface{ Called() bool } { return Gather(ds...) })
}

// BenchmarkList1000 is BenchmarkGather1000 for List.
func BenchmarkList1000(b *testing.B) {
	benchFanIn(b, "List", false, func(ds ...*Deferred[int]) interface{ Called() bool } { return List(ds...) })
}

// BenchmarkRace1000: 1,000 new pending inputs, Race, then every input
// fired in order: the first wins and Race cancels the 999 others, whose
// later Callbacks are then ignored.
func BenchmarkRace1000(b *testing.B) {
	benchFanIn(b, "Race", false, func(ds ...*Deferred[int]) interface{ Called() bool } { return Race(ds...) })
}

// BenchmarkSemaphoreHandoff: one token, always held. Each op is an Acquire
// that has to wait and the Release that hands the token to it, running its
// callback.
func BenchmarkSemaphoreHandoff(b *testing.B) {
	s := NewSemaphore(1)
	s.Acquire()
	got := 0
	count := func(s *Semaphore) (*Semaphore, error) { got++; return s, nil }
	b.ReportAllocs()
	for b.Loop() {
		s.Acquire().AddCallback(count)
		s.Release()
	}
	if got != b.N {
		b.Fatalf("%d hand-offs, want %d", got, b.N)
	}
	s.Release()
}

// BenchmarkSemaphoreFree: Acquire with a token free (fires at once), then
// Release with nobody waiting.
func BenchmarkSemaphoreFree(b *testing.B) {
	s := NewSemaphore(1)
	b.ReportAllocs()
	for b.Loop() {
		s.Acquire()
		s.Release()
	}
}

// BenchmarkQueueHandoff: each op is a Get on an empty queue, which waits,
// and the Put that hands it the value, running its callback.
func BenchmarkQueueHandoff(b *testing.B) {
	q := NewQueue[int](0, 0)
	sum := 0
	take := func(v int) (int, error) { sum += v; return v, nil }
	b.ReportAllocs()
	for b.Loop() {
		q.Get().AddCallback(take)
		q.Put(1)
	}
	if sum != b.N {
		b.Fatalf("%d values handed over, want %d", sum, b.N)
	}
}

// BenchmarkQueueStored: Put with nobody waiting, then a Get that takes the
// stored value at once.
func BenchmarkQueueStored(b *testing.B) {
	q := NewQueue[int](0, 0)
	b.ReportAllocs()
	for b.Loop() {
		q.Put(1)
		q.Get()
	}
}

// BenchmarkNestedDeep builds levels Deferreds, each waiting on the next
// (its stage returns the next one, still pending), fires the innermost and
// lets the result unwind to the outermost. ns/level should not grow with
// depth: the unwinding is a loop, and each level costs the same.
// unwind-ns/level counts the unwinding alone (the fire of the innermost),
// ns/level everything. Both include the garbage collector's work, which
// grows with the live chain.
func BenchmarkNestedDeep(b *testing.B) {
	for _, levels := range []int{1e4, 1e5, 1e6} {
		b.Run(fmt.Sprintf("levels=1e%d", len(strconv.Itoa(levels))-1), func(b *testing.B) {
			b.ReportAllocs()
			var unwind time.Duration
			ds := make([]*Deferred[int], levels+1)
			for b.Loop() {
				got := -1
				// Each level gets its stage before the one outside links to
				// it (a stage added after the link would run after the
				// hand-over, as in Twisted).
				for i := range ds {
					ds[i] = New[int]()
				}
				for i := range levels {
					next := ds[i+1]
					ds[i].AddCallbackDeferred(func(int) *Deferred[int] { return next })
				}
				ds[0].AddCallback(func(v int) (int, error) { got = v; return v, nil })
				for i := range levels {
					ds[i].Callback(0) // ds[i] now waits on ds[i+1]
				}
				cur := ds[levels]
				clear(ds)
				t0 := time.Now()
				cur.Callback(levels)
				unwind += time.Since(t0)
				if got != levels {
					b.Fatalf("outermost got %d, want %d", got, levels)
				}
			}
			reportPer(b, levels, "ns/level")
			b.ReportMetric(float64(unwind.Nanoseconds())/float64(b.N)/float64(levels), "unwind-ns/level")
		})
	}
}

// BenchmarkContended: one Deferred, stages added by several goroutines
// while another fires it. With adders=8, eight goroutines add 1,000 stages
// each while a ninth fires; whoever finds the chain running only queues its
// stage, so the firing goroutine may run most of them. adders=1 is the same
// with one adding goroutine; uncontended does the same work on one
// goroutine (4,000 stages before the fire, 4,000 after). ns/stage compares
// them directly.
func BenchmarkContended(b *testing.B) {
	const total = 8000
	for _, adders := range []int{8, 1} {
		b.Run("adders="+strconv.Itoa(adders), func(b *testing.B) {
			per := total / adders
			b.ReportAllocs()
			for b.Loop() {
				d := New[int]()
				var start, done sync.WaitGroup
				start.Add(1)
				done.Add(adders + 1)
				for range adders {
					go func() {
						defer done.Done()
						start.Wait()
						for range per {
							d.AddCallback(add1)
						}
					}()
				}
				go func() {
					defer done.Done()
					start.Wait()
					d.Callback(0)
				}()
				start.Done()
				done.Wait()
				checkContended(b, d, total)
			}
			reportPer(b, total, "ns/stage")
		})
	}
	b.Run("uncontended", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d := New[int]()
			for range total / 2 {
				d.AddCallback(add1)
			}
			d.Callback(0)
			for range total / 2 {
				d.AddCallback(add1)
			}
			checkContended(b, d, total)
		}
		reportPer(b, total, "ns/stage")
	})
}

// checkContended checks that every one of the stages ran exactly once.
// Once all adders are done and the fire has returned, the chain is idle:
// the last stage added ran before its adder or the firer returned.
func checkContended(b *testing.B, d *Deferred[int], stages int) {
	got := -1
	d.AddCallback(func(v int) (int, error) { got = v; return v, nil })
	if got != stages {
		b.Fatalf("chain value %d, want %d (one per stage)", got, stages)
	}
}

// BenchmarkGoroutineChannel3 is the baseline: three steps in a goroutine,
// the result over a channel.
func BenchmarkGoroutineChannel3(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ch := make(chan int, 1)
		go func() {
			v, _ := add1(0)
			v, _ = add1(v)
			v, _ = add1(v)
			ch <- v
		}()
		<-ch
	}
}

// BenchmarkNestedDeepInsideOut builds a nest from the inside out: each new
// Deferred's stage returns the last one made, which already waits for the
// one before. ns/level should not grow with depth: checking that a link
// closes no cycle walks the shorter of the two lines it joins (the new
// Deferred's, of one), not the whole nest.
func BenchmarkNestedDeepInsideOut(b *testing.B) {
	for _, levels := range []int{1e4, 1e5} {
		b.Run(fmt.Sprintf("levels=1e%d", len(strconv.Itoa(levels))-1), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got := -1
				inner := New[int]()
				last := inner
				for range levels {
					prev := last
					last = New[int]()
					last.AddCallbackDeferred(func(int) *Deferred[int] { return prev })
					last.Callback(0) // last now waits on prev
				}
				last.AddCallback(func(v int) (int, error) { got = v; return v, nil })
				inner.Callback(levels)
				if got != levels {
					b.Fatalf("outermost got %d, want %d", got, levels)
				}
			}
			reportPer(b, levels, "ns/level")
		})
	}
}
