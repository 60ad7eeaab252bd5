package scan

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/tlsconf"
)

// listen returns a listener on a free port of 127.0.0.1, closed when the
// test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveHTTPS serves cfg on 127.0.0.1, answering every request with hsts
// as the Strict-Transport-Security header (if not empty).
func serveHTTPS(t *testing.T, cfg *tls.Config, hsts string) Target {
	t.Helper()
	ln := listen(t)
	cfg.NextProtos = []string{"http/1.1"}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hsts != "" {
				w.Header().Set("Strict-Transport-Security", hsts)
			}
			io.WriteString(w, "ok\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // the probes' aborted handshakes
	}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return targetOf(t, ln.Addr().String())
}

func targetOf(t *testing.T, addr string) Target {
	t.Helper()
	tg, err := ParseTarget(addr)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func scanOpts(roots ...*x509.Certificate) Options {
	return Options{Timeout: 5 * time.Second, Roots: roots, NoSystemRoots: true}
}

func protocolsOf(r *Report) map[string]Status {
	m := map[string]Status{}
	for _, p := range r.Protocols {
		m[p.Name] = p.Supported
	}
	return m
}

func suiteNamesOf(r *Report, version uint16) []string {
	var names []string
	for _, p := range r.Protocols {
		if p.Version == version {
			for _, s := range p.Suites {
				names = append(names, s.Name)
			}
		}
	}
	slices.Sort(names)
	return names
}

func hasCap(g Grade, substr string) bool {
	return slices.ContainsFunc(g.Caps, func(c Cap) bool { return strings.Contains(c.Reason, substr) })
}

func checkResult(r *Report, id string) Check {
	for _, c := range r.Checks {
		if c.ID == id {
			return c
		}
	}
	return Check{}
}

// TestHardenedGoServer scans trail's own intermediate configuration.
func TestHardenedGoServer(t *testing.T) {
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsconf.ServerConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tg := serveHTTPS(t, cfg, "max-age=63072000; includeSubDomains")
	start := time.Now()
	r := Scan(t.Context(), tg, scanOpts(pki.CACertificate()))
	t.Logf("scan of a hardened endpoint: %v, %d probes", time.Since(start), r.Probes)
	if r.Error != "" {
		t.Fatalf("Scan error: %s", r.Error)
	}
	want := map[string]Status{"SSLv2": No, "SSLv3": No, "TLS 1.0": No, "TLS 1.1": No, "TLS 1.2": Yes, "TLS 1.3": Yes}
	if got := protocolsOf(r); !mapsEqual(got, want) {
		t.Errorf("protocols = %v, want %v", got, want)
	}
	for _, p := range r.Protocols {
		for _, s := range p.Suites {
			if !s.AEAD || !s.FS {
				t.Errorf("%s suite %s: AEAD %v, FS %v; want both", p.Name, s.Name, s.AEAD, s.FS)
			}
		}
	}
	if got, want := suiteNamesOf(r, VersionTLS12), []string{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	}; !slices.Equal(got, want) {
		t.Errorf("TLS 1.2 suites = %v, want %v (the ECDSA ones of the profile)", got, want)
	}
	if got, want := suiteNamesOf(r, VersionTLS13), []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}; !slices.Equal(got, want) {
		t.Errorf("TLS 1.3 suites = %v, want %v", got, want)
	}
	var g13 []string
	for _, g := range r.Groups {
		if g.TLS13 == Yes {
			g13 = append(g13, g.Name)
		}
	}
	if want := []string{"X25519MLKEM768", "x25519", "secp256r1", "secp384r1"}; !slices.Equal(g13, want) {
		t.Errorf("TLS 1.3 groups = %v, want %v", g13, want)
	}
	// TLS 1.2 with an ECDSA certificate: the server needs the
	// certificate's curve among the client's, whichever group is probed.
	var g12 []string
	for _, g := range r.Groups {
		if g.TLS12 == Yes {
			g12 = append(g12, g.Name)
		}
	}
	if want := []string{"x25519", "secp256r1", "secp384r1"}; !slices.Equal(g12, want) {
		t.Errorf("TLS 1.2 groups = %v, want %v", g12, want)
	}
	if r.PreferredGroup != "X25519MLKEM768" {
		t.Errorf("preferred group = %q, want X25519MLKEM768", r.PreferredGroup)
	}
	c := r.Certificate
	if c == nil || !c.Trusted || !c.HostnameOK || c.ChainComplete != Yes || !c.ChainInOrder || c.Chain[0].KeyType != "ECDSA" {
		t.Errorf("certificate = %+v, want trusted, name ok, complete, in order, ECDSA", c)
	}
	if r.HSTS.Checked != Yes || r.HSTS.MaxAge != 63072000 || !r.HSTS.IncludeSubDomains {
		t.Errorf("HSTS = %+v, want max-age 63072000 with includeSubDomains", r.HSTS)
	}
	for _, id := range []string{"secure_renegotiation", "compression", "fallback_scsv", "heartbleed"} {
		if c := checkResult(r, id); !c.OK {
			t.Errorf("check %s = %+v, want OK", id, c)
		}
	}
	if g := r.Grade.Letter; g != "A+" && g != "A" {
		t.Errorf("grade = %s (caps %v, warnings %v), want A or A+", g, r.Grade.Caps, r.Grade.Warnings)
	}
	for _, m := range r.Mozilla {
		if m.Profile == "intermediate" && !m.Compliant {
			t.Errorf("Mozilla intermediate deviations: %v", m.Deviations)
		}
	}
}

func mapsEqual(a, b map[string]Status) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// rsaCert returns a self-signed RSA certificate for 127.0.0.1.
func rsaCert(t *testing.T, bits int, tweaks ...func(*x509.Certificate)) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weak test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, f := range tweaks {
		f(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, cert
}

// TestWeakGoServer scans a Go server that allows TLS 1.0, CBC, 3DES and
// RSA key exchange.
func TestWeakGoServer(t *testing.T) {
	pair, cert := rsaCert(t, 2048)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS10,
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
		},
	}
	tg := serveHTTPS(t, cfg, "")
	r := Scan(t.Context(), tg, scanOpts(cert))
	if r.Error != "" {
		t.Fatalf("Scan error: %s", r.Error)
	}
	want := map[string]Status{"SSLv2": No, "SSLv3": No, "TLS 1.0": Yes, "TLS 1.1": Yes, "TLS 1.2": Yes, "TLS 1.3": No}
	if got := protocolsOf(r); !mapsEqual(got, want) {
		t.Errorf("protocols = %v, want %v", got, want)
	}
	wantSuites := []string{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"}
	for _, v := range []uint16{VersionTLS10, VersionTLS11, VersionTLS12} {
		if got := suiteNamesOf(r, v); !slices.Equal(got, wantSuites) {
			t.Errorf("%s suites = %v, want %v", VersionName(v), got, wantSuites)
		}
	}
	for _, c := range []string{"TLS 1.0 or TLS 1.1", "64-bit block cipher", "no AEAD suite", "without forward secrecy"} {
		if !hasCap(r.Grade, c) {
			t.Errorf("no cap mentioning %q in %v", c, r.Grade.Caps)
		}
	}
	if r.Grade.Letter != "C" {
		t.Errorf("grade = %s, want C; caps %v", r.Grade.Letter, r.Grade.Caps)
	}
	if c := checkResult(r, "fallback_scsv"); !c.OK || c.Result != Yes {
		t.Errorf("fallback_scsv = %+v, want honoured", c)
	}
	if r.HSTS.Checked != Yes || r.HSTS.MaxAge != -1 {
		t.Errorf("HSTS = %+v, want checked and missing", r.HSTS)
	}
}

// startOpenSSL runs openssl s_server with args on a free port of
// 127.0.0.1 and waits (at most 10 s) until it accepts connections.
func startOpenSSL(t *testing.T, dir string, args ...string) Target {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // free the port for openssl; a race with another process is unlikely on loopback
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, "openssl", append([]string{"s_server", "-accept", addr, "-quiet", "-www"}, args...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl s_server %v did not start: %s", args, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return targetOf(t, addr)
}

// opensslFiles makes an RSA certificate and, if dhBits > 0, DH parameters
// (a safe prime: keep dhBits small, 2048 bits can take minutes) in a
// temporary directory.
func opensslFiles(t *testing.T, dhBits int) (string, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	pair, cert := rsaCert(t, 2048)
	keyDER, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", "CERTIFICATE", pair.Certificate[0])
	write("key.pem", "PRIVATE KEY", keyDER)
	if dhBits > 0 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "openssl", "dhparam", "-out", filepath.Join(dir, "dh.pem"), itoa(dhBits)).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl dhparam: %v: %s", err, out)
		}
	}
	return dir, cert
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// TestOpenSSLLegacy scans what Go cannot serve: TLS 1.0 only, DHE with
// 1024-bit parameters and RSA key exchange, at SECLEVEL 0.
func TestOpenSSLLegacy(t *testing.T) {
	dir, cert := opensslFiles(t, 1024)
	tg := startOpenSSL(t, dir, "-cert", "cert.pem", "-key", "key.pem", "-dhparam", "dh.pem",
		"-tls1", "-cipher", "DHE-RSA-AES128-SHA:AES128-SHA:@SECLEVEL=0", "-serverpref")
	r := Scan(t.Context(), tg, scanOpts(cert))
	if r.Error != "" {
		t.Fatalf("Scan error: %s", r.Error)
	}
	want := map[string]Status{"SSLv2": No, "SSLv3": No, "TLS 1.0": Yes, "TLS 1.1": No, "TLS 1.2": No, "TLS 1.3": No}
	if got := protocolsOf(r); !mapsEqual(got, want) {
		t.Errorf("protocols = %v, want %v", got, want)
	}
	p := r.Protocols[slices.IndexFunc(r.Protocols, func(p Protocol) bool { return p.Version == VersionTLS10 })]
	var names []string
	for _, s := range p.Suites {
		names = append(names, s.Name)
	}
	if want := []string{"TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"}; !slices.Equal(names, want) || p.Order != "server" {
		t.Errorf("TLS 1.0 suites = %v, order %q; want %v in the server's order", names, p.Order, want)
	}
	if r.DHBits != 1024 {
		t.Errorf("DH bits = %d, want 1024", r.DHBits)
	}
	for _, c := range []string{"DH parameters of 1024 bits", "neither TLS 1.2 nor TLS 1.3"} {
		if !hasCap(r.Grade, c) {
			t.Errorf("no cap mentioning %q in %v", c, r.Grade.Caps)
		}
	}
	if r.Grade.Letter != "C" {
		t.Errorf("grade = %s, want C", r.Grade.Letter)
	}
	if c := checkResult(r, "fallback_scsv"); c.Result != NotApplic {
		t.Errorf("fallback_scsv = %+v, want n/a with one protocol", c)
	}
}

// TestOpenSSLAnonNull scans a server that accepts anonymous DH and NULL
// encryption, and TLS 1.3 with FFDHE groups only.
func TestOpenSSLAnonNull(t *testing.T) {
	dir, cert := opensslFiles(t, 0) // OpenSSL's built-in DH parameters
	tg := startOpenSSL(t, dir, "-cert", "cert.pem", "-key", "key.pem",
		"-cipher", "ADH-AES128-SHA:NULL-SHA:ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0", "-groups", "ffdhe2048:ffdhe3072:P-256")
	r := Scan(t.Context(), tg, scanOpts(cert))
	if r.Error != "" {
		t.Fatalf("Scan error: %s", r.Error)
	}
	got := suiteNamesOf(r, VersionTLS12)
	for _, want := range []string{"TLS_DH_anon_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_NULL_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"} {
		if !slices.Contains(got, want) {
			t.Errorf("TLS 1.2 suites = %v, want %s among them", got, want)
		}
	}
	var g13 []string
	for _, g := range r.Groups {
		if g.TLS13 == Yes {
			g13 = append(g13, g.Name)
		}
	}
	if want := []string{"secp256r1", "ffdhe2048", "ffdhe3072"}; !slices.Equal(g13, want) {
		t.Errorf("TLS 1.3 groups = %v, want %v", g13, want)
	}
	if r.Grade.Letter != "F" || !hasCap(r.Grade, "anonymous") || !hasCap(r.Grade, "without encryption") {
		t.Errorf("grade = %s, caps %v; want F for anonymous and NULL suites", r.Grade.Letter, r.Grade.Caps)
	}
}

// fakeLegacyServer answers an SSL 2.0 CLIENT-HELLO with a canned
// SERVER-HELLO, an SSL 3.0 ClientHello with a ServerHello choosing the
// first offered of its suites, and anything else with a protocol_version
// alert: an SSL 2.0 and 3.0 server, which no Debian package offers.
func fakeLegacyServer(t *testing.T, suites []uint16) Target {
	t.Helper()
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				answerLegacy(c, suites)
			}()
		}
	}()
	return targetOf(t, ln.Addr().String())
}

func answerLegacy(c net.Conn, suites []uint16) {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:2]); err != nil {
		return
	}
	if hdr[0]&0x80 != 0 { // SSL 2.0
		n := int(hdr[0]&0x7f)<<8 | int(hdr[1])
		msg := make([]byte, n)
		if _, err := io.ReadFull(c, msg); err != nil || msg[0] != 1 {
			return
		}
		c.Write(ssl2ServerHelloMsg([]byte("not a real certificate"), []uint32{0x010080, 0x0700C0}))
		return
	}
	if _, err := io.ReadFull(c, hdr[2:]); err != nil {
		return
	}
	rec := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c, rec); err != nil {
		return
	}
	h, ok := parseClientHello(append(hdr[:], rec...))
	alert := []byte{recordAlert, 3, 0, 0, 2, 2, 70}
	if !ok || h.version != VersionSSL3 {
		c.Write(alert)
		return
	}
	for _, s := range h.suites {
		if slices.Contains(suites, s) {
			body := serverHelloBody(VersionSSL3, s, [32]byte{42}, nil)
			msg := append([]byte{msgServerHello, 0, byte(len(body) >> 8), byte(len(body))}, body...)
			c.Write(append([]byte{recordHandshake, 3, 0, byte(len(msg) >> 8), byte(len(msg))}, msg...))
			return
		}
	}
	c.Write([]byte{recordAlert, 3, 0, 0, 2, 2, 40})
}

func TestFakeSSL2AndSSL3(t *testing.T) {
	tg := fakeLegacyServer(t, []uint16{0x000A, 0x0005})
	r := Scan(t.Context(), tg, scanOpts())
	if r.Error != "" {
		t.Fatalf("Scan error: %s", r.Error)
	}
	want := map[string]Status{"SSLv2": Yes, "SSLv3": Yes, "TLS 1.0": No, "TLS 1.1": No, "TLS 1.2": No, "TLS 1.3": No}
	if got := protocolsOf(r); !mapsEqual(got, want) {
		t.Errorf("protocols = %v, want %v", got, want)
	}
	if p := r.Protocols[0]; !slices.Equal(p.SSL2Ciphers, []string{"SSL_CK_RC4_128_WITH_MD5", "SSL_CK_DES_192_EDE3_CBC_WITH_MD5"}) {
		t.Errorf("SSLv2 ciphers = %v", p.SSL2Ciphers)
	}
	if got, want := suiteNamesOf(r, VersionSSL3), []string{"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_RC4_128_SHA"}; !slices.Equal(got, want) {
		t.Errorf("SSLv3 suites = %v, want %v", got, want)
	}
	if r.Grade.Letter != "T" || r.Grade.IgnoringTrust != "F" || !hasCap(r.Grade, "SSLv2") || !hasCap(r.Grade, "SSLv3") {
		t.Errorf("grade = %s (ignoring trust %s), caps %v; want T, F for SSLv2 and SSLv3", r.Grade.Letter, r.Grade.IgnoringTrust, r.Grade.Caps)
	}
}

// TestTimeoutIsNotRefusal checks that a server that never answers is
// reported as timing out, not as refusing.
func TestTimeoutIsNotRefusal(t *testing.T) {
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	r := Scan(t.Context(), targetOf(t, ln.Addr().String()), Options{Timeout: 300 * time.Millisecond, NoSystemRoots: true})
	if r.Error == "" || !strings.Contains(r.Error, "timed out") {
		t.Errorf("Scan error = %q, want a timeout", r.Error)
	}
}

func TestUnreachable(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	r := Scan(t.Context(), targetOf(t, addr), scanOpts())
	if r.Error == "" || !strings.Contains(r.Error, "couldn't connect") {
		t.Errorf("Scan error = %q, want couldn't connect", r.Error)
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
		err  bool
	}{
		{in: "example.com", want: Target{Host: "example.com", Port: "443"}},
		{in: "example.com:8443", want: Target{Host: "example.com", Port: "8443"}},
		{in: "[::1]:443", want: Target{Host: "::1", Port: "443"}},
		{in: "https://example.com/path", want: Target{Host: "example.com", Port: "443", HTTPS: true}},
		{in: "https://[::1]:8443", want: Target{Host: "::1", Port: "8443", HTTPS: true}},
		{in: "http://example.com", err: true},
		{in: "example.com:99999", err: true},
		{in: ":443", err: true},
	} {
		got, err := ParseTarget(tc.in)
		if (err != nil) != tc.err || err == nil && got != tc.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseHSTS(t *testing.T) {
	for _, tc := range []struct {
		in           string
		age          int64
		sub, preload bool
	}{
		{"max-age=31536000", 31536000, false, false},
		{`max-age="600"; includeSubDomains; preload`, 600, true, true},
		{"includesubdomains", -1, true, false},
		{"max-age=abc", -1, false, false},
	} {
		age, sub, preload := parseHSTS(tc.in)
		if age != tc.age || sub != tc.sub || preload != tc.preload {
			t.Errorf("parseHSTS(%q) = %d, %v, %v; want %d, %v, %v", tc.in, age, sub, preload, tc.age, tc.sub, tc.preload)
		}
	}
}

// TestCertificateProblems checks that an expired certificate for another
// name grades T, with the configuration's own grade kept beside it.
func TestCertificateProblems(t *testing.T) {
	pair, cert := rsaCert(t, 2048, func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-48 * time.Hour)
		c.NotAfter = time.Now().Add(-24 * time.Hour)
		c.IPAddresses = nil
		c.DNSNames = []string{"elsewhere.example"}
	})
	tg := serveHTTPS(t, &tls.Config{Certificates: []tls.Certificate{pair}}, "max-age=63072000")
	r := Scan(t.Context(), tg, scanOpts(cert))
	if r.Error != "" {
		t.Fatalf("Scan error: %s", r.Error)
	}
	c := r.Certificate
	if c == nil || !c.Expired || c.HostnameOK || c.DaysLeft >= 0 {
		t.Fatalf("certificate = %+v, want expired and not matching", c)
	}
	if r.Grade.Letter != "T" || !strings.HasPrefix(r.Grade.IgnoringTrust, "A") || !hasCap(r.Grade, "expired") || !hasCap(r.Grade, "does not match") {
		t.Errorf("grade = %s (ignoring trust %s), caps %v; want T (A ignoring trust) for an expired certificate for another name", r.Grade.Letter, r.Grade.IgnoringTrust, r.Grade.Caps)
	}
}

// TestSelfSignedLeaf checks that a self-signed leaf that is not a CA
// (CA:FALSE, as appliances make them) is named self-signed, with no note
// on a missing intermediate.
func TestSelfSignedLeaf(t *testing.T) {
	pair, _ := rsaCert(t, 2048, func(c *x509.Certificate) {
		c.IsCA = false
		c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	})
	tg := serveHTTPS(t, &tls.Config{Certificates: []tls.Certificate{pair}}, "")
	r := Scan(t.Context(), tg, scanOpts())
	if r.Error != "" {
		t.Fatalf("Scan error: %s", r.Error)
	}
	c := r.Certificate
	if c == nil || len(c.Chain) != 1 || !c.Chain[0].SelfSigned || c.Trusted || c.ChainNote != "" {
		t.Fatalf("certificate = %+v, want one self-signed, untrusted certificate and no chain note", c)
	}
	if r.Grade.Letter != "T" {
		t.Errorf("grade = %s, want T", r.Grade.Letter)
	}
}
