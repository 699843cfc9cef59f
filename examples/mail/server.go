package main

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// server is the SMTP server that mail talks to when -server is not given.
// It listens on the loopback interface, keeps every message it accepts,
// taking acceptDelay over each as a real server writing to disk would, and
// refuses any recipient called "nobody" with 550. It is the plain Go kind,
// a goroutine per connection: the point of the example is the client.
type server struct {
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	received []envelope
}

// envelope is a message as the server received it.
type envelope struct {
	From string
	To   []string
	Data string // lines end in "\n"; dots are unescaped
}

// acceptDelay is how long the server takes to accept a message. It lets
// every conversation connect before any ends, so that mail's goroutine
// count is taken with all of them in flight.
const acceptDelay = 100 * time.Millisecond

func startServer() (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr returns the host:port the server listens on.
func (s *server) Addr() string { return s.ln.Addr().String() }

// Received returns the messages accepted so far, in the order they came.
func (s *server) Received() []envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]envelope(nil), s.received...)
}

// Close stops the server, closes its connections and waits for its
// goroutines to end.
func (s *server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(conn)
	}
}

// serve holds one SMTP conversation. Every error ends it: the client hung
// up, or Close did.
func (s *server) serve(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	t := textproto.NewConn(conn)
	reply := func(code int, text string) error { return t.PrintfLine("%d %s", code, text) }

	if reply(220, "localhost ESMTP examples/mail") != nil {
		return
	}
	var m *envelope // the message under way, after MAIL
	for {
		line, err := t.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "HELO", "EHLO":
			err = reply(250, "localhost")
		case "MAIL":
			from, ok := path(arg, "FROM:")
			if !ok {
				err = reply(501, "5.5.4 syntax: MAIL FROM:<address>")
				break
			}
			m = &envelope{From: from}
			err = reply(250, "2.1.0 OK")
		case "RCPT":
			to, ok := path(arg, "TO:")
			switch {
			case m == nil:
				err = reply(503, "5.5.1 MAIL first")
			case !ok:
				err = reply(501, "5.5.4 syntax: RCPT TO:<address>")
			case strings.HasPrefix(strings.ToLower(to), "nobody@"):
				err = reply(550, fmt.Sprintf("5.1.1 <%s>: no such user", to))
			default:
				m.To = append(m.To, to)
				err = reply(250, "2.1.5 OK")
			}
		case "DATA":
			if m == nil || len(m.To) == 0 {
				err = reply(503, "5.5.1 RCPT first")
				break
			}
			if err = reply(354, "end data with <CR><LF>.<CR><LF>"); err != nil {
				return
			}
			data, rerr := t.ReadDotBytes()
			if rerr != nil {
				return
			}
			time.Sleep(acceptDelay)
			m.Data = string(data)
			s.mu.Lock()
			s.received = append(s.received, *m)
			s.mu.Unlock()
			m = nil
			// The id is a digest of the message: the same run, the same output.
			id := fmt.Sprintf("%x", sha256.Sum256(data))[:8]
			err = reply(250, "2.0.0 OK: queued as "+id)
		case "RSET":
			m = nil
			err = reply(250, "2.0.0 OK")
		case "NOOP":
			err = reply(250, "2.0.0 OK")
		case "QUIT":
			_ = reply(221, "2.0.0 bye")
			return
		default:
			err = reply(502, "5.5.2 command not recognized")
		}
		if err != nil {
			return
		}
	}
}

// path returns the address in an argument such as "FROM:<a@example.com>".
func path(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") || !strings.HasSuffix(rest, ">") {
		return "", false
	}
	return rest[1 : len(rest)-1], true
}
