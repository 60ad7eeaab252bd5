// Package token manages bearer tokens for producers that cannot present a
// client certificate. A token is "trail_" followed by 43 characters of
// base64url (32 random bytes); the server keeps only its SHA-256, so a copy
// of the data directory does not reveal any token. Tokens carry 256 bits of
// entropy, so a fast hash is enough: there is nothing to brute-force.
//
// The token file (pki/tokens.json) is written by `trail token` and read by
// the server, which picks up changes within a second: a revoked token stops
// working without a restart.
package token

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// File is the token file's name in the PKI directory.
const File = "tokens.json"

// prefix marks trail tokens, so that secret scanners can find leaked ones.
const prefix = "trail_"

// Token is one entry of the token file.
type Token struct {
	Name string       `json:"name"`
	Role tlsconf.Role `json:"role"`
	// Hash is the hex SHA-256 of the token.
	Hash    string    `json:"sha256"`
	Created time.Time `json:"created"`
	// Revoked is when the token was revoked; zero while it is valid.
	Revoked time.Time `json:"revoked,omitzero"`
}

type file struct {
	Tokens []Token `json:"tokens"`
}

// Read reads the token file at path; a missing file has no tokens.
func Read(path string) ([]Token, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parse(b)
}

func parse(b []byte) ([]Token, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("bad token file: %w", err)
	}
	for _, t := range f.Tokens {
		if _, err := tlsconf.ParseRole(string(t.Role)); err != nil {
			return nil, fmt.Errorf("bad token file: token %q: %w", t.Name, err)
		}
		if h, err := hex.DecodeString(t.Hash); err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("bad token file: token %q: bad sha256", t.Name)
		}
	}
	return f.Tokens, nil
}

func write(path string, ts []Token) error {
	b, err := json.MarshalIndent(file{ts}, "", "  ")
	if err != nil {
		return err
	}
	// 0600: the hashes reveal nothing, but the names and roles are the
	// operator's business.
	return durable.WriteFile(path, append(b, '\n'), 0o600)
}

func hashOf(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Create adds a token for name with role to the file at path and returns
// the secret, which is shown once and stored nowhere. A name that has a
// valid token already is refused: revoke it first.
func Create(path, name string, role tlsconf.Role, now time.Time) (string, error) {
	if err := tlsconf.CheckClientName(name); err != nil {
		return "", err
	}
	if _, err := tlsconf.ParseRole(string(role)); err != nil {
		return "", err
	}
	ts, err := Read(path)
	if err != nil {
		return "", err
	}
	for _, t := range ts {
		if t.Name == name && t.Revoked.IsZero() {
			return "", fmt.Errorf("%s already has a valid token; revoke it first (trail token revoke %s)", name, name)
		}
	}
	var b [32]byte
	rand.Read(b[:])
	secret := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	ts = append(ts, Token{Name: name, Role: role, Hash: hashOf(secret), Created: now.UTC()})
	if err := write(path, ts); err != nil {
		return "", err
	}
	return secret, nil
}

// Revoke marks name's valid tokens revoked and returns how many it revoked.
func Revoke(path, name string, now time.Time) (int, error) {
	ts, err := Read(path)
	if err != nil {
		return 0, err
	}
	n, known := 0, false
	for i := range ts {
		if ts[i].Name != name {
			continue
		}
		known = true
		if ts[i].Revoked.IsZero() {
			ts[i].Revoked = now.UTC()
			n++
		}
	}
	if !known {
		return 0, fmt.Errorf("no token was created for %q (see trail token list)", name)
	}
	if n == 0 {
		return 0, nil
	}
	return n, write(path, ts)
}

// Store answers the server's lookups from the token file, re-reading it
// when it changes: checked at most once per CheckInterval, and at every
// lookup of a token it does not hold.
type Store struct {
	path     string
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	byHash  map[string]Token
	stamp   string // modification time and size of the file as loaded
	checked time.Time
}

// CheckInterval is how often, at most, a Store looks at its file.
const CheckInterval = time.Second

// Open loads the token file at path. It fails if the file exists and is
// bad, so that a server never starts with a wrong view of its tokens.
func Open(path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: path, interval: CheckInterval, log: logger}
	if err := s.reload(time.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

func stampOf(path string) (string, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprint(fi.ModTime().UnixNano(), fi.Size()), nil
}

// reload reads the file if it changed. s.mu is held, or s is new.
func (s *Store) reload(now time.Time) error {
	s.checked = now
	st, err := stampOf(s.path)
	if err != nil {
		return err
	}
	if st == s.stamp && s.byHash != nil {
		return nil
	}
	ts, err := Read(s.path)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	m := make(map[string]Token, len(ts))
	for _, t := range ts {
		if t.Revoked.IsZero() {
			m[t.Hash] = t
		}
	}
	if s.byHash != nil {
		s.log.Info("reloaded tokens", "file", s.path, "valid", len(m))
	}
	s.byHash, s.stamp = m, st
	return nil
}

// Lookup returns the identity of a valid token.
func (s *Store) Lookup(secret string) (tlsconf.Identity, bool) {
	if !strings.HasPrefix(secret, prefix) {
		return tlsconf.Identity{}, false
	}
	h := hashOf(secret)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.checked) >= s.interval {
		if err := s.reload(now); err != nil {
			// The old tokens stay in force; the operator sees why.
			s.log.Error("keeping the current tokens", "err", err)
		}
	}
	// The map is keyed by the token's hash, so a lookup reveals nothing
	// about the token through its timing.
	t, ok := s.byHash[h]
	if !ok {
		// A token created a moment ago works at once: on a miss the file
		// is looked at again (a stat, against the TLS handshake the
		// request already cost).
		if err := s.reload(time.Now()); err != nil {
			s.log.Error("keeping the current tokens", "err", err)
		}
		t, ok = s.byHash[h]
	}
	if !ok {
		return tlsconf.Identity{}, false
	}
	return tlsconf.Identity{Name: t.Name, Role: t.Role}, true
}
