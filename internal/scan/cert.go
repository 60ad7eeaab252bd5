package scan

import (
	"bufio"
	"bytes"
	"context"
	"crypto/dsa" //lint:ignore SA1019 servers still present DSA keys; the scanner must name them
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Certificate is what the scan found of the server's certificate chain.
type Certificate struct {
	// Source is "handshake" when read from a full crypto/tls handshake,
	// "probe" when read from the prober's Certificate message (for
	// servers crypto/tls cannot talk to); OCSP and SCTs are then not
	// checked.
	Source string     `json:"source"`
	Chain  []CertInfo `json:"chain"`

	Trusted    bool   `json:"trusted"`
	TrustError string `json:"trust_error,omitempty"`
	HostnameOK bool   `json:"hostname_ok"`
	// HostnameError says why the name does not match.
	HostnameError string `json:"hostname_error,omitempty"`
	Expired       bool   `json:"expired"`
	NotYetValid   bool   `json:"not_yet_valid"`
	DaysLeft      int    `json:"days_left"`
	// LifetimeDays is the leaf's validity period.
	LifetimeDays int `json:"lifetime_days"`
	// WeakSignature names a certificate of the chain (not a root) signed
	// with SHA-1 or MD5.
	WeakSignature string `json:"weak_signature,omitempty"`
	md5           bool

	// ChainInOrder is true when each certificate is issued by the next.
	ChainInOrder bool `json:"chain_in_order"`
	// ChainComplete: yes when the server sends every certificate up to a
	// trusted root (the root itself may be left out), no when an
	// intermediate had to come from elsewhere, not checked when the chain
	// does not verify.
	ChainComplete Status `json:"chain_complete"`
	ChainNote     string `json:"chain_note,omitempty"`

	OCSPStapled Status `json:"ocsp_stapled"`
	// SCTs counts the signed certificate timestamps sent in the TLS
	// extension; EmbeddedSCTs tells whether the leaf carries them.
	SCTs         Status `json:"scts"`
	SCTsInTLS    int    `json:"scts_in_tls"`
	EmbeddedSCTs bool   `json:"embedded_scts"`
}

// CertInfo describes one certificate as sent.
type CertInfo struct {
	Subject            string    `json:"subject"`
	Issuer             string    `json:"issuer"`
	Names              []string  `json:"names,omitempty"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	KeyType            string    `json:"key_type"`
	KeyBits            int       `json:"key_bits"`
	SignatureAlgorithm string    `json:"signature_algorithm"`
	SHA256             string    `json:"sha256"`
	SelfSigned         bool      `json:"self_signed,omitempty"`
	// strength is the key's RSA-equivalent strength, for grading.
	strength int
}

// handshake is the result of a full crypto/tls handshake.
type handshake struct {
	state *tls.ConnectionState
	err   error
	hsts  HSTS
}

// allGoSuites lets crypto/tls negotiate everything it implements, weak
// suites included, so that the chain is read from as many servers as can
// be.
func allGoSuites() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}

// handshake completes a handshake with crypto/tls, verification off (the
// scanner verifies the chain itself), and, on an HTTPS endpoint, asks for
// / over it to read HSTS.
func (s *scanner) handshake(ctx context.Context) *handshake {
	s.p.count.Add(1)
	cfg := &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         s.t.ServerName(),
		MinVersion:         tls.VersionTLS10,
		CipherSuites:       allGoSuites(),
		NextProtos:         []string{"http/1.1"},
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	d := &tls.Dialer{Config: cfg}
	c, err := d.DialContext(cctx, "tcp", s.t.Addr())
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("TLS handshake: %w", ErrTimeout)
		}
		return &handshake{err: err, hsts: HSTS{Checked: NotChecked, MaxAge: -1, Detail: "no TLS handshake: " + err.Error()}}
	}
	defer c.Close()
	tc := c.(*tls.Conn)
	cs := tc.ConnectionState()
	h := &handshake{state: &cs}
	switch {
	case s.t.HTTPS || cs.NegotiatedProtocol == "http/1.1" || s.t.Port == "443":
		c.SetDeadline(time.Now().Add(s.opts.Timeout))
		h.hsts = s.readHSTS(c)
	default:
		h.hsts = HSTS{Checked: NotChecked, MaxAge: -1, Detail: "not known to be HTTPS (no ALPN http/1.1, port not 443): give an https:// URL to check"}
	}
	return h
}

func (s *scanner) readHSTS(c net.Conn) HSTS {
	h := HSTS{MaxAge: -1}
	host := s.t.Host
	if s.t.Port != "443" || strings.Contains(host, ":") {
		host = net.JoinHostPort(host, s.t.Port)
	}
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: trail-scan\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		h.Checked, h.Detail = statusOf(fmt.Errorf("sending GET /: %w", err))
		return h
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = ErrTimeout
		}
		h.Checked, h.Detail = statusOf(fmt.Errorf("reading the answer to GET /: %w", err))
		return h
	}
	resp.Body.Close()
	h.Checked, h.Status = Yes, resp.StatusCode
	h.Header = resp.Header.Get("Strict-Transport-Security")
	if h.Header == "" {
		h.Detail = "no Strict-Transport-Security header"
		return h
	}
	h.MaxAge, h.IncludeSubDomains, h.Preload = parseHSTS(h.Header)
	if h.MaxAge < 0 {
		h.Detail = "malformed Strict-Transport-Security header"
	}
	return h
}

// parseHSTS parses a Strict-Transport-Security value (RFC 6797, 6.1).
// maxAge is -1 if the directive is missing or malformed.
func parseHSTS(v string) (maxAge int64, sub, preload bool) {
	maxAge = -1
	for d := range strings.SplitSeq(v, ";") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "max-age":
			n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
			if err == nil && n >= 0 {
				maxAge = n
			}
		case "includesubdomains":
			sub = true
		case "preload":
			preload = true
		}
	}
	return maxAge, sub, preload
}

func (s *scanner) hsts(h *handshake) HSTS {
	if h == nil {
		return HSTS{Checked: NotChecked, MaxAge: -1}
	}
	return h.hsts
}

var oidEmbeddedSCTs = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}

// certificate checks the chain from the handshake, or else from the
// prober's Certificate message.
func (s *scanner) certificate(h *handshake) *Certificate {
	var certs []*x509.Certificate
	c := &Certificate{OCSPStapled: NotChecked, SCTs: NotChecked, ChainComplete: NotChecked}
	switch {
	case h != nil && h.state != nil && len(h.state.PeerCertificates) > 0:
		c.Source = "handshake"
		certs = h.state.PeerCertificates
		c.OCSPStapled = No
		if len(h.state.OCSPResponse) > 0 {
			c.OCSPStapled = Yes
		}
		c.SCTsInTLS = len(h.state.SignedCertificateTimestamps)
	default:
		s.mu.Lock()
		der := s.certDER
		s.mu.Unlock()
		for _, d := range der {
			cert, err := x509.ParseCertificate(d)
			if err != nil {
				return &Certificate{Source: "probe", TrustError: "unparsable certificate: " + err.Error()}
			}
			certs = append(certs, cert)
		}
		if len(certs) == 0 {
			return nil
		}
		c.Source = "probe"
	}
	now := s.opts.Now()
	for _, cert := range certs {
		c.Chain = append(c.Chain, certInfo(cert))
	}
	leaf := certs[0]
	c.NotYetValid = now.Before(leaf.NotBefore)
	c.Expired = now.After(leaf.NotAfter)
	c.DaysLeft = int(leaf.NotAfter.Sub(now).Hours() / 24)
	c.LifetimeDays = int(leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24)
	c.EmbeddedSCTs = slices.ContainsFunc(leaf.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidEmbeddedSCTs) })
	if c.Source == "handshake" {
		c.SCTs = No
		if c.SCTsInTLS > 0 || c.EmbeddedSCTs {
			c.SCTs = Yes
		}
	}
	if err := leaf.VerifyHostname(s.t.Host); err != nil {
		c.HostnameError = err.Error()
	} else {
		c.HostnameOK = true
	}
	for i, cert := range certs {
		if isSelfSigned(cert) {
			continue
		}
		switch cert.SignatureAlgorithm {
		case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
			c.WeakSignature = fmt.Sprintf("certificate %d (%s) is signed with SHA-1", i, cert.Subject)
		case x509.MD5WithRSA, x509.MD2WithRSA:
			c.WeakSignature = fmt.Sprintf("certificate %d (%s) is signed with MD5", i, cert.Subject)
			c.md5 = true
		}
		if c.WeakSignature != "" {
			break
		}
	}

	c.ChainInOrder = true
	for i := 0; i+1 < len(certs); i++ {
		if !bytes.Equal(certs[i].RawIssuer, certs[i+1].RawSubject) {
			c.ChainInOrder = false
			continue
		}
		// A SHA-1 or MD5 signature is checked by name only: crypto/x509
		// refuses to verify it, and it is graded on its own above.
		err := certs[i].CheckSignatureFrom(certs[i+1])
		if _, insecure := errors.AsType[x509.InsecureAlgorithmError](err); err != nil && !insecure {
			c.ChainInOrder = false
		}
	}

	roots, err := s.roots()
	if err != nil {
		c.TrustError = err.Error()
		return c
	}
	inter := x509.NewCertPool()
	for _, cert := range certs[1:] {
		inter.AddCert(cert)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now})
	if err != nil {
		c.TrustError = err.Error()
		var ua x509.UnknownAuthorityError
		// crypto/x509 refuses SHA-1 and MD5 signatures, which it reports
		// as an unknown authority: no intermediate is missing then.
		if errors.As(err, &ua) && !isSelfSigned(certs[len(certs)-1]) && c.WeakSignature == "" {
			c.ChainNote = "the chain does not reach a trusted root: an intermediate may be missing"
		}
		return c
	}
	c.Trusted = true
	// The shortest verified chain: are all but its root sent?
	best := chains[0]
	for _, ch := range chains {
		if len(ch) < len(best) {
			best = ch
		}
	}
	c.ChainComplete = Yes
	for _, cert := range best[:len(best)-1] {
		if !slices.ContainsFunc(certs, cert.Equal) {
			c.ChainComplete = No
			c.ChainNote = "the server does not send " + cert.Subject.String()
		}
	}
	var extra int
	for _, cert := range certs {
		if !slices.ContainsFunc(best, cert.Equal) {
			extra++
		}
	}
	if extra > 0 && c.ChainNote == "" {
		c.ChainNote = fmt.Sprintf("the server sends %d certificate(s) not on the path to the root", extra)
	}
	return c
}

// roots returns the system roots (unless disabled) plus Options.Roots.
func (s *scanner) roots() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !s.opts.NoSystemRoots {
		sys, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("couldn't load the system roots: %w", err)
		}
		pool = sys.Clone()
	}
	for _, r := range s.opts.Roots {
		pool.AddCert(r)
	}
	return pool, nil
}

// isSelfSigned reports whether c is signed by its own key. Not
// CheckSignatureFrom, which also wants c to be a CA: a self-signed leaf
// (CA:FALSE, as appliances make them) is self-signed all the same.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func certInfo(c *x509.Certificate) CertInfo {
	sum := sha256.Sum256(c.Raw)
	ci := CertInfo{
		Subject:            c.Subject.String(),
		Issuer:             c.Issuer.String(),
		NotBefore:          c.NotBefore.UTC(),
		NotAfter:           c.NotAfter.UTC(),
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
		SHA256:             hex.EncodeToString(sum[:]),
		SelfSigned:         isSelfSigned(c),
	}
	ci.Names = append(ci.Names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		ci.Names = append(ci.Names, ip.String())
	}
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		ci.KeyType, ci.KeyBits = "RSA", k.N.BitLen()
		ci.strength = ci.KeyBits
	case *ecdsa.PublicKey:
		ci.KeyType, ci.KeyBits = "ECDSA", k.Curve.Params().BitSize
		ci.strength = ecStrength(ci.KeyBits)
	case ed25519.PublicKey:
		ci.KeyType, ci.KeyBits, ci.strength = "Ed25519", 256, 3072
	case *dsa.PublicKey:
		ci.KeyType, ci.KeyBits = "DSA", k.P.BitLen()
		ci.strength = ci.KeyBits
	default:
		ci.KeyType = c.PublicKeyAlgorithm.String()
	}
	return ci
}

// ecStrength maps an elliptic curve's size to the RSA-equivalent
// strength (NIST SP 800-57 part 1, table 2).
func ecStrength(bits int) int {
	switch {
	case bits >= 512:
		return 15360
	case bits >= 384:
		return 7680
	case bits >= 256:
		return 3072
	case bits >= 224:
		return 2048
	}
	return 1024
}
