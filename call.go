package deferred

import "unsafe"

// This file owns calling a stage's user code: the dispatch on the stage's
// kind, the result of a returned error, and the recovers that turn a panic
// into a Failure.

// callStage calls the user function of a stage of a kind up to
// kindErrbackDeferred on the result (v, f), and returns the new result, or
// the Deferred the stage returned, which the chain must wait for. It does
// not recover panics: its callers do.
func callStage[T any](st stage[T], v T, f *Failure) (rv T, rf *Failure, inner *Deferred[T]) {
	var err error
	switch st.k {
	case kindCallback:
		if f != nil {
			return v, f, nil
		}
		rv, err = ptrFunc[callbackFn[T]](st.p)(v)
	case kindErrback:
		if f == nil {
			return v, nil, nil
		}
		rv, err = ptrFunc[errbackFn[T]](st.p)(f)
	case kindBoth:
		rv, err = ptrFunc[bothFn[T]](st.p)(v, f)
	case kindPair:
		ps := (*pairStage[T])(st.p)
		if f == nil {
			rv, err = ps.cb(v)
		} else {
			rv, err = ps.eb(f)
		}
	case kindCallbackDeferred:
		if f != nil {
			return v, f, nil
		}
		if inner = ptrFunc[callbackDeferredFn[T]](st.p)(v); inner == nil {
			err = errNilDeferred
		}
	default: // kindErrbackDeferred
		if f == nil {
			return v, nil, nil
		}
		if inner = ptrFunc[errbackDeferredFn[T]](st.p)(f); inner == nil {
			err = errNilDeferred
		}
	}
	if err != nil {
		rv, rf = stageFailed[T](rv, err, stageEntry(st, f))
		if rf != nil {
			inner = nil
		}
		return rv, rf, inner
	}
	return rv, nil, inner
}

// callPlainRecovering is callStage for a stage of a plain kind, with a
// panic in it turned into the new result's Failure; the common case is
// called directly, and recover only after a panic.
func callPlainRecovering[T any](st stage[T], v T, f *Failure) (rv T, rf *Failure) {
	returned := false
	defer func() {
		if !returned {
			if p := recover(); p != nil {
				rv, rf = zeroOf[T](), panicFailure(p)
			}
		}
	}()
	if st.k == kindCallback && f == nil {
		nv, err := ptrFunc[callbackFn[T]](st.p)(v)
		if err != nil {
			rv, rf = stageFailed[T](nv, err, entry(st.p))
		} else {
			rv = nv
		}
	} else {
		rv, rf, _ = callStage(st, v, f)
	}
	returned = true
	return rv, rf
}

// stageFailed is the result of a stage that returned (v, err) with a non-nil
// err: the zero value and err's Failure, or, for a typed nil *Failure (the
// natural pass-through of AddBoth on success), v and no failure.
func stageFailed[T any](v T, err error, fn uintptr) (T, *Failure) {
	if f, ok := err.(*Failure); ok {
		if f == nil {
			return v, nil
		}
		return zeroOf[T](), f // an errback passing its Failure on, most often
	}
	f := failureOf(err)
	f.stage = fn
	return zeroOf[T](), f
}

// entry returns the entry PC of the function whose func value is p: the
// stage that failed, for its Failure.
func entry(p unsafe.Pointer) uintptr { return *(*uintptr)(p) }

// stageEntry returns the entry PC of the function of st that ran on a
// result whose failure was f.
func stageEntry[T any](st stage[T], f *Failure) uintptr {
	if st.k == kindPair {
		ps := (*pairStage[T])(st.p)
		if f == nil {
			return entry(funcPtr(ps.cb))
		}
		return entry(funcPtr(ps.eb))
	}
	return entry(st.p)
}

// callRecovering calls f, turning a panic into a Failure.
func callRecovering[T any](f func() (T, error)) (v T, fl *Failure) {
	return callPlainRecovering(callbackStage(func(T) (T, error) { return f() }), v, nil)
}
