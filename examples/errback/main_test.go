package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain checks that run stops its server and leaves no request behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunPrintsThe404Failure(t *testing.T) {
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, nil), "the errback handles the failure")

	assert.Equal(t, "An error has occurred: 404 Not Found\n", out.String())
}

func TestRunPrintsTheStatusOfAnyHTTPError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "try later", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, []string{srv.URL}))

	assert.Equal(t, "An error has occurred: 503 Service Unavailable\n", out.String())
}

func TestRunPrintsAnyOtherFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close()) // connections to it are now refused
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, []string{url}))

	assert.True(t, strings.HasPrefix(out.String(), "An error has occurred: Get \""+url+"\": "), out.String())
	assert.Contains(t, out.String(), "connection refused")
}

func TestRunPrintsAPageThatExists(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("here"))
	}))
	defer srv.Close()
	var out bytes.Buffer

	require.NoError(t, run(context.Background(), &out, []string{srv.URL}))

	assert.Equal(t, "here\n", out.String(), "the callback runs, the errback does not")
}

func TestRunRejectsTwoArguments(t *testing.T) {
	err := run(context.Background(), &bytes.Buffer{}, []string{"http://a/", "http://b/"})

	assert.EqualError(t, err, "usage: errback [URL]")
}
