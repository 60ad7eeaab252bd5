package durable_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/trailaudit/trail/internal/durable"
)

func TestWriteAndCreate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := durable.CreateFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := durable.CreateFile(p, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreateFile over an existing file = %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("after a refused CreateFile the file holds %q, want %q", b, "one")
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if err := durable.WriteFile(p, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "three" {
		t.Fatalf("after WriteFile the file holds %q, want %q", b, "three")
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 1 {
		t.Fatalf("directory holds %d names, want 1 (no temporary files left)", len(names))
	}
}
