package token

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/tlsconf"
)

func TestCreateLookupRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), File)
	now := time.Now()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.interval = 0 // look at the file on every lookup
	if _, ok := s.Lookup("trail_nothing"); ok {
		t.Fatal("lookup in an empty store succeeded")
	}
	secret, err := Create(path, "ci-bot", tlsconf.RoleWriter, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "trail_") || len(secret) != 6+43 {
		t.Errorf("token %q: want trail_ and 43 characters", secret)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret[6:]) {
		t.Fatal("the token file holds the secret")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	id, ok := s.Lookup(secret)
	if !ok || id.Name != "ci-bot" || id.Role != tlsconf.RoleWriter {
		t.Fatalf("Lookup = %v, %v; want ci-bot writer", id, ok)
	}
	if _, ok := s.Lookup(secret + "x"); ok {
		t.Error("a wrong token was accepted")
	}
	if _, err := Create(path, "ci-bot", tlsconf.RoleReader, now); err == nil || !strings.Contains(err.Error(), "revoke it first") {
		t.Errorf("second Create = %v, want refused", err)
	}
	if _, err := Create(path, "bad name", tlsconf.RoleReader, now); err == nil {
		t.Error("Create with a bad name succeeded")
	}
	if n, err := Revoke(path, "ci-bot", now); n != 1 || err != nil {
		t.Fatalf("Revoke = %d, %v", n, err)
	}
	if _, ok := s.Lookup(secret); ok {
		t.Error("a revoked token was accepted")
	}
	if _, err := Revoke(path, "nobody", now); err == nil {
		t.Error("Revoke of an unknown name succeeded")
	}
	// A damaged file keeps the old tokens in force and fails a new Open.
	again, err := Create(path, "ci-bot", tlsconf.RoleReader, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup(again); !ok {
		t.Fatal("new token not accepted")
	}
	if err := os.WriteFile(path, []byte("{bad"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup(again); !ok {
		t.Error("a damaged file dropped the tokens in force")
	}
	if _, err := Open(path, nil); err == nil {
		t.Error("Open of a damaged file succeeded")
	}
}

// TestNewTokenWorksAtOnce: a token created just after the store looked at
// its file is found by the next lookup, not a CheckInterval later.
func TestNewTokenWorksAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), File)
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.interval = time.Hour // no periodic look at the file during the test
	if _, ok := s.Lookup("trail_nothing"); ok {
		t.Fatal("lookup in an empty store succeeded")
	}
	secret, err := Create(path, "ci-bot", tlsconf.RoleWriter, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := s.Lookup(secret); !ok || id.Name != "ci-bot" {
		t.Fatalf("Lookup of a token created a moment ago = %+v, %v; want ci-bot", id, ok)
	}
}
