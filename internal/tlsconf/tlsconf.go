// Package tlsconf gives trail's TLS server side: the hardened tls.Config
// (Mozilla Server Side TLS 6.0, "intermediate" or "modern"), a zero-setup
// private PKI kept in a directory (a CA, the server certificate, client
// certificates that carry a role), and a certificate source that reloads
// operator-supplied certificate and key files without a restart.
//
// The package authenticates: a client certificate that verifies against the
// CA pool yields an Identity. What an identity may do is the server's
// decision.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// Profile is a Mozilla Server Side TLS 6.0 configuration profile. The zero
// value is Intermediate, the default.
type Profile int

const (
	// Intermediate accepts TLS 1.2 and 1.3; TLS 1.2 only with forward-secret
	// AEAD suites. It is the default.
	Intermediate Profile = iota
	// Modern accepts TLS 1.3 only.
	Modern
)

// String returns the profile's name as ParseProfile accepts it.
func (p Profile) String() string {
	switch p {
	case Intermediate:
		return "intermediate"
	case Modern:
		return "modern"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// ParseProfile returns the profile named s: "intermediate" or "modern". The
// empty string means the default, Intermediate.
func ParseProfile(s string) (Profile, error) {
	switch s {
	case "", "intermediate":
		return Intermediate, nil
	case "modern":
		return Modern, nil
	}
	return 0, fmt.Errorf("unknown TLS profile %q: want intermediate (the default) or modern", s)
}

// intermediateSuites are the TLS 1.2 suites of Mozilla's intermediate
// profile that Go implements: ECDHE key exchange (forward secret) with an
// AEAD. Go ignores the order. TLS 1.3 suites are not configurable in Go;
// all three it implements (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305) are
// the ones Mozilla lists.
var intermediateSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// groups are Mozilla 6.0's key exchange groups, for both profiles. Go 1.26's
// default would add SecP256r1MLKEM768 and SecP384r1MLKEM1024, which Mozilla
// does not list; setting the list explicitly keeps us to the profile (and
// leaves out P-521). Go chooses among them by its own preference order,
// which puts X25519MLKEM768 first.
var groups = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.X25519,
	tls.CurveP256,
	tls.CurveP384,
}

// CertSource supplies the server certificate for each handshake. It is the
// shape of tls.Config.GetCertificate, so that a source can change the
// certificate at run time. GetCertificate must be safe for concurrent use.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

var (
	_ CertSource = StaticCertificate{}
	_ CertSource = (*Reloader)(nil)
)

// StaticCertificate is a CertSource that always serves the same certificate.
type StaticCertificate struct {
	Certificate *tls.Certificate
}

// GetCertificate returns s.Certificate.
func (s StaticCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.Certificate == nil {
		return nil, errors.New("tlsconf: no server certificate")
	}
	return s.Certificate, nil
}

// ServerConfig returns a new server tls.Config for profile, serving the
// certificates of certs. If clientCAs is not nil, the server asks for a
// client certificate and verifies any that is presented against clientCAs
// (tls.VerifyClientCertIfGiven), failing the handshake if it does not
// verify; a client without a certificate still connects, so that bearer
// tokens can authenticate it. ClientIdentity reads the verified identity.
//
// NextProtos is left empty: http.Server adds "h2" and "http/1.1" itself.
//
// Session tickets are disabled, so no session is ever resumed. A TLS 1.2
// ticket carries the session's master secret encrypted under a ticket key
// that Go keeps for a week, so whoever reads the key from memory within
// that week can decrypt recorded sessions; and Go announces a week's
// lifetime for TLS 1.3 tickets, which cannot be shortened (testssl.sh
// rates both LOW: "PFS requires session ticket keys to be rotated <
// daily"). Producers keep their connections open, so a full handshake
// per connection costs little.
func ServerConfig(profile Profile, certs CertSource, clientCAs *x509.CertPool) (*tls.Config, error) {
	if certs == nil {
		return nil, errors.New("tlsconf: no certificate source")
	}
	c := &tls.Config{
		GetCertificate:         certs.GetCertificate,
		CurvePreferences:       append([]tls.CurveID(nil), groups...),
		SessionTicketsDisabled: true,
	}
	switch profile {
	case Intermediate:
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = append([]uint16(nil), intermediateSuites...)
	case Modern:
		c.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tlsconf: unknown profile %v", profile)
	}
	if clientCAs != nil {
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = clientCAs
	}
	return c, nil
}
