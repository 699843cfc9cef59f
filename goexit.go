package deferred

// This file owns what happens when user code calls runtime.Goexit (as
// t.FailNow, t.Fatal and testify's require do) while the library runs it:
// the goroutine leaves, but the Deferred it was running is not left
// running forever. The library's recover sees a Goexit as a deferred call
// that ran without a panic; the chain then goes on, with a failure that
// says so, on the leaving goroutine, before it leaves (Goexit runs the
// deferred calls first and cannot be stopped).

import "errors"

// ErrGoexit is matched (errors.Is) by the failure a chain goes on with
// after one of its stages, or the function given to Then or ThenDeferred,
// or a canceller, called runtime.Goexit: t.FailNow, t.Fatal and testify's
// require do, in a test. The goroutine still leaves; the rest of the chain
// runs first, on it.
var ErrGoexit = errors.New("deferred: a stage called runtime.Goexit (t.FailNow, t.Fatal and require do)")

// goexitFailure is the Failure for a Goexit, with the stack of the deferred
// call that saw it, which still holds the frames of the Goexit site.
func goexitFailure() *Failure {
	f := withStack(3)
	f.err = ErrGoexit
	return f
}

// goOnAfterGoexit ends b, whose current stage called Goexit, as a batch
// that stopped there with ErrGoexit, and runs the rest of d's chain, and
// whatever it leads to, before the goroutine leaves.
func (d *Deferred[T]) goOnAfterGoexit(b *batch[T]) {
	b.v, b.f, b.inner = zeroOf[T](), goexitFailure(), nil
	d.mu.Lock()
	d.endBatchLocked(b)
	d.runAllAndUnlock()
}

// fireCombined fires the Deferred that s's combinator returned, whose
// chain runs user code while d, one of the inputs, is marked running. If
// that code calls Goexit, the combined chain goes on by itself; d's goes
// on here.
func (d *Deferred[T]) fireCombined(s *slot[T]) {
	returned := false
	defer func() {
		if !returned {
			d.mu.Lock()
			d.runAllAndUnlock()
		}
	}()
	s.g.c.fire()
	returned = true
}

// runAloneAndUnlock is add's shortcut: it runs st, a plain stage added to
// d, which has fired and is idle, at once, then what was queued meanwhile,
// and unlocks d.mu. A panic in st becomes d's failure; a Goexit, one that
// matches ErrGoexit, and the chain goes on before the goroutine leaves.
func (d *Deferred[T]) runAloneAndUnlock(st stage[T]) {
	if tracing() { // so that st shows as a region (trace.go)
		d.runAloneTracedAndUnlock(st)
		return
	}
	d.set(running, true)
	v, f := d.value, d.failure
	d.mu.Unlock()
	returned := false
	defer func() {
		if !returned {
			d.recoverAlone(recover(), st)
		}
	}()
	if st.k == kindCallback && f == nil {
		nv, err := ptrFunc[callbackFn[T]](st.p)(v)
		if err != nil {
			v, f = stageFailed[T](nv, err, entry(st.p))
		} else {
			v = nv
		}
	} else {
		f0 := f
		v, f, _ = callStage(st, v, f)
		markHandledIfReplaced(f0, f)
	}
	returned = true
	d.mu.Lock()
	d.value, d.failure = v, f
	if d.head == d.n || d.paused.Load() != 0 { // nothing was queued meanwhile
		// stopRunningAndUnlock, by hand: it does not inline, and the call
		// is 10% of this path's instructions (callgrind, FloorAddToFired).
		d.flags &^= running
		if d.failure != nil || d.x != nil {
			d.tidyLocked()
		}
		d.mu.Unlock()
		return
	}
	d.runAllAndUnlock()
}

// recoverAlone is called by runAloneAndUnlock's deferred function when its
// stage did not return: it panicked with p, or called Goexit (p is nil).
// That becomes d's failure, and d's chain goes on from there.
func (d *Deferred[T]) recoverAlone(p any, st stage[T]) {
	var f *Failure
	if p != nil {
		f = panicFailure(p)
		if st.k != kindPair {
			f.stage = entry(st.p)
		}
	} else {
		f = goexitFailure()
	}
	d.mu.Lock()
	d.value, d.failure = zeroOf[T](), f
	d.runAllAndUnlock()
}

// fireAfterGoexit fires d, Then's Deferred, with f, a Failure matching
// ErrGoexit, because the function given to Then or ThenDeferred called
// Goexit, and runs its chain before the goroutine leaves. takeOver's
// deferred call calls it.
func (d *Deferred[T]) fireAfterGoexit(f *Failure) {
	if n := d.fireOrReport(zeroOf[T](), f); n != nil {
		drive(n, nil)
	}
}
