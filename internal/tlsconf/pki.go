package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files of the PKI directory. Keys are mode 0600, certificates 0644, and
// none is ever overwritten: a re-issued server certificate and its key are
// first moved aside to "<name>.old-<UTC time>".
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Validity periods. NotBefore is backdated by an hour to tolerate clock skew.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	ClientValidity = 365 * 24 * time.Hour
	// RenewBefore is how long before it expires a server certificate is
	// re-issued by OpenPKI.
	RenewBefore = 30 * 24 * time.Hour

	backdate = time.Hour
)

// Role is what a client certificate's holder is: writer, reader, auditor or
// admin. It is carried in the certificate's Subject as the single
// OrganizationalUnit (so "openssl x509 -subject" shows it as OU=writer).
// What each role may do is decided by the server, not here.
type Role string

const (
	RoleWriter  Role = "writer"
	RoleReader  Role = "reader"
	RoleAuditor Role = "auditor"
	RoleAdmin   Role = "admin"
)

var roles = []Role{RoleWriter, RoleReader, RoleAuditor, RoleAdmin}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	if slices.Contains(roles, Role(s)) {
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q: want writer, reader, auditor or admin", s)
}

// Identity is who a verified client certificate names: its Subject
// CommonName and the role in its OrganizationalUnit.
type Identity struct {
	Name string
	Role Role
}

// ErrNoClientCertificate is returned by ClientIdentity for a connection
// without a verified client certificate: the client must authenticate some
// other way (a bearer token), or be refused with 401.
var ErrNoClientCertificate = errors.New("no verified client certificate")

// ClientIdentity returns the identity of the connection's verified client
// certificate. It reads only VerifiedChains, so a certificate the server
// did not verify against its client CA pool never yields an identity.
func ClientIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoClientCertificate
	}
	return CertificateIdentity(cs.VerifiedChains[0][0])
}

// CertificateIdentity reads the identity that IssueClient put in cert. It
// does not verify cert: use it only on a certificate that was verified.
func CertificateIdentity(cert *x509.Certificate) (Identity, error) {
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return Identity{}, errors.New("certificate is not for client authentication")
	}
	name := cert.Subject.CommonName
	if err := checkClientName(name); err != nil {
		return Identity{}, err
	}
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return Identity{}, fmt.Errorf("client certificate %q has %d roles, want 1", name, len(cert.Subject.OrganizationalUnit))
	}
	role, err := ParseRole(cert.Subject.OrganizationalUnit[0])
	if err != nil {
		return Identity{}, fmt.Errorf("client certificate %q: %w", name, err)
	}
	return Identity{Name: name, Role: role}, nil
}

// checkClientName allows 1 to 64 (X.509's limit for a CommonName) letters,
// digits and ".-_@": names end up in log entries and log lines, so no
// spaces, quotes or control characters.
func checkClientName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("bad client name %q: want 1 to 64 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_@", r)) {
			return fmt.Errorf("bad client name %q: only letters, digits and . - _ @ are allowed", name)
		}
	}
	return nil
}

// Fingerprint returns the SHA-256 of cert's DER encoding as upper-case hex
// bytes separated by colons, the form "openssl x509 -noout -fingerprint
// -sha256" prints, so that an operator can compare the two by eye.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// PKIConfig configures OpenPKI.
type PKIConfig struct {
	// Dir is the PKI directory, normally <data dir>/pki. It is created with
	// mode 0700 if missing. Required.
	Dir string
	// Name names a new CA "trail CA <Name>": the log's origin. Default: the
	// host name. An existing CA keeps its name.
	Name string
	// ExtraNames are DNS names or IP addresses the server certificate must
	// cover besides localhost, 127.0.0.1, ::1 and the host name. A
	// certificate that misses one is re-issued.
	ExtraNames []string
	// Logger receives what OpenPKI creates and re-issues. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// PKI is trail's private certificate authority and the server certificate
// it issued, kept in a directory.
type PKI struct {
	dir    string
	now    func() time.Time
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	server *tls.Certificate
}

// OpenPKI loads the PKI in cfg.Dir, creating on first use a CA (ECDSA
// P-256, self-signed, valid CAValidity) and a server certificate (ECDSA
// P-256, valid ServerValidity) for the wanted names. Existing files are
// reused and never overwritten. A server certificate that misses a wanted
// name, expires within RenewBefore, or was not issued by the CA is
// re-issued with a new key, the old pair kept under a suffix. A corrupt or
// mismatched file is an error, left for the operator to move away.
func OpenPKI(cfg PKIConfig) (*PKI, error) {
	if cfg.Dir == "" {
		return nil, errors.New("tlsconf: no PKI directory")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &PKI{dir: cfg.Dir, now: cfg.Now}
	if p.now == nil {
		p.now = time.Now
	}
	host := hostName()
	name := cfg.Name
	if name == "" {
		name = host
	}
	names, err := serverNames(host, cfg.ExtraNames)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("couldn't create PKI directory: %w", err)
	}
	if err := p.loadOrCreateCA(name, log); err != nil {
		return nil, err
	}
	if err := p.loadOrIssueServer(host, names, log); err != nil {
		return nil, err
	}
	return p, nil
}

// CACertificate returns the CA certificate.
func (p *PKI) CACertificate() *x509.Certificate { return p.ca }

// CAPool returns a new pool holding only the CA certificate, for
// ServerConfig's clientCAs and for clients' RootCAs.
func (p *PKI) CAPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return pool
}

// CAFingerprint returns Fingerprint of the CA certificate.
func (p *PKI) CAFingerprint() string { return Fingerprint(p.ca) }

// ServerCertificate returns the server certificate, with its Leaf set.
func (p *PKI) ServerCertificate() *tls.Certificate { return p.server }

// ServerFiles returns the paths of the server certificate and key, for a
// Reloader that picks up a certificate re-issued by another process.
func (p *PKI) ServerFiles() (certFile, keyFile string) {
	return filepath.Join(p.dir, ServerCertFile), filepath.Join(p.dir, ServerKeyFile)
}

// IssueClient issues a client certificate (ECDSA P-256, valid
// ClientValidity, for client authentication only) naming name with role,
// and returns it and its new key (PKCS #8) PEM-encoded. Nothing is written:
// the caller hands both to the client, with the CA certificate for it to
// verify the server.
func (p *PKI) IssueClient(name string, role Role) (certPEM, keyPEM []byte, err error) {
	if err := checkClientName(name); err != nil {
		return nil, nil, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, nil, err
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := p.now()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{"trail"},
			OrganizationalUnit: []string{string(role)},
			CommonName:         name,
		},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(ClientValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("couldn't issue client certificate: %w", err)
	}
	return pemCert(der), keyPEM, nil
}

func (p *PKI) loadOrCreateCA(name string, log *slog.Logger) error {
	certPath, keyPath := filepath.Join(p.dir, CACertFile), filepath.Join(p.dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		var err error
		if _, keyPEM, err = newKey(); err != nil {
			return err
		}
		if err := createFile(keyPath, keyPEM, 0o600); err != nil {
			return err
		}
		log.Info("created CA key", "file", keyPath)
		fallthrough
	case errors.Is(certErr, fs.ErrNotExist) && keyErr == nil:
		// A key without a certificate is a first start cut short: the key
		// never signed anything, so it can still become the CA.
		key, err := parseKey(keyPath, keyPEM)
		if err != nil {
			return err
		}
		now := p.now()
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{Organization: []string{"trail"}, CommonName: "trail CA " + name},
			NotBefore:             now.Add(-backdate),
			NotAfter:              now.Add(CAValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return fmt.Errorf("couldn't create CA certificate: %w", err)
		}
		certPEM = pemCert(der)
		if err := createFile(certPath, certPEM, 0o644); err != nil {
			return err
		}
		log.Info("created CA certificate", "file", certPath, "subject", tmpl.Subject.CommonName)
	case certErr != nil:
		return fmt.Errorf("couldn't read CA certificate: %w", certErr)
	case keyErr != nil:
		return fmt.Errorf("couldn't read CA key: %w", keyErr)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("bad CA certificate %s or key %s: %w", certPath, keyPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("CA key %s is a %T, want ECDSA", keyPath, pair.PrivateKey)
	}
	if !pair.Leaf.IsCA {
		return fmt.Errorf("%s is not a CA certificate", certPath)
	}
	if now := p.now(); now.After(pair.Leaf.NotAfter) {
		return fmt.Errorf("CA certificate %s expired on %s", certPath, pair.Leaf.NotAfter.Format(time.DateOnly))
	}
	p.ca, p.caKey = pair.Leaf, key
	return nil
}

func (p *PKI) loadOrIssueServer(host string, names []string, log *slog.Logger) error {
	certPath, keyPath := p.ServerFiles()
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	var reason string
	switch {
	case errors.Is(certErr, fs.ErrNotExist) || errors.Is(keyErr, fs.ErrNotExist):
		reason = "missing"
	case certErr != nil:
		return fmt.Errorf("couldn't read server certificate: %w", certErr)
	case keyErr != nil:
		return fmt.Errorf("couldn't read server key: %w", keyErr)
	default:
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("bad server certificate %s or key %s: %w (move both away to have new ones issued)", certPath, keyPath, err)
		}
		reason = p.reissueReason(pair.Leaf, names)
		if reason == "" {
			p.server = &pair
			return nil
		}
	}
	now := p.now()
	for _, path := range []string{certPath, keyPath} {
		if _, err := os.Lstat(path); err == nil {
			aside, err := moveAside(path, now)
			if err != nil {
				return err
			}
			log.Info("kept old server file", "file", aside)
		}
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"trail"}, CommonName: host},
		NotBefore:   now.Add(-backdate),
		NotAfter:    now.Add(ServerValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		return fmt.Errorf("couldn't issue server certificate: %w", err)
	}
	certPEM = pemCert(der)
	// The key first: a crash before the certificate is in place leaves a
	// key without a certificate, which the next start moves aside.
	if err := createFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := createFile(certPath, certPEM, 0o644); err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	log.Info("issued server certificate", "file", certPath, "reason", reason, "names", names, "expires", tmpl.NotAfter)
	p.server = &pair
	return nil
}

// reissueReason says why leaf must be re-issued, or returns "".
func (p *PKI) reissueReason(leaf *x509.Certificate, names []string) string {
	if err := leaf.CheckSignatureFrom(p.ca); err != nil || !bytes.Equal(leaf.RawIssuer, p.ca.RawSubject) {
		return "not issued by the CA"
	}
	if p.now().Add(RenewBefore).After(leaf.NotAfter) {
		return "expires on " + leaf.NotAfter.Format(time.DateOnly)
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return "lacks " + n
			}
		} else if !slices.Contains(leaf.DNSNames, n) {
			return "lacks " + n
		}
	}
	return ""
}

// hostName returns the lower-case host name, or "localhost".
func hostName() string {
	h, err := os.Hostname()
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if err != nil || checkDNSName(h) != nil {
		return "localhost"
	}
	return h
}

// serverNames returns the names a server certificate must cover, in
// canonical form (lower-case DNS names, IP addresses as net.IP prints them)
// without repeats.
func serverNames(host string, extra []string) ([]string, error) {
	names := []string{"localhost", "127.0.0.1", "::1", host}
	for _, n := range extra {
		if ip := net.ParseIP(n); ip != nil {
			names = append(names, ip.String())
			continue
		}
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		if err := checkDNSName(n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// checkDNSName accepts host names and wildcards ("*.example.com").
func checkDNSName(n string) error {
	rest := strings.TrimPrefix(n, "*.")
	if rest == "" || len(n) > 253 {
		return fmt.Errorf("bad server name %q", n)
	}
	for _, label := range strings.Split(rest, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad server name %q", n)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("bad server name %q: want a DNS name or an IP address", n)
			}
		}
	}
	return nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKey(path string, data []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("bad key %s: want a PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("bad key %s: %w", path, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("bad key %s: a %T, want ECDSA", path, k)
	}
	return key, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
