package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trailaudit/trail/internal/tlsconf"
)

// TokenLookup finds the identity a bearer token stands for.
type TokenLookup interface {
	Lookup(token string) (tlsconf.Identity, bool)
}

// Client certificates are verified by the server, not by the TLS handshake
// (the listener's tls.Config asks with tls.RequestClientCert), so that an
// expired, revoked or foreign certificate gets a 401 that says why rather
// than a handshake alert no client explains. The chain is verified once per
// connection; expiry and revocation are checked on every request.

// connAuth caches the verification of one connection's client certificate.
type connAuth struct {
	once     sync.Once
	id       tlsconf.Identity
	leaf     *x509.Certificate
	notAfter time.Time
	err      error
}

type connKey struct{}

// connContext gives each connection its verification cache.
func connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connAuth{})
}

// authError is a failed authentication: 401 with its message.
type authError struct{ msg string }

func (e *authError) Error() string { return e.msg }

// authenticate returns the identity of r's client certificate or bearer
// token. A request that presents both is refused: the two could name
// different identities, and neither may silently win.
func (s *Server) authenticate(r *http.Request) (tlsconf.Identity, error) {
	hasCert := r.TLS != nil && len(r.TLS.PeerCertificates) > 0
	authz := r.Header.Get("Authorization")
	switch {
	case hasCert && authz != "":
		return tlsconf.Identity{}, &authError{"present a client certificate or a bearer token, not both"}
	case authz != "":
		scheme, token, _ := strings.Cut(authz, " ")
		if !strings.EqualFold(scheme, "Bearer") || token == "" {
			return tlsconf.Identity{}, &authError{"Authorization must be \"Bearer <token>\""}
		}
		if s.cfg.Tokens == nil {
			return tlsconf.Identity{}, &authError{"bearer tokens are not accepted by this server"}
		}
		id, ok := s.cfg.Tokens.Lookup(strings.TrimSpace(token))
		if !ok {
			return tlsconf.Identity{}, &authError{"unknown or revoked bearer token"}
		}
		return id, nil
	case hasCert:
		return s.certIdentity(r)
	}
	return tlsconf.Identity{}, &authError{"no client certificate or bearer token: authenticate with a certificate from trail cert issue or a token from trail token create"}
}

// certIdentity verifies r's client certificate, once per connection when
// the connection carries a cache.
func (s *Server) certIdentity(r *http.Request) (tlsconf.Identity, error) {
	ca, _ := r.Context().Value(connKey{}).(*connAuth)
	if ca == nil {
		ca = &connAuth{}
	}
	ca.once.Do(func() { ca.verify(s.cfg.ClientCAs, r.TLS.PeerCertificates, s.cfg.Now()) })
	if ca.err != nil {
		return tlsconf.Identity{}, ca.err
	}
	if now := s.cfg.Now(); now.After(ca.notAfter) {
		return tlsconf.Identity{}, &authError{fmt.Sprintf("client certificate %q expired at %s", ca.id.Name, ca.notAfter.UTC().Format(time.RFC3339))}
	}
	if s.cfg.Revoked != nil && s.cfg.Revoked(ca.leaf.SerialNumber) {
		return tlsconf.Identity{}, &authError{fmt.Sprintf("client certificate %q (serial %s) is revoked", ca.id.Name, tlsconf.SerialString(ca.leaf.SerialNumber))}
	}
	return ca.id, nil
}

func (ca *connAuth) verify(roots *x509.CertPool, chain []*x509.Certificate, now time.Time) {
	leaf := chain[0]
	if roots == nil {
		ca.err = &authError{"client certificates are not accepted by this server"}
		return
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if ie, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ie.Reason == x509.Expired {
		switch {
		case now.After(leaf.NotAfter):
			err = &authError{fmt.Sprintf("client certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))}
		default:
			err = &authError{fmt.Sprintf("client certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))}
		}
	} else if err != nil {
		err = &authError{"client certificate not issued by this server's CA: " + err.Error()}
	}
	if err != nil {
		ca.err = err
		return
	}
	id, err := tlsconf.CertificateIdentity(leaf)
	if err != nil {
		ca.err = &authError{"client certificate: " + err.Error()}
		return
	}
	ca.id, ca.leaf, ca.notAfter = id, leaf, leaf.NotAfter
}

// require admits requests whose identity has one of roles: no valid
// identity is 401, another role 403.
func (s *Server) require(roles []tlsconf.Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.authenticate(r)
		if err != nil {
			s.metrics.authFailures.Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="trail"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		if !slices.Contains(roles, id.Role) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s has role %s, which may not do this (needs %s)", id.Name, id.Role, roleList(roles)))
			return
		}
		if !s.allow(id) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("rate limit of %g requests per second for %s exceeded; retry after a second", s.cfg.RateLimit, id.Name))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

func roleList(roles []tlsconf.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}

// TLSConfig adapts a tls.Config from tlsconf.ServerConfig for the server:
// the handshake asks for a client certificate without verifying it, and
// the server verifies it and answers 401 with the reason (see
// Config.ClientCAs).
func TLSConfig(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.ClientAuth = tls.RequestClientCert
	c.VerifyConnection = nil
	return c
}
