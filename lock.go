package deferred

import (
	"fmt"
	"sync"
)

// This file holds Lock and Semaphore, Twisted's DeferredLock and
// DeferredSemaphore. Both are a tokenGate: a count of holders, a FIFO of
// waiting Deferreds and a hand-off loop.
//
// The hand-off is a loop, not a recursion. Firing a waiter runs its
// callbacks at once, and a callback that releases would fire the next
// waiter from inside the first one's Callback, and so on: Twisted's
// DeferredLock overflows Python's stack after ~200 such waiters (Twisted
// issue #9304). Here a Release that finds a hand-off loop running, on any
// goroutine, only gives its token back; the running loop hands it on.

// A Lock is a mutual-exclusion lock whose Acquire returns a Deferred instead
// of blocking: Twisted's DeferredLock. The zero Lock is unlocked and ready to
// use; NewLock is the same as new(Lock).
//
// Waiters get the lock in the order they called Acquire (FIFO). A waiter's
// callbacks run on the goroutine whose Release hands it the lock or, if a
// hand-off is already running on another goroutine, on that goroutine; they
// should therefore not block waiting for a later waiter. No goroutine is
// started. All methods may be called concurrently. A Lock must not be copied
// after first use.
//
// A Lock has no owner: as with sync.Mutex, a Release by somebody else cannot
// be told from the holder's own. A stray second Release while a waiter holds
// l hands l to the next waiter too, and l then has two holders; a Release of
// an unlocked l is caught and panics. Release once what you acquired, or let
// RunLocked do it: it releases exactly once, whatever f's Deferred does.
type Lock struct {
	g tokenGate[*Lock]
}

// NewLock returns an unlocked Lock. It is the same as new(Lock).
func NewLock() *Lock { return new(Lock) }

// Acquire returns a Deferred that fires with l once the caller holds l: at
// once, on the calling goroutine, if l is unlocked and nobody waits, and
// otherwise when a Release hands l over, after every earlier waiter had it.
// The holder must call Release exactly once.
//
// Cancelling the Deferred while it waits removes it from the waiters: it
// fails with ErrCancelled and the lock goes to the next waiter. Cancelling
// it after it fired does nothing; the caller still holds l.
func (l *Lock) Acquire() *Deferred[*Lock] { return l.g.acquire(l, 1) }

// TryAcquire takes l and reports true if l is unlocked and no Acquire
// waits for it; otherwise it changes nothing and reports false. It never
// waits and never goes ahead of a waiting Acquire. After true, the caller
// holds l and must call Release exactly once, as after Acquire.
func (l *Lock) TryAcquire() bool { return l.g.tryAcquire(1) }

// Release unlocks l and, if Deferreds wait, hands l to the oldest of them,
// running its callbacks on this goroutine (see Lock). Release panics if l is
// not locked.
func (l *Lock) Release() {
	l.g.release(l, 1, "deferred: Release of a Lock that is not locked")
}

// Locked reports whether somebody holds l, as Twisted's DeferredLock.locked.
func (l *Lock) Locked() bool { return l.g.holders() > 0 }

// Waiting returns the number of Acquire Deferreds waiting for l.
func (l *Lock) Waiting() int { return l.g.waiting(1) }

// RunLocked acquires l, calls f once it holds l, and releases l when the
// Deferred f returned settles, with a value or a failure. The returned
// Deferred fires with that result, after the release. A panic in f, or a nil
// Deferred from f, releases l too and fails the returned Deferred. l is
// released exactly once; f must not release it itself (see Lock). It is
// Twisted's DeferredLock.run.
//
// Cancelling the returned Deferred while it waits for l withdraws the
// Acquire (f never runs); once f has run, it cancels f's Deferred. RunLocked
// panics if l or f is nil.
func RunLocked[T any](l *Lock, f func() *Deferred[T]) *Deferred[T] {
	if l == nil {
		panic("deferred: RunLocked called with a nil *Lock")
	}
	if f == nil {
		panic("deferred: RunLocked called with a nil function")
	}
	return runHolding(l.Acquire(), l.Release, f)
}

// A Semaphore lets at most a fixed number of holders in at once, and its
// Acquire returns a Deferred instead of blocking: Twisted's
// DeferredSemaphore. Make one with NewSemaphore; the zero Semaphore is not
// usable.
//
// Waiters get a token in the order they called Acquire (FIFO). A waiter's
// callbacks run on the goroutine whose Release hands it the token or, if a
// hand-off is already running on another goroutine, on that goroutine; they
// should therefore not block waiting for a later waiter. No goroutine is
// started. All methods may be called concurrently. A Semaphore must not be
// copied after first use.
type Semaphore struct {
	g     tokenGate[*Semaphore]
	limit int
}

// NewSemaphore returns a Semaphore with n tokens, all free. It panics if n
// is less than 1.
func NewSemaphore(n int) *Semaphore {
	if n < 1 {
		panic(fmt.Sprintf("deferred: NewSemaphore called with %d tokens; a Semaphore needs at least 1", n))
	}
	return &Semaphore{limit: n}
}

// Acquire returns a Deferred that fires with s once the caller holds one of
// its tokens: at once, on the calling goroutine, if a token is free and
// nobody waits, and otherwise when a Release hands a token over, after every
// earlier waiter got one. The holder must call Release exactly once.
//
// Cancelling the Deferred while it waits removes it from the waiters: it
// fails with ErrCancelled and the next token goes to the next waiter.
// Cancelling it after it fired does nothing; the caller still holds the
// token. Acquire panics on a Semaphore not made by NewSemaphore.
func (s *Semaphore) Acquire() *Deferred[*Semaphore] { return s.g.acquire(s, s.checkedLimit()) }

// TryAcquire takes one of s's tokens and reports true if one is free and no
// Acquire waits for one; otherwise it changes nothing and reports false. It
// never waits and never goes ahead of a waiting Acquire. After true, the
// caller holds the token and must call Release exactly once, as after
// Acquire. TryAcquire panics on a Semaphore not made by NewSemaphore.
func (s *Semaphore) TryAcquire() bool { return s.g.tryAcquire(s.checkedLimit()) }

// Release gives a token back and, if Deferreds wait, hands it to the oldest
// of them, running its callbacks on this goroutine (see Semaphore). Release
// panics if no token is held (more Releases than Acquires), and on a
// Semaphore not made by NewSemaphore. Tokens have no owner: a stray Release
// while tokens are held cannot be told from a holder's, and frees a token
// that somebody still uses.
func (s *Semaphore) Release() {
	s.g.release(s, s.checkedLimit(), "deferred: Release of a Semaphore with no token held (more Releases than Acquires)")
}

// Tokens returns the number of free tokens: Limit minus the current holders.
func (s *Semaphore) Tokens() int { return s.limit - s.g.holders() }

// Limit returns the number of tokens s was made with: the most holders it
// lets in at once.
func (s *Semaphore) Limit() int { return s.limit }

// Waiting returns the number of Acquire Deferreds waiting for a token.
func (s *Semaphore) Waiting() int { return s.g.waiting(s.limit) }

func (s *Semaphore) checkedLimit() int {
	if s.limit == 0 {
		panic("deferred: Semaphore used without NewSemaphore (the zero Semaphore has no tokens)")
	}
	return s.limit
}

// RunLimited acquires a token of s, calls f once it holds it, and releases
// the token when the Deferred f returned settles, with a value or a
// failure: at most s.Limit() calls of f are in progress at once. The
// returned Deferred fires with f's result, after the release. A panic in f,
// or a nil Deferred from f, releases the token too and fails the returned
// Deferred. It is Twisted's DeferredSemaphore.run.
//
// Cancelling the returned Deferred while it waits for a token withdraws the
// Acquire (f never runs); once f has run, it cancels f's Deferred.
// RunLimited panics if s or f is nil.
func RunLimited[T any](s *Semaphore, f func() *Deferred[T]) *Deferred[T] {
	if s == nil {
		panic("deferred: RunLimited called with a nil *Semaphore")
	}
	if f == nil {
		panic("deferred: RunLimited called with a nil function")
	}
	return runHolding(s.Acquire(), s.Release, f)
}

// runHolding runs f once acquired fires and calls release when f's Deferred
// settles; if acquired fails (cancelled), f does not run and nothing is
// released.
func runHolding[H, T any](acquired *Deferred[H], release func(), f func() *Deferred[T]) *Deferred[T] {
	held := false // written before f runs, read by a later stage of the same chain
	d := ThenDeferred(acquired, func(H) *Deferred[T] {
		held = true
		return f() // a panic or nil result becomes d's failure (ThenDeferred)
	})
	return d.AddBoth(func(v T, fl *Failure) (T, error) {
		if held {
			release()
		}
		if fl != nil {
			return v, fl
		}
		return v, nil
	})
}

// tokenGate is the shared core of Lock and Semaphore: up to limit holders,
// then a FIFO of waiting Deferreds that fire with holder. The limit is
// passed in so that the zero tokenGate (the zero Lock) is ready to use.
type tokenGate[H any] struct {
	mu      sync.Mutex
	held    int
	waiters waiterList[H]
	handing bool // a hand-off loop is running
}

func (g *tokenGate[H]) acquire(holder H, limit int) *Deferred[H] {
	g.mu.Lock()
	if g.held < limit && g.waiters.len() == 0 {
		g.held++
		g.mu.Unlock()
		return Succeed(holder)
	}
	// Queue even when a token is free if others wait: a token is free with
	// waiters only while a hand-off loop runs, and it serves them first.
	d := g.waiters.push(&g.mu)
	g.handOff(holder, limit)
	return d
}

// tryAcquire takes a token if acquire would fire at once.
func (g *tokenGate[H]) tryAcquire(limit int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	// As in acquire: a free token beside waiters is theirs.
	if g.held < limit && g.waiters.len() == 0 {
		g.held++
		return true
	}
	return false
}

func (g *tokenGate[H]) release(holder H, limit int, misuse string) {
	g.mu.Lock()
	if g.held == 0 {
		g.mu.Unlock()
		panic(misuse)
	}
	g.held--
	g.handOff(holder, limit)
}

// handOff gives free tokens to waiters, oldest first, unless another call
// is already doing so, in which case that call will see the token. g.mu is
// held on entry and released on return.
func (g *tokenGate[H]) handOff(holder H, limit int) {
	if g.handing {
		g.mu.Unlock()
		return
	}
	g.handing = true
	for g.held < limit {
		d := g.waiters.pop()
		if d == nil {
			break
		}
		g.held++
		g.mu.Unlock()
		if testHookHandOff != nil {
			testHookHandOff() // where a Cancel of d from elsewhere may land
		}
		// d's callbacks run here; a Release among them returns early (g.handing).
		err := d.Callback(holder)
		g.mu.Lock()
		if err != nil {
			// d was cancelled after we took it off the list (the core's
			// Callback then reports ErrAlreadyCalled): the token is still free.
			g.held--
		}
	}
	g.handing = false
	g.mu.Unlock()
}

func (g *tokenGate[H]) holders() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// waiting counts the waiters that no free token is about to serve.
func (g *tokenGate[H]) waiting(limit int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(0, g.waiters.len()-max(0, limit-g.held))
}
