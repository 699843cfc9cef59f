package web_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/web"
)

// guard bounds every wait in these tests, so that a bug fails a test instead
// of hanging it. No test asserts on how long anything takes; the guard is
// long so that a busy machine never reaches it.
const guard = time.Minute

// newServer starts a loopback server that the test closes at its end.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		// A failed test may leave a handler blocked: free it, or Close hangs.
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// newClient returns a client with a Transport of its own, whose idle
// connections (and their goroutines) are closed at the end of the test.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func await(t *testing.T, d *deferred.Deferred[[]byte]) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	body, err := d.Await(ctx)
	// Await returns ctx.Err() itself only when the guard ran out.
	require.False(t, err == context.DeadlineExceeded && ctx.Err() != nil, "GetPage's Deferred did not fire in time")
	return body, err
}

// signal does a non-blocking send, so a handler never blocks on a test
// that stopped listening.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func wait(t *testing.T, c chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// blockingServer's handler reports that the request arrived (after writing
// partial, if not empty), then blocks until the request's context ends,
// and reports that too.
func blockingServer(t *testing.T, partial string) (srv *httptest.Server, arrived, ended chan struct{}) {
	arrived, ended = make(chan struct{}, 1), make(chan struct{}, 1)
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if partial != "" {
			_, _ = w.Write([]byte(partial))
			w.(http.Flusher).Flush()
		}
		signal(arrived)
		<-r.Context().Done()
		signal(ended)
	})
	return srv, arrived, ended
}

func TestGetPageFiresWithBody(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s host=%s x=%q", r.Method, r.URL.Path, r.Host, r.Header.Values("X-Test"))
	})

	d := web.GetPage(context.Background(), srv.URL+"/page", web.WithClient(newClient(t)),
		web.WithHeader("x-test", "a"), web.WithHeader("X-Test", "b"), web.WithHeader("Host", "example.test"))
	body, err := await(t, d)

	require.NoError(t, err)
	assert.Equal(t, `GET /page host=example.test x=["a" "b"]`, string(body))
}

func TestGetPageRunsStagesWithTheBody(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("HELLO"))
	})

	d := web.GetPage(context.Background(), srv.URL, web.WithClient(newClient(t)))
	d.AddCallback(func(b []byte) ([]byte, error) { return []byte(strings.ToLower(string(b))), nil })
	body, err := await(t, d)

	require.NoError(t, err)
	assert.Equal(t, "hello", string(body))
}

func TestGetPageUsesDefaultClientWithoutWithClient(t *testing.T) {
	// httptest.Server.Close closes http.DefaultTransport's idle connections.
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("default"))
	})

	body, err := await(t, web.GetPage(context.Background(), srv.URL))

	require.NoError(t, err)
	assert.Equal(t, "default", string(body))
}

func TestGetPageStatus(t *testing.T) {
	for _, tc := range []struct {
		code   int
		status string // "" for a success
	}{
		{200, ""},
		{204, ""},
		{299, ""},
		{300, "300 Multiple Choices"},
		{304, "304 Not Modified"},
		{404, "404 Not Found"},
		{500, "500 Internal Server Error"},
		{503, "503 Service Unavailable"},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.code)
				if tc.code != 204 && tc.code != 304 {
					_, _ = w.Write([]byte("body"))
				}
			})

			body, err := await(t, web.GetPage(context.Background(), srv.URL+"/x", web.WithClient(newClient(t))))

			if tc.status == "" {
				require.NoError(t, err)
				return
			}
			assert.Nil(t, body)
			require.IsType(t, (*deferred.Failure)(nil), err)
			var se *web.StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.code, se.StatusCode)
			assert.Equal(t, tc.status, se.Status)
			assert.Equal(t, srv.URL+"/x", se.URL)
			assert.Equal(t, "web: GET "+srv.URL+"/x: "+tc.status, err.Error())
		})
	}
}

func TestGetPageStatusErrorNamesTheURLThatAnswered(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/gone", http.StatusFound)
			return
		}
		http.NotFound(w, r)
	})
	u, err := url.Parse(srv.URL + "/old")
	require.NoError(t, err)
	u.User = url.UserPassword("user", "secret")

	_, err = await(t, web.GetPage(context.Background(), u.String(), web.WithClient(newClient(t))))

	var se *web.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusNotFound, se.StatusCode)
	assert.True(t, strings.HasSuffix(se.URL, "/gone"), se.URL)
	assert.NotContains(t, err.Error(), "secret")
}

func TestGetPageRefusedConnection(t *testing.T) {
	// A port that was just free: nothing listens on it any more.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	body, err := await(t, web.GetPage(context.Background(), "http://"+addr+"/", web.WithClient(newClient(t))))

	assert.Nil(t, body)
	require.IsType(t, (*deferred.Failure)(nil), err)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	var ue *url.Error
	assert.ErrorAs(t, err, &ue)
	var se *web.StatusError
	assert.False(t, errors.As(err, &se))
}

// TestGetPageTimeout runs in a synctest bubble, over an in-memory network:
// the bubble's clock moves only once every goroutine waits, so the request
// has reached the handler, and the handler sees it end, at any speed.
func TestGetPageTimeout(t *testing.T) {
	for _, partial := range []string{"", "half a bo"} {
		name := "before the response"
		if partial != "" {
			name = "while reading the body"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var arrived atomic.Bool
				ended := make(chan struct{})
				client := pipeServer(t, func(w http.ResponseWriter, r *http.Request) {
					if partial != "" {
						_, _ = w.Write([]byte(partial))
						w.(http.Flusher).Flush()
					}
					arrived.Store(true)
					<-r.Context().Done()
					close(ended)
				})
				start := time.Now()

				body, err := web.GetPage(context.Background(), "http://pipe/page",
					web.WithClient(client), web.WithTimeout(50*time.Millisecond)).Await(context.Background())

				assert.True(t, arrived.Load(), "the request reached the handler before the timeout")
				assert.Equal(t, 50*time.Millisecond, time.Since(start), "the bubble's clock")
				assert.Nil(t, body)
				assert.ErrorIs(t, err, deferred.ErrTimeout)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.NotErrorIs(t, err, deferred.ErrCancelled)
				assert.EqualError(t, err, "web: GET http://pipe/page: timed out after 50ms")
				// AddTimeout's error: the same type, and a timeout to net/http's idioms.
				var te *deferred.TimeoutError
				require.ErrorAs(t, err, &te)
				assert.Equal(t, deferred.TimeoutError{Op: "web: GET http://pipe/page", After: 50 * time.Millisecond}, *te)
				timeout, ok := err.(interface{ Timeout() bool })
				assert.True(t, ok && timeout.Timeout(), "the *Failure Await returns is a timeout")
				<-ended // the server sees the request end; a bug here is a deadlock synctest reports
			})
		})
	}
}

// pipeServer serves h over net.Pipe connections, inside the calling
// synctest bubble, and returns a client that dials it whatever the URL's
// host. The server and the client's connections end with the test.
func pipeServer(t *testing.T, h http.HandlerFunc) *http.Client {
	ln := &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	srv := &http.Server{Handler: h}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	tr := &http.Transport{DialContext: ln.dial}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
		<-served
	})
	return &http.Client{Transport: tr}
}

// pipeListener is a net.Listener whose connections are net.Pipes, which
// synctest sees blocked on, unlike sockets.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestGetPageCancelAbortsRequest(t *testing.T) {
	for _, partial := range []string{"", "half a bo"} {
		name := "before the response"
		if partial != "" {
			name = "while reading the body"
		}
		t.Run(name, func(t *testing.T) {
			srv, arrived, ended := blockingServer(t, partial)
			d := web.GetPage(context.Background(), srv.URL, web.WithClient(newClient(t)))
			wait(t, arrived, "the request to arrive")

			d.Cancel()
			require.True(t, d.Called(), "Cancel fails the Deferred at once")
			body, err := await(t, d)

			assert.Nil(t, body)
			assert.ErrorIs(t, err, deferred.ErrCancelled)
			wait(t, ended, "the server to see the request end")
		})
	}
}

func TestGetPageCancelRightAway(t *testing.T) {
	srv, _, _ := blockingServer(t, "")

	d := web.GetPage(context.Background(), srv.URL, web.WithClient(newClient(t)))
	d.Cancel()
	_, err := await(t, d)

	assert.ErrorIs(t, err, deferred.ErrCancelled)
}

func TestGetPageCancelAfterTheResultChangesNothing(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("done"))
	})
	d := web.GetPage(context.Background(), srv.URL, web.WithClient(newClient(t)))
	fired := make(chan struct{})
	d.AddBoth(func(b []byte, f *deferred.Failure) ([]byte, error) {
		close(fired)
		return b, f
	})
	wait(t, fired, "the Deferred to fire")

	d.Cancel()
	body, err := await(t, d)

	require.NoError(t, err)
	assert.Equal(t, "done", string(body))
}

func TestGetPageContextEndFailsRequest(t *testing.T) {
	srv, arrived, ended := blockingServer(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	d := web.GetPage(ctx, srv.URL, web.WithClient(newClient(t)))
	wait(t, arrived, "the request to arrive")
	cancel()
	_, err := await(t, d)

	assert.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, deferred.ErrCancelled)
	wait(t, ended, "the server to see the request end")
}

func TestGetPageBodyLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		limit   int64
		chunked bool // no Content-Length: the limit is found while reading
		tooBig  bool
	}{
		{"at the limit", 10, 10, false, false},
		{"over the limit", 11, 10, false, true},
		{"chunked at the limit", 10, 10, true, false},
		{"chunked over the limit", 11, 10, true, true},
		{"empty with limit 0", 0, 0, false, false},
		{"one byte with limit 0", 1, 0, true, true},
		{"no limit", 1 << 20, math.MaxInt64, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := strings.Repeat("x", tc.size)
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.chunked && tc.size > 0 {
					_, _ = w.Write([]byte(page[:1]))
					w.(http.Flusher).Flush()
					_, _ = w.Write([]byte(page[1:]))
					return
				}
				w.Header().Set("Content-Length", strconv.Itoa(tc.size))
				_, _ = w.Write([]byte(page))
			})

			body, err := await(t, web.GetPage(context.Background(), srv.URL,
				web.WithClient(newClient(t)), web.WithMaxBody(tc.limit)))

			if tc.tooBig {
				assert.Nil(t, body)
				assert.ErrorIs(t, err, web.ErrBodyTooLarge)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, page, string(body))
		})
	}
}

func TestGetPageDefaultBodyLimit(t *testing.T) {
	// The announced length is enough to refuse the body before reading it.
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(web.DefaultMaxBody+1))
		w.WriteHeader(http.StatusOK)
	})

	_, err := await(t, web.GetPage(context.Background(), srv.URL, web.WithClient(newClient(t))))

	assert.ErrorIs(t, err, web.ErrBodyTooLarge)
}

func TestGetPageBadURL(t *testing.T) {
	for _, raw := range []string{"://no-scheme", "http://[::1", "http://host/%zz"} {
		t.Run(raw, func(t *testing.T) {
			d := web.GetPage(context.Background(), raw, web.WithClient(newClient(t)))

			require.True(t, d.Called(), "a URL that does not parse fails before GetPage returns")
			_, err := await(t, d)
			var ue *url.Error
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, "parse", ue.Op)
		})
	}
}

func TestGetPageUnsupportedScheme(t *testing.T) {
	_, err := await(t, web.GetPage(context.Background(), "ftp://127.0.0.1/file", web.WithClient(newClient(t))))

	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, err.Error(), "unsupported protocol scheme")
}

func TestGetPageMisusePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"web: GetPage called with a nil context.Context": func() {
			//lint:ignore SA1012 the nil context is the misuse under test
			web.GetPage(nil, "http://127.0.0.1/")
		},
		"web: WithClient called with a nil *http.Client":           func() { web.WithClient(nil) },
		"web: WithTimeout called with a non-positive duration 0s":  func() { web.WithTimeout(0) },
		"web: WithTimeout called with a non-positive duration -1s": func() { web.WithTimeout(-time.Second) },
		"web: WithMaxBody called with a negative size -1":          func() { web.WithMaxBody(-1) },
	} {
		t.Run(name, func(t *testing.T) {
			assert.PanicsWithValue(t, name, f)
		})
	}
}
