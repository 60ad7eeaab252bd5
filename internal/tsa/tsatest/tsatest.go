// Package tsatest runs a real RFC 3161 time-stamping authority for tests:
// "openssl ts -reply", run once per request behind an HTTPS handler on
// 127.0.0.1, with a CA and TSA certificate that openssl makes for the test.
// No answer is canned.
package tsatest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Options shape the authority's certificate.
type Options struct {
	// EKU is the TSA certificate's extendedKeyUsage, in openssl's syntax.
	// Default "critical,timeStamping", as RFC 3161 requires.
	EKU string
	// Key is "ec" (P-256, the default) or "rsa" (2048 bits).
	Key string
	// ESSCertIDAlg is openssl's ess_cert_id_alg: "sha256" (the default,
	// signing-certificate-v2) or "sha1" (signing-certificate).
	ESSCertIDAlg string
}

// TSA is a running authority.
type TSA struct {
	// URL is the https:// address to post requests to.
	URL string
	// CAFile is the PEM file of the authority's CA: what a verifier trusts.
	CAFile string
	// CA is the same certificate, parsed.
	CA *x509.CertPool
	// TLSCAFile is the PEM file of the HTTPS server's certificate, for a
	// client's TLS trust (config key timestamp.tls_ca_file).
	TLSCAFile string
	// Client trusts the HTTPS server.
	Client *http.Client
	// Requests counts the requests answered by openssl.
	Requests atomic.Int64
	// Down, while set, makes the server answer 503 without asking openssl.
	Down atomic.Bool

	dir    string
	config string
	mu     sync.Mutex // one openssl at a time: they share the serial file
}

// Require skips the test when openssl is missing, unless CI is set, in
// which case it fails: CI must run these tests.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl is required in CI for the RFC 3161 tests: %v", err)
		}
		t.Skip("openssl not found: skipping the RFC 3161 tests (install openssl to run them)")
	}
}

// New makes a CA and a TSA certificate with openssl and serves the
// authority until the test ends.
func New(t testing.TB, opts Options) *TSA {
	t.Helper()
	Require(t)
	if opts.EKU == "" {
		opts.EKU = "critical,timeStamping"
	}
	if opts.Key == "" {
		opts.Key = "ec"
	}
	if opts.ESSCertIDAlg == "" {
		opts.ESSCertIDAlg = "sha256"
	}
	dir := t.TempDir()
	a := &TSA{dir: dir, CAFile: filepath.Join(dir, "ca.crt"), config: filepath.Join(dir, "ts.cnf")}
	keyArgs := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}
	if opts.Key == "rsa" {
		keyArgs = []string{"-newkey", "rsa:2048"}
	}
	a.openssl(t, append(append([]string{"req", "-x509"}, keyArgs...), "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
		"-subj", "/CN=trail test TSA CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")...)
	a.openssl(t, append(append([]string{"req", "-new"}, keyArgs...), "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=trail test TSA")...)
	ext := fmt.Sprintf("extendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\n", opts.EKU)
	write(t, filepath.Join(dir, "tsa.ext"), ext)
	a.openssl(t, "x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tsa.crt", "-days", "365", "-extfile", "tsa.ext")
	write(t, filepath.Join(dir, "serial"), "01\n")
	write(t, a.config, fmt.Sprintf(`[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = %s
crypto_device = builtin
signer_cert = %s
certs = %s
signer_key = %s
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = %s
`, filepath.Join(dir, "serial"), filepath.Join(dir, "tsa.crt"), filepath.Join(dir, "tsa.crt"), filepath.Join(dir, "tsa.key"), opts.ESSCertIDAlg))

	caPEM, err := os.ReadFile(a.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	a.CA = x509.NewCertPool()
	if !a.CA.AppendCertsFromPEM(caPEM) {
		t.Fatal("openssl made a CA file with no certificate")
	}

	srv := httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the tests make fail on purpose
	srv.StartTLS()
	t.Cleanup(srv.Close)
	a.URL = srv.URL + "/tsa"
	a.Client = srv.Client()
	a.Client.Timeout = 30 * time.Second
	a.TLSCAFile = filepath.Join(dir, "https-ca.crt")
	write(t, a.TLSCAFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	return a
}

// serve answers one request by running openssl ts -reply on it.
func (a *TSA) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/tsa" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/timestamp-query" {
		http.Error(w, "POST an application/timestamp-query", http.StatusBadRequest)
		return
	}
	if a.Down.Load() {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.Requests.Add(1)
	query, reply := filepath.Join(a.dir, fmt.Sprintf("q%d.tsq", n)), filepath.Join(a.dir, fmt.Sprintf("r%d.tsr", n))
	if err := os.WriteFile(query, body, 0o600); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer os.Remove(query)
	defer os.Remove(reply)
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "ts", "-reply", "-queryfile", query, "-config", a.config, "-section", "tsa_config", "-out", reply)
	cmd.Dir = a.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		http.Error(w, fmt.Sprintf("openssl ts -reply: %v: %s", err, out), http.StatusInternalServerError)
		return
	}
	resp, err := os.ReadFile(reply)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/timestamp-reply")
	w.Write(resp)
}

// openssl runs openssl in the authority's directory.
func (a *TSA) openssl(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = a.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Verify runs "openssl ts -verify" on a stored response and the data it
// stamps, as an auditor without trail would, and returns its error.
func (a *TSA) Verify(t testing.TB, respFile, dataFile string) error {
	t.Helper()
	out, err := exec.Command("openssl", "ts", "-verify", "-in", respFile, "-data", dataFile, "-CAfile", a.CAFile).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
