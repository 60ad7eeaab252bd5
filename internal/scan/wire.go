package scan

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
)

// Protocol versions as they appear on the wire.
const (
	VersionSSL2  uint16 = 0x0002
	VersionSSL3  uint16 = 0x0300
	VersionTLS10 uint16 = 0x0301
	VersionTLS11 uint16 = 0x0302
	VersionTLS12 uint16 = 0x0303
	VersionTLS13 uint16 = 0x0304
)

// VersionName returns "SSLv2", "SSLv3", "TLS 1.0" and so on.
func VersionName(v uint16) string {
	switch v {
	case VersionSSL2:
		return "SSLv2"
	case VersionSSL3:
		return "SSLv3"
	case VersionTLS10:
		return "TLS 1.0"
	case VersionTLS11:
		return "TLS 1.1"
	case VersionTLS12:
		return "TLS 1.2"
	case VersionTLS13:
		return "TLS 1.3"
	}
	return fmt.Sprintf("0x%04X", v)
}

// Record content types (RFC 8446, 5.1) and the handshake messages read.
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
	recordHeartbeat        = 24

	msgServerHello       = 2
	msgCertificate       = 11
	msgServerKeyExchange = 12
	msgServerHelloDone   = 14
)

// Extension code points (IANA TLS ExtensionType Values).
const (
	extServerName          = 0
	extStatusRequest       = 5
	extSupportedGroups     = 10
	extECPointFormats      = 11
	extSignatureAlgorithms = 13
	extHeartbeat           = 15
	extALPN                = 16
	extSCT                 = 18
	extExtendedMaster      = 23
	extSupportedVersions   = 43
	extKeyShare            = 51
	extRenegotiationInfo   = 0xff01
)

// Alert descriptions the report names (RFC 8446, 6; RFC 7507).
var alertNames = map[uint8]string{
	0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
	42: "bad_certificate", 47: "illegal_parameter", 50: "decode_error", 51: "decrypt_error",
	70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
	86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
	110: "unsupported_extension", 112: "unrecognized_name", 120: "no_application_protocol",
}

const alertInappropriateFallback = 86

// AlertName names an alert description.
func AlertName(d uint8) string {
	if n, ok := alertNames[d]; ok {
		return n
	}
	return fmt.Sprintf("alert %d", d)
}

// hrrRandom is the ServerHello.random that marks a HelloRetryRequest
// (RFC 8446, 4.1.3).
var hrrRandom = sha256.Sum256([]byte("HelloRetryRequest"))

// Group is a key exchange group (IANA TLS Supported Groups).
type Group struct {
	ID   uint16 `json:"id"`
	Name string `json:"name"`
	// Strength is the RSA-equivalent strength in bits that grading uses.
	Strength int `json:"-"`
	// TLS13Only groups (the hybrid post-quantum ones) are not probed in
	// TLS 1.2; FFDHE groups are probed in TLS 1.2 through DHE suites.
	TLS13Only bool `json:"-"`
	FFDHE     bool `json:"-"`
}

var groups = []Group{
	{ID: 0x11EC, Name: "X25519MLKEM768", Strength: 15360, TLS13Only: true},
	{ID: 0x11EB, Name: "SecP256r1MLKEM768", Strength: 15360, TLS13Only: true},
	{ID: 0x11ED, Name: "SecP384r1MLKEM1024", Strength: 15360, TLS13Only: true},
	{ID: 0x001D, Name: "x25519", Strength: 3072},
	{ID: 0x001E, Name: "x448", Strength: 7680},
	{ID: 0x0017, Name: "secp256r1", Strength: 3072},
	{ID: 0x0018, Name: "secp384r1", Strength: 7680},
	{ID: 0x0019, Name: "secp521r1", Strength: 15360},
	{ID: 0x0016, Name: "secp256k1", Strength: 3072},
	{ID: 0x0015, Name: "secp224r1", Strength: 2048},
	{ID: 0x0013, Name: "secp192r1", Strength: 1536},
	{ID: 0x001A, Name: "brainpoolP256r1", Strength: 3072},
	{ID: 0x001B, Name: "brainpoolP384r1", Strength: 7680},
	{ID: 0x001C, Name: "brainpoolP512r1", Strength: 15360},
	{ID: 0x0100, Name: "ffdhe2048", Strength: 2048, FFDHE: true},
	{ID: 0x0101, Name: "ffdhe3072", Strength: 3072, FFDHE: true},
	{ID: 0x0102, Name: "ffdhe4096", Strength: 4096, FFDHE: true},
	{ID: 0x0103, Name: "ffdhe6144", Strength: 6144, FFDHE: true},
	{ID: 0x0104, Name: "ffdhe8192", Strength: 8192, FFDHE: true},
}

// LookupGroup returns the group with code point id.
func LookupGroup(id uint16) Group {
	for _, g := range groups {
		if g.ID == id {
			return g
		}
	}
	return Group{ID: id, Name: fmt.Sprintf("0x%04X", id)}
}

func groupIDs(tls12 bool) []uint16 {
	var ids []uint16
	for _, g := range groups {
		if !tls12 || !g.TLS13Only {
			ids = append(ids, g.ID)
		}
	}
	return ids
}

// sigAlgs are the signature schemes offered (RFC 8446, 4.2.3), all of
// them, legacy included, so that no server refuses for want of one.
var sigAlgs = []uint16{
	0x0403, 0x0503, 0x0603, // ecdsa_secp256r1_sha256 .. secp521r1_sha512
	0x0807, 0x0808, // ed25519, ed448
	0x0804, 0x0805, 0x0806, // rsa_pss_rsae_sha256 .. sha512
	0x0809, 0x080a, 0x080b, // rsa_pss_pss_sha256 .. sha512
	0x0401, 0x0501, 0x0601, // rsa_pkcs1_sha256 .. sha512
	0x0303, 0x0301, 0x0302, // sha224 with ecdsa, rsa, dsa
	0x0402, 0x0502, 0x0602, // dsa with sha256 .. sha512
	0x0203, 0x0201, 0x0202, // sha1 with ecdsa, rsa, dsa
}

// clientHello is what the prober offers. The zero value of a field leaves
// the matching extension out.
type clientHello struct {
	version       uint16 // ClientHello.client_version (legacy_version)
	recordVersion uint16 // the record layer's version; 0 means 0x0301
	random        [32]byte
	sessionID     []byte
	suites        []uint16
	compression   []uint8 // nil means [null]
	serverName    string
	groups        []uint16
	pointFormats  bool
	sigAlgs       []uint16
	versions      []uint16 // supported_versions
	keyShare      bool     // send key_share, with no shares: asks for a HelloRetryRequest
	renegInfo     bool
	heartbeat     bool
	alpn          []string
	statusRequest bool
	sct           bool
	ems           bool
}

func appendU16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }

// prefixed appends a block with an n-byte big-endian length prefix, its
// contents written by f.
func prefixed(b []byte, n int, f func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, n)...)
	b = f(b)
	l := len(b) - start - n
	for i := range n {
		b[start+i] = byte(l >> (8 * (n - 1 - i)))
	}
	return b
}

func appendExt(b []byte, typ uint16, f func([]byte) []byte) []byte {
	b = appendU16(b, typ)
	return prefixed(b, 2, f)
}

// marshal returns the ClientHello in one handshake record.
func (h *clientHello) marshal() []byte {
	rv := h.recordVersion
	if rv == 0 {
		rv = VersionTLS10
	}
	b := []byte{recordHandshake}
	b = appendU16(b, rv)
	return prefixed(b, 2, func(b []byte) []byte {
		b = append(b, 1) // client_hello
		return prefixed(b, 3, h.appendBody)
	})
}

func (h *clientHello) appendBody(b []byte) []byte {
	b = appendU16(b, h.version)
	b = append(b, h.random[:]...)
	b = prefixed(b, 1, func(b []byte) []byte { return append(b, h.sessionID...) })
	b = prefixed(b, 2, func(b []byte) []byte {
		for _, s := range h.suites {
			b = appendU16(b, s)
		}
		return b
	})
	comp := h.compression
	if comp == nil {
		comp = []uint8{0}
	}
	b = prefixed(b, 1, func(b []byte) []byte { return append(b, comp...) })
	ext := h.appendExtensions(nil)
	if len(ext) == 0 {
		return b // SSL 3.0 style: no extensions block at all
	}
	return prefixed(b, 2, func(b []byte) []byte { return append(b, ext...) })
}

func (h *clientHello) appendExtensions(b []byte) []byte {
	if h.serverName != "" {
		b = appendExt(b, extServerName, func(b []byte) []byte {
			return prefixed(b, 2, func(b []byte) []byte {
				b = append(b, 0) // host_name
				return prefixed(b, 2, func(b []byte) []byte { return append(b, h.serverName...) })
			})
		})
	}
	if len(h.groups) > 0 {
		b = appendExt(b, extSupportedGroups, func(b []byte) []byte {
			return prefixed(b, 2, func(b []byte) []byte {
				for _, g := range h.groups {
					b = appendU16(b, g)
				}
				return b
			})
		})
	}
	if h.pointFormats {
		b = appendExt(b, extECPointFormats, func(b []byte) []byte {
			return append(b, 3, 0, 1, 2) // uncompressed, ansiX962_compressed_prime, _char2
		})
	}
	if len(h.sigAlgs) > 0 {
		b = appendExt(b, extSignatureAlgorithms, func(b []byte) []byte {
			return prefixed(b, 2, func(b []byte) []byte {
				for _, s := range h.sigAlgs {
					b = appendU16(b, s)
				}
				return b
			})
		})
	}
	if h.statusRequest {
		b = appendExt(b, extStatusRequest, func(b []byte) []byte {
			return append(b, 1, 0, 0, 0, 0) // ocsp, no responder IDs, no extensions
		})
	}
	if h.sct {
		b = appendExt(b, extSCT, func(b []byte) []byte { return b })
	}
	if len(h.alpn) > 0 {
		b = appendExt(b, extALPN, func(b []byte) []byte {
			return prefixed(b, 2, func(b []byte) []byte {
				for _, p := range h.alpn {
					b = prefixed(b, 1, func(b []byte) []byte { return append(b, p...) })
				}
				return b
			})
		})
	}
	if h.ems {
		b = appendExt(b, extExtendedMaster, func(b []byte) []byte { return b })
	}
	if h.heartbeat {
		b = appendExt(b, extHeartbeat, func(b []byte) []byte { return append(b, 1) }) // peer_allowed_to_send
	}
	if len(h.versions) > 0 {
		b = appendExt(b, extSupportedVersions, func(b []byte) []byte {
			return prefixed(b, 1, func(b []byte) []byte {
				for _, v := range h.versions {
					b = appendU16(b, v)
				}
				return b
			})
		})
	}
	if h.keyShare {
		b = appendExt(b, extKeyShare, func(b []byte) []byte { return append(b, 0, 0) })
	}
	if h.renegInfo {
		b = appendExt(b, extRenegotiationInfo, func(b []byte) []byte { return append(b, 0) })
	}
	return b
}

// SSL 2.0 cipher kinds (draft-hickman-netscape-ssl-00, appendix C).
var ssl2Ciphers = []struct {
	kind uint32
	name string
}{
	{0x010080, "SSL_CK_RC4_128_WITH_MD5"},
	{0x020080, "SSL_CK_RC4_128_EXPORT40_WITH_MD5"},
	{0x030080, "SSL_CK_RC2_128_CBC_WITH_MD5"},
	{0x040080, "SSL_CK_RC2_128_CBC_EXPORT40_WITH_MD5"},
	{0x050080, "SSL_CK_IDEA_128_CBC_WITH_MD5"},
	{0x060040, "SSL_CK_DES_64_CBC_WITH_MD5"},
	{0x0700C0, "SSL_CK_DES_192_EDE3_CBC_WITH_MD5"},
}

func ssl2CipherName(kind uint32) string {
	for _, c := range ssl2Ciphers {
		if c.kind == kind {
			return c.name
		}
	}
	return fmt.Sprintf("0x%06X", kind)
}

// marshalSSL2Hello returns an SSL 2.0 CLIENT-HELLO offering every SSL 2.0
// cipher kind, in a record with a two-byte header.
func marshalSSL2Hello(challenge [16]byte) []byte {
	body := []byte{1} // MSG-CLIENT-HELLO
	body = appendU16(body, VersionSSL2)
	body = appendU16(body, uint16(3*len(ssl2Ciphers)))
	body = appendU16(body, 0) // no session ID
	body = appendU16(body, uint16(len(challenge)))
	for _, c := range ssl2Ciphers {
		body = append(body, byte(c.kind>>16), byte(c.kind>>8), byte(c.kind))
	}
	body = append(body, challenge[:]...)
	return append([]byte{0x80 | byte(len(body)>>8), byte(len(body))}, body...)
}

// errShort is returned by the parsers for truncated or malformed input.
var errShort = errors.New("malformed message")

// reader reads big-endian fields from a message; after the first
// failure every read returns zero values and ok is false.
type reader struct {
	b  []byte
	ok bool
}

func newReader(b []byte) *reader { return &reader{b: b, ok: true} }

func (r *reader) bytes(n int) []byte {
	if !r.ok || n < 0 || len(r.b) < n {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uint(n int) uint32 {
	var v uint32
	for _, c := range r.bytes(n) {
		v = v<<8 | uint32(c)
	}
	return v
}

func (r *reader) u8() uint8   { return uint8(r.uint(1)) }
func (r *reader) u16() uint16 { return uint16(r.uint(2)) }

// vec reads a vector with an n-byte length prefix.
func (r *reader) vec(n int) []byte { return r.bytes(int(r.uint(n))) }

func (r *reader) empty() bool { return r.ok && len(r.b) == 0 }

// serverHello is a parsed ServerHello or HelloRetryRequest.
type serverHello struct {
	version     uint16 // legacy_version
	random      [32]byte
	sessionID   []byte
	suite       uint16
	compression uint8
	extensions  []extension

	hrr bool
	// selectedVersion is supported_versions if present, else version.
	selectedVersion uint16
	// group is the key_share group (the HelloRetryRequest's selected
	// group, or the ServerHello's share), or 0.
	group uint16
}

type extension struct {
	typ  uint16
	data []byte
}

func (sh *serverHello) ext(typ uint16) ([]byte, bool) {
	for _, e := range sh.extensions {
		if e.typ == typ {
			return e.data, true
		}
	}
	return nil, false
}

// parseServerHello parses the body of a ServerHello handshake message.
func parseServerHello(body []byte) (*serverHello, error) {
	r := newReader(body)
	sh := &serverHello{version: r.u16()}
	copy(sh.random[:], r.bytes(32))
	sh.sessionID = r.vec(1)
	sh.suite = r.u16()
	sh.compression = r.u8()
	if !r.ok || len(sh.sessionID) > 32 {
		return nil, errShort
	}
	if !r.empty() {
		exts := newReader(r.vec(2))
		for exts.ok && len(exts.b) > 0 {
			e := extension{typ: exts.u16(), data: exts.vec(2)}
			if exts.ok {
				sh.extensions = append(sh.extensions, e)
			}
		}
		if !exts.ok || !r.empty() {
			return nil, errShort
		}
	}
	sh.hrr = sh.random == hrrRandom
	sh.selectedVersion = sh.version
	if d, ok := sh.ext(extSupportedVersions); ok {
		v := newReader(d)
		sh.selectedVersion = v.u16()
		if !v.empty() {
			return nil, errShort
		}
	}
	if d, ok := sh.ext(extKeyShare); ok {
		k := newReader(d)
		sh.group = k.u16()
		if !sh.hrr {
			k.vec(2)
		}
		if !k.empty() {
			return nil, errShort
		}
	}
	return sh, nil
}

// ssl2ServerHello is a parsed SSL 2.0 SERVER-HELLO.
type ssl2ServerHello struct {
	version     uint16
	certificate []byte
	ciphers     []uint32
}

// parseSSL2ServerHello parses an SSL 2.0 SERVER-HELLO message (the record
// header removed).
func parseSSL2ServerHello(msg []byte) (*ssl2ServerHello, error) {
	r := newReader(msg)
	if r.u8() != 4 { // MSG-SERVER-HELLO
		return nil, errShort
	}
	r.u8() // SESSION-ID-HIT
	r.u8() // CERTIFICATE-TYPE
	sh := &ssl2ServerHello{version: r.u16()}
	certLen, specsLen, connIDLen := int(r.u16()), int(r.u16()), int(r.u16())
	sh.certificate = r.bytes(certLen)
	specs := r.bytes(specsLen)
	r.bytes(connIDLen)
	if !r.ok || specsLen%3 != 0 {
		return nil, errShort
	}
	for i := 0; i < len(specs); i += 3 {
		sh.ciphers = append(sh.ciphers, uint32(specs[i])<<16|uint32(specs[i+1])<<8|uint32(specs[i+2]))
	}
	return sh, nil
}

// parseAlert parses an alert record's payload: level, description.
func parseAlert(payload []byte) (level, desc uint8, err error) {
	if len(payload) != 2 {
		return 0, 0, errShort
	}
	return payload[0], payload[1], nil
}

// parseCertificateMsg parses a TLS 1.2-and-earlier Certificate message body:
// the DER certificates, leaf first.
func parseCertificateMsg(body []byte) ([][]byte, error) {
	r := newReader(body)
	list := newReader(r.vec(3))
	var certs [][]byte
	for list.ok && len(list.b) > 0 {
		if c := list.vec(3); list.ok {
			certs = append(certs, c)
		}
	}
	if !list.ok || !r.empty() {
		return nil, errShort
	}
	return certs, nil
}

// parseDHEKeyExchange returns the size in bits of the prime in a DHE
// ServerKeyExchange body (RFC 5246, 7.4.3), leading zero bytes ignored.
func parseDHEKeyExchange(body []byte) (int, error) {
	r := newReader(body)
	p := r.vec(2)
	r.vec(2) // g
	r.vec(2) // Ys
	if !r.ok || len(p) == 0 {
		return 0, errShort
	}
	return new(big.Int).SetBytes(p).BitLen(), nil
}

// parseECDHEKeyExchange returns the named curve of an ECDHE
// ServerKeyExchange body (RFC 8422, 5.4).
func parseECDHEKeyExchange(body []byte) (uint16, error) {
	r := newReader(body)
	if r.u8() != 3 { // named_curve
		return 0, errShort
	}
	g := r.u16()
	if !r.ok {
		return 0, errShort
	}
	return g, nil
}
