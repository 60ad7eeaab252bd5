package selfcheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/ledger"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
)

// testLog is a real log in a temporary directory, left open as a running
// server leaves it.
type testLog struct {
	dir   string
	store *storagefs.FS
	log   *ledger.Log
	keys  *ledger.Keys
}

// newLog appends n small entries (plus one large one at index 300 when
// n > 300) in batches of 1000, signing a checkpoint after each batch.
func newLog(t *testing.T, n int) *testLog {
	t.Helper()
	tl, err := makeLog(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.log.Close() })
	return tl
}

// makeLog makes a log of n entries in dir and leaves it open.
func makeLog(dir string, n int) (*testLog, error) {
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		return nil, err
	}
	store, err := storagefs.Open(dir, nil)
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		return nil, err
	}
	tl := &testLog{dir: dir, store: store, log: l, keys: keys}
	if err := tl.add(0, n, true); err != nil {
		l.Close()
		return nil, err
	}
	return tl, nil
}

func (tl *testLog) append(t *testing.T, from, n int) {
	t.Helper()
	if err := tl.add(from, n, true); err != nil {
		t.Fatal(err)
	}
}

// appendOnly appends without signing a checkpoint at the end.
func (tl *testLog) appendOnly(t *testing.T, from, n int) {
	t.Helper()
	if err := tl.add(from, n, false); err != nil {
		t.Fatal(err)
	}
}

// add appends entries from to from+n in batches of 1000 (entry 300 is
// large), signing a checkpoint after each batch but, unless last, the
// final one.
func (tl *testLog) add(from, n int, last bool) error {
	ctx := context.Background()
	for i := from; i < from+n; {
		var batch [][]byte
		for ; i < from+n && len(batch) < 1000; i++ {
			e := fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", i%50))
			if i == 300 {
				e = bytes.Repeat([]byte("L"), 70_000) // stored as a large entry
			}
			batch = append(batch, e)
		}
		if _, err := tl.log.Append(ctx, batch...); err != nil {
			return err
		}
		if i < from+n || last {
			if _, err := tl.log.Checkpoint(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func (tl *testLog) path(rel string) string { return filepath.Join(tl.dir, filepath.FromSlash(rel)) }

func (tl *testLog) sweep(t *testing.T) (*Damage, error) {
	t.Helper()
	_, err := Sweep(context.Background(), tl.store, tl.keys.Verifier, -1)
	var d *Damage
	if errors.As(err, &d) {
		return d, nil
	}
	return nil, err
}

func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x20
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A level-1 tile fills at 65,536 entries: the log is big enough to have
// one, so every level of the check runs.
const bigLog = 65_536 + 700

// The big log is made once, closed, and copied for each test that damages
// it: making it takes most of the package's time under the race detector.
var (
	bigOnce sync.Once
	bigDir  string
	bigErr  error
)

// copyBigLog returns an open copy of the big log.
func copyBigLog(t *testing.T) *testLog {
	t.Helper()
	bigOnce.Do(func() {
		bigDir, bigErr = os.MkdirTemp("", "selfcheck-big-")
		if bigErr != nil {
			return
		}
		var tl *testLog
		tl, bigErr = makeLog(bigDir, bigLog)
		if bigErr == nil {
			bigErr = tl.log.Close()
		}
	})
	if bigErr != nil {
		t.Fatal(bigErr)
	}
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", bigDir+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storagefs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &testLog{dir: dir, store: store, log: l, keys: keys}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

func TestHealthyLogPasses(t *testing.T) {
	tl := copyBigLog(t)
	n, err := Sweep(context.Background(), tl.store, tl.keys.Verifier, -1)
	if err != nil {
		t.Fatalf("healthy log: %v", err)
	}
	if n < 70_000 {
		t.Errorf("sweep read %d bytes, want the whole log", n)
	}
	if _, err := os.Stat(tl.path("log/tile/1/000")); err != nil {
		t.Fatalf("no level-1 tile to check: %v", err)
	}
}

// Each attack is made on the files of a running log, then swept. The
// damage must be found and named.
func TestDamageIsFoundAndNamed(t *testing.T) {
	tests := []struct {
		name   string
		attack func(t *testing.T, tl *testLog)
		where  string // substring of Damage.Where
		index  int64  // Damage.Index, or -2 for any
	}{
		{"entry byte", func(t *testing.T, tl *testLog) {
			// Entry 5's text, inside the first sealed bundle.
			b, _ := os.ReadFile(tl.path("log/tile/entries/000"))
			i := bytes.Index(b, []byte(`{"n":5,`))
			flipByte(t, tl.path("log/tile/entries/000"), int64(i+3))
		}, "log/tile/entries/000 (entry 5)", 5},
		{"entry in a later bundle", func(t *testing.T, tl *testLog) {
			b, _ := os.ReadFile(tl.path("log/tile/entries/100"))
			i := bytes.Index(b, []byte(`{"n":25610,`))
			flipByte(t, tl.path("log/tile/entries/100"), int64(i+8))
		}, "(entry 25610)", 25610},
		{"level-0 tile byte", func(t *testing.T, tl *testLog) {
			flipByte(t, tl.path("log/tile/0/001"), 32*7+4)
		}, "log/tile/0/001 (hash 7)", 256 + 7},
		{"level-1 tile byte", func(t *testing.T, tl *testLog) {
			flipByte(t, tl.path("log/tile/1/000"), 32*3)
		}, "log/tile/1/000", 3 * 256},
		{"large entry body", func(t *testing.T, tl *testLog) {
			body := bytes.Repeat([]byte("L"), 70_000)
			sum := sha256.Sum256(body)
			flipByte(t, tl.path(fmt.Sprintf("log/large/%x", sum)), 100)
		}, "log/large/", 300},
		{"checkpoint history byte", func(t *testing.T, tl *testLog) {
			flipByte(t, tl.path("state/checkpoints"), 200)
		}, "state/checkpoints", -1},
		{"bundle truncated", func(t *testing.T, tl *testLog) {
			p := tl.path("log/tile/entries/010")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, "tile/entries/010", -2},
		{"bundle deleted", func(t *testing.T, tl *testLog) {
			os.Remove(tl.path("log/tile/entries/020"))
		}, "", 20 * 256},
		{"hash tile deleted", func(t *testing.T, tl *testLog) {
			os.Remove(tl.path("log/tile/0/030"))
		}, "log/tile/0/030", 30 * 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := copyBigLog(t)
			tt.attack(t, tl)
			d, err := tl.sweep(t)
			if err != nil {
				t.Fatalf("sweep failed without naming damage: %v", err)
			}
			if d == nil {
				t.Fatal("damage not found")
			}
			t.Logf("found: %v", d)
			if !strings.Contains(d.Where, tt.where) {
				t.Errorf("damage at %q, want %q", d.Where, tt.where)
			}
			if tt.index != -2 && d.Index != tt.index {
				t.Errorf("damage index %d, want %d", d.Index, tt.index)
			}
		})
	}
}

// The follower checks new entries as checkpoints cover them, and reports
// damage to them through Report.
func TestFollowerReportsNewDamage(t *testing.T) {
	tl := newLog(t, 600)
	var mu sync.Mutex
	var got []*Damage
	c, err := Start(Config{
		Store:    tl.store,
		Verifier: tl.keys.Verifier,
		Latest:   func() []byte { return tl.log.Latest().Note },
		Every:    -1,
		Poll:     10 * time.Millisecond,
		Report: func(d *Damage) {
			mu.Lock()
			got = append(got, d)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	waitFor(t, "the follower to check 600 entries", func() bool { return c.Stats().Followed >= 600 })
	tl.append(t, 600, 1000)
	waitFor(t, "the follower to check 1600 entries", func() bool { return c.Stats().Followed >= 1600 })
	mu.Lock()
	if len(got) != 0 {
		t.Fatalf("healthy log reported %v", got[0])
	}
	mu.Unlock()

	// Damage entries no checkpoint covers yet: the follower reads them
	// once one does.
	tl.appendOnly(t, 1600, 500)
	// Bundle 7 is full; it is sealed at its C2SP path by the next
	// checkpoint, and until then still staged.
	bundle := tl.path("log/tile/entries/007")
	if _, err := os.Stat(bundle); err != nil {
		bundle = tl.path("state/staging/entries-000000000007")
	}
	b, _ := os.ReadFile(bundle)
	i := bytes.Index(b, []byte(`{"n":1800,`))
	flipByte(t, bundle, int64(i+6))
	if _, err := tl.log.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "damage to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	mu.Lock()
	d := got[0]
	mu.Unlock()
	if !strings.Contains(d.Where, "entry 1800") {
		t.Errorf("follower reported %v, want entry 1800", d)
	}
	if s := c.Stats(); s.FollowerStop == "" || s.Damages != 1 {
		t.Errorf("stats %+v, want the follower stopped after one damage", s)
	}
}

func TestSweepRate(t *testing.T) {
	tl := newLog(t, 3000)
	start := time.Now()
	n, err := Sweep(context.Background(), tl.store, tl.keys.Verifier, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// At 1 MiB/s the ~200 kB log takes at least n/rate, less the last
	// batch, which is not waited for.
	if min := time.Duration(float64(n-70_000-30_000) / float64(1<<20) * float64(time.Second)); time.Since(start) < min {
		t.Errorf("read %d bytes in %v at 1 MiB/s, want at least %v", n, time.Since(start), min)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkSweep measures a whole-log sweep, unthrottled, over 100,000
// entries of about 500 bytes (the page cache warm after the first pass).
func BenchmarkSweep(b *testing.B) {
	dir := b.TempDir()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		b.Fatal(err)
	}
	store, err := storagefs.Open(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	pad := strings.Repeat("x", 440)
	for i := 0; i < 100_000; {
		var batch [][]byte
		for ; len(batch) < 1000; i++ {
			batch = append(batch, fmt.Appendf(nil, `{"n":%d,"actor":{"id":"user-%d"},"pad":"%s"}`, i, i%10000, pad))
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		n, err := Sweep(ctx, store, keys.Verifier, -1)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(n)
	}
}
