package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

// TestLeakCancelledGetPagesEndTheirRequests: 10,000 GetPage requests to a
// server whose handler blocks until the request's context ends, 250 in
// flight at a time, each cancelled once its handler runs. Every Deferred
// fails with deferred.ErrCancelled at once, every handler sees its request
// end (the server's handler count returns to 0), and once the client's idle
// connections are closed no goroutine is left.
func TestLeakCancelledGetPagesEndTheirRequests(t *testing.T) {
	const total, inFlight = 10_000, 250
	var active atomic.Int64
	arrived := make(chan struct{}, inFlight)
	left := make(chan struct{}, inFlight)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer func() {
			active.Add(-1)
			left <- struct{}{}
		}()
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	client := &http.Client{Transport: &http.Transport{}}
	closeAll := func() {
		client.CloseIdleConnections()
		srv.CloseClientConnections() // frees a handler stuck by a failed test
		srv.Close()
	}
	defer closeAll() // a second Close does nothing

	// guard bounds each wait, so that a lost request fails the test instead
	// of hanging it; nothing asserts timing.
	guard := time.NewTimer(time.Minute)
	defer guard.Stop()
	waitN := func(ch chan struct{}, n int, what string) {
		t.Helper()
		for range n {
			select {
			case <-ch:
			case <-guard.C:
				t.Fatalf("%s: not all %d came", what, n)
			}
		}
	}

	var cancelled atomic.Int64
	for range total / inFlight {
		ds := make([]*deferred.Deferred[[]byte], inFlight)
		for i := range ds {
			ds[i] = web.GetPage(context.Background(), srv.URL, web.WithClient(client))
		}
		waitN(arrived, inFlight, "handlers")
		before := cancelled.Load()
		for _, d := range ds {
			d.Cancel()
			d.AddErrback(func(f *deferred.Failure) ([]byte, error) {
				if assert.ErrorIs(t, f, deferred.ErrCancelled) {
					cancelled.Add(1)
				}
				return nil, nil
			})
		}
		require.Equal(t, before+inFlight, cancelled.Load(), "every Deferred failed with ErrCancelled at once")
		waitN(left, inFlight, "handler returns")
		require.Zero(t, active.Load(), "handlers still running after their requests were cancelled")
	}
	assert.Equal(t, int64(total), cancelled.Load())
	closeAll()
	goleak.VerifyNone(t)
}
