package verify_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	fsstore "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/verify"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if root.dir != "" {
		os.RemoveAll(root.dir)
	}
	os.Exit(code)
}

func openLog(tb testing.TB, dir string) *ledger.Log {
	tb.Helper()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		tb.Fatal(err)
	}
	store, err := fsstore.Open(dir, nil)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := ledger.Open(tb.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// spec describes a log to build.
type spec struct {
	entries    int // small entries
	size       int // bytes per small entry, at least 24
	batch      int // largest batch
	large      int // large entries, spread out
	checkpoint int // sign a checkpoint every this many entries
	reopen     bool
}

// buildLog builds a log in dir with the ledger and closes it (which signs a
// final checkpoint). It returns the size and the newest checkpoint.
func buildLog(tb testing.TB, dir string, s spec) *ledger.Checkpoint {
	tb.Helper()
	ctx := tb.Context()
	l := openLog(tb, dir)
	rng := rand.New(rand.NewPCG(1, 2))
	pad := strings.Repeat("x", max(s.size-24, 0))
	largeEvery := s.entries + 1
	if s.large > 0 {
		largeEvery = s.entries/s.large + 1
	}
	for i, sinceCP := 0, 0; i < s.entries; {
		n := min(1+rng.IntN(s.batch), s.entries-i)
		batch := make([][]byte, 0, n+1)
		for j := range n {
			batch = append(batch, fmt.Appendf(nil, `{"i":%12d,"p":"%s"}`, i+j, pad))
			if s.large > 0 && (i+j)%largeEvery == largeEvery/2 {
				batch = append(batch, bytes.Repeat([]byte{byte('a' + (i+j)%26)}, c2sp.MaxEntrySize+1+i+j))
			}
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			tb.Fatal(err)
		}
		i += n
		sinceCP += n
		if s.checkpoint > 0 && sinceCP >= s.checkpoint {
			sinceCP = 0
			if _, err := l.Checkpoint(ctx); err != nil {
				tb.Fatal(err)
			}
		}
		if s.reopen && i >= s.entries/2 && i-n < s.entries/2 {
			if err := l.Close(); err != nil {
				tb.Fatal(err)
			}
			l = openLog(tb, dir)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		tb.Fatal(err)
	}
	cp := l.Latest()
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	return cp
}

// smallSpec is 3,003 entries: 11 sealed bundles and a staged one of 187,
// with three large entries and six checkpoints (the first of size 0).
var smallSpec = spec{entries: 3000, size: 60, batch: 300, large: 3, checkpoint: 900, reopen: true}

var smallLog struct {
	once sync.Once
	dir  string
	cp   *ledger.Checkpoint
}

// small returns a copy of a log built once to smallSpec.
func small(t testing.TB) (string, *ledger.Checkpoint) {
	t.Helper()
	smallLog.once.Do(func() {
		smallLog.dir = filepath.Join(tempRoot(t), "small")
		smallLog.cp = buildLog(t, smallLog.dir, smallSpec)
	})
	if smallLog.cp == nil {
		t.Fatal("building the small log failed")
	}
	return copyDir(t, smallLog.dir), smallLog.cp
}

// bigSpec passes one level-1 tile (65,536 entries).
var bigSpec = spec{entries: 66000, size: 24, batch: 3000, large: 1, checkpoint: 30000}

var bigLog struct {
	once sync.Once
	dir  string
	cp   *ledger.Checkpoint
}

func big(t testing.TB) (string, *ledger.Checkpoint) {
	t.Helper()
	bigLog.once.Do(func() {
		bigLog.dir = filepath.Join(tempRoot(t), "big")
		bigLog.cp = buildLog(t, bigLog.dir, bigSpec)
	})
	if bigLog.cp == nil {
		t.Fatal("building the big log failed")
	}
	return copyDir(t, bigLog.dir), bigLog.cp
}

var root struct {
	once sync.Once
	dir  string
}

// tempRoot is a directory that outlives single tests, removed by TestMain.
func tempRoot(t testing.TB) string {
	root.once.Do(func() {
		var err error
		if root.dir, err = os.MkdirTemp("", "trail-verify-test-"); err != nil {
			t.Fatal(err)
		}
	})
	return root.dir
}

// copyDir copies a data directory into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// snapshot returns every file's path, mode and contents hash.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		info, _ := d.Info()
		m[p] = fmt.Sprintf("%v %x %v", info.Mode(), sha256.Sum256(b), info.ModTime())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHealthy(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(t *testing.T) (string, *ledger.Checkpoint)
	}{
		{"small", func(t *testing.T) (string, *ledger.Checkpoint) { return small(t) }},
		{"big", func(t *testing.T) (string, *ledger.Checkpoint) {
			if testing.Short() {
				t.Skip("builds a log of 66,001 entries")
			}
			return big(t)
		}},
		{"empty", func(t *testing.T) (string, *ledger.Checkpoint) {
			dir := t.TempDir()
			l := openLog(t, dir)
			cp := l.Latest()
			l.Close()
			return dir, cp
		}},
		{"many checkpoints", func(t *testing.T) (string, *ledger.Checkpoint) {
			// A checkpoint after every batch: proofs between all kinds of sizes.
			dir := t.TempDir()
			return dir, buildLog(t, dir, spec{entries: 6000, size: 30, batch: 150, checkpoint: 1})
		}},
		{"whole bundles", func(t *testing.T) (string, *ledger.Checkpoint) {
			dir := t.TempDir()
			return dir, buildLog(t, dir, spec{entries: 512, size: 30, batch: 256, checkpoint: 256})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, cp := tc.log(t)
			before := snapshot(t, dir)
			var calls int
			var last verify.Progress
			rep, err := verify.Dir(t.Context(), dir, verify.Options{Progress: func(p verify.Progress) { calls++; last = p }})
			if err != nil {
				t.Fatalf("Dir = %v", err)
			}
			if rep.Size != cp.Size || rep.Root != cp.Hash || !bytes.Equal(rep.Checkpoint, cp.Note) {
				t.Errorf("Dir reports size %d, root %s; want %d, %s", rep.Size, rep.Root, cp.Size, cp.Hash)
			}
			if rep.Entries != cp.Size {
				t.Errorf("Entries = %d, want %d", rep.Entries, cp.Size)
			}
			if !rep.KeyFromDir || len(rep.Warnings) != 0 {
				t.Errorf("KeyFromDir = %v, Warnings = %q; want true, none", rep.KeyFromDir, rep.Warnings)
			}
			if cp.Size > 0 && (calls == 0 || last.Entries != cp.Size || last.TotalEntries != cp.Size || last.Bytes == 0) {
				t.Errorf("%d progress calls, last %+v; want entries %d of %[3]d", calls, last, cp.Size)
			}
			if after := snapshot(t, dir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("Dir modified the directory")
			}
			t.Logf("size %d, %d entries (%d large), %d bundles, %d tiles, %d checkpoints, %d bytes in %v",
				rep.Size, rep.Entries, rep.LargeEntries, rep.Bundles, rep.Tiles, rep.Checkpoints, rep.Bytes, rep.Duration)
		})
	}
}

func TestHealthyCounts(t *testing.T) {
	dir, cp := small(t)
	rep, err := verify.Dir(t.Context(), dir, verify.Options{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	// 11 full bundles and 1 staged, plus partial bundles at checkpoint sizes
	// that are not yet sealed (the final one: 3003).
	if rep.Entries != 3003 || rep.LargeEntries != 3 || rep.Checkpoints < 5 {
		t.Errorf("Entries, LargeEntries, Checkpoints = %d, %d, %d; want 3003, 3, >= 5", rep.Entries, rep.LargeEntries, rep.Checkpoints)
	}
	if cp.Size != 3003 {
		t.Errorf("newest checkpoint size %d, want 3003", cp.Size)
	}
	if rep.Bundles < 13 || rep.Tiles < 14 {
		t.Errorf("Bundles, Tiles = %d, %d; want >= 13, >= 14", rep.Bundles, rep.Tiles)
	}
}

func TestPinnedKey(t *testing.T) {
	dir, _ := small(t)
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Dir(t.Context(), dir, verify.Options{Key: keys.VerifierKey + "\n"})
	if err != nil || rep.KeyFromDir {
		t.Fatalf("Dir(pinned key) = %v, KeyFromDir %v; want nil, false", err, rep.KeyFromDir)
	}
	if _, err := verify.Dir(t.Context(), dir, verify.Options{Key: "not a key"}); err == nil || errors.As(err, new(*verify.Failure)) {
		t.Fatalf("Dir(bad key) = %v, want a plain error", err)
	}
}

func TestNoLog(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), t.TempDir()} {
		_, err := verify.Dir(t.Context(), dir, verify.Options{})
		if !errors.Is(err, verify.ErrNoLog) {
			t.Errorf("Dir(%s) = %v, want ErrNoLog", dir, err)
		}
	}
}

// TestCrashStates checks states a crash, or a running log, leaves that must
// verify: a full bundle still staged (its hashes staged or already renamed,
// or only its hashes' rename lost), empty staging files made ahead of need,
// and leftover temporary files.
func TestCrashStates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		moves [][2]string
		files []string // empty files to create
	}{
		{name: "bundle and hashes staged", moves: [][2]string{
			{"log/tile/entries/010", "state/staging/entries-000000000010"},
			{"log/tile/0/010", "state/staging/hashes-000000000010"},
		}},
		{name: "bundle staged, hashes renamed", moves: [][2]string{
			{"log/tile/entries/010", "state/staging/entries-000000000010"},
		}},
		{name: "bundle sealed, hashes staged", moves: [][2]string{
			{"log/tile/0/010", "state/staging/hashes-000000000010"},
		}},
		{name: "spare staging files", files: []string{
			"state/staging/entries-000000000012", "state/staging/hashes-000000000012",
			"state/staging/entries-000000000013", "state/staging/hashes-000000000013",
		}},
		{name: "temporary files", files: []string{"log/tile/0/.tmp-123", "log/.tmp-456"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := small(t)
			for _, m := range tc.moves {
				if err := os.Rename(filepath.Join(dir, m[0]), filepath.Join(dir, m[1])); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := verify.Dir(t.Context(), dir, verify.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Warnings) > 0 {
				t.Errorf("Warnings = %q, want none", rep.Warnings)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	dir, _ := small(t)
	if err := os.Remove(filepath.Join(dir, "log/tile/1/000.p/11")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "log/tile/entries/README"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Dir(t.Context(), dir, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tile/1/000.p/11 is missing: readers of the newest checkpoint (size 3003) need it", "unexpected file", "tile/entries/README"}
	all := filepath.ToSlash(strings.Join(rep.Warnings, "\n"))
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("Warnings = %q, want one containing %q", rep.Warnings, w)
		}
	}
}

func TestLeafHash(t *testing.T) {
	// Dir hashes entries in place; check it against tlog on odd sizes.
	dir := t.TempDir()
	l := openLog(t, dir)
	for _, n := range []int{1, 2, 55, 56, 63, 64, 65, 119, 120, 128, 1000, c2sp.MaxEntrySize} {
		if _, err := l.Append(t.Context(), bytes.Repeat([]byte{byte(n)}, n)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := l.TreeHash(t.Context(), l.Size())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	rep, err := verify.Dir(t.Context(), dir, verify.Options{})
	if err != nil || rep.Root != root {
		t.Fatalf("Dir = %v, root %s; want nil, %s", err, rep.Root, root)
	}
}

// TestOpenLogJournal: verifying the directory of a log that is open, with
// small commits in its journal, warns that a power failure would need the
// log reopened first; once the log is closed, nothing to warn about.
func TestOpenLogJournal(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	for i := range 10 {
		if _, err := l.Append(t.Context(), fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Dir(t.Context(), dir, verify.Options{})
	if err != nil || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "state/journal holds commits") {
		t.Fatalf("Dir(open log) = %v, warnings %q; want success with a warning about the journal", err, rep.Warnings)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := verify.Dir(t.Context(), dir, verify.Options{}); err != nil || len(rep.Warnings) != 0 {
		t.Fatalf("Dir(closed log) = %v, warnings %q; want success without warnings", err, rep.Warnings)
	}
}
