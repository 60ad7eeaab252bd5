package scan

import (
	"bytes"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parsedHello is a ClientHello as a server sees it, for round-trip tests
// and the fake servers.
type parsedHello struct {
	recordVersion uint16
	version       uint16
	sessionID     []byte
	suites        []uint16
	compression   []uint8
	extensions    map[uint16][]byte
}

// parseClientHello parses one ClientHello record.
func parseClientHello(rec []byte) (*parsedHello, bool) {
	r := newReader(rec)
	if r.u8() != recordHandshake {
		return nil, false
	}
	h := &parsedHello{recordVersion: r.u16(), extensions: map[uint16][]byte{}}
	frag := newReader(r.vec(2))
	if !r.empty() || frag.u8() != 1 {
		return nil, false
	}
	body := newReader(frag.vec(3))
	if !frag.empty() {
		return nil, false
	}
	h.version = body.u16()
	body.bytes(32)
	h.sessionID = body.vec(1)
	suites := newReader(body.vec(2))
	for suites.ok && len(suites.b) > 0 {
		h.suites = append(h.suites, suites.u16())
	}
	h.compression = body.vec(1)
	if !body.ok || !suites.ok {
		return nil, false
	}
	if body.empty() {
		return h, true
	}
	exts := newReader(body.vec(2))
	for exts.ok && len(exts.b) > 0 {
		typ := exts.u16()
		h.extensions[typ] = exts.vec(2)
	}
	return h, exts.ok && body.empty()
}

func TestClientHelloRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello *clientHello
		want  parsedHello
	}{
		{"ssl3", &clientHello{version: VersionSSL3, recordVersion: VersionSSL3, suites: []uint16{0x000A, 0x00FF}},
			parsedHello{recordVersion: VersionSSL3, version: VersionSSL3, sessionID: []byte{}, suites: []uint16{0x000A, 0x00FF}, compression: []byte{0}, extensions: map[uint16][]byte{}}},
		{"tls12", &clientHello{version: VersionTLS12, suites: []uint16{0xC02F}, serverName: "example.com", groups: []uint16{0x001D}, renegInfo: true, compression: []uint8{1, 0}},
			parsedHello{recordVersion: VersionTLS10, version: VersionTLS12, sessionID: []byte{}, suites: []uint16{0xC02F}, compression: []byte{1, 0}, extensions: map[uint16][]byte{
				extServerName:        append([]byte{0, 14, 0, 0, 11}, "example.com"...),
				extSupportedGroups:   {0, 2, 0, 0x1D},
				extRenegotiationInfo: {0},
			}}},
		{"tls13", &clientHello{version: VersionTLS12, sessionID: bytes.Repeat([]byte{7}, 32), suites: []uint16{0x1301}, versions: []uint16{VersionTLS13}, keyShare: true, heartbeat: true},
			parsedHello{recordVersion: VersionTLS10, version: VersionTLS12, sessionID: bytes.Repeat([]byte{7}, 32), suites: []uint16{0x1301}, compression: []byte{0}, extensions: map[uint16][]byte{
				extSupportedVersions: {2, 3, 4},
				extKeyShare:          {0, 0},
				extHeartbeat:         {1},
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseClientHello(tc.hello.marshal())
			if !ok {
				t.Fatalf("parseClientHello(marshal()) failed")
			}
			if diff := cmp.Diff(&tc.want, got, cmp.AllowUnexported(parsedHello{})); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSuiteTable(t *testing.T) {
	seen := map[uint16]bool{}
	for _, n := range suiteNames {
		if seen[n.id] {
			t.Errorf("suite 0x%04X listed twice", n.id)
		}
		seen[n.id] = true
	}
	for _, tc := range []Suite{
		{ID: 0xC02F, Name: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", Kex: "ECDHE", Auth: "RSA", Cipher: "AES", Mode: "GCM", Bits: 128, AEAD: true, FS: true, TLS12: true},
		{ID: 0x000A, Name: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", Kex: "RSA", Auth: "RSA", Cipher: "3DES", Mode: "CBC", Bits: 112},
		{ID: 0x0003, Name: "TLS_RSA_EXPORT_WITH_RC4_40_MD5", Kex: "RSA", Auth: "RSA", Cipher: "RC4", Mode: "stream", Bits: 40, Export: true},
		{ID: 0x0034, Name: "TLS_DH_anon_WITH_AES_128_CBC_SHA", Kex: "DHE", Auth: "anon", Cipher: "AES", Mode: "CBC", Bits: 128, FS: true},
		{ID: 0xC0AE, Name: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", Kex: "ECDHE", Auth: "ECDSA", Cipher: "AES", Mode: "CCM_8", Bits: 128, AEAD: true, FS: true, TLS12: true},
		{ID: 0x1303, Name: "TLS_CHACHA20_POLY1305_SHA256", Kex: "any", Auth: "any", Cipher: "CHACHA20", Mode: "POLY1305", Bits: 256, AEAD: true, FS: true, TLS13: true},
		{ID: 0x0002, Name: "TLS_RSA_WITH_NULL_SHA", Kex: "RSA", Auth: "RSA", Cipher: "NULL", Mode: "none"},
		{ID: 0xC00E, Name: "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA", Kex: "ECDH", Auth: "RSA", Cipher: "AES", Mode: "CBC", Bits: 128},
	} {
		if got := LookupSuite(tc.ID); got != tc {
			t.Errorf("LookupSuite(0x%04X) = %+v, want %+v", tc.ID, got, tc)
		}
	}
	if len(tls13Suites) != 5 {
		t.Errorf("%d TLS 1.3 suites, want 5", len(tls13Suites))
	}
}

func TestHRRRandom(t *testing.T) {
	// RFC 8446, 4.1.3.
	want := "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
	if got := hex.EncodeToString(hrrRandom[:]); got != want {
		t.Errorf("hrrRandom = %s, want %s", got, want)
	}
}

// serverHelloBody builds a ServerHello body for the parser tests.
func serverHelloBody(version, suite uint16, random [32]byte, exts []extension) []byte {
	b := appendU16(nil, version)
	b = append(b, random[:]...)
	b = append(b, 0) // empty session ID
	b = appendU16(b, suite)
	b = append(b, 0)
	if exts != nil {
		b = prefixed(b, 2, func(b []byte) []byte {
			for _, e := range exts {
				b = appendU16(b, e.typ)
				b = prefixed(b, 2, func(b []byte) []byte { return append(b, e.data...) })
			}
			return b
		})
	}
	return b
}

func TestParseServerHello(t *testing.T) {
	sh, err := parseServerHello(serverHelloBody(VersionTLS12, 0x1302, hrrRandom, []extension{
		{extSupportedVersions, []byte{3, 4}}, {extKeyShare, []byte{0x11, 0xEC}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !sh.hrr || sh.selectedVersion != VersionTLS13 || sh.group != 0x11EC || sh.suite != 0x1302 {
		t.Errorf("HRR parsed as %+v", sh)
	}
	sh, err = parseServerHello(serverHelloBody(VersionTLS10, 0x002F, [32]byte{1}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if sh.hrr || sh.selectedVersion != VersionTLS10 || sh.suite != 0x002F {
		t.Errorf("TLS 1.0 ServerHello parsed as %+v", sh)
	}
	for _, bad := range [][]byte{nil, {3, 3}, serverHelloBody(VersionTLS12, 1, [32]byte{}, nil)[:37]} {
		if _, err := parseServerHello(bad); err == nil {
			t.Errorf("parseServerHello(%x) succeeded", bad)
		}
	}
}

func TestParseSSL2ServerHello(t *testing.T) {
	msg := ssl2ServerHelloMsg([]byte("cert"), []uint32{0x010080, 0x0700C0})
	sh, err := parseSSL2ServerHello(msg[2:])
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{0x010080, 0x0700C0}; !slices.Equal(sh.ciphers, want) || string(sh.certificate) != "cert" {
		t.Errorf("parsed %+v, want ciphers %x", sh, want)
	}
}

// ssl2ServerHelloMsg builds an SSL 2.0 SERVER-HELLO record.
func ssl2ServerHelloMsg(cert []byte, ciphers []uint32) []byte {
	body := []byte{4, 0, 1}
	body = appendU16(body, VersionSSL2)
	body = appendU16(body, uint16(len(cert)))
	body = appendU16(body, uint16(3*len(ciphers)))
	body = appendU16(body, 16)
	body = append(body, cert...)
	for _, c := range ciphers {
		body = append(body, byte(c>>16), byte(c>>8), byte(c))
	}
	body = append(body, make([]byte, 16)...)
	return append([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body...)
}

func FuzzParseServerHello(f *testing.F) {
	f.Add(serverHelloBody(VersionTLS12, 0x1301, hrrRandom, []extension{{extSupportedVersions, []byte{3, 4}}, {extKeyShare, []byte{0, 0x1D}}}))
	f.Add(serverHelloBody(VersionTLS12, 0xC02F, [32]byte{}, []extension{{extRenegotiationInfo, []byte{0}}}))
	f.Add(serverHelloBody(VersionSSL3, 0x000A, [32]byte{}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		sh, err := parseServerHello(b)
		if err != nil {
			return
		}
		// Re-encoding what was parsed gives the input back.
		again := serverHelloBody(sh.version, sh.suite, sh.random, sh.extensions)
		if len(sh.sessionID) > 0 || sh.compression != 0 {
			return
		}
		if sh.extensions == nil && len(b) > 38 {
			again = append(again, 0, 0) // an empty extensions block
		}
		if !bytes.Equal(again, b) {
			t.Errorf("re-encoded %x, want %x", again, b)
		}
	})
}

func FuzzParseAlert(f *testing.F) {
	f.Add([]byte{2, 70})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		level, desc, err := parseAlert(b)
		if err != nil {
			return
		}
		if !bytes.Equal([]byte{level, desc}, b) {
			t.Errorf("parseAlert(%x) = %d, %d", b, level, desc)
		}
		_ = AlertName(desc)
	})
}

func FuzzParseSSL2ServerHello(f *testing.F) {
	f.Add(ssl2ServerHelloMsg([]byte("c"), []uint32{0x010080})[2:])
	f.Fuzz(func(t *testing.T, b []byte) {
		sh, err := parseSSL2ServerHello(b)
		if err != nil {
			return
		}
		if len(sh.ciphers)*3 > len(b) {
			t.Errorf("%d ciphers from %d bytes", len(sh.ciphers), len(b))
		}
	})
}

func FuzzParseHandshakeMessages(f *testing.F) {
	f.Add([]byte{0, 0, 3, 0, 0, 0})
	f.Add([]byte{0, 1, 0, 0, 0x80, 2, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseCertificateMsg(b)
		parseDHEKeyExchange(b)
		parseECDHEKeyExchange(b)
	})
}
