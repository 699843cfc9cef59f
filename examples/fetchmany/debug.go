package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/deferred-go/deferred"
)

// serveDebug serves net/http/pprof at addr until stop is called, and
// records every Deferred created meanwhile in the pending profile
// (deferred.PendingProfileName) until it fires: while the fetches run,
//
//	go tool pprof -top http://addr/debug/pprof/github.com/deferred-go/deferred.pending
//
// shows where the pending ones were created. It says on stderr where it
// serves. stop puts the profile's rate back, closes the server and waits
// for it.
func serveDebug(addr string, stderr io.Writer) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// Our own mux, not http.DefaultServeMux, which importing net/http/pprof
	// fills: the server serves only what is listed here. pprof.Index serves
	// every runtime/pprof profile by name, the pending one included.
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	prev := deferred.SetPendingProfileFraction(1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stderr, "%s: serving net/http/pprof at http://%s/debug/pprof/\n", name, ln.Addr())
	return func() {
		srv.Close()
		// Said here, on run's goroutine, which alone writes to stderr.
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(stderr, "%s: -debug: %v\n", name, err)
		}
		deferred.SetPendingProfileFraction(prev)
	}, nil
}
