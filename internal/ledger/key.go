package ledger

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/internal/durable"
)

// Key files, relative to the data directory.
const (
	SigningKeyFile  = "keys/log.key"
	VerifierKeyFile = "keys/log.vkey"
)

// Keys is the log's checkpoint signing key and its public verifier key.
type Keys struct {
	Signer   note.Signer
	Verifier note.Verifier
	// VerifierKey is the printable verifier key, "<origin>+<hash>+<key>".
	VerifierKey string
}

// LoadOrCreateKeys reads the signing key from dataDir, creating it (mode
// 0600, never overwritten) with a fresh origin on first use.
func LoadOrCreateKeys(dataDir string) (*Keys, error) {
	skPath, vkPath := filepath.Join(dataDir, SigningKeyFile), filepath.Join(dataDir, VerifierKeyFile)
	skey, err := os.ReadFile(skPath)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKeys(skPath, vkPath); err != nil {
			return nil, err
		}
		skey, err = os.ReadFile(skPath)
	}
	if err != nil {
		return nil, fmt.Errorf("couldn't read signing key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, fmt.Errorf("bad signing key %s: %w", skPath, err)
	}
	vkey, err := os.ReadFile(vkPath)
	if err != nil {
		return nil, fmt.Errorf("couldn't read verifier key: %w", err)
	}
	k := &Keys{Signer: signer, VerifierKey: strings.TrimSpace(string(vkey))}
	if k.Verifier, err = note.NewVerifier(k.VerifierKey); err != nil {
		return nil, fmt.Errorf("bad verifier key %s: %w", vkPath, err)
	}
	if k.Verifier.KeyHash() != signer.KeyHash() || k.Verifier.Name() != signer.Name() {
		return nil, fmt.Errorf("verifier key %s does not match signing key %s", vkPath, skPath)
	}
	return k, nil
}

func createKeys(skPath, vkPath string) error {
	dir := filepath.Dir(skPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, newOrigin())
	if err != nil {
		return err
	}
	// The verifier key first, so that a signing key never exists without its
	// public half; a crash before the signing key is in place leaves no
	// signing key, and the next start makes both again. CreateFile never
	// replaces a signing key.
	if err := durable.WriteFile(vkPath, []byte(vkey+"\n"), 0o644); err != nil {
		return err
	}
	if err := durable.CreateFile(skPath, []byte(skey+"\n"), 0o600); err != nil {
		return fmt.Errorf("couldn't create signing key: %w", err)
	}
	return nil
}

// newOrigin names a new log: "<host>/trail/<8 random hex digits>", a
// schema-less URL-like name that is unique in practice.
func newOrigin() string { return NewName("trail") }

// NewName returns "<host>/<kind>/<8 random hex digits>": a name for a new
// signing key (a log's origin, a witness's name) that is unique in
// practice, with the host name reduced to what a note key name allows.
func NewName(kind string) string {
	host, err := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return -1
	}, host)
	if err != nil || host == "" {
		host = "localhost"
	}
	var b [4]byte
	rand.Read(b[:])
	return host + "/" + kind + "/" + hex.EncodeToString(b[:])
}
