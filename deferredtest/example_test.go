package deferredtest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/deferredtest"
)

// An Example cannot take a *testing.T, so in these examples t is an
// exampleT, which prints the first line of what a failing test would
// report. In a test, pass the test's own t.
type exampleT struct {
	testing.TB
	cleanups []func()
}

func (*exampleT) Helper() {}

func (*exampleT) Fatalf(format string, args ...any) { report(format, args...) }

func (*exampleT) Errorf(format string, args ...any) { report(format, args...) }

func (t *exampleT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

// end does what the testing package does when a test returns.
func (t *exampleT) end() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

func report(format string, args ...any) {
	msg, _, _ := strings.Cut(fmt.Sprintf(format, args...), "\n")
	fmt.Println("FAIL:", msg)
}

// lookup stands for the code under test: it answers from a cache at once,
// or fails at once for an unknown key.
func lookup(key string) *deferred.Deferred[string] {
	cache := map[string]string{"go": "gopher"}
	if v, ok := cache[key]; ok {
		return deferred.Succeed(v)
	}
	return deferred.Fail[string](fmt.Errorf("lookup %q: %w", key, errNotFound))
}

var errNotFound = errors.New("not found")

func ExampleSuccessResultOf() {
	t := new(exampleT)

	d := deferred.Then(lookup("go"), func(s string) (int, error) { return len(s), nil })
	fmt.Println(deferredtest.SuccessResultOf(t, d))
	// Output: 6
}

func ExampleFailureResultOf() {
	t := new(exampleT)

	f := deferredtest.FailureResultOf(t, lookup("rust"), errNotFound)
	fmt.Println(f)
	// Output: lookup "rust": not found
}

func ExampleAssertNoResult() {
	t := new(exampleT)

	reply := deferred.New[string]() // a request not answered yet
	deferredtest.AssertNoResult(t, reply)

	_ = reply.Callback("pong")
	fmt.Println(deferredtest.SuccessResultOf(t, reply))
	// Output: pong
}

func ExampleNoUnhandled() {
	t := new(exampleT)
	deferredtest.NoUnhandled(t)

	lookup("go")
	lookup("rust") // its failure is dropped: no stage, no Await, no check saw it

	t.end() // the test returns: NoUnhandled's cleanup reports the lost failure
	// Output:
	// FAIL: deferredtest: unhandled failure reported during the test: lookup "rust": not found
}
