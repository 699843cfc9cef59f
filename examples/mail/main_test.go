package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/deferred-go/deferred"
	"github.com/deferred-go/deferred/examples/internal/clitest"
)

// TestMain fails the tests if a goroutine (a server, a connection's
// reader, a dial) outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// noTimeout is a -timeout that no conversation reaches, however busy the
// machine: only the timeout tests may depend on time, and they run in a
// synctest bubble or assert what holds at any speed.
const noTimeout = "1h"

// mail runs run with args.
func mail(ctx context.Context, args ...string) clitest.Result {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return clitest.Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

func startTestServer(t *testing.T) *server {
	t.Helper()
	s, err := startServer()
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func TestMailDeliversEveryMessageWithItsEnvelopeAndBody(t *testing.T) {
	t.Parallel()
	s := startTestServer(t)
	const n = 7
	from, to := "carol@example.net", "dave@example.org"
	r := mail(context.Background(), "-server", s.Addr(), "-count", strconv.Itoa(n), "-from", from, "-to", to, "-timeout", noTimeout)
	require.Equal(t, clitest.Result{Code: 0, Stdout: r.Stdout}, r)

	got := s.Received()
	require.Len(t, got, n)
	sort.Slice(got, func(i, j int) bool { return got[i].Data < got[j].Data })
	var want []envelope
	for i := 1; i <= n; i++ {
		want = append(want, envelope{From: from, To: []string{to}, Data: body(from, to, i, n)})
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Data < want[j].Data })
	assert.Equal(t, want, got, "the server got each message once, dot-escaped line included")

	// One line per message, in order, each with the reply to that very
	// message: the server's id is a digest of what it received.
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	require.Len(t, lines, n+1, r.Stdout)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%x", sha256.Sum256([]byte(body(from, to, i, n))))[:8]
		assert.Equal(t, fmt.Sprintf("message %d of %d to %s: 250 2.0.0 OK: queued as %s", i, n, to, id), lines[i-1])
	}
}

var gaugeRE = regexp.MustCompile(`^when the last connection was greeted: (\d+) conversations in flight, (\d+) goroutines in all$`)

func TestMailDefaultsSendFiveMessagesAtOnce(t *testing.T) {
	t.Parallel()
	r := mail(context.Background(), "-timeout", noTimeout)
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Empty(t, r.Stderr)
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	require.Len(t, lines, 6, r.Stdout)
	for i := 1; i <= 5; i++ {
		assert.Regexp(t, fmt.Sprintf(`^message %d of 5 to bob@example\.com: 250 2\.0\.0 OK: queued as [0-9a-f]{8}$`, i), lines[i-1])
	}
	m := gaugeRE.FindStringSubmatch(lines[5])
	require.NotNil(t, m, lines[5])
	inFlight, _ := strconv.Atoi(m[1])
	goroutines, _ := strconv.Atoi(m[2])
	assert.LessOrEqual(t, inFlight, 5)
	assert.Positive(t, inFlight, "the last conversation to be greeted was in flight")
	// Each conversation in flight has its connection's reader until it
	// ends; besides, the server has its accept loop and run its caller.
	// (The server's handlers are there too, but one may have answered QUIT
	// and ended before its client counts the conversation ended.)
	assert.GreaterOrEqual(t, goroutines, inFlight+2)
}

func TestMailReportsARefusedRecipientWithItsReplyCode(t *testing.T) {
	t.Parallel()
	s := startTestServer(t)
	r := mail(context.Background(), "-server", s.Addr(), "-count", "1", "-to", "nobody@example.com", "-timeout", noTimeout)

	assert.Equal(t, clitest.Result{
		Code:   1,
		Stderr: "mail: message 1 of 1 not sent: smtp: RCPT TO:<nobody@example.com> refused: 550 5.1.1 <nobody@example.com>: no such user\n",
	}, r, "no message line for a message not sent")
	assert.Empty(t, s.Received())
}

func TestMailCancelsTheOtherConversationsAfterAFailure(t *testing.T) {
	t.Parallel()
	// The default server, five conversations, all refused at RCPT: Gather
	// fails at the first, run cancels the rest and waits for them, and
	// goleak checks that every connection's reader has ended.
	r := mail(context.Background(), "-to", "nobody@example.com", "-timeout", noTimeout)

	assert.Equal(t, 1, r.Code)
	assert.Empty(t, r.Stdout)
	assert.Regexp(t, `^mail: message [1-5] of 5 not sent: smtp: RCPT TO:<nobody@example\.com> refused: 550 .*\n$`, r.Stderr)
}

func TestMailReportsARefusedConnection(t *testing.T) {
	t.Parallel()
	addr := strings.TrimSuffix(strings.TrimPrefix(clitest.RefusedURL(t), "http://"), "/")
	r := mail(context.Background(), "-server", addr, "-count", "2", "-timeout", noTimeout)

	assert.Equal(t, 1, r.Code)
	assert.Regexp(t, `^mail: message [12] of 2 not sent: dial tcp `+regexp.QuoteMeta(addr)+`: connect: connection refused\n$`, r.Stderr)
}

// TestMailTimesOutOnASilentServer runs on a real socket, so it asserts what
// holds at any speed: the conversation times out, waiting for the
// connection or, once connected, for the greeting.
func TestMailTimesOutOnASilentServer(t *testing.T) {
	t.Parallel()
	// A listener that never accepts: the kernel completes the connection,
	// and no greeting ever comes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	r := mail(context.Background(), "-server", ln.Addr().String(), "-count", "2", "-timeout", "100ms")

	assert.Equal(t, 1, r.Code)
	assert.Empty(t, r.Stdout)
	assert.Regexp(t, `^mail: message [12] of 2 not sent: smtp: timed out after 100ms waiting for (the connection|the greeting)\n$`, r.Stderr)
}

// scriptedServer plays an SMTP server on conn: it sends the first of
// replies as its greeting and each next one in answer to a command (the
// message after DATA's 354 counts as one), then reads on without answering
// until conn is closed.
func scriptedServer(conn net.Conn, replies []string) {
	defer conn.Close()
	t := textproto.NewConn(conn)
	for i, r := range replies {
		if i > 0 {
			if _, err := t.ReadLine(); err != nil {
				return
			}
			if replies[i-1] == "354 go ahead" { // that line began the message
				if _, err := t.ReadDotBytes(); err != nil {
					return
				}
			}
		}
		if t.PrintfLine("%s", r) != nil {
			return
		}
	}
	_, _ = io.Copy(io.Discard, conn)
}

// TestMailTimeoutNamesTheStep runs a conversation with a server that stops
// answering at each step in turn, in a synctest bubble: the timeout fires
// once everything else waits, and names the step it waits on.
func TestMailTimeoutNamesTheStep(t *testing.T) {
	t.Parallel()
	replies := []string{"220 hello", "250 hi", "250 ok", "250 ok", "354 go ahead", "250 queued", "221 bye"}
	steps := []string{
		"the greeting",
		"the reply to HELO localhost",
		"the reply to MAIL FROM:<a@example.com>",
		"the reply to RCPT TO:<b@example.com>",
		"the reply to DATA",
		"the reply to the message",
		"the reply to QUIT",
	}
	m := Message{From: "a@example.com", To: "b@example.com", Body: body("a@example.com", "b@example.com", 1, 1)}
	for n, step := range steps {
		t.Run(step, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, server := net.Pipe()
				go scriptedServer(server, replies[:n])
				start := time.Now()

				_, err := converse(deferred.Succeed(newClient(context.Background(), client)), "localhost", m, time.Minute, &gauge{total: 1}).
					Await(context.Background())

				var timedOut *TimeoutError
				require.ErrorAs(t, err, &timedOut)
				assert.Equal(t, step, timedOut.Step)
				assert.Equal(t, "smtp: timed out after 1m0s waiting for "+step, err.Error())
				assert.ErrorIs(t, err, deferred.ErrTimeout)
				assert.Equal(t, time.Minute, time.Since(start), "the bubble's clock")
			})
		})
	}
	t.Run("the connection", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, err := converse(deferred.New[*Client](), "localhost", m, time.Minute, &gauge{total: 1}).
				Await(context.Background())

			assert.EqualError(t, err, "smtp: timed out after 1m0s waiting for the connection")
		})
	})
	t.Run("no timeout when the server answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			client, server := net.Pipe()
			go scriptedServer(server, replies)

			r, err := converse(deferred.Succeed(newClient(context.Background(), client)), "localhost", m, time.Minute, &gauge{total: 1}).
				Await(context.Background())

			require.NoError(t, err)
			assert.Equal(t, Reply{250, "queued"}, r)
		})
	})
}

// TestMailCtrlC interrupts a run once the server has a connection that it
// never greets: whatever the conversations were doing, run says it was
// interrupted.
func TestMailCtrlC(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- conn
		}
	}()
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	done := make(chan clitest.Result)
	go func() { done <- mail(ctx, "-server", ln.Addr().String(), "-timeout", noTimeout) }()

	var conns []net.Conn
	conns = append(conns, <-accepted) // one conversation is under way: Ctrl-C
	interrupt()
	r := <-done
	ln.Close()
	for conn := range accepted {
		conns = append(conns, conn)
	}
	for _, conn := range conns {
		conn.Close()
	}

	assert.Equal(t, clitest.Result{Code: 130, Stderr: "mail: interrupted\n"}, r)
}

func TestMailClientMatchesRepliesToCommandsInOrder(t *testing.T) {
	t.Parallel()
	s := startTestServer(t)
	c, err := Dial(context.Background(), s.Addr()).Await(context.Background())
	require.NoError(t, err)
	defer c.Close()
	greeting, err := c.Greeting().Await(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 220, greeting.Code)

	// Three commands out before any reply is in: each Deferred gets the
	// reply to its own command.
	helo := c.Command("HELO test")
	bogus := c.Command("BOGUS")
	noop := c.Command("NOOP")
	r, err := helo.Await(context.Background())
	require.NoError(t, err)
	assert.Equal(t, Reply{250, "localhost"}, r)
	_, err = bogus.Await(context.Background())
	var refused *ReplyError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, ReplyError{Command: "BOGUS", Reply: Reply{502, "5.5.2 command not recognized"}}, *refused)
	r, err = noop.Await(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 250, r.Code)

	// After QUIT the server hangs up: a later command fails, naming itself.
	_, err = c.Command("QUIT").Await(context.Background())
	require.NoError(t, err)
	_, err = c.Command("NOOP").Await(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "smtp: NOOP: connection ended")
}

func TestMailCancellingAReplyClosesTheConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never greets
	require.NoError(t, err)
	defer ln.Close()
	c, err := Dial(context.Background(), ln.Addr().String()).Await(context.Background())
	require.NoError(t, err)
	greeting := c.Greeting()
	noop := c.Command("NOOP")
	greeting.Cancel()

	_, err = greeting.Await(context.Background())
	assert.ErrorIs(t, err, deferred.ErrCancelled)
	_, err = noop.Await(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "smtp: NOOP: connection closed: the reply to connect was cancelled")
	assert.False(t, errors.Is(err, deferred.ErrCancelled), "the other replies fail with the connection, not as cancelled")
}

func TestMailFlags(t *testing.T) {
	t.Parallel()
	p := clitest.Program{Name: name, Run: run, Synopsis: synopsis}
	clitest.TestFlags(t, p)
	for _, tc := range []struct {
		message string
		args    []string
	}{
		{`invalid value "x" for flag -count: parse error`, []string{"-count", "x"}},
		{"-count must be at least 1, not 0", []string{"-count", "0"}},
		{`want no arguments, got ["extra-arg"]`, []string{"extra-arg"}},
		{`want no arguments, got ["bob@example.com"]`, []string{"-count", "1", "bob@example.com"}},
	} {
		p.UsageError(t, tc.message, tc.args...)
	}
}
