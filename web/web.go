// Package web fetches HTTP resources as Deferreds, like Twisted's
// twisted.web.client.getPage: GetPage returns at once and its Deferred fires
// with the body, or fails, when the response is in.
//
// Each request runs on a goroutine of its own, on top of net/http; the
// Deferred's stages run on that goroutine when it fires. Cancelling the
// Deferred aborts the request.
package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/deferred-go/deferred"
)

// DefaultMaxBody is the response size limit GetPage applies unless
// WithMaxBody says otherwise: 32 MiB.
const DefaultMaxBody = 32 << 20

// ErrBodyTooLarge is matched (errors.Is) by the failure of a GetPage whose
// response body is longer than its size limit.
var ErrBodyTooLarge = errors.New("web: response body over the size limit")

// A StatusError is the failure of a GetPage whose response status is not
// 2xx. errors.As reaches it through the Deferred's *deferred.Failure.
type StatusError struct {
	URL        string // the URL that answered, after redirects, without its password
	StatusCode int    // e.g. 404
	Status     string // e.g. "404 Not Found"
}

// Error reports the URL and the status.
func (e *StatusError) Error() string {
	return fmt.Sprintf("web: GET %s: %s", e.URL, e.Status)
}

// An Option changes how GetPage fetches.
type Option func(*config)

type config struct {
	client  *http.Client
	timeout time.Duration
	maxBody int64
	header  http.Header
}

// WithClient makes GetPage use c instead of http.DefaultClient: its
// Transport, redirect policy, cookies and Timeout apply. It panics if c is
// nil.
func WithClient(c *http.Client) Option {
	if c == nil {
		panic("web: WithClient called with a nil *http.Client")
	}
	return func(cfg *config) { cfg.client = c }
}

// WithTimeout bounds the whole fetch, body included; when it passes first,
// the request is aborted and the Deferred fails as a Deferred that
// AddTimeout timed out does: with a *deferred.TimeoutError, which matches
// deferred.ErrTimeout and context.DeadlineExceeded and says
// "web: GET <url>: timed out after <d>"; the failure's Timeout method
// reports true. It panics if d is not positive.
func WithTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("web: WithTimeout called with a non-positive duration %v", d))
	}
	return func(cfg *config) { cfg.timeout = d }
}

// WithMaxBody sets the largest body GetPage accepts, in bytes; a longer one
// fails the Deferred with ErrBodyTooLarge. math.MaxInt64 means no limit. It
// panics if n is negative.
func WithMaxBody(n int64) Option {
	if n < 0 {
		panic(fmt.Sprintf("web: WithMaxBody called with a negative size %d", n))
	}
	return func(cfg *config) { cfg.maxBody = n }
}

// WithHeader adds a request header; several calls with one key add several
// values. A "Host" header sets the Host the request is sent with.
func WithHeader(key, value string) Option {
	return func(cfg *config) {
		if cfg.header == nil {
			cfg.header = make(http.Header)
		}
		cfg.header.Add(key, value)
	}
}

// GetPage starts a GET of url and returns a Deferred that fires with the
// response body, on the request's goroutine. It fails with a *StatusError
// for a non-2xx status (after the client has followed redirects), with the
// client's error when the request cannot be made (a bad URL, a refused
// connection), with ErrBodyTooLarge past the size limit, and with a
// *deferred.TimeoutError matching deferred.ErrTimeout past WithTimeout's
// limit. ctx bounds the request as well: when it ends first, the Deferred
// fails with the client's error, which matches ctx.Err() (and not
// deferred.ErrCancelled or deferred.ErrTimeout: the caller's context, not
// the Deferred, ended).
//
// Cancelling the Deferred before it fires aborts the request: the Deferred
// fails with deferred.ErrCancelled (which matches context.Canceled) at once
// and the request's goroutine ends
// soon after. A bad URL fails the Deferred before GetPage returns. GetPage
// panics if ctx or one of opts is nil.
func GetPage(ctx context.Context, url string, opts ...Option) *deferred.Deferred[[]byte] {
	if ctx == nil {
		panic("web: GetPage called with a nil context.Context")
	}
	cfg := config{client: http.DefaultClient, maxBody: DefaultMaxBody}
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("web: GetPage called with a nil Option (option %d)", i))
		}
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return deferred.Fail[[]byte](err)
	}
	for k, vs := range cfg.header {
		if k == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}

	var aborted atomic.Bool
	d := deferred.NewWithCanceller(func(*deferred.Deferred[[]byte]) {
		aborted.Store(true)
		cancel()
	})
	go func() {
		body, err := fetch(ctx, cfg, req)
		cancel()
		if err != nil {
			// After Cancel, let Cancel fail d with ErrCancelled rather than
			// racing it with the aborted request's error.
			if !aborted.Load() {
				_ = d.Errback(err)
			}
			return
		}
		_ = d.Callback(body) // refused only if Cancel won: d has failed already
	}()
	return d
}

// fetch makes the request and reads the body within cfg.timeout.
func fetch(ctx context.Context, cfg config, req *http.Request) ([]byte, error) {
	if cfg.timeout <= 0 {
		return do(cfg, req)
	}
	// AddTimeout's error, so that both timeouts read alike; it is also the
	// cause of the context's end, which net/http may report.
	timedOut := &deferred.TimeoutError{Op: "web: GET " + req.URL.Redacted(), After: cfg.timeout}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, timedOut)
	defer cancel()
	body, err := do(cfg, req.WithContext(ctx))
	if err != nil && context.Cause(ctx) == timedOut {
		return nil, timedOut
	}
	return body, err
}

func do(cfg config, req *http.Request) ([]byte, error) {
	resp, err := cfg.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	url := resp.Request.URL.Redacted()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil, &StatusError{URL: url, StatusCode: resp.StatusCode, Status: resp.Status}
	}
	if cfg.maxBody == math.MaxInt64 {
		return io.ReadAll(resp.Body)
	}
	tooLarge := fmt.Errorf("%w: GET %s: more than %d bytes", ErrBodyTooLarge, url, cfg.maxBody)
	if resp.ContentLength > cfg.maxBody {
		return nil, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cfg.maxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > cfg.maxBody {
		return nil, tooLarge
	}
	return body, nil
}
