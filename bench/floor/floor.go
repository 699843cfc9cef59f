// Package floor is the least a goroutine-safe deferred can be: one
// sync.Mutex, three stages held inline and a slice for the rest, stages run
// in batches without the lock, and a re-check for stages added meanwhile. It
// has no Failure, no panic recovery, no cancellation and no nesting. The
// benchmarks beside it measure deferred against it, shape by shape: what
// deferred costs above this floor is the price of what the floor leaves
// out.
package floor

import "sync"

// A Deferred is a result of type T to come and the stages that process it.
// The zero Deferred is pending and ready to use.
type Deferred[T any] struct {
	mu             sync.Mutex
	fired, running bool
	head, n        int32
	value          T
	err            error
	inline         [3]stage[T]
	more           []stage[T]
}

// A stage is a callback or an errback: one of the two is nil.
type stage[T any] struct {
	cb func(T) (T, error)
	eb func(error) (T, error)
}

func (s stage[T]) call(v T, err error) (T, error) {
	switch {
	case err == nil && s.cb != nil:
		return s.cb(v)
	case err != nil && s.eb != nil:
		return s.eb(err)
	}
	return v, err
}

// Callback fires d with v and runs its stages on the calling goroutine,
// unless another goroutine runs them. A second Callback is ignored.
func (d *Deferred[T]) Callback(v T) {
	d.mu.Lock()
	if d.fired {
		d.mu.Unlock()
		return
	}
	d.fired, d.value = true, v
	if d.running || d.head == d.n {
		d.mu.Unlock()
		return
	}
	d.running = true
	d.runUnlock()
}

// AddCallback adds a callback and returns d.
func (d *Deferred[T]) AddCallback(cb func(T) (T, error)) *Deferred[T] {
	d.add(stage[T]{cb: cb})
	return d
}

// AddErrback adds an errback and returns d.
func (d *Deferred[T]) AddErrback(eb func(error) (T, error)) *Deferred[T] {
	d.add(stage[T]{eb: eb})
	return d
}

// Value returns d's current result.
func (d *Deferred[T]) Value() (T, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.value, d.err
}

func (d *Deferred[T]) add(s stage[T]) {
	d.mu.Lock()
	if d.fired && !d.running && d.head == d.n {
		// Fired and idle: run the stage at once.
		d.running = true
		v, err := d.value, d.err
		d.mu.Unlock()
		v, err = s.call(v, err)
		d.mu.Lock()
		d.value, d.err = v, err
		d.runUnlock()
		return
	}
	if d.n < 3 {
		d.inline[d.n] = s
	} else {
		d.more = append(d.more, s)
	}
	d.n++
	if !d.fired || d.running {
		d.mu.Unlock()
		return
	}
	d.running = true
	d.runUnlock()
}

// runUnlock runs the queued stages in batches, then clears running and
// unlocks. d.mu is held and running set.
func (d *Deferred[T]) runUnlock() {
	for d.head < d.n {
		start, end := d.head, d.n
		inline, more := d.inline, d.more
		v, err := d.value, d.err
		d.mu.Unlock()
		for i := start; i < end; i++ {
			if i < 3 {
				v, err = inline[i].call(v, err)
			} else {
				v, err = more[i-3].call(v, err)
			}
		}
		d.mu.Lock()
		for i := start; i < end; i++ { // let the closures go
			if i < 3 {
				d.inline[i] = stage[T]{}
			} else {
				d.more[i-3] = stage[T]{}
			}
		}
		d.head, d.value, d.err = end, v, err
		if d.head == d.n {
			d.head, d.n, d.more = 0, 0, d.more[:0]
		}
	}
	d.running = false
	d.mu.Unlock()
}
