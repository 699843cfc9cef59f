package deferred

// This file owns the runner: the one loop that runs a Deferred's stages,
// and the driver that moves from one Deferred to the next. The rules it
// keeps:
//
//   - Whoever sets d's running flag runs d's stages; everybody else only
//     queues stages and leaves. d.mu is never held while user code runs.
//   - Before clearing running, the runner checks under d.mu that nothing
//     is left that it could run, so a stage queued meanwhile is never lost.
//   - Moving from one Deferred to the next (an inner Deferred finishing, a
//     Chain target, a Then hand-over) returns the next node to drive
//     instead of calling into it, so chains of any length and depth run in
//     a loop on a fixed-size goroutine stack (Twisted's _chainedTo
//     trampoline).
//
// Lock contracts are in the names: a function ending in Locked expects
// d.mu held and returns with it held (it may release it meanwhile, as
// runBatchLocked does while stages run); one ending in Unlock expects it
// held and returns with it released.

// A node is a Deferred of any type, as seen by the driver.
type node interface {
	// start runs the node's chain if it is runnable and nobody runs it,
	// and returns the node to drive next (or nil) and a node to come back
	// to once that one is done (or nil).
	start() (next, back node)
	// resume is start for a Deferred whose running flag the driver still
	// holds: its chain was set aside while another one's ran first.
	resume() (next, back node)
}

// drive runs next, then back, and everything they lead to.
func drive(next, back node) {
	var stack []node // nodes to come back to, innermost last
	if back != nil {
		stack = append(stack, back)
	}
	driveFrom(next, false, stack)
}

// driveFrom is drive with next owned (resumed rather than started) or not,
// and the nodes to come back to so far.
func driveFrom(next node, owned bool, stack []node) {
	returned := false
	defer func() {
		if !returned && len(stack) > 0 {
			// A stage called runtime.Goexit. Its own chain went on from the
			// runner's recover (goOnAfterGoexit); the nodes this driver was
			// to come back to go on here, before the goroutine leaves.
			n := stack[len(stack)-1]
			driveFrom(n, true, stack[:len(stack)-1])
		}
	}()
	for {
		for next != nil {
			var b node
			if owned {
				next, b = next.resume()
				owned = false
			} else {
				next, b = next.start()
			}
			if b != nil {
				stack = append(stack, b)
			}
		}
		if len(stack) == 0 {
			returned = true
			return
		}
		next, owned = stack[len(stack)-1], true
		stack[len(stack)-1] = nil
		stack = stack[:len(stack)-1]
	}
}

// startLater is a node to come back to whose running flag the driver does
// not hold: its resume is start. (A struct of one pointer is stored in an
// interface without allocating.)
type startLater[T any] struct{ d *Deferred[T] }

func (s startLater[T]) start() (next, back node)  { return s.d.start() }
func (s startLater[T]) resume() (next, back node) { return s.d.start() }

// start implements node.
func (d *Deferred[T]) start() (next, back node) {
	d.mu.Lock()
	return d.startAndUnlock()
}

// startAndUnlock is start with d.mu held: it runs d's chain if it is
// runnable and nobody else runs it, and unlocks d.mu.
func (d *Deferred[T]) startAndUnlock() (next, back node) {
	if !d.runnableLocked() {
		d.noteIdleLocked()
		d.mu.Unlock()
		return nil, nil
	}
	d.set(running, true)
	return d.runAndUnlock()
}

// resume implements node.
func (d *Deferred[T]) resume() (next, back node) {
	d.mu.Lock()
	return d.runAndUnlock()
}

// runnableLocked reports whether d has stages the runner could run now.
func (d *Deferred[T]) runnableLocked() bool {
	return d.flags&(called|running) == called && d.paused.Load() == 0 && d.waitingLocked() == nil &&
		d.head < d.n
}

// noteIdleLocked arms the unhandled-failure report of a Deferred the
// runner found nothing to run on: a failure held there is unhandled until
// a stage comes for it.
func (d *Deferred[T]) noteIdleLocked() {
	if d.flags&(called|running|cleanupArmed) == called && d.failure != nil && d.waitingLocked() == nil {
		d.armCleanupLocked()
	}
	if d.x != nil && d.x.rare != nil {
		d.noteDoneLocked()
	}
}

// runAndUnlockIfIdle runs d's chain on this goroutine if it is runnable
// and nobody else runs it, and unlocks d.mu.
func (d *Deferred[T]) runAndUnlockIfIdle() {
	if next, back := d.startAndUnlock(); next != nil || back != nil {
		drive(next, back)
	}
}

// runFiredAndUnlock is runAndUnlockIfIdle for a Deferred the caller has
// just fired: nobody runs it yet and it waits for nothing, so only a pause
// or an empty queue keeps it from running. (Skipping the other checks
// saves each fan-in input about 15 instructions, 2% of Gather1000's,
// callgrind.)
func (d *Deferred[T]) runFiredAndUnlock() {
	if d.head == d.n || d.paused.Load() != 0 {
		d.noteIdleLocked()
		d.mu.Unlock()
		return
	}
	d.set(running, true)
	if next, back := d.runAndUnlock(); next != nil || back != nil {
		drive(next, back)
	}
}

// runAllAndUnlock runs d's chain, which this goroutine holds the running
// flag of, and everything it leads to, and unlocks d.mu.
func (d *Deferred[T]) runAllAndUnlock() {
	if next, back := d.runAndUnlock(); next != nil || back != nil {
		drive(next, back)
	}
}

// runAndUnlock is the runner: it runs d's stages, in order, until none is
// left, d is paused, or d's chain must wait for, or move to, another
// Deferred; it then returns the node to drive next and the node to come
// back to, as node.start does. d is marked running on entry. On return d.mu
// is released and d is no longer running, unless d itself is returned as
// back (it still holds its running flag then, for resume).
//
// Stages that run user code run in batches without the lock
// (runBatchLocked). The stages the library adds are handled here, under
// the lock, when they reach the head of the queue.
func (d *Deferred[T]) runAndUnlock() (next, back node) {
	if d.is(cleanupArmed) {
		d.disarmCleanupLocked() // a stage is about to see the failure
	}
	for d.paused.Load() == 0 && d.head < d.n {
		st := d.stageLocked(d.head)
		switch st.k {
		case kindFanIn:
			// An input of List, Gather or Race: recording its result runs no
			// user code, so it is done under the lock, which spares the input
			// a lock round trip (42% of Gather1000Pending's instructions,
			// callgrind, as measured in the core before this one).
			d.popLocked()
			s := (*slot[T])(st.p)
			f0 := d.failure
			var fire bool
			d.value, d.failure, fire = s.record(d.value, f0)
			markHandledIfReplaced(f0, d.failure) // List and Race consume failures
			if fire {
				// The combined Deferred's chain runs user code: without the
				// lock, and before the rest of d's, as in Twisted. d stays
				// running meanwhile.
				d.mu.Unlock()
				d.fireCombined(s)
				d.mu.Lock()
			}
		case kindThen:
			// Then's hand-over, always the last stage: the result moves to
			// the Deferred Then returned. Taking it here, not in a batch,
			// saves Then3 17% of its instructions (callgrind, as measured in
			// the core before this one).
			d.popLocked()
			v, f := d.takeResultLocked()
			d.set(running, false)
			d.mu.Unlock()
			return (*(*thenTarget[T])(st.p)).takeOver(v, f), nil
		case kindWaiter:
			// Another Deferred waits for d's result at this point. As in
			// Twisted, its chain goes on first, then the rest of d's, and d
			// is not running meanwhile: a stage of the waiting chain that
			// adds to d runs d's rest there and then.
			d.popLocked()
			v, f := d.takeResultLocked()
			d.set(waitedFor, false)
			more := d.head < d.n
			d.set(running, false)
			if !more && d.x != nil && d.x.rare != nil {
				d.noteDoneLocked() // d holds the zero value now
			}
			d.mu.Unlock()
			if more {
				return (*Deferred[T])(st.p).deliver(v, f), startLater[T]{d}
			}
			return (*Deferred[T])(st.p).deliver(v, f), nil
		case kindBranch:
			// A branch that Observe made: it fires with d's result as it
			// stands, and its chain runs before the rest of d's, as a Chain
			// target's does. d keeps its result. A branch cancelled
			// meanwhile refuses the firing; d's result is not its concern.
			d.popLocked()
			v, f := d.value, d.failure
			d.mu.Unlock()
			if b, _ := (*Deferred[T])(st.p).fireByLibrary(v, f); b != nil {
				return b, d
			}
			d.mu.Lock()
		case kindChain:
			// other's chain runs before the rest of d's, as in Twisted, but
			// from the driver. d stays running meanwhile, so stages added to
			// d by other's chain wait their turn.
			d.popLocked()
			v, f := d.takeResultLocked()
			d.mu.Unlock()
			other, err := (*Deferred[T])(st.p).fireByLibrary(v, f)
			if other != nil {
				return other, d
			}
			d.mu.Lock()
			if err != nil {
				d.failure = failureOf(err)
			}
		default:
			if inner := d.runBatchLocked(); inner != nil {
				d.setWaitingLocked(inner)
				d.set(running, false)
				d.mu.Unlock()
				return link(d, inner), nil
			}
		}
	}
	d.stopRunningAndUnlock()
	return nil, nil
}

// stopRunningAndUnlock ends a run that leaves d with nothing it can run:
// a failure d holds is now unhandled until a stage comes for it, and side
// storage that held only stages is let go, so that a Deferred kept after
// firing keeps no more than its own 80 bytes.
func (d *Deferred[T]) stopRunningAndUnlock() {
	d.flags &^= running
	if d.failure != nil || d.x != nil {
		d.tidyLocked()
	}
	d.mu.Unlock()
}

// tidyLocked is stopRunningAndUnlock's rarer work.
func (d *Deferred[T]) tidyLocked() {
	if d.failure != nil && !d.is(cleanupArmed) {
		d.armCleanupLocked()
	}
	if d.x == nil {
		return
	}
	if d.x.rare != nil {
		d.noteDoneLocked()
	}
	if d.n != 0 {
		return
	}
	switch {
	case d.x.onlyStages(d.flags):
		d.x = nil
	case cap(d.x.spill) > spillBlock:
		d.x.spill = nil // a spill that outgrew the block
	}
}

// takeResultLocked returns d's result and leaves d with the zero value, as
// a stage that passes the result on elsewhere does.
func (d *Deferred[T]) takeResultLocked() (T, *Failure) {
	v, f := d.value, d.failure
	d.value, d.failure = zeroOf[T](), nil
	return v, f
}
