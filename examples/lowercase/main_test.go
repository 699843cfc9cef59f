package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/deferred-go/deferred/examples/internal/clitest"
)

// TestMain checks that run stops its server and leaves no request behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestLowercase runs lowercase through the table that getpage and errback
// pass too.
func TestLowercase(t *testing.T) {
	clitest.TestFetcher(t, clitest.Fetcher{
		Program:  clitest.Program{Name: name, Run: run, Synopsis: synopsis},
		Default:  "<html><body>hello, deferred!</body></html>\n",
		Page:     func(body string) string { return strings.ToLower(body) + "\n" },
		NotFound: clitest.Result{Code: 1, Stderr: "{name}: web: GET {url}: 404 Not Found\n"},
	})
}
