// Package deferredtest provides test helpers for code that uses Deferreds:
// assertions on the result a Deferred holds now, in the manner of Twisted
// trial's successResultOf, failureResultOf and assertNoResult, and
// NoUnhandled, which fails a test for each failure it left unhandled.
//
// The assertions look and never wait: a test makes the code under test
// produce its result (fire a fake producer, advance a synctest bubble's
// clock), then checks what the Deferred holds. For time, use
// testing/synctest: inside a synctest.Test bubble, d.AddTimeout(time.Hour)
// fires as soon as every goroutine of the bubble is blocked.
//
// Like testify's require, SuccessResultOf, FailureResultOf and
// AssertNoResult stop the test with t.Fatalf when the check fails, so they
// must be called from the goroutine running the test.
package deferredtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/deferred-go/deferred"
)

// SuccessResultOf returns the value d holds now. It fails t with t.Fatalf
// if d has no result yet (it is pending, paused, or waiting on another
// Deferred, see [deferred.Deferred.Done]) or holds a failure, whose error
// and stack the message shows.
//
// SuccessResultOf takes nothing: d keeps its value for the stages added
// after. An unexpected failure that it reports counts as handled, so
// [NoUnhandled] does not report it a second time.
func SuccessResultOf[T any](t testing.TB, d *deferred.Deferred[T]) T {
	t.Helper()
	var zero T
	o, ok := d.Peek()
	switch {
	case !ok:
		t.Fatalf("deferredtest: a value expected on %v, found no result instead", d)
		return zero
	case o.Failure != nil:
		markHandled[T](o.Failure)
		t.Fatalf("deferredtest: a value expected on %v, found a failure instead: %s", d, describe(o.Failure))
		return zero
	}
	return o.Value
}

// FailureResultOf returns the failure d holds now, if it matches one of
// targets by errors.Is (any failure if no target is given). It fails t with
// t.Fatalf if d has no result yet, holds a value, or holds a failure that
// matches none of targets, whose error and stack the message shows.
//
// The failure stays in d's chain, for the stages added after, but counts
// as handled, as one returned by [deferred.Deferred.Await] does: the test
// has seen it, so it is not reported as unhandled when d is collected.
// (Twisted's failureResultOf handles it too, by taking it off the chain.)
func FailureResultOf[T any](t testing.TB, d *deferred.Deferred[T], targets ...error) *deferred.Failure {
	t.Helper()
	o, ok := d.Peek()
	switch {
	case !ok:
		t.Fatalf("deferredtest: a failure expected on %v, found no result instead", d)
		return nil
	case o.Failure == nil:
		t.Fatalf("deferredtest: a failure expected on %v, found a value instead: %#v", d, o.Value)
		return nil
	}
	markHandled[T](o.Failure)
	if len(targets) > 0 && o.Failure.Check(targets...) == nil {
		t.Fatalf("deferredtest: a failure matching %s expected on %v, found another failure instead: %s",
			oneOf(targets), d, describe(o.Failure))
		return nil
	}
	return o.Failure
}

// AssertNoResult fails t with t.Fatalf if d holds a result now: a value, or
// a failure, whose error and stack the message shows. A Deferred that is
// pending, paused, or waiting on another one holds no result.
//
// AssertNoResult changes nothing when d holds no result. A failure it
// reports counts as handled, so [NoUnhandled] does not report it again.
func AssertNoResult[T any](t testing.TB, d *deferred.Deferred[T]) {
	t.Helper()
	o, ok := d.Peek()
	switch {
	case !ok:
		return
	case o.Failure != nil:
		markHandled[T](o.Failure)
		t.Fatalf("deferredtest: no result expected on %v, found a failure: %s", d, describe(o.Failure))
	default:
		t.Fatalf("deferredtest: no result expected on %v, found a value: %#v", d, o.Value)
	}
}

// markHandled counts f as handled, through the one public door that does:
// an Await that returns it. The Deferred Fail makes holds f itself (Fail
// keeps a *Failure as is) and its result already, so Await returns at once
// and d is left alone.
func markHandled[T any](f *deferred.Failure) {
	_, _ = deferred.Fail[T](f).Await(context.Background())
}

// describe shows a failure's error and, below it, its stack.
func describe(f *deferred.Failure) string {
	return fmt.Sprintf("%v\n%s", f.Error(), indent(f.Stack()))
}

// oneOf names the targets FailureResultOf was given.
func oneOf(targets []error) string {
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = fmt.Sprintf("%q", fmt.Sprint(t))
	}
	return strings.Join(names, " or ")
}

// indent sets a stack off from the message around it.
func indent(stack string) string {
	if stack == "" {
		return "\t(no stack)"
	}
	return "\t" + strings.ReplaceAll(strings.TrimRight(stack, "\n"), "\n", "\n\t")
}
