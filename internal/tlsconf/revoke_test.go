package tlsconf

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time               { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration)      { c.ns.Add(int64(d)) }
func (c *fakeClock) Stamp(t *testing.T, p string) { setMod(t, p, c.Now()) }

// setMod sets path's modification time, so that two writes within the file
// system's timestamp granularity still look different.
func setMod(t *testing.T, path string, mod time.Time) {
	t.Helper()
	if err := os.Chtimes(path, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func TestRevocationList(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), RevokedFile)
	clock := newFakeClock()
	var (
		mu   sync.Mutex
		errs []error
	)
	rl, err := NewRevocationList(RevocationConfig{
		File: file,
		Now:  clock.Now,
		OnError: func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	reported := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), errs...)
	}
	cfg, err := ServerConfig(Modern, StaticCertificate{p.ServerCertificate()}, p.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	cfg.VerifyConnection = rl.VerifyConnection
	s := serve(t, cfg)

	pair := func(name string) (tls.Certificate, string) {
		t.Helper()
		certPEM, keyPEM, err := p.IssueClient(name, RoleWriter)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c, SerialString(c.Leaf.SerialNumber)
	}
	alice, aliceSerial := pair("alice")
	bob, _ := pair("bob")
	// Each dial uses a fresh config, hence no session resumption.
	accepted := func(t *testing.T, cert tls.Certificate) bool {
		t.Helper()
		c := &tls.Config{RootCAs: p.CAPool(), ServerName: "localhost", Certificates: []tls.Certificate{cert}}
		_, cerr := dial(t, s.addr, c)
		h := s.result(t)
		if (cerr == nil) != (h.err == nil) {
			t.Fatalf("client error %v, server error %v; want both or neither", cerr, h.err)
		}
		if h.err != nil && !errors.Is(h.err, ErrRevoked) {
			t.Fatalf("server error %v, want ErrRevoked", h.err)
		}
		return h.err == nil
	}

	if !accepted(t, alice) || !accepted(t, bob) {
		t.Fatal("certificate refused before any revocation")
	}

	if err := WriteRevocations(file, []Revocation{{Serial: aliceSerial, Name: "alice", Time: clock.Now()}}); err != nil {
		t.Fatal(err)
	}
	clock.Stamp(t, file)
	if !accepted(t, alice) {
		t.Fatal("file checked again before CheckInterval passed")
	}
	clock.Advance(DefaultRevocationCheckInterval)
	if accepted(t, alice) {
		t.Fatal("revoked certificate accepted after CheckInterval")
	}
	if !accepted(t, bob) {
		t.Fatal("unrevoked certificate refused")
	}
	if rl.Len() != 1 {
		t.Errorf("Len = %d, want 1", rl.Len())
	}

	// A corrupt file, then an unreadable one (a directory, which even root
	// cannot read as a file): each is reported once and the list kept.
	if err := os.WriteFile(file, []byte(`{"revoked": [{"serial": "zz"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	clock.Advance(DefaultRevocationCheckInterval)
	clock.Stamp(t, file)
	if accepted(t, alice) {
		t.Fatal("corrupt file un-revoked a certificate")
	}
	if errs := reported(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "bad serial") {
		t.Fatalf("reported %v, want one bad serial error", errs)
	}
	clock.Advance(DefaultRevocationCheckInterval)
	if accepted(t, alice) || len(reported()) != 1 {
		t.Fatalf("after an unchanged corrupt file: reported %v, want one error", reported())
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(file, 0o700); err != nil {
		t.Fatal(err)
	}
	clock.Advance(DefaultRevocationCheckInterval)
	if accepted(t, alice) {
		t.Fatal("unreadable file un-revoked a certificate")
	}
	if errs := reported(); len(errs) != 2 {
		t.Fatalf("reported %v, want two errors", errs)
	}
	if err := rl.Reload(); err == nil {
		t.Error("Reload of an unreadable file succeeded")
	}

	// A good file again: alice's revocation lifted.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := WriteRevocations(file, nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(DefaultRevocationCheckInterval)
	clock.Stamp(t, file)
	if !accepted(t, alice) {
		t.Fatal("certificate still refused after its revocation was removed")
	}
}

func TestNewRevocationList(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, RevokedFile)
	rl, err := NewRevocationList(RevocationConfig{File: file})
	if err != nil || rl.Len() != 0 {
		t.Fatalf("NewRevocationList(missing file) = %v, %v; want an empty list", rl, err)
	}
	tests := []struct {
		name, data string
		ok         bool
	}{
		{"empty list", `{"revoked": []}`, true},
		{"upper-case hex", `{"revoked": [{"serial": "0AbC", "time": "2026-01-02T03:04:05Z"}]}`, true},
		{"not JSON", `revoked: 1`, false},
		{"unknown field", `{"revoked": [], "extra": 1}`, false},
		{"bad serial", `{"revoked": [{"serial": "12g"}]}`, false},
		{"negative serial", `{"revoked": [{"serial": "-1"}]}`, false},
		{"trailing data", `{"revoked": []} {}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := NewRevocationList(RevocationConfig{File: file})
			if (err == nil) != tt.ok {
				t.Errorf("NewRevocationList(%s) error = %v, want ok %v", tt.data, err, tt.ok)
			}
			_, rerr := ReadRevocations(file)
			if (rerr == nil) != tt.ok {
				t.Errorf("ReadRevocations(%s) error = %v, want ok %v", tt.data, rerr, tt.ok)
			}
		})
	}
}

func TestRevocationsRoundTrip(t *testing.T) {
	file := filepath.Join(t.TempDir(), RevokedFile)
	want := []Revocation{{Serial: "abc", Name: "alice", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	if err := WriteRevocations(file, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRevocations(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("ReadRevocations = %+v, want %+v", got, want)
	}
}
