package scan

import (
	"fmt"
	"strings"
)

// Suite describes a cipher suite by its IANA code point. The attributes are
// derived from the IANA name, so that the table below stays a plain list.
type Suite struct {
	ID   uint16 `json:"id"`
	Name string `json:"name"`
	// Kex is the key exchange: RSA, DHE, ECDHE, DH or ECDH (static), or
	// "any" for TLS 1.3 suites, which leave it to the key_share.
	Kex string `json:"kex"`
	// Auth is the authentication: RSA, DSS, ECDSA, anon (none), or "any"
	// for TLS 1.3.
	Auth string `json:"auth"`
	// Cipher is the bulk cipher: NULL, AES, CHACHA20, 3DES, DES, RC4,
	// RC2, IDEA, CAMELLIA, ARIA or SEED.
	Cipher string `json:"cipher"`
	// Mode is CBC, GCM, CCM, CCM_8, POLY1305, stream (RC4) or none (NULL).
	Mode string `json:"mode"`
	// Bits is the effective key strength: 112 for 3DES, 0 for NULL.
	Bits int `json:"bits"`
	// AEAD is true for GCM, CCM and ChaCha20-Poly1305.
	AEAD bool `json:"aead"`
	// FS is true when the key exchange is ephemeral (forward secret).
	FS bool `json:"forward_secrecy"`
	// Export is true for the 40- and 56-bit export suites.
	Export bool `json:"export,omitempty"`
	// TLS12 is true for suites defined for TLS 1.2 only (SHA-256/384 MACs
	// and AEADs); TLS13 for the TLS 1.3 suites.
	TLS12 bool `json:"-"`
	TLS13 bool `json:"-"`
}

// Weak64 reports whether the suite uses a 64-bit block cipher (Sweet32).
func (s Suite) Weak64() bool {
	switch s.Cipher {
	case "3DES", "DES", "IDEA", "RC2":
		return true
	}
	return false
}

// suiteNames lists the suites the prober offers, by IANA code point. It
// leaves out PSK, SRP, Kerberos, GOST and the pre-standard code points
// (export1024, draft ChaCha20), which a server only accepts when
// configured for them specifically.
var suiteNames = []struct {
	id   uint16
	name string
}{
	{0x0001, "TLS_RSA_WITH_NULL_MD5"},
	{0x0002, "TLS_RSA_WITH_NULL_SHA"},
	{0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"},
	{0x0004, "TLS_RSA_WITH_RC4_128_MD5"},
	{0x0005, "TLS_RSA_WITH_RC4_128_SHA"},
	{0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"},
	{0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA"},
	{0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"},
	{0x0009, "TLS_RSA_WITH_DES_CBC_SHA"},
	{0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"},
	{0x000B, "TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA"},
	{0x000C, "TLS_DH_DSS_WITH_DES_CBC_SHA"},
	{0x000D, "TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA"},
	{0x000E, "TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA"},
	{0x000F, "TLS_DH_RSA_WITH_DES_CBC_SHA"},
	{0x0010, "TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA"},
	{0x0011, "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA"},
	{0x0012, "TLS_DHE_DSS_WITH_DES_CBC_SHA"},
	{0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA"},
	{0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"},
	{0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA"},
	{0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"},
	{0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5"},
	{0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"},
	{0x0019, "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA"},
	{0x001A, "TLS_DH_anon_WITH_DES_CBC_SHA"},
	{0x001B, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA"},
	{0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA"},
	{0x0030, "TLS_DH_DSS_WITH_AES_128_CBC_SHA"},
	{0x0031, "TLS_DH_RSA_WITH_AES_128_CBC_SHA"},
	{0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA"},
	{0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"},
	{0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"},
	{0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"},
	{0x0036, "TLS_DH_DSS_WITH_AES_256_CBC_SHA"},
	{0x0037, "TLS_DH_RSA_WITH_AES_256_CBC_SHA"},
	{0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA"},
	{0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"},
	{0x003A, "TLS_DH_anon_WITH_AES_256_CBC_SHA"},
	{0x003B, "TLS_RSA_WITH_NULL_SHA256"},
	{0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256"},
	{0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256"},
	{0x003E, "TLS_DH_DSS_WITH_AES_128_CBC_SHA256"},
	{0x003F, "TLS_DH_RSA_WITH_AES_128_CBC_SHA256"},
	{0x0040, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256"},
	{0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA"},
	{0x0042, "TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA"},
	{0x0043, "TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA"},
	{0x0044, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA"},
	{0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA"},
	{0x0046, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA"},
	{0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"},
	{0x0068, "TLS_DH_DSS_WITH_AES_256_CBC_SHA256"},
	{0x0069, "TLS_DH_RSA_WITH_AES_256_CBC_SHA256"},
	{0x006A, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256"},
	{0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"},
	{0x006C, "TLS_DH_anon_WITH_AES_128_CBC_SHA256"},
	{0x006D, "TLS_DH_anon_WITH_AES_256_CBC_SHA256"},
	{0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"},
	{0x0085, "TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA"},
	{0x0086, "TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA"},
	{0x0087, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA"},
	{0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA"},
	{0x0089, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA"},
	{0x0096, "TLS_RSA_WITH_SEED_CBC_SHA"},
	{0x0097, "TLS_DH_DSS_WITH_SEED_CBC_SHA"},
	{0x0098, "TLS_DH_RSA_WITH_SEED_CBC_SHA"},
	{0x0099, "TLS_DHE_DSS_WITH_SEED_CBC_SHA"},
	{0x009A, "TLS_DHE_RSA_WITH_SEED_CBC_SHA"},
	{0x009B, "TLS_DH_anon_WITH_SEED_CBC_SHA"},
	{0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256"},
	{0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384"},
	{0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"},
	{0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"},
	{0x00A0, "TLS_DH_RSA_WITH_AES_128_GCM_SHA256"},
	{0x00A1, "TLS_DH_RSA_WITH_AES_256_GCM_SHA384"},
	{0x00A2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256"},
	{0x00A3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384"},
	{0x00A4, "TLS_DH_DSS_WITH_AES_128_GCM_SHA256"},
	{0x00A5, "TLS_DH_DSS_WITH_AES_256_GCM_SHA384"},
	{0x00A6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256"},
	{0x00A7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384"},
	{0x00BA, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256"},
	{0x00BB, "TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA256"},
	{0x00BC, "TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA256"},
	{0x00BD, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256"},
	{0x00BE, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"},
	{0x00BF, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256"},
	{0x00C0, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256"},
	{0x00C1, "TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA256"},
	{0x00C2, "TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA256"},
	{0x00C3, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256"},
	{0x00C4, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256"},
	{0x00C5, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256"},
	{0x1301, "TLS_AES_128_GCM_SHA256"},
	{0x1302, "TLS_AES_256_GCM_SHA384"},
	{0x1303, "TLS_CHACHA20_POLY1305_SHA256"},
	{0x1304, "TLS_AES_128_CCM_SHA256"},
	{0x1305, "TLS_AES_128_CCM_8_SHA256"},
	{0xC001, "TLS_ECDH_ECDSA_WITH_NULL_SHA"},
	{0xC002, "TLS_ECDH_ECDSA_WITH_RC4_128_SHA"},
	{0xC003, "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA"},
	{0xC004, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA"},
	{0xC005, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA"},
	{0xC006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"},
	{0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"},
	{0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"},
	{0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"},
	{0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"},
	{0xC00B, "TLS_ECDH_RSA_WITH_NULL_SHA"},
	{0xC00C, "TLS_ECDH_RSA_WITH_RC4_128_SHA"},
	{0xC00D, "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA"},
	{0xC00E, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"},
	{0xC00F, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA"},
	{0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA"},
	{0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"},
	{0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"},
	{0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"},
	{0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"},
	{0xC015, "TLS_ECDH_anon_WITH_NULL_SHA"},
	{0xC016, "TLS_ECDH_anon_WITH_RC4_128_SHA"},
	{0xC017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA"},
	{0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"},
	{0xC019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA"},
	{0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"},
	{0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"},
	{0xC025, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256"},
	{0xC026, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384"},
	{0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"},
	{0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"},
	{0xC029, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256"},
	{0xC02A, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384"},
	{0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
	{0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
	{0xC02D, "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256"},
	{0xC02E, "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384"},
	{0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
	{0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
	{0xC031, "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256"},
	{0xC032, "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384"},
	{0xC03C, "TLS_RSA_WITH_ARIA_128_CBC_SHA256"},
	{0xC03D, "TLS_RSA_WITH_ARIA_256_CBC_SHA384"},
	{0xC044, "TLS_DHE_RSA_WITH_ARIA_128_CBC_SHA256"},
	{0xC045, "TLS_DHE_RSA_WITH_ARIA_256_CBC_SHA384"},
	{0xC048, "TLS_ECDHE_ECDSA_WITH_ARIA_128_CBC_SHA256"},
	{0xC049, "TLS_ECDHE_ECDSA_WITH_ARIA_256_CBC_SHA384"},
	{0xC04C, "TLS_ECDHE_RSA_WITH_ARIA_128_CBC_SHA256"},
	{0xC04D, "TLS_ECDHE_RSA_WITH_ARIA_256_CBC_SHA384"},
	{0xC050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256"},
	{0xC051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384"},
	{0xC052, "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256"},
	{0xC053, "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384"},
	{0xC056, "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256"},
	{0xC057, "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384"},
	{0xC05C, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256"},
	{0xC05D, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384"},
	{0xC060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256"},
	{0xC061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384"},
	{0xC072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256"},
	{0xC073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"},
	{0xC076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"},
	{0xC077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384"},
	{0xC07A, "TLS_RSA_WITH_CAMELLIA_128_GCM_SHA256"},
	{0xC07B, "TLS_RSA_WITH_CAMELLIA_256_GCM_SHA384"},
	{0xC07C, "TLS_DHE_RSA_WITH_CAMELLIA_128_GCM_SHA256"},
	{0xC07D, "TLS_DHE_RSA_WITH_CAMELLIA_256_GCM_SHA384"},
	{0xC086, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_GCM_SHA256"},
	{0xC087, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_GCM_SHA384"},
	{0xC08A, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256"},
	{0xC08B, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_GCM_SHA384"},
	{0xC09C, "TLS_RSA_WITH_AES_128_CCM"},
	{0xC09D, "TLS_RSA_WITH_AES_256_CCM"},
	{0xC09E, "TLS_DHE_RSA_WITH_AES_128_CCM"},
	{0xC09F, "TLS_DHE_RSA_WITH_AES_256_CCM"},
	{0xC0A0, "TLS_RSA_WITH_AES_128_CCM_8"},
	{0xC0A1, "TLS_RSA_WITH_AES_256_CCM_8"},
	{0xC0A2, "TLS_DHE_RSA_WITH_AES_128_CCM_8"},
	{0xC0A3, "TLS_DHE_RSA_WITH_AES_256_CCM_8"},
	{0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"},
	{0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"},
	{0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"},
	{0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"},
	{0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
	{0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
	{0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
}

// Signalling suite values, never chosen by a server.
const (
	scsvRenegotiation uint16 = 0x00FF // RFC 5746
	scsvFallback      uint16 = 0x5600 // RFC 7507
)

var (
	suiteByID = map[uint16]Suite{}
	// legacySuites are the suites offered to SSL 3.0 to TLS 1.2 servers;
	// tls13Suites those offered to TLS 1.3 servers. Both in table order.
	legacySuites, tls13Suites []Suite
)

func init() {
	for _, n := range suiteNames {
		s, err := parseSuiteName(n.id, n.name)
		if err != nil {
			panic(err)
		}
		suiteByID[s.ID] = s
		if s.TLS13 {
			tls13Suites = append(tls13Suites, s)
		} else {
			legacySuites = append(legacySuites, s)
		}
	}
}

// LookupSuite returns the suite with code point id. An unknown code point
// gets a Suite with only ID and a hex Name.
func LookupSuite(id uint16) Suite {
	if s, ok := suiteByID[id]; ok {
		return s
	}
	return Suite{ID: id, Name: fmt.Sprintf("0x%04X", id)}
}

// parseSuiteName derives a suite's attributes from its IANA name:
// TLS_<kex>[_<auth>][_EXPORT]_WITH_<cipher>_<mode>_<mac>, or
// TLS_<cipher>_<mode>_<hash> for TLS 1.3.
func parseSuiteName(id uint16, name string) (Suite, error) {
	s := Suite{ID: id, Name: name}
	rest, ok := strings.CutPrefix(name, "TLS_")
	if !ok {
		return s, fmt.Errorf("suite %s: no TLS_ prefix", name)
	}
	kx, enc, ok := strings.Cut(rest, "_WITH_")
	if !ok {
		s.Kex, s.Auth, s.TLS13, s.FS, s.TLS12 = "any", "any", true, true, false
		enc = rest
	} else {
		kx, s.Export = strings.CutSuffix(kx, "_EXPORT")
		switch kx {
		case "RSA":
			s.Kex, s.Auth = "RSA", "RSA"
		default:
			k, a, ok := strings.Cut(kx, "_")
			if !ok {
				return s, fmt.Errorf("suite %s: unknown key exchange %q", name, kx)
			}
			s.Kex, s.Auth = k, a
			s.FS = k == "DHE" || k == "ECDHE" || a == "anon"
			if a == "anon" {
				// Anonymous suites use ephemeral keys: forward secret, but
				// open to anyone in the middle.
				s.Kex = k + "E"
			}
		}
	}
	parts := strings.Split(enc, "_")
	mac := parts[len(parts)-1]
	parts = parts[:len(parts)-1]
	if mac == "CCM" || mac == "8" { // the TLS 1.2 CCM suites have no MAC part
		parts = append(parts, mac)
		mac = ""
	}
	if mac == "SHA256" || mac == "SHA384" || mac == "" {
		s.TLS12 = !s.TLS13
	}
	switch {
	case len(parts) == 1 && parts[0] == "NULL":
		s.Cipher, s.Mode, s.Bits = "NULL", "none", 0
	case parts[0] == "RC4":
		s.Cipher, s.Mode = "RC4", "stream"
		s.Bits = atoi(parts[1])
	case parts[0] == "3DES":
		s.Cipher, s.Mode, s.Bits = "3DES", "CBC", 112
	case parts[0] == "DES40":
		s.Cipher, s.Mode, s.Bits = "DES", "CBC", 40
	case parts[0] == "DES":
		s.Cipher, s.Mode, s.Bits = "DES", "CBC", 56
	case parts[0] == "RC2":
		s.Cipher, s.Mode, s.Bits = "RC2", "CBC", atoi(parts[2])
	case parts[0] == "IDEA" || parts[0] == "SEED":
		s.Cipher, s.Mode, s.Bits = parts[0], "CBC", 128
	case parts[0] == "CHACHA20":
		s.Cipher, s.Mode, s.Bits, s.AEAD = "CHACHA20", "POLY1305", 256, true
	case len(parts) >= 3 && (parts[0] == "AES" || parts[0] == "CAMELLIA" || parts[0] == "ARIA"):
		s.Cipher, s.Bits = parts[0], atoi(parts[1])
		s.Mode = strings.Join(parts[2:], "_")
		s.AEAD = s.Mode != "CBC"
	default:
		return s, fmt.Errorf("suite %s: unknown cipher %q", name, enc)
	}
	if s.Bits < 0 {
		return s, fmt.Errorf("suite %s: bad key size", name)
	}
	return s, nil
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}
