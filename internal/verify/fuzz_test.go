package verify_test

import (
	"errors"
	"os"
	"testing"

	"github.com/trailaudit/trail/internal/verify"
)

// The fuzz targets write arbitrary bytes where a parser of Dir reads them.
// Whatever the bytes, Dir must return nil or a *Failure: never panic, never
// an internal error. They use a tiny log of 300 entries (bundle 000 sealed,
// bundle 001 staged with 44 entries), so that each run is quick.

func tiny(f *testing.F) string {
	dir := f.TempDir()
	buildLog(f, dir, spec{entries: 300, size: 30, batch: 40, checkpoint: 100})
	return dir
}

func checkFuzzed(t *testing.T, dir string) {
	_, err := verify.Dir(t.Context(), dir, verify.Options{})
	if f := (*verify.Failure)(nil); err != nil && !errors.As(err, &f) {
		t.Fatalf("Dir = %v, want nil or a *Failure", err)
	}
}

func FuzzStaged(f *testing.F) {
	dir := tiny(f)
	entriesPath, hashesPath := path(dir, "state/staging/entries-000000000001"), path(dir, "state/staging/hashes-000000000001")
	entries, err := os.ReadFile(entriesPath)
	if err != nil {
		f.Fatal(err)
	}
	hashes, err := os.ReadFile(hashesPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(entries, hashes)
	f.Add(entries[:len(entries)-5], hashes)
	f.Add(append(entries, 0, 3, 'a'), hashes[:len(hashes)-32])
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, e, h []byte) {
		if err := os.WriteFile(entriesPath, e, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hashesPath, h, 0o644); err != nil {
			t.Fatal(err)
		}
		checkFuzzed(t, dir)
	})
}

func FuzzHistory(f *testing.F) {
	dir := tiny(f)
	histPath := path(dir, "state/checkpoints")
	hist, err := os.ReadFile(histPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hist)
	f.Add(hist[:len(hist)-3])
	f.Add(hist[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, h []byte) {
		if err := os.WriteFile(histPath, h, 0o644); err != nil {
			t.Fatal(err)
		}
		checkFuzzed(t, dir)
	})
}
