package deferred

// This file owns MaybeDeferred, Twisted's maybeDeferred for a function that
// returns a Deferred (Maybe, for one that returns a value, is in
// deferred.go).

// MaybeDeferred calls f now and returns the Deferred f returned, itself, as
// Twisted's maybeDeferred does: stages added to it are added to f's
// Deferred. Whatever f does, the caller gets a Deferred it can add stages
// to: if f panics, MaybeDeferred returns a Deferred failed with the Failure
// of the panic (its PanicValue and the stack of the panic site); if f
// returns nil, or a Deferred whose chain Then or ThenDeferred handed over,
// it returns a Deferred failed with an error matching ErrInvalidReturn.
// MaybeDeferred panics if f is nil.
func MaybeDeferred[T any](f func() *Deferred[T]) *Deferred[T] {
	if f == nil {
		panic("deferred: MaybeDeferred called with a nil function")
	}
	var d *Deferred[T]
	if _, fl := callRecovering(func() (struct{}, error) {
		d = f()
		return struct{}{}, nil
	}); fl != nil {
		return Fail[T](fl)
	}
	if d == nil {
		return Fail[T](errMaybeNil)
	}
	if d.handedOverNow() {
		return Fail[T](errMaybeHandedOver)
	}
	return d
}

var (
	errMaybeNil        error = invalidReturn("deferred: MaybeDeferred: the function returned a nil *Deferred")
	errMaybeHandedOver error = invalidReturn("deferred: MaybeDeferred: the function returned a Deferred whose chain was handed over by Then; return the Deferred that Then returned")
)
