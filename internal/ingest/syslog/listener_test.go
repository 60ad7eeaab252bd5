package syslog_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/syslog"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// msg5424 is an RFC 5424 message with text.
func msg5424(text string) string {
	return "<86>1 2026-01-02T03:04:05Z web1 app 1 - - " + text
}

func writeOctet(t testing.TB, c net.Conn, msgs ...string) {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		b = syslog.AppendOctetCounted(b, []byte(m))
	}
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// TestOctetCounting sends messages with octet counting and checks that the
// server's close after the sender's close_notify means every message is
// durable, in order, once.
func TestOctetCounting(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, "rsyslog-1", tlsconf.RoleWriter)
	const n = 300
	var msgs []string
	for i := range n {
		msgs = append(msgs, msg5424(fmt.Sprintf("message %d", i))+"\n")
	}
	writeOctet(t, c, msgs[:n/2]...)
	writeOctet(t, c, msgs[n/2:]...)
	if err := closeAndWait(t, c); err != nil {
		t.Fatalf("the server did not close cleanly: %v", err)
	}
	// No waiting: the clean close is the acknowledgement.
	got := e.syslogEntries(t)
	if len(got) != n {
		t.Fatalf("%d entries after the clean close, want %d", len(got), n)
	}
	for i, en := range got {
		if r := raw(t, en); r != msgs[i] {
			t.Fatalf("entry %d holds %q, want %q", i, r, msgs[i])
		}
		if en.env.Source != "rsyslog-1" || en.env.Event.Action != "syslog.app" || en.env.Event.Actor.ID != "app@web1" {
			t.Fatalf("entry %d: source %q, action %q, actor %q", i, en.env.Source, en.env.Event.Action, en.env.Event.Actor.ID)
		}
		if i > 0 && en.index != got[i-1].index+1 {
			t.Fatalf("entry %d at index %d after %d: not contiguous", i, en.index, got[i-1].index)
		}
	}
	waitFor(t, "the close to be logged", 5*time.Second, func() bool {
		return e.logs.Contains("syslog connection closed by the sender; everything received is durable")
	})
}

// TestNewlineFraming sends RFC 3164 and 5424 messages one per line, with CR
// LF, blank lines and an unterminated last line.
func TestNewlineFraming(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, "legacy", tlsconf.RoleAdmin)
	lines := "<13>Mar  4 05:06:00 host1 cron[12]: job done\n" +
		"<14>1 2026-01-02T03:04:05Z h a - - - second\r\n" +
		"\n" +
		"<13>last line without LF"
	if _, err := io.WriteString(c, lines); err != nil {
		t.Fatal(err)
	}
	if err := closeAndWait(t, c); err != nil {
		t.Fatal(err)
	}
	got := e.syslogEntries(t)
	want := []string{"<13>Mar  4 05:06:00 host1 cron[12]: job done", "<14>1 2026-01-02T03:04:05Z h a - - - second", "<13>last line without LF"}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if r := raw(t, got[i]); r != want[i] {
			t.Errorf("entry %d = %q, want %q", i, r, want[i])
		}
	}
	if a := got[0].env.Event.Actor.ID; a != "cron@host1" {
		t.Errorf("RFC 3164 actor = %q, want cron@host1", a)
	}
}

// TestBOMAnd64KiB sends a message with a BOM before MSG and messages of 64
// KiB and of the whole limit (256 KiB).
func TestBOMAnd64KiB(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, "big", tlsconf.RoleWriter)
	bomMsg := msg5424("\xef\xbb\xbfgrüße")
	head := msg5424("")
	k64 := head + strings.Repeat("a", 64<<10-len(head))
	k256 := head + strings.Repeat("b", syslog.DefaultMaxMessageSize-len(head))
	writeOctet(t, c, bomMsg, k64, k256)
	if err := closeAndWait(t, c); err != nil {
		t.Fatal(err)
	}
	got := e.syslogEntries(t)
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3", len(got))
	}
	if detail(t, got[0], "bom") != true || detail(t, got[0], "msg") != "grüße" || raw(t, got[0]) != bomMsg {
		t.Errorf("BOM message: bom %v, msg %q, raw %q", detail(t, got[0], "bom"), detail(t, got[0], "msg"), raw(t, got[0]))
	}
	for i, want := range []string{k64, k256} {
		if r := raw(t, got[i+1]); r != want {
			t.Errorf("message %d: kept %d bytes, want %d", i+1, len(r), len(want))
		}
	}
	if detail(t, got[2], "msg_truncated") != true {
		t.Error("256 KiB message: details.msg not marked truncated")
	}
}

// TestBadFramesDoNotStall opens a connection that stalls inside a frame,
// one that sends garbage and one that sends a message over the limit: the
// second and third are reset with a logged reason, the first stays open,
// and a fourth is served meanwhile.
func TestBadFramesDoNotStall(t *testing.T) {
	e := newEnv(t, nil)
	stalled := e.dial(t, "stalled", tlsconf.RoleWriter)
	writeOctet(t, stalled, msg5424("before the stall"))
	if _, err := io.WriteString(stalled, "100 <14>1 half a message"); err != nil {
		t.Fatal(err)
	}

	garbage := e.dial(t, "garbage", tlsconf.RoleWriter)
	writeOctet(t, garbage, msg5424("valid before garbage"))
	if _, err := io.WriteString(garbage, "GET / HTTP/1.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	oversize := e.dial(t, "oversize", tlsconf.RoleWriter)
	// The server resets the connection as soon as it reads the oversize
	// length, which can be while this write is still sending the body.
	frames := syslog.AppendOctetCounted(nil, []byte(msg5424("valid before oversize")))
	frames = syslog.AppendOctetCounted(frames, []byte(strings.Repeat("x", syslog.DefaultMaxMessageSize+1)))
	_, werr := oversize.Write(frames)
	if werr != nil && !errors.Is(werr, syscall.ECONNRESET) && !errors.Is(werr, syscall.EPIPE) {
		t.Fatalf("write: %v", werr)
	}

	for _, c := range []*tls.Conn{garbage, oversize} {
		if c == oversize && werr != nil {
			// The write met the reset, and took the socket's one error
			// report with it: a read now sees only the end of the stream.
			continue
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("reading from a connection with a bad frame: %v, want a reset", err)
		}
	}
	good := e.dial(t, "good", tlsconf.RoleWriter)
	writeOctet(t, good, msg5424("served meanwhile"))
	if err := closeAndWait(t, good); err != nil {
		t.Fatal(err)
	}

	bySource := map[string][]string{}
	for _, en := range e.syslogEntries(t) {
		bySource[en.env.Source] = append(bySource[en.env.Source], raw(t, en))
	}
	for source, want := range map[string]string{"stalled": "before the stall", "garbage": "valid before garbage", "oversize": "valid before oversize", "good": "served meanwhile"} {
		if got := bySource[source]; len(got) != 1 || got[0] != msg5424(want) {
			t.Errorf("%s: entries %q, want just %q", source, got, msg5424(want))
		}
	}
	for _, s := range []string{
		`level=ERROR msg="syslog connection reset: bad frame at byte 65: frame starts with 'G': want MSG-LEN (octet counting)" identity=garbage`,
		fmt.Sprintf(`level=ERROR msg="syslog connection reset: bad frame at byte 66: message of %d bytes exceeds the limit of %d" identity=oversize`, syslog.DefaultMaxMessageSize+1, syslog.DefaultMaxMessageSize),
	} {
		if !e.logs.Contains(s) {
			t.Errorf("log lacks %s", s)
		}
	}
	// The stalled connection is still open: finishing its frame works.
	if _, err := io.WriteString(stalled, strings.Repeat("!", 100-len("<14>1 half a message"))); err != nil {
		t.Fatal(err)
	}
	if err := closeAndWait(t, stalled); err != nil {
		t.Fatal(err)
	}
	if n := len(e.syslogEntries(t)); n != 5 {
		t.Errorf("%d entries after the stalled frame was finished, want 5", n)
	}
}

// TestTruncatedFrame closes the connection inside a frame: the partial
// message is dropped with a warning, the whole ones before it are kept.
func TestTruncatedFrame(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, "cut", tlsconf.RoleWriter)
	writeOctet(t, c, msg5424("whole"))
	io.WriteString(c, "50 <14>1 cut short")
	if err := closeAndWait(t, c); err != nil {
		t.Fatal(err)
	}
	if got := e.syslogEntries(t); len(got) != 1 || raw(t, got[0]) != msg5424("whole") {
		t.Errorf("entries %v, want the whole message only", got)
	}
	if !e.logs.Contains("syslog connection ended inside a frame; the partial message was dropped") {
		t.Error("no warning about the partial message")
	}
}

// TestRefused checks that only verified writer and admin certificates that
// are not revoked get to send.
func TestRefused(t *testing.T) {
	e := newEnv(t, nil)
	other, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	foreignPEM, foreignKey, err := other.IssueClient("foreign", tlsconf.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tls.X509KeyPair(foreignPEM, foreignKey)
	if err != nil {
		t.Fatal(err)
	}
	revoked := e.clientCert(t, "revoked", tlsconf.RoleWriter)
	if err := tlsconf.WriteRevocations(e.dir+"/pki/"+tlsconf.RevokedFile, []tlsconf.Revocation{{Serial: tlsconf.SerialString(revoked.Leaf.SerialNumber), Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := e.revoked.Reload(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		log  string
	}{
		{"reader role", ptr(e.clientCert(t, "auditor", tlsconf.RoleReader)), `reason="auditor has role reader; sending syslog needs writer or admin"`},
		{"no certificate", nil, "client didn't provide a certificate"},
		{"foreign CA", &foreign, "certificate signed by unknown authority"},
		{"revoked", &revoked, `client certificate revoked: \"revoked\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: e.pki.CAPool(), ServerName: "localhost", MaxVersion: tls.VersionTLS12}
			if tc.cert != nil {
				cfg.Certificates = []tls.Certificate{*tc.cert}
			}
			// TLS 1.2 reports a refused certificate in the handshake; a
			// refused role ends the connection after it.
			c, err := tls.Dial("tcp", e.addr, cfg)
			if tc.name == "reader role" {
				if err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.Copy(io.Discard, c); err != nil {
					t.Errorf("the refused connection ended with %v, want a close", err)
				}
				c.Close()
			} else if err == nil {
				c.Close()
				t.Fatal("the handshake succeeded")
			}
			waitFor(t, "the refusal to be logged", 5*time.Second, func() bool { return e.logs.Contains(tc.log) })
		})
	}
	if n := len(e.syslogEntries(t)); n != 0 {
		t.Errorf("%d entries from refused senders", n)
	}
}

// TestSequenceGapAndResend sends syslog-ng style sequence numbers with a
// gap, then sends the last message again on a new connection, as a sender
// does after a reconnect.
func TestSequenceGapAndResend(t *testing.T) {
	e := newEnv(t, nil)
	seqMsg := func(n int) string {
		return fmt.Sprintf(`<14>1 2026-01-02T03:04:0%dZ host1 app - - [meta sequenceId="%d"] message %d`, n, n, n)
	}
	c := e.dial(t, "syslog-ng-1", tlsconf.RoleWriter)
	writeOctet(t, c, seqMsg(1), seqMsg(2), seqMsg(5))
	if err := closeAndWait(t, c); err != nil {
		t.Fatal(err)
	}
	c = e.dial(t, "syslog-ng-1", tlsconf.RoleWriter)
	writeOctet(t, c, seqMsg(5), seqMsg(6))
	if err := closeAndWait(t, c); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range e.syslogEntries(t) {
		if en.env.Event.Action == "syslog.sequence_gap" {
			got = append(got, fmt.Sprintf("gap %s %s", en.env.Event.Reason, en.env.Event.Details))
			continue
		}
		got = append(got, raw(t, en))
	}
	want := []string{
		seqMsg(1), seqMsg(2),
		`gap syslog-ng-1 skipped from sequenceId 2 to 5: 2 messages missing {"previous_sequence_id":2,"sequence_id":5,"missing":2,"hostname":"host1","app_name":"app"}`,
		seqMsg(5), seqMsg(6),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !e.logs.Contains(`msg="syslog sequence gap: messages missing" identity=syslog-ng-1`) {
		t.Error("no warning logged for the gap")
	}
}

// TestSequenceRecalledAfterRestart checks that a gap across a restart of
// the listener is seen: the last sequence numbers are read from the log.
func TestSequenceRecalledAfterRestart(t *testing.T) {
	e := newEnv(t, nil)
	seqMsg := func(n int) string {
		return fmt.Sprintf(`<14>1 2026-01-02T03:04:05Z host1 app - - [meta sequenceId="%d"] message %d`, n, n)
	}
	c := e.dial(t, "syslog-ng-2", tlsconf.RoleWriter)
	writeOctet(t, c, seqMsg(1), seqMsg(2))
	if err := closeAndWait(t, c); err != nil {
		t.Fatal(err)
	}
	e.restart(t)
	c = e.dial(t, "syslog-ng-2", tlsconf.RoleWriter)
	writeOctet(t, c, seqMsg(4))
	if err := closeAndWait(t, c); err != nil {
		t.Fatal(err)
	}
	got := e.syslogEntries(t)
	if len(got) != 4 || got[2].env.Event.Action != "syslog.sequence_gap" || !strings.Contains(got[2].env.Event.Reason, "from sequenceId 2 to 4: 1 messages missing") {
		for _, en := range got {
			t.Logf("%s %s", en.env.Event.Action, en.env.Event.Reason)
		}
		t.Fatal("want the two messages, a gap of one, and the third message")
	}
}

// TestShutdownDrains stops the listener while a sender is connected: what
// it sent is appended, and it gets a close_notify (before the reset).
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(t, "busy", tlsconf.RoleWriter)
	for i := range 50 {
		writeOctet(t, c, msg5424(fmt.Sprint("before shutdown ", i)))
	}
	time.Sleep(50 * time.Millisecond) // let the bytes reach the server's socket
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.ln.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.syslogEntries(t)); n != 50 {
		t.Errorf("%d entries after Shutdown returned, want 50", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("the sender saw %v, want a clean close", err)
	}
	if _, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pki.CAPool(), ServerName: "localhost"}); err == nil {
		t.Error("the listener still accepts after Shutdown")
	}
}

// TestRevokedWhileConnected revokes a sender's certificate while it is
// connected: its next messages are not appended and the connection is reset.
func TestRevokedWhileConnected(t *testing.T) {
	e := newEnv(t, nil)
	cert := e.clientCert(t, "compromised", tlsconf.RoleWriter)
	c := e.dialConfig(t, &tls.Config{RootCAs: e.pki.CAPool(), ServerName: "localhost", Certificates: []tls.Certificate{cert}})
	writeOctet(t, c, msg5424("before"))
	waitFor(t, "the first message", 5*time.Second, func() bool { return len(e.syslogEntries(t)) == 1 })
	if err := tlsconf.WriteRevocations(e.dir+"/pki/"+tlsconf.RevokedFile, []tlsconf.Revocation{{Serial: tlsconf.SerialString(cert.Leaf.SerialNumber), Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := e.revoked.Reload(); err != nil {
		t.Fatal(err)
	}
	writeOctet(t, c, msg5424("after"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after revocation: %v, want a reset", err)
	}
	if n := len(e.syslogEntries(t)); n != 1 {
		t.Errorf("%d entries, want 1: nothing after the revocation", n)
	}
	waitFor(t, "the revocation to be logged", 5*time.Second, func() bool { return e.logs.Contains(`was revoked`) })
}

// failingIngester fails every append after the first ok ones.
type failingIngester struct {
	mu sync.Mutex
	ok int
	n  int
}

func (f *failingIngester) Ingest(_ context.Context, _ tlsconf.Identity, _ string, evs []event.Event) ([]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ok == 0 {
		return nil, errors.New("disk on fire")
	}
	f.ok--
	f.n += len(evs)
	return make([]int64, len(evs)), nil
}

// TestAppendFailureResets checks that a sender whose messages could not be
// appended sees a reset, not a clean close.
func TestAppendFailureResets(t *testing.T) {
	e := newEnv(t, func(c *syslog.Config) { c.Ingester = &failingIngester{} })
	c := e.dial(t, "unlucky", tlsconf.RoleWriter)
	writeOctet(t, c, msg5424("lost"))
	// The reset may come before the close_notify is sent, or after.
	err := c.CloseWrite()
	if err == nil {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after a failed append the sender saw %v, want a reset", err)
	}
	waitFor(t, "the failure to be logged", 5*time.Second, func() bool {
		return e.logs.Contains("syslog connection reset: messages could not be appended") && e.logs.Contains("disk on fire")
	})
}

func ptr[T any](v T) *T { return &v }
