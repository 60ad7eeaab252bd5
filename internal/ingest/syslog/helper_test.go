package syslog_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/syslog"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/servertest"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// env is a log, a server and a syslog listener on 127.0.0.1, all in process,
// over real TLS and a real data directory.
type env struct {
	dir     string
	log     *ledger.Log
	pki     *tlsconf.PKI
	srv     *server.Server
	revoked *tlsconf.RevocationList
	ln      *syslog.Listener
	addr    string
	logs    *servertest.Buffer // what the listener logged
	stop    func()             // shuts the listener down and closes the log; idempotent
	cfg     syslog.Config
	served  chan error
}

// listen starts a listener on e.cfg.Addr.
func (e *env) listen(t testing.TB) {
	t.Helper()
	ln, err := syslog.Listen(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.ln, e.addr, e.served = ln, ln.Addr().String(), make(chan error, 1)
	go func() { e.served <- ln.Serve() }()
}

// shutdown stops the listener gracefully.
func (e *env) shutdown(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.ln.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-e.served; !errors.Is(err, syslog.ErrListenerClosed) {
		t.Errorf("Serve = %v, want ErrListenerClosed", err)
	}
}

// restart stops the listener gracefully and starts another on the same
// address, with the same log.
func (e *env) restart(t testing.TB) {
	t.Helper()
	e.shutdown(t)
	e.cfg.Addr = e.addr
	e.listen(t)
}

// newEnv starts an env; edit may change the listener's configuration.
func newEnv(t testing.TB, edit func(*syslog.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := tlsconf.NewRevocationList(tlsconf.RevocationConfig{File: filepath.Join(dir, "pki", tlsconf.RevokedFile), CheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Log: l, LogDir: filepath.Join(dir, "log"), ClientCAs: pki.CAPool(), Revoked: revoked.Revoked})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tlsconf.ServerConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	logs := &servertest.Buffer{}
	cfg := syslog.Config{
		Addr:      "127.0.0.1:0",
		TLS:       tc,
		ClientCAs: pki.CAPool(),
		Revoked:   revoked.Revoked,
		Ingester:  srv,
		Log:       l,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	e := &env{dir: dir, log: l, pki: pki, srv: srv, revoked: revoked, logs: logs, cfg: cfg}
	e.listen(t)
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			e.shutdown(t)
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("listener log:\n%s", logs.String())
		}
	})
	return e
}

// clientCert issues a client certificate for name with role.
func (e *env) clientCert(t testing.TB, name string, role tlsconf.Role) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := e.pki.IssueClient(name, role)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// dial connects with a client certificate for name with role (none if role
// is empty) and completes the handshake.
func (e *env) dial(t testing.TB, name string, role tlsconf.Role) *tls.Conn {
	t.Helper()
	tc := &tls.Config{RootCAs: e.pki.CAPool(), ServerName: "localhost"}
	if role != "" {
		tc.Certificates = []tls.Certificate{e.clientCert(t, name, role)}
	}
	return e.dialConfig(t, tc)
}

func (e *env) dialConfig(t testing.TB, tc *tls.Config) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", e.addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closeAndWait half-closes c (close_notify) and waits for the server to
// close its side: the acknowledgement that everything sent is durable. It
// returns the error that ended the wait: nil for a clean close.
func closeAndWait(t testing.TB, c *tls.Conn) error {
	t.Helper()
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return err
}

// entry is a decoded leaf.
type entry struct {
	index int64
	env   event.Envelope
	leaf  []byte
}

// entries returns every entry of the log.
func (e *env) entries(t testing.TB) []entry {
	t.Helper()
	ctx := context.Background()
	size := e.log.Size()
	var out []entry
	for lo := int64(0); lo < size; lo += 256 {
		leaves, err := e.log.ReadEntries(ctx, lo, min(lo+256, size))
		if err != nil {
			t.Fatal(err)
		}
		for i, leaf := range leaves {
			body, err := e.log.Body(ctx, leaf)
			if err != nil {
				t.Fatal(err)
			}
			env, err := event.DecodeLeaf(body)
			if err != nil {
				t.Fatalf("entry %d: %v\n%s", lo+int64(i), err, body)
			}
			out = append(out, entry{index: lo + int64(i), env: env, leaf: body})
		}
	}
	return out
}

// syslogEntries returns the entries appended via syslog.
func (e *env) syslogEntries(t testing.TB) []entry {
	t.Helper()
	var out []entry
	for _, en := range e.entries(t) {
		if en.env.Via == syslog.Via {
			out = append(out, en)
		}
	}
	return out
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// raw returns the original message text an entry keeps.
func raw(t testing.TB, en entry) string {
	t.Helper()
	var o struct {
		Raw       *string `json:"raw"`
		RawBase64 []byte  `json:"raw_base64"`
	}
	if err := json.Unmarshal(en.env.Event.Original, &o); err != nil {
		t.Fatal(err)
	}
	if o.Raw != nil {
		return *o.Raw
	}
	return string(o.RawBase64)
}

// detail returns one member of an entry's details.
func detail(t testing.TB, en entry, name string) any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(en.env.Event.Details, &d); err != nil {
		t.Fatal(err)
	}
	return d[name]
}
