// Command mail sends mail through SMTP conversations in which every step is
// a Deferred: Twisted's motivating example, in Go.
//
// An SMTP conversation is a series of commands, each answered by a reply
// with a three-digit code:
//
//	server: 220 greeting          client: HELO name
//	server: 250                   client: MAIL FROM:<from>
//	server: 250                   client: RCPT TO:<to>
//	server: 250                   client: DATA
//	server: 354                   client: the message, then "."
//	server: 250 queued            client: QUIT
//	server: 221
//
// Client.Command writes a command and returns at once a Deferred for its
// reply, and a conversation is a chain of such steps. Each connection has
// one goroutine, which reads the replies and fires the waiting Deferreds;
// the next step of the conversation runs on it, as a callback. So -count
// messages go out at once with no goroutine per step or per reply awaited.
//
// Usage:
//
//	mail [-count n] [-server host:port] [-from addr] [-to addr] [-helo name] [-timeout duration]
//
// Without -server, mail starts an SMTP server on the loopback interface,
// which keeps what it receives and knows no user called "nobody": try
// -to nobody@example.com to see a step fail. Output with the defaults:
//
//	message 1 of 5 to bob@example.com: 250 2.0.0 OK: queued as b3da43c1
//	message 2 of 5 to bob@example.com: 250 2.0.0 OK: queued as 510c339f
//	message 3 of 5 to bob@example.com: 250 2.0.0 OK: queued as 9fb9b620
//	message 4 of 5 to bob@example.com: 250 2.0.0 OK: queued as a61375b4
//	message 5 of 5 to bob@example.com: 250 2.0.0 OK: queued as 419a54b9
//	when the last connection was greeted: 5 conversations in flight, 14 goroutines in all
//
// The loopback server takes 100ms over each message, so all conversations
// are still in flight when the last one is greeted. The 14 goroutines are
// main, two of os/signal's, the server's accept loop, and one per
// connection on each side (5 + 5): none per step.
//
// The exit status is 0 once every message is sent, 1 when one is not
// (the first failure is on stderr), 2 for a bad flag or argument, and 130
// after Ctrl-C. -timeout (default 10s) bounds each conversation; a
// conversation that runs out of time names the step it was waiting on.
// -h prints the usage. With -to nobody@example.com, mail exits with
// status 1 after printing, on stderr (the message that fails first varies):
//
//	mail: message 3 of 5 not sent: smtp: RCPT TO:<nobody@example.com> refused: 550 5.1.1 <nobody@example.com>: no such user
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deferred-go/deferred"
)

const (
	name     = "mail"
	synopsis = "usage: mail [-count n] [-server host:port] [-from addr] [-to addr] [-helo name] [-timeout duration]"
	about    = `Mail sends -count messages at once through SMTP conversations in which
every step is a Deferred. Without -server it sends them to an SMTP server
of its own on the loopback interface, so it runs offline.`
)

func main() {
	// Ctrl-C ends ctx, which cancels the conversations; a second Ctrl-C,
	// once signals are no longer caught, ends the program at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are mail's flags.
type options struct {
	count                int
	addr, from, to, helo string
	timeout              time.Duration
}

// parseArgs returns the options in args and ok; or, for -h or a bad flag
// or argument, the exit status, after printing the usage or the error.
func parseArgs(args []string, stderr io.Writer) (opts options, status int, ok bool) {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(io.Discard) // the errors are printed below, once
	flags.IntVar(&opts.count, "count", 5, "send `n` messages at once")
	flags.StringVar(&opts.addr, "server", "", "the SMTP server's `host:port` (default: one on the loopback interface)")
	flags.StringVar(&opts.from, "from", "alice@example.com", "the sender's `address`")
	flags.StringVar(&opts.to, "to", "bob@example.com", "the recipient's `address`")
	flags.StringVar(&opts.helo, "helo", "localhost", "the `name` to give in HELO")
	flags.DurationVar(&opts.timeout, "timeout", 10*time.Second, "give up on a conversation after `duration`")
	err := flags.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stderr, "%s\n\n%s\n\nFlags:\n", synopsis, about)
		flags.SetOutput(stderr)
		flags.PrintDefaults()
		fmt.Fprintf(stderr, "\nExit status: 0 once every message is sent, 1 if one is not,\n"+
			"2 for a bad flag or argument, 130 after Ctrl-C.\n")
		return opts, 0, false
	case err != nil:
	case opts.count < 1:
		err = fmt.Errorf("-count must be at least 1, not %d", opts.count)
	case opts.timeout <= 0:
		err = fmt.Errorf("-timeout must be positive, not %v", opts.timeout)
	case flags.NArg() > 0:
		err = fmt.Errorf("want no arguments, got %q", flags.Args())
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n%s\n", name, err, synopsis)
		return opts, 2, false
	}
	return opts, 0, true
}

// run is the program: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, status, ok := parseArgs(args, stderr)
	if !ok {
		return status
	}
	if opts.addr == "" {
		srv, err := startServer()
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		defer srv.Close()
		opts.addr = srv.Addr()
	}

	// Every connection closes when conversations ends: at Ctrl-C, or when
	// run ends them all below.
	conversations, endAll := context.WithCancel(ctx)
	defer endAll()
	var g gauge
	g.total = opts.count
	sends := make([]*deferred.Deferred[Reply], opts.count)
	for i := range sends {
		m := Message{From: opts.from, To: opts.to, Body: body(opts.from, opts.to, i+1, opts.count)}
		sends[i] = send(conversations, opts.addr, opts.helo, m, opts.timeout, &g)
	}

	// Gather fires with every conversation's last reply, in order, or
	// fails with the first failure as a *deferred.FirstError. Await
	// blocks this goroutine, and only this one, until then.
	replies, err := deferred.Gather(sends...).Await(ctx)
	if err != nil {
		// Gather fails at the first failure and leaves the other
		// conversations running: end them, and return only once every one
		// has ended (List fires when all have settled). Ending their
		// context closes their connections, which fails the reply each
		// one waits for, whichever goroutine is running its chain;
		// a Cancel that came while a stage was running would be lost.
		endAll()
		_, _ = deferred.List(sends...).Await(context.Background())
		var first *deferred.FirstError
		switch {
		case ctx.Err() != nil: // Ctrl-C, whatever the failure it caused
			fmt.Fprintf(stderr, "%s: interrupted\n", name)
			return 130
		case errors.As(err, &first):
			fmt.Fprintf(stderr, "%s: message %d of %d not sent: %v\n", name, first.Index+1, opts.count, first.Failure)
		default:
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
		}
		return 1
	}
	for i, r := range replies {
		fmt.Fprintf(stdout, "message %d of %d to %s: %v\n", i+1, opts.count, opts.to, r)
	}
	if inFlight, goroutines, ok := g.sample(); ok {
		fmt.Fprintf(stdout, "when the last connection was greeted: %d conversations in flight, %d goroutines in all\n",
			inFlight, goroutines)
	}
	return 0
}

// A Message is a mail to send: its envelope (From, To) and its content,
// header and body, with lines ending in "\n".
type Message struct {
	From, To, Body string
}

func body(from, to string, i, n int) string {
	return fmt.Sprintf("From: %s\nTo: %s\nSubject: message %d of %d\n\n"+
		"Hello from examples/mail.\n"+
		". This line starts with a dot, which SMTP escapes.\n", from, to, i, n)
}

// send runs one SMTP conversation with the server at addr and returns a
// Deferred that fires with the server's acceptance of m (its reply to the
// message), or fails with the step that went wrong. If the conversation
// has not ended within timeout, it fails with a *TimeoutError.
func send(ctx context.Context, addr, helo string, m Message, timeout time.Duration, g *gauge) *deferred.Deferred[Reply] {
	return converse(Dial(ctx, addr), helo, m, timeout, g)
}

// converse is send, once connecting has started: dialed fires with the
// connection.
func converse(dialed *deferred.Deferred[*Client], helo string, m Message, timeout time.Duration, g *gauge) *deferred.Deferred[Reply] {
	var c *Client                      // set once connected; each later stage runs after that one
	var waiting atomic.Pointer[string] // what the conversation waits for, read by the timeout
	waitFor := func(what string) { waiting.Store(&what) }
	waitFor("the connection")

	// ThenDeferred goes from a Deferred *Client to a Deferred Reply: the
	// server's greeting, its answer to the connection itself.
	d := deferred.ThenDeferred(dialed, func(client *Client) *deferred.Deferred[Reply] {
		c = client
		waitFor("the greeting")
		return c.Greeting()
	})
	d.AddCallback(func(r Reply) (Reply, error) {
		g.greeted()
		return r, nil
	})

	// Each step sends its command once the reply before it is in:
	// AddCallbackDeferred makes the chain wait for the Deferred the step
	// returns, then go on with its reply. A failed step (a 4xx or 5xx
	// reply, a broken connection) skips every callback after it.
	step := func(command string) func(Reply) *deferred.Deferred[Reply] {
		return func(Reply) *deferred.Deferred[Reply] {
			waitFor("the reply to " + command)
			return c.Command(command)
		}
	}
	d.AddCallbackDeferred(step("HELO " + helo)).
		AddCallbackDeferred(step("MAIL FROM:<" + m.From + ">")).
		AddCallbackDeferred(step("RCPT TO:<" + m.To + ">")).
		AddCallbackDeferred(step("DATA")).
		AddCallbackDeferred(func(Reply) *deferred.Deferred[Reply] {
			waitFor("the reply to the message")
			return c.Message(m.Body)
		}).
		AddCallbackDeferred(func(queued Reply) *deferred.Deferred[Reply] {
			// The reply to the message is the one to keep: QUIT's reply
			// only ends the conversation, so a callback swaps it back.
			waitFor("the reply to QUIT")
			return c.Command("QUIT").AddCallback(func(Reply) (Reply, error) { return queued, nil })
		})

	// An errback, for a failure at any step: the server may still be
	// listening, so say QUIT before hanging up. AddErrbackDeferred waits
	// for QUIT's reply; the AddBoth on it returns f, so the chain keeps
	// failing with the step's failure (a *ReplyError names its command).
	d.AddErrbackDeferred(func(f *deferred.Failure) *deferred.Deferred[Reply] {
		if c == nil {
			return deferred.Fail[Reply](f) // not even connected
		}
		return c.Command("QUIT").AddBoth(func(Reply, *deferred.Failure) (Reply, error) { return Reply{}, f })
	})

	// AddBoth runs whichever way the conversation ended: close the
	// connection, which ends its reader goroutine, and pass the result on.
	d.AddBoth(func(r Reply, f *deferred.Failure) (Reply, error) {
		if c != nil {
			c.Close()
		}
		g.ended()
		return r, f
	})

	// AddTimeout cancels the conversation if it has not ended in time;
	// the cancellation reaches the step it waits on, which closes the
	// connection, and the stages above run as for any failure. The
	// errback after it names that step.
	return d.AddTimeout(timeout).AddErrback(func(f *deferred.Failure) (Reply, error) {
		if errors.Is(f, deferred.ErrTimeout) {
			return Reply{}, &TimeoutError{Step: *waiting.Load(), After: timeout, Err: f}
		}
		return Reply{}, f
	})
}

// A TimeoutError is the failure of a conversation that did not end in
// time. It names the step the conversation was waiting on, and it matches
// deferred.ErrTimeout (errors.Is).
type TimeoutError struct {
	Step  string        // e.g. "the greeting", "the reply to DATA"
	After time.Duration // the time limit
	Err   error         // the timeout's failure
}

// Error names the step and the time limit.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("smtp: timed out after %v waiting for %s", e.After, e.Step)
}

// Unwrap returns the timeout's failure.
func (e *TimeoutError) Unwrap() error { return e.Err }

// A Reply is an SMTP server's answer to a command: a three-digit code and
// its text, lines joined by "\n".
type Reply struct {
	Code int
	Text string
}

// String returns the code and the text, as in "250 2.0.0 OK".
func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// A ReplyError is the failure of a step the server refused, with a 4xx
// (try again later) or 5xx (permanent) reply.
type ReplyError struct {
	Command string // what was refused, e.g. "RCPT TO:<nobody@example.com>"
	Reply
}

// Error names the refused command and the reply.
func (e *ReplyError) Error() string {
	return fmt.Sprintf("smtp: %s refused: %d %s", e.Command, e.Code, e.Text)
}

// A Client is one SMTP connection. Its methods may be called from any
// goroutine, including from the stages of the Deferreds they return: that
// is how a conversation goes from one step to the next.
type Client struct {
	conn     net.Conn
	greeting *deferred.Deferred[Reply]

	mu      sync.Mutex // keeps pending in the order the commands went out
	w       *textproto.Writer
	pending []expected  // replies to come, oldest first
	err     error       // why the connection ended, once it has
	unwatch func() bool // stops closing the connection when newClient's ctx ends
}

type expected struct {
	what  string
	reply *deferred.Deferred[Reply]
}

// errClosed is why a connection ended when Close ended it.
var errClosed = errors.New("connection closed")

// Dial connects to the SMTP server at addr. Connecting blocks, so Dial
// does it on a goroutine that ends once the connection is up; from then
// on, the connection's reader goroutine runs everything. Cancelling the
// Deferred gives up connecting. The connection closes when ctx ends.
func Dial(ctx context.Context, addr string) *deferred.Deferred[*Client] {
	life := ctx
	ctx, cancel := context.WithCancel(ctx)
	// The canceller stops the work; Cancel then fails d with ErrCancelled.
	d := deferred.NewWithCanceller(func(*deferred.Deferred[*Client]) { cancel() })
	go func() {
		defer cancel()
		var dialer net.Dialer
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			_ = d.Errback(err) // refused if d was cancelled: nobody waits
			return
		}
		c := newClient(life, conn)
		if d.Callback(c) != nil {
			// Cancelled meanwhile: nobody will use c, nor wait for its
			// greeting, whose failure Close would otherwise leave unhandled.
			c.Greeting().AddErrback(func(*deferred.Failure) (Reply, error) { return Reply{}, nil })
			c.Close()
		}
	}()
	return d
}

// newClient runs the SMTP connection conn until ctx ends or Close.
func newClient(ctx context.Context, conn net.Conn) *Client {
	c := &Client{conn: conn, w: textproto.NewWriter(bufio.NewWriter(conn))}
	c.mu.Lock()
	c.greeting = c.expectLocked("connect")
	c.unwatch = context.AfterFunc(ctx, func() {
		c.shut(fmt.Errorf("connection closed: %w", ctx.Err()), nil)
	})
	c.mu.Unlock()
	go c.readReplies(textproto.NewReader(bufio.NewReader(conn)))
	return c
}

// Greeting returns the Deferred for the server's first reply, which it
// sends on its own when the connection opens.
func (c *Client) Greeting() *deferred.Deferred[Reply] { return c.greeting }

// Command sends one command line and returns a Deferred for the server's
// reply. The Deferred fires with a 2xx or 3xx reply, and fails with a
// *ReplyError for a 4xx or 5xx one, or with the connection's error if it
// ends first. Cancelling it closes the connection: replies come in order,
// so one of them cannot be abandoned alone.
func (c *Client) Command(line string) *deferred.Deferred[Reply] {
	return c.send(line, func() error { return c.w.PrintfLine("%s", line) })
}

// Message sends body, the message itself, once DATA has been answered
// with 354, and returns a Deferred for the server's reply, as Command
// does. A line of body that starts with "." goes out with another "."
// before it, and a line holding a single "." ends the message.
func (c *Client) Message(body string) *deferred.Deferred[Reply] {
	return c.send("message", func() error {
		dw := c.w.DotWriter()
		if _, err := io.WriteString(dw, body); err != nil {
			return err
		}
		return dw.Close()
	})
}

func (c *Client) send(what string, write func() error) *deferred.Deferred[Reply] {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return deferred.Fail[Reply](fmt.Errorf("smtp: %s: %w", what, err))
	}
	// Expect the reply before writing the command: the reader may get the
	// reply before the write returns.
	d := c.expectLocked(what)
	err := write()
	c.mu.Unlock()
	if err != nil {
		c.shut(fmt.Errorf("connection broken: %w", err), nil) // fails d too
	}
	return d
}

// expectLocked adds a Deferred for the next reply to pending. c.mu is held.
func (c *Client) expectLocked(what string) *deferred.Deferred[Reply] {
	d := deferred.NewWithCanceller(func(d *deferred.Deferred[Reply]) {
		// Cancel fails d itself once the canceller returns.
		c.shut(fmt.Errorf("connection closed: the reply to %s was cancelled", what), d)
	})
	c.pending = append(c.pending, expected{what, d})
	// A callback that returns an error turns a refusal into a failure,
	// which skips the callbacks after it, down to the next errback.
	return d.AddCallback(func(r Reply) (Reply, error) {
		if r.Code >= 400 {
			return r, &ReplyError{Command: what, Reply: r}
		}
		return r, nil
	})
}

// readReplies is the connection's one goroutine. It reads each reply and
// fires the oldest pending Deferred with it; that Deferred's callbacks, the
// next step of a conversation, run here and send the next command before
// the loop reads on.
func (c *Client) readReplies(r *textproto.Reader) {
	for {
		code, text, err := r.ReadResponse(0)
		if err != nil {
			c.shut(fmt.Errorf("connection ended: %w", err), nil)
			return
		}
		c.mu.Lock()
		if c.err != nil { // shut meanwhile: nobody waits for this reply
			c.mu.Unlock()
			return
		}
		if len(c.pending) == 0 {
			c.mu.Unlock()
			c.shut(fmt.Errorf("reply to no command: %d %s", code, text), nil)
			return
		}
		next := c.pending[0]
		c.pending = c.pending[1:]
		c.mu.Unlock()
		_ = next.reply.Callback(Reply{Code: code, Text: text})
	}
}

// shut ends the connection, once, for err: it closes it and fails every
// reply still expected, but skip (which Cancel fails).
func (c *Client) shut(err error, skip *deferred.Deferred[Reply]) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	c.unwatch()
	c.conn.Close()
	for _, p := range pending {
		if p.reply != skip {
			_ = p.reply.Errback(fmt.Errorf("smtp: %s: %w", p.what, err))
		}
	}
}

// Close closes the connection. Replies still expected fail, and the
// reader goroutine ends.
func (c *Client) Close() error {
	c.shut(errClosed, nil)
	return nil
}

// gauge samples the goroutine count when the last conversation gets its
// greeting: all of them have connected then, and most are in flight.
type gauge struct {
	total               int
	greetings, finished atomic.Int64

	mu         sync.Mutex
	sampled    bool
	inFlight   int
	goroutines int
}

func (g *gauge) greeted() {
	if g.greetings.Add(1) != int64(g.total) {
		return
	}
	n := runtime.NumGoroutine()
	g.mu.Lock()
	g.sampled, g.inFlight, g.goroutines = true, g.total-int(g.finished.Load()), n
	g.mu.Unlock()
}

func (g *gauge) ended() { g.finished.Add(1) }

func (g *gauge) sample() (inFlight, goroutines int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight, g.goroutines, g.sampled
}
