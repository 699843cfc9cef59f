package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deferred-go/deferred"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the tests if a goroutine (a server, a connection's
// reader, a dial) outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, []string{
		"-server", s.Addr(), "-count", strconv.Itoa(n), "-from", from, "-to", to}))

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
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, n+1, out.String())
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%x", sha256.Sum256([]byte(body(from, to, i, n))))[:8]
		assert.Equal(t, fmt.Sprintf("message %d of %d to %s: 250 2.0.0 OK: queued as %s", i, n, to, id), lines[i-1])
	}
}

var gaugeRE = regexp.MustCompile(`^when the last connection was greeted: (\d+) conversations in flight, (\d+) goroutines in all$`)

func TestMailDefaultsSendFiveMessagesAtOnce(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, nil))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 6, out.String())
	for i := 1; i <= 5; i++ {
		assert.Regexp(t, fmt.Sprintf(`^message %d of 5 to bob@example\.com: 250 2\.0\.0 OK: queued as [0-9a-f]{8}$`, i), lines[i-1])
	}
	m := gaugeRE.FindStringSubmatch(lines[5])
	require.NotNil(t, m, lines[5])
	inFlight, _ := strconv.Atoi(m[1])
	goroutines, _ := strconv.Atoi(m[2])
	assert.LessOrEqual(t, inFlight, 5)
	assert.Positive(t, inFlight, "the last conversation to be greeted was in flight")
	// Each conversation in flight has its connection's reader and, on the
	// loopback server, its handler; the server also has its accept loop.
	assert.GreaterOrEqual(t, goroutines, 2*inFlight+1)
}

func TestMailReportsARefusedRecipientWithItsReplyCode(t *testing.T) {
	t.Parallel()
	s := startTestServer(t)
	var out bytes.Buffer
	err := run(context.Background(), &out, []string{"-server", s.Addr(), "-count", "1", "-to", "nobody@example.com"})
	require.Error(t, err)
	var refused *ReplyError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, 550, refused.Code)
	assert.Equal(t, "RCPT TO:<nobody@example.com>", refused.Command)
	// What main prints.
	assert.Equal(t, "message 1 of 1 not sent: smtp: RCPT TO:<nobody@example.com> refused: 550 5.1.1 <nobody@example.com>: no such user", err.Error())
	assert.Empty(t, s.Received())
	assert.Empty(t, out.String(), "no message line for a message not sent")
}

func TestMailCancelsTheOtherConversationsAfterAFailure(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	// The default server, five conversations, all refused at RCPT: Gather
	// fails at the first, run cancels the rest and waits for them, and
	// goleak checks that every connection's reader has ended.
	err := run(context.Background(), &out, []string{"-to", "nobody@example.com"})
	var refused *ReplyError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, 550, refused.Code)
	assert.Regexp(t, `^message [1-5] of 5 not sent: .*: 550 `, err.Error())
}

func TestMailTimesOutOnASilentServer(t *testing.T) {
	t.Parallel()
	// A listener that never accepts: the kernel completes the connection,
	// and no greeting ever comes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var out bytes.Buffer
	err = run(context.Background(), &out, []string{"-server", ln.Addr().String(), "-count", "2", "-timeout", "100ms"})
	assert.ErrorIs(t, err, deferred.ErrTimeout)
}

func TestMailStopsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	err = run(ctx, &out, []string{"-server", ln.Addr().String()})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
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

func TestMailRejectsBadFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	assert.Error(t, run(context.Background(), &out, []string{"-count", "0"}))
	assert.Error(t, run(context.Background(), &out, []string{"-bogus"}))
}
