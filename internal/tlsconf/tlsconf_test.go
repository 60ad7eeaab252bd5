package tlsconf

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// handshake is what the test server saw of one connection.
type handshake struct {
	state tls.ConnectionState
	err   error
}

// testServer is a TLS echo server on 127.0.0.1.
type testServer struct {
	addr    string
	results chan handshake
}

// serve starts a TLS echo server with cfg on 127.0.0.1:0. Each connection's
// handshake outcome is sent on results; connections are closed when the
// test ends.
func serve(t *testing.T, cfg *tls.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), results: make(chan handshake, 64)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, cfg)
				err := tc.Handshake()
				s.results <- handshake{tc.ConnectionState(), err}
				if err == nil {
					io.Copy(tc, tc)
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// result returns the outcome of the next handshake the server finished.
func (s *testServer) result(t *testing.T) handshake {
	t.Helper()
	select {
	case h := <-s.results:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("server saw no handshake")
		return handshake{}
	}
}

// dial connects with cfg and exchanges one message, so that a server's
// rejection of a client certificate, which a TLS 1.3 client only learns
// after its side of the handshake, is seen here too.
func dial(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := roundTrip(c); err != nil {
		return nil, err
	}
	return c, nil
}

func roundTrip(c *tls.Conn) error {
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo mismatch")
	}
	return nil
}

var rsaCert = sync.OnceValues(func() (*tls.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

// eitherCert serves the first certificate the client can use, like
// tls.Config.Certificates does, so that ECDHE-RSA suites can be tested.
type eitherCert []*tls.Certificate

func (e eitherCert) GetCertificate(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	for _, c := range e {
		if chi.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	return e[0], nil
}

func TestProfiles(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rsaCert()
	if err != nil {
		t.Fatal(err)
	}
	roots := p.CAPool()
	roots.AddCert(rc.Leaf)
	certs := eitherCert{p.ServerCertificate(), rc}

	const (
		noVersion = "unsupported versions"
		noSuite   = "no cipher suite"
	)
	tests := []struct {
		name       string
		profile    Profile
		client     *tls.Config
		wantErr    string // in the server's handshake error; "" for success
		wantVer    uint16
		wantCurve  tls.CurveID
		wantSuite  uint16
		wantRSAKey bool
	}{
		{name: "tls13 default", client: &tls.Config{},
			wantVer: tls.VersionTLS13, wantCurve: tls.X25519MLKEM768},
		{name: "tls13 x25519", client: &tls.Config{CurvePreferences: []tls.CurveID{tls.X25519}},
			wantVer: tls.VersionTLS13, wantCurve: tls.X25519},
		{name: "tls13 p384", client: &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP384}},
			wantVer: tls.VersionTLS13, wantCurve: tls.CurveP384},
		{name: "tls13 p521", client: &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP521}},
			wantErr: "no key exchanges"},
		{name: "tls12 ecdsa aes128gcm",
			client:  &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			wantVer: tls.VersionTLS12, wantCurve: tls.X25519, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{name: "tls12 ecdsa chacha20",
			client:  &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
			wantVer: tls.VersionTLS12, wantCurve: tls.X25519, wantSuite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
		{name: "tls12 rsa aes256gcm p256",
			client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
				CurvePreferences: []tls.CurveID{tls.CurveP256}},
			wantVer: tls.VersionTLS12, wantCurve: tls.CurveP256, wantSuite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, wantRSAKey: true},
		{name: "tls11", client: &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, wantErr: noVersion},
		{name: "tls10", client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, wantErr: noVersion},
		{name: "tls12 cbc only", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		}}, wantErr: noSuite},
		{name: "tls12 rsa key exchange only", client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA,
		}}, wantErr: noSuite},
		{name: "tls12 p521 only", client: &tls.Config{MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP521}},
			wantErr: noSuite},
		{name: "modern tls13", profile: Modern, client: &tls.Config{},
			wantVer: tls.VersionTLS13, wantCurve: tls.X25519MLKEM768},
		{name: "modern tls12", profile: Modern, client: &tls.Config{MaxVersion: tls.VersionTLS12}, wantErr: noVersion},
	}
	servers := map[Profile]*testServer{}
	for _, prof := range []Profile{Intermediate, Modern} {
		cfg, err := ServerConfig(prof, certs, nil)
		if err != nil {
			t.Fatal(err)
		}
		servers[prof] = serve(t, cfg)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := servers[tt.profile]
			cc := tt.client.Clone()
			cc.RootCAs, cc.ServerName = roots, "localhost"
			conn, cerr := dial(t, s.addr, cc)
			h := s.result(t)
			if tt.wantErr != "" {
				if cerr == nil || h.err == nil || !strings.Contains(h.err.Error(), tt.wantErr) {
					t.Fatalf("handshake: client error %v, server error %v; want server error containing %q", cerr, h.err, tt.wantErr)
				}
				return
			}
			if cerr != nil || h.err != nil {
				t.Fatalf("handshake: client error %v, server error %v; want success", cerr, h.err)
			}
			if h.state.Version != tt.wantVer {
				t.Errorf("version = %s, want %s", tls.VersionName(h.state.Version), tls.VersionName(tt.wantVer))
			}
			if h.state.CurveID != tt.wantCurve {
				t.Errorf("curve = %v, want %v", h.state.CurveID, tt.wantCurve)
			}
			if tt.wantSuite != 0 && h.state.CipherSuite != tt.wantSuite {
				t.Errorf("suite = %s, want %s", tls.CipherSuiteName(h.state.CipherSuite), tls.CipherSuiteName(tt.wantSuite))
			}
			wantAlg := x509.ECDSA
			if tt.wantRSAKey {
				wantAlg = x509.RSA
			}
			if alg := conn.ConnectionState().PeerCertificates[0].PublicKeyAlgorithm; alg != wantAlg {
				t.Errorf("server key = %v, want %v", alg, wantAlg)
			}
		})
	}
}

func TestServerConfig(t *testing.T) {
	cert := StaticCertificate{&tls.Certificate{}}
	c, err := ServerConfig(Intermediate, cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS12 || c.ClientAuth != tls.NoClientCert || c.GetCertificate == nil {
		t.Errorf("intermediate: MinVersion %x, ClientAuth %v, GetCertificate set %v", c.MinVersion, c.ClientAuth, c.GetCertificate != nil)
	}
	for _, s := range tls.InsecureCipherSuites() {
		if slices.Contains(c.CipherSuites, s.ID) {
			t.Errorf("intermediate allows insecure suite %s", s.Name)
		}
	}
	for _, id := range c.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || strings.Contains(name, "CBC") {
			t.Errorf("intermediate allows %s", name)
		}
	}
	pool := x509.NewCertPool()
	c, err = ServerConfig(Modern, cert, pool)
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS13 || c.ClientAuth != tls.VerifyClientCertIfGiven || c.ClientCAs != pool {
		t.Errorf("modern with CAs: MinVersion %x, ClientAuth %v", c.MinVersion, c.ClientAuth)
	}
	if _, err := ServerConfig(Profile(7), cert, nil); err == nil {
		t.Error("ServerConfig(Profile(7)) succeeded")
	}
	if _, err := ServerConfig(Intermediate, nil, nil); err == nil {
		t.Error("ServerConfig without certificates succeeded")
	}
}

func TestParseProfile(t *testing.T) {
	tests := []struct {
		in   string
		want Profile
		ok   bool
	}{
		{"", Intermediate, true},
		{"intermediate", Intermediate, true},
		{"modern", Modern, true},
		{"Modern", 0, false},
		{"old", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseProfile(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseProfile(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "intermediate") {
			t.Errorf("ParseProfile(%q) error %q does not name the allowed values", tt.in, err)
		}
	}
}

func FuzzParseProfile(f *testing.F) {
	f.Add("intermediate")
	f.Add("modern")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProfile(s)
		if err != nil {
			return
		}
		if s != "" && p.String() != s {
			t.Errorf("ParseProfile(%q).String() = %q", s, p.String())
		}
		if q, err := ParseProfile(p.String()); err != nil || q != p {
			t.Errorf("ParseProfile(%q) = %v, %v; want %v", p.String(), q, err, p)
		}
	})
}

// TestSuitesOneByOne offers each TLS 1.2 suite Go knows, alone, and checks
// that the intermediate profile accepts exactly the forward-secret AEAD
// ones: every RSA key exchange, CBC, 3DES and RC4 suite is refused. The
// server has an RSA and an ECDSA certificate, so that no suite fails for
// want of a key.
func TestSuitesOneByOne(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rsaCert()
	if err != nil {
		t.Fatal(err)
	}
	roots := p.CAPool()
	roots.AddCert(rc.Leaf)
	cfg, err := ServerConfig(Intermediate, eitherCert{p.ServerCertificate(), rc}, p.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)
	suites := append(tls.CipherSuites(), tls.InsecureCipherSuites()...)
	for _, suite := range suites {
		if !slices.Contains(suite.SupportedVersions, tls.VersionTLS12) {
			continue
		}
		want := strings.HasPrefix(suite.Name, "TLS_ECDHE_") &&
			(strings.Contains(suite.Name, "_GCM_") || strings.HasSuffix(suite.Name, "_CHACHA20_POLY1305_SHA256"))
		t.Run(suite.Name, func(t *testing.T) {
			cc := &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite.ID}}
			_, cerr := dial(t, s.addr, cc)
			h := s.result(t)
			if want {
				if cerr != nil || h.err != nil {
					t.Fatalf("handshake: client error %v, server error %v; want success", cerr, h.err)
				}
				if h.state.CipherSuite != suite.ID {
					t.Errorf("suite = %s, want %s", tls.CipherSuiteName(h.state.CipherSuite), suite.Name)
				}
				return
			}
			if cerr == nil || h.err == nil || !strings.Contains(h.err.Error(), "no cipher suite") {
				t.Fatalf("handshake: client error %v, server error %v; want it refused for its suite", cerr, h.err)
			}
		})
	}
}

// TestOldVersionsRefused offers TLS 1.0 and 1.1 with every suite Go has
// for them, to both profiles.
func TestOldVersionsRefused(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var all []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		all = append(all, s.ID)
	}
	for _, prof := range []Profile{Intermediate, Modern} {
		cfg, err := ServerConfig(prof, StaticCertificate{p.ServerCertificate()}, p.CAPool())
		if err != nil {
			t.Fatal(err)
		}
		s := serve(t, cfg)
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			t.Run(prof.String()+"/"+tls.VersionName(v), func(t *testing.T) {
				cc := &tls.Config{RootCAs: p.CAPool(), ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: v, CipherSuites: all}
				_, cerr := dial(t, s.addr, cc)
				h := s.result(t)
				if cerr == nil || h.err == nil || !strings.Contains(h.err.Error(), "unsupported versions") {
					t.Fatalf("handshake: client error %v, server error %v; want it refused for its version", cerr, h.err)
				}
			})
		}
	}
}

// countingCache is a tls.ClientSessionCache that counts the sessions the
// server gave it.
type countingCache struct {
	tls.ClientSessionCache
	mu  sync.Mutex
	put int
}

func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.mu.Lock()
		c.put++
		c.mu.Unlock()
	}
	c.ClientSessionCache.Put(key, cs)
}

// TestNoResumption checks that the server issues no session tickets, in
// TLS 1.2 or 1.3, so that no connection is resumed.
func TestNoResumption(t *testing.T) {
	p, err := OpenPKI(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(Intermediate, StaticCertificate{p.ServerCertificate()}, p.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, cfg)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			cc := &tls.Config{RootCAs: p.CAPool(), ServerName: "localhost", MaxVersion: v, ClientSessionCache: cache}
			for i := range 2 {
				// dial exchanges a message, so a TLS 1.3 ticket sent after
				// the handshake would have been read.
				c, err := dial(t, s.addr, cc)
				if err != nil {
					t.Fatal(err)
				}
				s.result(t)
				if c.ConnectionState().DidResume {
					t.Errorf("connection %d resumed a session", i)
				}
			}
			if cache.put != 0 {
				t.Errorf("client was given %d sessions to resume, want 0", cache.put)
			}
		})
	}
}
