package testssl_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/testssl"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/token"
)

// privateCA are the findings that follow from trail's private CA, each with
// why it is allowed. docs/tls.md explains them in the same words; keep the
// two in step.
var privateCA = map[string]string{
	"cert_revocation": "the private CA runs no OCSP responder and publishes no CRL: " +
		"clients trust the server certificate through the CA certificate they were given, " +
		"and client certificates are revoked through pki/revoked.json, checked on every handshake",
	// Not reported in this test, which scans 127.0.0.1 with --nodns none,
	// but whenever testssl.sh is pointed at a DNS name.
	"DNS_CAArecord": "CAA records tell public CAs whether they may issue for a domain; " +
		"the server certificate comes from no public CA, so there is none to name",
}

// pending are findings that are defects to be fixed elsewhere. The test
// fails once one is no longer reported, so that it is removed from here.
var pending = map[string]string{}

// vulnerabilities are the checks of testssl.sh -U (all of them, as the
// default run is "offensive"); each must have run and found nothing.
var vulnerabilities = []string{
	"heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego",
	"CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN",
	"LOGJAM", "LOGJAM-common_primes", "BEAST", "LUCKY13", "RC4",
}

// TestTestssl scans a server set up as trail serve sets it up (intermediate
// profile, the default) with testssl.sh's default checks, and requires TLS
// 1.2 and 1.3 only, forward-secret AEAD suites only, no vulnerability, HSTS,
// and no finding of severity LOW or worse except those privateCA allows.
// It takes minutes; it is skipped with -short, and when testssl.sh is
// missing unless CI is set.
func TestTestssl(t *testing.T) {
	cmd, err := testssl.Command()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	if testing.Short() {
		t.Skip("testssl.sh takes minutes")
	}
	addr, caFile := startServe(t, tlsconf.Intermediate)
	// Stop testssl.sh in time to report what it saw, before go test's
	// -timeout (20m in scripts/test, 10m by default) panics.
	deadline := time.Now().Add(15 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	defer cancel()
	scan, err := testssl.Run(ctx, addr, testssl.Options{
		Command: cmd,
		CAFile:  caFile,
		Dir:     t.TempDir(),
		Args: []string{
			"--nodns", "none", // a target on 127.0.0.1 needs no DNS, and CI may have none
			"--connect-timeout", "10",
			"--openssl-timeout", "10",
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (stopped at the deadline; is the machine loaded? go test -timeout gives it longer)", err)
		}
		if scan != nil {
			t.Fatalf("%v; after %v, its report:\n%s", err, scan.Elapsed.Round(time.Second), scan.Report)
		}
		t.Fatal(err)
	}
	t.Logf("testssl.sh took %v", scan.Elapsed.Round(time.Second))
	problems := check(scan.Findings, []string{"TLS1_2", "TLS1_3"})
	for _, p := range problems {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("testssl.sh report:\n%s", scan.Report)
	}
}

// protocols are testssl.sh's protocol findings.
var protocols = []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"}

// fsAEAD matches the IANA names of forward-secret AEAD suites: every TLS
// 1.3 suite, and TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305.
var fsAEAD = regexp.MustCompile(`^(TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)|TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256))$`)

// check returns what is wrong in findings: a protocol offered that is not
// in offered (or one in offered missing), a suite that is not forward-secret
// AEAD, a vulnerability, missing HSTS, or a finding of severity LOW or
// worse that privateCA and pending do not allow.
func check(findings []testssl.Finding, offered []string) []string {
	var problems []string
	byID := map[string]testssl.Finding{}
	for _, f := range findings {
		byID[baseID(f.ID)] = f
	}
	for _, p := range protocols {
		f, ok := byID[p]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("no finding for protocol %s", p))
		case slices.Contains(offered, p) && !strings.HasPrefix(f.Finding, "offered"):
			problems = append(problems, fmt.Sprintf("%s: %q, want offered", p, f.Finding))
		case !slices.Contains(offered, p) && !strings.HasPrefix(f.Finding, "not offered"):
			problems = append(problems, fmt.Sprintf("%s: %q, want not offered", p, f.Finding))
		}
	}
	suites := 0
	for _, f := range findings {
		// cipher_x1301 (-e, the default) or cipher-tls1_3_x1301 (-E); the
		// IANA name is the last field.
		if !strings.HasPrefix(f.ID, "cipher_x") && !strings.HasPrefix(f.ID, "cipher-tls") {
			continue
		}
		suites++
		fields := strings.Fields(f.Finding)
		if len(fields) == 0 || !fsAEAD.MatchString(fields[len(fields)-1]) {
			problems = append(problems, fmt.Sprintf("%s: %q is not a forward-secret AEAD suite", f.ID, f.Finding))
		}
	}
	if suites == 0 {
		problems = append(problems, "no cipher suites listed (cipher_x...)")
	}
	for _, id := range vulnerabilities {
		// What each found is judged below, with every other finding.
		if _, ok := byID[id]; !ok {
			problems = append(problems, fmt.Sprintf("vulnerability check %s did not run", id))
		}
	}
	if f, ok := byID["HSTS_time"]; !ok || f.Severity != testssl.OK {
		problems = append(problems, fmt.Sprintf("HSTS_time: %s %q, want OK (Strict-Transport-Security sent)", f.Severity, f.Finding))
	}
	seen := map[string]bool{}
	for _, f := range findings {
		id := baseID(f.ID)
		seen[id] = true
		_, allowed := privateCA[id]
		if _, ok := pending[id]; ok {
			allowed = true
		}
		vulnerable := strings.Contains(f.Finding, "VULNERABLE") || strings.Contains(f.Finding, "NOT ok")
		if (f.Severity.Problem() || vulnerable) && !allowed {
			problems = append(problems, fmt.Sprintf("%s: %s %q", f.ID, f.Severity, f.Finding))
		}
	}
	for id := range pending {
		if !seen[id] {
			problems = append(problems, fmt.Sprintf("%s is no longer reported: remove it from pending", id))
		}
	}
	slices.Sort(problems)
	return problems
}

// baseID drops the " <cert#1>" that testssl.sh appends to the IDs of
// certificate checks when a server has several certificates.
func baseID(id string) string {
	id, _, _ = strings.Cut(id, " <cert#")
	return id
}

// startServe starts on 127.0.0.1 the API listener trail serve runs with
// default settings (see cmd/trail/serve.go): its PKI, tlsconf.ServerConfig
// for profile adapted by server.TLSConfig (a client certificate is asked
// for, not required, and verified by the server, which also takes bearer
// tokens), and the real API handler over a fresh log. It returns the
// address and the CA certificate file.
func startServe(t *testing.T, profile tlsconf.Profile) (addr, caFile string) {
	t.Helper()
	dir := t.TempDir()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dir, "pki")
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: pkiDir, Name: keys.Verifier.Name()})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tlsconf.ServerConfig(profile, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := tlsconf.NewRevocationList(tlsconf.RevocationConfig{File: filepath.Join(pkiDir, tlsconf.RevokedFile)})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := token.Open(filepath.Join(pkiDir, token.File), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storagefs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier})
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Log: l, LogDir: filepath.Join(dir, "log"),
		ClientCAs: pki.CAPool(), Revoked: revoked.Revoked, Tokens: tokens,
	})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	// testssl.sh's failed handshakes are expected: discard their log lines.
	hs := server.NewHTTPServer(ln.Addr().String(), srv, server.TLSConfig(tc), slog.New(slog.DiscardHandler))
	served := make(chan error, 1)
	go func() { served <- hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("closing log: %v", err)
		}
	})
	return ln.Addr().String(), filepath.Join(pkiDir, tlsconf.CACertFile)
}
