package deferred

import (
	"container/list"
	"errors"
	"sync"
)

// ErrQueueFull is returned by Queue.Put when the queue already stores its
// size in values and no Get waits (Twisted's QueueOverflow), or when
// PutWait producers wait for room. PutWait waits for room instead.
var ErrQueueFull = errors.New("deferred: queue full")

// ErrQueueBacklog is matched by the failure of a Deferred from Queue.Get
// when the queue is empty and its backlog of waiting Gets is already full
// (Twisted's QueueUnderflow, which Twisted raises at once; here the
// returned Deferred has already failed).
var ErrQueueBacklog = errors.New("deferred: too many Gets waiting on queue")

// A Queue is a FIFO of values of type T whose Get returns a Deferred instead
// of blocking: Twisted's DeferredQueue. Put hands a value to the oldest
// waiting Get or, if none waits, stores it. Make one with NewQueue; the zero
// Queue is empty, with no size or backlog limit.
//
// Values come out in the order they were put, waiting Gets are served in
// the order they were made, and producers waiting in PutWait get room in
// the order they called it (FIFO). A waiting Get's callbacks run on the
// goroutine whose Put hands it its value or, if a hand-off is already
// running on another goroutine, on that goroutine; they should therefore not
// block waiting for a later Get. The same holds for a waiting PutWait and
// the Get that makes room for it. A callback may call Put, PutWait and Get:
// the hand-off runs in a loop, so any number of such waiters runs on a
// small stack. No goroutine is started. All methods may be called
// concurrently. A Queue must not be copied after first use.
type Queue[T any] struct {
	mu      sync.Mutex
	size    int // most values stored; 0: no limit
	backlog int // most Gets waiting; 0: no limit
	values  valueRing[T]
	waiters waiterList[T]
	putters list.List // of *queuePut[T], waiting for room, oldest first
	handing bool      // a hand-off loop is running
}

// queuePut is a PutWait producer waiting for room.
type queuePut[T any] struct {
	v    T
	d    *Deferred[struct{}]
	elem *list.Element // in Queue.putters while waiting, else nil
}

// NewQueue returns an empty Queue that stores at most size values and lets
// at most backlog Gets wait at once. A size or backlog of 0 or less means no
// limit (so, unlike Twisted, a Queue cannot be made to store nothing).
func NewQueue[T any](size, backlog int) *Queue[T] {
	return &Queue[T]{size: max(0, size), backlog: max(0, backlog)}
}

// Put hands v to the oldest waiting Get, running that Get's callbacks on
// this goroutine (see Queue), or, if no Get waits, stores v. If the queue
// already stores its size in values, or PutWait producers wait for room
// (Put does not go ahead of them), Put stores nothing and returns
// ErrQueueFull.
func (q *Queue[T]) Put(v T) error {
	q.mu.Lock()
	if q.putters.Len() > 0 || q.fullLocked() {
		q.mu.Unlock()
		return ErrQueueFull
	}
	q.values.pushBack(v)
	q.handOff()
	return nil
}

// PutWait puts v in the queue as Put does, but when the queue is full it
// waits for room instead of failing. It returns a Deferred that fires once
// v is in the queue, stored or handed to a Get: at once, on the calling
// goroutine, if there is room and no earlier PutWait waits, and otherwise
// when a Get makes room, after the values of every earlier PutWait went
// in, on that Get's goroutine (see Queue). On a Queue without a size limit
// it always fires at once. Any number of producers may wait.
//
// Cancelling the Deferred while it waits withdraws v: v never enters the
// queue, and the Deferred fails with ErrCancelled. Cancelling it once v
// went in does nothing: it fires (v is not taken back). So the Deferred
// says whether v was put: v is delivered once if it succeeds, never if it
// fails.
func (q *Queue[T]) PutWait(v T) *Deferred[struct{}] {
	q.mu.Lock()
	if q.putters.Len() == 0 && !q.fullLocked() {
		q.values.pushBack(v)
		q.handOff()
		return Succeed(struct{}{})
	}
	p := &queuePut[T]{v: v}
	p.d = NewWithCanceller(func(d *Deferred[struct{}]) {
		q.mu.Lock()
		if p.elem != nil {
			q.putters.Remove(p.elem)
			p.elem = nil
			p.v = *new(T) // let the value go
			q.mu.Unlock()
			return // Cancel fails d with ErrCancelled
		}
		q.mu.Unlock()
		// v went in before this Cancel: d must say so. Whichever of this
		// and the hand-off comes first fires d.
		_ = d.Callback(struct{}{})
	})
	p.elem = q.putters.PushBack(p)
	q.handOff()
	return p.d
}

// fullLocked reports whether the queue stores its size in values. While a
// hand-off runs, the first waiters.len() stored values are already
// promised to waiting Gets: they do not count against size. q.mu is held.
func (q *Queue[T]) fullLocked() bool {
	return q.size > 0 && q.values.len()-q.waiters.len() >= q.size
}

// Get returns a Deferred that fires with the oldest value: at once, on the
// calling goroutine, if a value is stored, and otherwise when a Put hands
// one over, after every earlier Get got its value. If no value is stored and
// backlog Gets already wait, the returned Deferred has already failed with
// ErrQueueBacklog.
//
// Cancelling the Deferred while it waits removes it from the waiters: it
// fails with ErrCancelled and a later Put goes to the next Get, or is
// stored. Cancelling it after it fired does nothing (its value is not put
// back).
func (q *Queue[T]) Get() *Deferred[T] {
	q.mu.Lock()
	if q.values.len() > 0 && q.waiters.len() == 0 {
		v := q.values.popFront()
		if q.putters.Len() == 0 {
			q.mu.Unlock()
		} else {
			q.handOff() // the room v leaves goes to the oldest PutWait
		}
		return Succeed(v)
	}
	// Stored values beyond waiters.len() go to this Get: it does not wait.
	if q.backlog > 0 && q.waiters.len()-q.values.len() >= q.backlog {
		q.mu.Unlock()
		return Fail[T](ErrQueueBacklog)
	}
	d := q.waiters.push(&q.mu)
	q.handOff()
	return d
}

// Len returns the number of values stored that no waiting Get is about to
// take. The values of waiting PutWaits are not in the queue yet: they do
// not count.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return max(0, q.values.len()-q.waiters.len())
}

// Waiting returns the number of Get Deferreds waiting for a value that no
// stored value is about to serve.
func (q *Queue[T]) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return max(0, q.waiters.len()-q.values.len())
}

// handOff gives stored values to waiting Gets, oldest to oldest, and room
// to waiting PutWaits, oldest first, unless another call is already doing
// so, in which case that call will see them. q.mu is held on entry and
// released on return.
func (q *Queue[T]) handOff() {
	if q.handing {
		q.mu.Unlock()
		return
	}
	q.handing = true
	for {
		if q.values.len() > 0 && q.waiters.len() > 0 {
			d := q.waiters.pop()
			v := q.values.popFront()
			q.mu.Unlock()
			// d's callbacks run here; a Put among them only stores (q.handing).
			err := d.Callback(v)
			q.mu.Lock()
			if err != nil {
				// d was cancelled after we took it off the list: v goes to
				// the next Get, ahead of later values. This can leave the
				// queue briefly above size; Put already accepted v.
				q.values.pushFront(v)
			}
			continue
		}
		if p := q.takePutLocked(); p != nil {
			q.mu.Unlock()
			_ = p.d.Callback(struct{}{}) // ErrAlreadyCalled: a late Cancel fired it
			q.mu.Lock()
			continue
		}
		break
	}
	q.handing = false
	q.mu.Unlock()
}

// takePutLocked moves the value of the oldest waiting PutWait into the
// queue if there is room, and returns that PutWait, whose Deferred is then
// to fire; it returns nil if none waits or there is no room. v goes in
// under q.mu, where a Cancel withdraws it, so it goes in exactly once or
// not at all. q.mu is held.
func (q *Queue[T]) takePutLocked() *queuePut[T] {
	e := q.putters.Front()
	if e == nil || q.fullLocked() {
		return nil
	}
	p := q.putters.Remove(e).(*queuePut[T])
	p.elem = nil
	q.values.pushBack(p.v)
	p.v = *new(T)
	return p
}

// valueRing is a growable ring buffer of values. The zero value is empty.
type valueRing[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *valueRing[T]) len() int { return r.n }

func (r *valueRing[T]) pushBack(v T) {
	r.resize(r.n + 1)
	r.buf[(r.head+r.n)%len(r.buf)] = v
	r.n++
}

func (r *valueRing[T]) pushFront(v T) {
	r.resize(r.n + 1)
	r.head = (r.head + len(r.buf) - 1) % len(r.buf)
	r.buf[r.head] = v
	r.n++
}

func (r *valueRing[T]) popFront() T {
	v := r.buf[r.head]
	var zero T
	r.buf[r.head] = zero // let the value go
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.resize(r.n)
	return v
}

// resize makes room for need values, doubling the buffer when full and
// halving it when a quarter full, so a burst does not pin memory forever.
func (r *valueRing[T]) resize(need int) {
	size := len(r.buf)
	switch {
	case need > size:
		size = max(8, 2*size)
	case size > 64 && need <= size/4:
		size /= 2
	default:
		return
	}
	buf := make([]T, size)
	for i := 0; i < r.n; i++ {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
}
