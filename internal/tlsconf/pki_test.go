package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var pkiFiles = []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile}

func readFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, f := range pkiFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		m[f] = b
	}
	return m
}

func TestPKIFirstUseAndReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	p, err := OpenPKI(PKIConfig{Dir: dir, Name: "example.org/trail/0123abcd"})
	if err != nil {
		t.Fatal(err)
	}
	wantModes := map[string]os.FileMode{
		".": os.ModeDir | 0o700, CACertFile: 0o644, CAKeyFile: 0o600, ServerCertFile: 0o644, ServerKeyFile: 0o600,
	}
	for name, want := range wantModes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", name, fi.Mode(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(pkiFiles) {
		t.Errorf("PKI directory holds %d files, want %d (temporary files left?)", len(entries), len(pkiFiles))
	}

	ca := p.CACertificate()
	if got, want := ca.Subject.CommonName, "trail CA example.org/trail/0123abcd"; got != want {
		t.Errorf("CA name = %q, want %q", got, want)
	}
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA || ca.NotAfter.Sub(ca.NotBefore) < 10*365*24*time.Hour {
		t.Errorf("CA: IsCA %v, key %v, valid %v", ca.IsCA, ca.PublicKeyAlgorithm, ca.NotAfter.Sub(ca.NotBefore))
	}
	leaf := p.ServerCertificate().Leaf
	for _, host := range []string{"localhost", "127.0.0.1", "::1", hostName()} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: p.CAPool()}); err != nil {
			t.Errorf("server certificate does not verify for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate verifies for client authentication")
	}

	before := readFiles(t, dir)
	p2, err := OpenPKI(PKIConfig{Dir: dir, Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	after := readFiles(t, dir)
	for _, f := range pkiFiles {
		if string(before[f]) != string(after[f]) {
			t.Errorf("second OpenPKI changed %s", f)
		}
	}
	if p2.CAFingerprint() != p.CAFingerprint() {
		t.Errorf("CA fingerprint changed: %s, then %s", p.CAFingerprint(), p2.CAFingerprint())
	}
}

func TestPKIClientCertificates(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	other, err := OpenPKI(PKIConfig{Dir: t.TempDir(), Name: "intruder"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Intermediate, StaticCertificate{p.ServerCertificate()}, p.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)

	pair := func(t *testing.T, issuer *PKI, name string, role Role) tls.Certificate {
		t.Helper()
		certPEM, keyPEM, err := issuer.IssueClient(name, role)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: p.CAPool(), ServerName: "localhost", Certificates: certs}
	}

	t.Run("writer", func(t *testing.T) {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			c := client(pair(t, p, "alice@ci", RoleWriter))
			c.MaxVersion = v
			if _, err := dial(t, s.addr, c); err != nil {
				t.Fatalf("%s: %v", tls.VersionName(v), err)
			}
			h := s.result(t)
			id, err := ClientIdentity(h.state)
			if want := (Identity{"alice@ci", RoleWriter}); err != nil || id != want {
				t.Errorf("%s: ClientIdentity = %+v, %v; want %+v", tls.VersionName(v), id, err, want)
			}
		}
	})
	t.Run("no certificate", func(t *testing.T) {
		if _, err := dial(t, s.addr, client()); err != nil {
			t.Fatal(err)
		}
		h := s.result(t)
		if _, err := ClientIdentity(h.state); !errors.Is(err, ErrNoClientCertificate) {
			t.Errorf("ClientIdentity = %v, want ErrNoClientCertificate", err)
		}
	})
	rejected := map[string]tls.Certificate{
		"other CA":           pair(t, other, "mallory", RoleAdmin),
		"server certificate": *p.ServerCertificate(),
	}
	for name, cert := range rejected {
		t.Run(name, func(t *testing.T) {
			// Go's client would not offer a certificate whose issuer the
			// server did not list as acceptable; present it regardless.
			c := client()
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
			_, cerr := dial(t, s.addr, c)
			h := s.result(t)
			if cerr == nil || h.err == nil {
				t.Fatalf("client error %v, server error %v; want both to fail", cerr, h.err)
			}
		})
	}
}

func TestPKIReissue(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenPKI(PKIConfig{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	first := readFiles(t, dir)

	p, err := OpenPKI(PKIConfig{Dir: dir, ExtraNames: []string{"Trail.Example.COM.", "192.0.2.7"}})
	if err != nil {
		t.Fatal(err)
	}
	second := readFiles(t, dir)
	if string(first[ServerCertFile]) == string(second[ServerCertFile]) || string(first[ServerKeyFile]) == string(second[ServerKeyFile]) {
		t.Error("requesting a new name did not re-issue the server certificate and key")
	}
	if string(first[CACertFile]) != string(second[CACertFile]) || string(first[CAKeyFile]) != string(second[CAKeyFile]) {
		t.Error("re-issuing changed the CA")
	}
	leaf := p.ServerCertificate().Leaf
	if !slices.Contains(leaf.DNSNames, "trail.example.com") || !slices.ContainsFunc(leaf.IPAddresses, net.ParseIP("192.0.2.7").Equal) {
		t.Errorf("re-issued certificate names %v %v, want trail.example.com and 192.0.2.7", leaf.DNSNames, leaf.IPAddresses)
	}
	for _, f := range []string{ServerCertFile, ServerKeyFile} {
		old, _ := filepath.Glob(filepath.Join(dir, f+".old-*"))
		if len(old) != 1 {
			t.Fatalf("old copies of %s: %v, want 1", f, old)
		}
		b, _ := os.ReadFile(old[0])
		if string(b) != string(first[f]) {
			t.Errorf("%s does not hold the old %s", old[0], f)
		}
	}

	// A subset of the names, or the same again, re-issues nothing.
	if _, err := OpenPKI(PKIConfig{Dir: dir, ExtraNames: []string{"192.0.2.7"}}); err != nil {
		t.Fatal(err)
	}
	if string(readFiles(t, dir)[ServerCertFile]) != string(second[ServerCertFile]) {
		t.Error("a name already covered re-issued the certificate")
	}

	// 29 days before expiry, a certificate is re-issued.
	late := func() time.Time { return leaf.NotAfter.Add(-29 * 24 * time.Hour) }
	p, err = OpenPKI(PKIConfig{Dir: dir, Now: late})
	if err != nil {
		t.Fatal(err)
	}
	if !p.ServerCertificate().Leaf.NotAfter.After(leaf.NotAfter) {
		t.Error("a certificate about to expire was not re-issued")
	}
	old, _ := filepath.Glob(filepath.Join(dir, ServerCertFile+".old-*"))
	if len(old) != 2 {
		t.Errorf("old server certificates: %v, want 2", old)
	}
}

func TestPKIDamage(t *testing.T) {
	t.Run("CA key missing", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := OpenPKI(PKIConfig{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, CAKeyFile))
		if _, err := OpenPKI(PKIConfig{Dir: dir}); err == nil {
			t.Fatal("OpenPKI without a CA key succeeded")
		}
		if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
			t.Error("OpenPKI made a new CA key beside the old certificate")
		}
	})
	t.Run("CA certificate missing", func(t *testing.T) {
		// A first start cut short after writing the key: the key becomes
		// the CA.
		dir := t.TempDir()
		if _, err := OpenPKI(PKIConfig{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		key, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
		os.Remove(filepath.Join(dir, CACertFile))
		p, err := OpenPKI(PKIConfig{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile)); string(after) != string(key) {
			t.Error("CA key replaced")
		}
		// The server certificate still verifies: same key, same name.
		if _, err := p.ServerCertificate().Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: p.CAPool()}); err != nil {
			t.Error(err)
		}
	})
	t.Run("corrupt server certificate", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := OpenPKI(PKIConfig{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, ServerCertFile), []byte("garbage"), 0o644)
		if _, err := OpenPKI(PKIConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), "move both away") {
			t.Fatalf("OpenPKI with a corrupt server certificate: %v, want an error with a hint", err)
		}
	})
	t.Run("bad extra name", func(t *testing.T) {
		if _, err := OpenPKI(PKIConfig{Dir: t.TempDir(), ExtraNames: []string{"a b"}}); err == nil {
			t.Fatal("OpenPKI with server name \"a b\" succeeded")
		}
	})
}

func TestIssueClientChecks(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		role Role
	}{
		{"", RoleWriter},
		{"a b", RoleWriter},
		{"evil\"name", RoleReader},
		{strings.Repeat("x", 65), RoleAdmin},
		{"bob", "root"},
	} {
		if _, _, err := p.IssueClient(tt.name, tt.role); err == nil {
			t.Errorf("IssueClient(%q, %q) succeeded", tt.name, tt.role)
		}
	}
	for _, r := range []Role{RoleWriter, RoleReader, RoleAuditor, RoleAdmin} {
		certPEM, keyPEM, err := p.IssueClient("bob", r)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if d := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); d < 365*24*time.Hour || d > 367*24*time.Hour {
			t.Errorf("client certificate valid for %v, want about a year", d)
		}
		id, err := CertificateIdentity(c.Leaf)
		if want := (Identity{"bob", r}); err != nil || id != want {
			t.Errorf("CertificateIdentity = %+v, %v; want %+v", id, err, want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"writer", "reader", "auditor", "admin"} {
		if r, err := ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Writer", "root"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) succeeded", s)
		}
	}
}

func TestFingerprint(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fp := p.CAFingerprint()
	sum := sha256.Sum256(p.CACertificate().Raw)
	if got, want := strings.ReplaceAll(fp, ":", ""), strings.ToUpper(hex.EncodeToString(sum[:])); got != want {
		t.Errorf("CAFingerprint = %s, want %s with colons", fp, want)
	}
	if len(fp) != 32*3-1 {
		t.Errorf("CAFingerprint = %q, want 32 colon-separated bytes", fp)
	}
}
