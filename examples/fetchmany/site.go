package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/deferred-go/deferred/web"
)

// demoSite is the web server fetchmany fetches from when it is given no
// URLs. It listens on the loopback interface and counts what it serves, so
// that the summary can be checked against it.
type demoSite struct {
	srv    *http.Server
	base   string
	pages  int
	served chan struct{} // closed when Serve has returned

	requests, notFound    atomic.Int64
	abandoned             atomic.Int64 // requests the client gave up on before the answer
	inFlight, maxInFlight atomic.Int64
}

// page says how the demo site serves page i: every tenth page is missing,
// and every seventh is slow, taking 100 to 300ms.
func page(i int) (missing bool, delay time.Duration) {
	missing = i%10 == 9
	if i%7 == 3 {
		delay = time.Duration(100+50*(i%5)) * time.Millisecond
	}
	return missing, delay
}

// meantToMiss reports whether err, the failure of the fetch of page i, is
// the 404 the site answers for a page it is meant to miss.
func (s *demoSite) meantToMiss(i int, err error) bool {
	missing, _ := page(i)
	var status *web.StatusError
	return missing && errors.As(err, &status) && status.StatusCode == http.StatusNotFound
}

func startDemoSite(pages int) (*demoSite, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &demoSite{base: "http://" + ln.Addr().String(), pages: pages, served: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /page/{i}", s.servePage)
	s.srv = &http.Server{Handler: mux}
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return s, nil
}

// URLs returns the URLs of the site's pages.
func (s *demoSite) URLs() []string {
	urls := make([]string, s.pages)
	for i := range urls {
		urls[i] = fmt.Sprintf("%s/page/%d", s.base, i)
	}
	return urls
}

// Close stops the server and waits until it has.
func (s *demoSite) Close() {
	s.srv.Close()
	<-s.served
}

func (s *demoSite) servePage(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	n := s.inFlight.Add(1)
	for m := s.maxInFlight.Load(); n > m; m = s.maxInFlight.Load() {
		if s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	i, err := strconv.Atoi(r.PathValue("i"))
	missing, delay := page(i)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	// Leave before answering: the client gives its token back only once the
	// answer is in, so while it waits for answers this count cannot exceed
	// the client's. A client that gives up (-timeout) gives its token back
	// at once, though, and the server notices a moment later: until then
	// the request still counts here.
	s.inFlight.Add(-1)
	if r.Context().Err() != nil { // the client gave up: nobody reads an answer
		s.abandoned.Add(1)
		return
	}
	if err != nil || i < 0 || i >= s.pages || missing {
		s.notFound.Add(1)
		http.NotFound(w, r)
		return
	}
	fmt.Fprintf(w, "page %d\n", i)
}
