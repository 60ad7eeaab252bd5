package fs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/storage"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		dir := filepath.Join(t.TempDir(), "../data") // shared by both opens in a subtest
		s, err := fs.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func entry(i int64) []byte { return fmt.Appendf(nil, `{"n":%d}`, i) }

func appendN(t *testing.T, s *fs.FS, n int64) {
	t.Helper()
	b := &storage.Batch{Start: s.Size()}
	for i := b.Start; i < b.Start+n; i++ {
		b.Entries = append(b.Entries, entry(i))
		b.Hashes = append(b.Hashes, tlog.RecordHash(entry(i)))
	}
	if err := storage.Append(t.Context(), s, b); err != nil {
		t.Fatal(err)
	}
}

func staged(dir, kind string, n int64) string {
	return filepath.Join(dir, "state", "staging", fmt.Sprintf("%s-%012d", kind, n))
}

// TestRecovery damages the staging files the way a crash can, and the way
// only damage can, and checks what Open makes of it.
func TestRecovery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		size    int64 // after recovery; -1 means Open must report corruption
		corrupt string
	}{
		{"clean", func(t *testing.T, dir string) {}, 300, ""},
		{"torn entry", func(t *testing.T, dir string) { truncateBy(t, staged(dir, "entries", 1), 3) }, 299, ""},
		{"torn hash", func(t *testing.T, dir string) { truncateBy(t, staged(dir, "hashes", 1), 5) }, 299, ""},
		{"zeros after entries", func(t *testing.T, dir string) { appendBytes(t, staged(dir, "entries", 1), make([]byte, 4096)) }, 300, ""},
		{"zeroed last hash", func(t *testing.T, dir string) {
			p := staged(dir, "hashes", 1)
			b := read(t, p)
			clear(b[len(b)-32:])
			write(t, p, b)
		}, 299, ""},
		{"flipped byte mid-bundle", func(t *testing.T, dir string) {
			p := staged(dir, "entries", 1)
			b := read(t, p)
			b[20] ^= 1
			write(t, p, b)
		}, -1, "entry 257"},
		{"unacknowledged next bundle", func(t *testing.T, dir string) {
			write(t, staged(dir, "entries", 2), []byte{0, 1, 'x'})
			write(t, staged(dir, "hashes", 2), make([]byte, 32))
		}, 300, ""},
		{"full bundle not yet renamed", func(t *testing.T, dir string) {
			// Move sealed bundle 0 back to staging, as if the rename was lost.
			must(t, os.Rename(filepath.Join(dir, "log/tile/entries/000"), staged(dir, "entries", 0)))
			must(t, os.Rename(filepath.Join(dir, "log/tile/0/000"), staged(dir, "hashes", 0)))
		}, 300, ""},
		{"only hashes renamed", func(t *testing.T, dir string) {
			must(t, os.Rename(filepath.Join(dir, "log/tile/entries/000"), staged(dir, "entries", 0)))
		}, 300, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := fs.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, s, 250)
			appendN(t, s, 50)
			s.Close()
			tc.damage(t, dir)
			s, err = fs.Open(dir, nil)
			if tc.size < 0 {
				var ce *storage.CorruptionError
				if !errors.As(err, &ce) || !bytes.Contains([]byte(ce.Error()), []byte(tc.corrupt)) {
					t.Fatalf("Open = %v, want CorruptionError naming %q", err, tc.corrupt)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Size() != tc.size {
				t.Fatalf("Size() = %d, want %d", s.Size(), tc.size)
			}
			got, err := s.ReadEntries(t.Context(), 0, s.Size())
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range got {
				if !bytes.Equal(e, entry(int64(i))) {
					t.Fatalf("entry %d = %q, want %q", i, e, entry(int64(i)))
				}
			}
			// The log goes on where recovery left it.
			appendN(t, s, 500)
			got, err = s.ReadEntries(t.Context(), 0, s.Size())
			if err != nil || int64(len(got)) != tc.size+500 || !bytes.Equal(got[tc.size], entry(tc.size)) {
				t.Fatalf("after recovery and append: %d entries, %v", len(got), err)
			}
		})
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := fs.Open(dir, nil); err == nil {
		t.Fatal("second Open of the same directory succeeded")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

func write(t *testing.T, p string, b []byte) { t.Helper(); must(t, os.WriteFile(p, b, 0o644)) }

func appendBytes(t *testing.T, p string, b []byte) { t.Helper(); write(t, p, append(read(t, p), b...)) }

func truncateBy(t *testing.T, p string, n int64) {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	must(t, os.Truncate(p, fi.Size()-n))
}
