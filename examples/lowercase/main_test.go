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

func TestRunPrintsTheLoopbackPageInLowerCase(t *testing.T) {
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, nil))

	assert.Equal(t, "<html><body>hello, deferred!</body></html>\n", out.String())
}

func TestRunLowerCasesThePageAtTheURLGiven(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("MiXeD Case ÄÖ"))
	}))
	defer srv.Close()
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, []string{srv.URL}))

	assert.Equal(t, "mixed case äö\n", out.String())
}

func TestRunReturnsTheFailureOfAServerError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "BOOM", http.StatusInternalServerError)
	}))
	defer srv.Close()
	var out bytes.Buffer

	err := run(context.Background(), &out, []string{srv.URL})

	var se *web.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusInternalServerError, se.StatusCode)
	assert.Empty(t, out.String(), "neither callback runs on a failure")
}

func TestRunRejectsTwoArguments(t *testing.T) {
	err := run(context.Background(), &bytes.Buffer{}, []string{"http://a/", "http://b/"})

	assert.EqualError(t, err, "usage: lowercase [URL]")
}
