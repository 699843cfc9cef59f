package deferred

import (
	"errors"
	"testing"
)

func add1(v int) (int, error) { return v + 1, nil }

// BenchmarkChain3: New, three callbacks, fire.
func BenchmarkChain3(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		d := New[int]()
		d.AddCallback(add1).AddCallback(add1).AddCallback(add1)
		d.Callback(0)
	}
}

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
