package deferred

// This file owns what helps a programmer see a Deferred: String and the
// records of SetDebugging.

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"
)

// String describes d for debugging and %v: its type, address and state —
// pending, paused, waiting for another Deferred, or its current value or
// failure — like Twisted's repr. The value is formatted after d's lock is
// released, so a value whose String method uses d does not deadlock.
func (d *Deferred[T]) String() string {
	if d == nil {
		return "<nil *Deferred[" + typeName[T]() + "]>"
	}
	d.mu.Lock()
	fired, waiting, paused := d.is(called), unsafe.Pointer(d.waitingLocked()), d.paused.Load() > 0
	v, f := d.value, d.failure
	waitsOn := ""
	if d.x != nil && d.x.rare != nil {
		waitsOn = d.x.rare.waitsOn
	}
	d.mu.Unlock()

	var b strings.Builder
	fmt.Fprintf(&b, "<Deferred[%s] at %p", typeName[T](), d)
	switch {
	case !fired && waitsOn != "":
		b.WriteString(" " + waitsOn) // Chain's target, say
	case !fired:
		b.WriteString(" pending")
	case waiting != nil:
		fmt.Fprintf(&b, " waiting on Deferred at %p", waiting)
	case f != nil:
		fmt.Fprintf(&b, " current result: failure: %v", f.Error())
	default:
		fmt.Fprintf(&b, " current result: %v", any(v))
	}
	if paused {
		b.WriteString(" (paused)")
	}
	b.WriteString(">")
	return b.String()
}

func typeName[T any]() string {
	return fmt.Sprintf("%T", (*T)(nil))[1:]
}

var debugging atomic.Bool

type debugInfo struct {
	created, fired string
}

// SetDebugging turns on (or off) recording, for each Deferred created from
// now on, of where it was created and where it first fired. ErrAlreadyCalled
// errors then show both, which finds the second producer quickly. It costs a
// stack capture per Deferred, so it is off by default.
func SetDebugging(on bool) {
	debugging.Store(on)
	updateTracking()
}

func stackString(skip int) string {
	var b strings.Builder
	callers(skip + 1).each(func(fr runtime.Frame) {
		fmt.Fprintf(&b, "%s\n\t%s:%d\n", fr.Function, fr.File, fr.Line)
	})
	return b.String()
}

// alreadyCalledErrorLocked returns the error for a second firing.
func (d *Deferred[T]) alreadyCalledErrorLocked() error {
	dbg := d.debug()
	if dbg == nil {
		return ErrAlreadyCalled
	}
	return fmt.Errorf("%w\ncreated at:\n%sfirst fired at:\n%s", ErrAlreadyCalled, dbg.created, dbg.fired)
}
