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

// TestGetpage runs getpage through the table that lowercase and errback
// pass too.
func TestGetpage(t *testing.T) {
	clitest.TestFetcher(t, clitest.Fetcher{
		Program:  clitest.Program{Name: name, Run: run, Synopsis: synopsis},
		Default:  "<HTML><BODY>Hello, Deferred!</BODY></HTML>\n",
		Page:     func(body string) string { return body + "\n" },
		NotFound: clitest.Result{Code: 1, Stderr: "{name}: web: GET {url}: 404 Not Found\n"},
	})
}
