package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/deferred-go/deferred/web"
)

// TestMain checks that run stops its server and leaves no request behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunPrintsTheLoopbackPage(t *testing.T) {
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, nil))

	assert.Equal(t, "<HTML><BODY>Hello, Deferred!</BODY></HTML>\n", out.String())
}

func TestRunPrintsThePageAtTheURLGiven(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("page at " + r.URL.Path))
	}))
	defer srv.Close()
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, []string{srv.URL + "/here"}))

	assert.Equal(t, "page at /here\n", out.String())
}

func TestRunReturnsTheFailureOfAMissingPage(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	var out bytes.Buffer

	err := run(context.Background(), &out, []string{srv.URL + "/missing"})

	var se *web.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusNotFound, se.StatusCode)
	assert.Empty(t, out.String(), "the callback does not run on a failure")
}

func TestRunRejectsTwoArguments(t *testing.T) {
	err := run(context.Background(), &bytes.Buffer{}, []string{"http://a/", "http://b/"})

	assert.EqualError(t, err, "usage: getpage [URL]")
}

func TestRunAnswersAFlagWithTheUsage(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var out bytes.Buffer
		err := run(context.Background(), &out, []string{arg})

		assert.EqualError(t, err, "usage: getpage [URL]", arg)
		assert.Empty(t, out.String(), "%s is not fetched as a URL", arg)
	}
}
