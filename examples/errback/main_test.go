package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/deferred-go/deferred/examples/internal/clitest"
)

// TestMain checks that run stops its server and leaves no request behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestErrback runs errback through the table that getpage and lowercase
// pass too. Its errback handles a 404, and only a 404: a 500, a refused
// connection or a timeout still fail the run.
func TestErrback(t *testing.T) {
	clitest.TestFetcher(t, clitest.Fetcher{
		Program:  clitest.Program{Name: name, Run: run, Synopsis: synopsis},
		Default:  "An error has occurred: 404 Not Found\n",
		Page:     func(body string) string { return body + "\n" },
		NotFound: clitest.Result{Code: 0, Stdout: "An error has occurred: 404 Not Found\n"},
	})
}
