package tlsconf

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writePair replaces certFile and keyFile (by rename, as an operator's tool
// would) with a new self-signed pair named cn, with modification time mod.
func writePair(t *testing.T, certFile, keyFile, cn string, mod time.Time) {
	t.Helper()
	key, keyPEM, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn},
		DNSNames:  []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour),
		NotAfter:  time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, keyFile, keyPEM, mod)
	replaceFile(t, certFile, pemCert(der), mod)
}

func replaceFile(t *testing.T, path string, data []byte, mod time.Time) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mod, mod); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// peerName dials s and returns the CommonName of the certificate it served.
func peerName(t *testing.T, s *testServer) (string, *tls.Conn) {
	t.Helper()
	c, err := dial(t, s.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if h := s.result(t); h.err != nil {
		t.Fatal(h.err)
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, c
}

type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs)
}

func TestReloaderReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	writePair(t, certFile, keyFile, "one", t0)
	var errs errorLog
	r, err := NewReloader(ReloaderConfig{CertFile: certFile, KeyFile: keyFile, CheckInterval: -1, OnError: errs.add})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Intermediate, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)

	name, open := peerName(t, s)
	if name != "one" {
		t.Fatalf("served %q, want one", name)
	}
	writePair(t, certFile, keyFile, "two", t0.Add(time.Second))
	if name, _ := peerName(t, s); name != "one" {
		t.Errorf("with checks off, served %q before Reload, want one", name)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if name, _ := peerName(t, s); name != "two" {
		t.Errorf("after Reload served %q, want two", name)
	}
	if err := roundTrip(open); err != nil {
		t.Errorf("connection opened before the reload: %v", err)
	}

	// A corrupt certificate, then a key that does not match: both reported,
	// the old pair kept.
	replaceFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), t0.Add(2*time.Second))
	if err := r.Reload(); err == nil {
		t.Error("Reload of a corrupt certificate succeeded")
	}
	writePair(t, certFile, filepath.Join(dir, "other.key"), "three", t0.Add(3*time.Second))
	if err := r.Reload(); err == nil {
		t.Error("Reload of a mismatched pair succeeded")
	}
	if errs.len() != 2 {
		t.Errorf("OnError called %d times, want 2", errs.len())
	}
	if name, _ := peerName(t, s); name != "two" {
		t.Errorf("after failed reloads served %q, want two", name)
	}
	if err := roundTrip(open); err != nil {
		t.Errorf("connection opened before the reloads: %v", err)
	}
}

func TestReloaderCheckInterval(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	writePair(t, certFile, keyFile, "one", t0)
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	var errs errorLog
	r, err := NewReloader(ReloaderConfig{CertFile: certFile, KeyFile: keyFile, CheckInterval: 10 * time.Second, OnError: errs.add, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Intermediate, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)

	writePair(t, certFile, keyFile, "two", t0.Add(time.Second))
	advance(5 * time.Second)
	if name, _ := peerName(t, s); name != "one" {
		t.Errorf("before the interval served %q, want one", name)
	}
	advance(6 * time.Second)
	if name, _ := peerName(t, s); name != "two" {
		t.Errorf("after the interval served %q, want two", name)
	}

	// A corrupt replacement is reported once, however many checks see it.
	replaceFile(t, keyFile, []byte("not a key"), t0.Add(2*time.Second))
	for range 3 {
		advance(11 * time.Second)
		if name, _ := peerName(t, s); name != "two" {
			t.Errorf("with a corrupt key served %q, want two", name)
		}
	}
	if errs.len() != 1 {
		t.Errorf("OnError called %d times, want 1", errs.len())
	}

	// Fixing it is picked up by the next check.
	writePair(t, certFile, keyFile, "three", t0.Add(3*time.Second))
	advance(11 * time.Second)
	if name, _ := peerName(t, s); name != "three" {
		t.Errorf("after the fix served %q, want three", name)
	}
}

func TestNewReloaderFails(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewReloader(ReloaderConfig{CertFile: filepath.Join(dir, "none.pem"), KeyFile: filepath.Join(dir, "none.key")}); err == nil {
		t.Error("NewReloader with missing files succeeded")
	}
	if _, err := NewReloader(ReloaderConfig{}); err == nil {
		t.Error("NewReloader without files succeeded")
	}
}
