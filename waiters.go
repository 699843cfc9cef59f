package deferred

// This file holds the FIFO of waiting Deferreds that Lock, Semaphore and
// Queue share.

import "sync"

// waiterNode is one pending Deferred in a waiterList.
type waiterNode[T any] struct {
	d          *Deferred[T]
	prev, next *waiterNode[T]
	listed     bool
}

// waiterList is a FIFO of pending Deferreds. Removal from the middle is
// O(1), so cancelling one of many waiters stays cheap. The zero value is
// empty. It is guarded by the owner's mutex.
type waiterList[T any] struct {
	head, tail *waiterNode[T]
	n          int
}

func (l *waiterList[T]) len() int { return l.n }

// push appends a new pending Deferred and returns it. Cancelling it removes
// it from l, under mu, if it is still there. mu is held.
func (l *waiterList[T]) push(mu *sync.Mutex) *Deferred[T] {
	w := &waiterNode[T]{listed: true}
	w.d = NewWithCanceller(func(*Deferred[T]) {
		mu.Lock()
		l.remove(w)
		mu.Unlock()
	})
	w.prev = l.tail
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.n++
	return w.d
}

// pop removes and returns the oldest Deferred, or nil if l is empty.
func (l *waiterList[T]) pop() *Deferred[T] {
	w := l.head
	if w == nil {
		return nil
	}
	l.remove(w)
	return w.d
}

func (l *waiterList[T]) remove(w *waiterNode[T]) {
	if !w.listed {
		return // already handed a value or token
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next, w.listed = nil, nil, false
	l.n--
}

// testHookHandOff, set by tests only, runs in the hand-off of a Lock or
// Semaphore between taking a waiter off its list and firing it: the window
// in which another goroutine's Cancel finds the waiter gone from the list.
var testHookHandOff func()
