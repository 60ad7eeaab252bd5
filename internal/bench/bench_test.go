package bench_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailaudit/trail/internal/bench"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage/fs"
)

func TestRunTemporary(t *testing.T) {
	parent := t.TempDir()
	res, err := bench.Run(t.Context(), bench.Config{N: 300, Batch: 7, Concurrency: 3, TempParent: parent, FsyncSamples: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.DirKept {
		t.Errorf("DirKept = true for a temporary directory")
	}
	if names, _ := os.ReadDir(parent); len(names) != 0 {
		t.Errorf("temporary directory left behind: %v", names)
	}

	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"n", "batch", "concurrency", "seconds", "entries_per_sec", "p50_ms", "p99_ms",
		"p999_ms", "fsync_ms", "entry_bytes", "bytes_per_entry", "bytes_per_entry_apparent", "ratio"} {
		if _, ok := m[k].(float64); !ok {
			t.Errorf("JSON key %q = %v, want a number", k, m[k])
		}
	}

	if res.N != 300 || res.Batch != 7 || res.Concurrency != 3 {
		t.Errorf("n, batch, concurrency = %d, %d, %d; want 300, 7, 3", res.N, res.Batch, res.Concurrency)
	}
	if !(res.Seconds > 0 && res.EntriesPerSec > 0) {
		t.Errorf("seconds = %v, entries/s = %v; want both > 0", res.Seconds, res.EntriesPerSec)
	}
	if !(0 < res.P50Ms && res.P50Ms <= res.P99Ms && res.P99Ms <= res.P999Ms && res.P999Ms <= res.MaxMs) {
		t.Errorf("latencies p50 %v, p99 %v, p99.9 %v, max %v: want 0 < p50 <= p99 <= p99.9 <= max",
			res.P50Ms, res.P99Ms, res.P999Ms, res.MaxMs)
	}
	if res.FsyncMs <= 0 || res.FsyncAfterMs <= 0 {
		t.Errorf("fsync_ms = %v, fsync_after_ms = %v; want both > 0", res.FsyncMs, res.FsyncAfterMs)
	}
	// 43 calls of at most 7 entries from 3 goroutines: a group commit takes
	// at most 3 calls.
	if res.Commits < 300/21 || res.Commits > 43 || res.EntriesPerCommit < 1 || res.EntriesPerCommit > 21 {
		t.Errorf("commits = %d of %v entries each, want 15 to 43 of 1 to 21", res.Commits, res.EntriesPerCommit)
	}
	if !(res.StoreP50Ms > 0 && res.StoreP50Ms <= res.StoreP99Ms && res.StoreBusy > 0 && res.StoreBusy <= 1.01) {
		t.Errorf("store p50 %v, p99 %v, busy %v: want 0 < p50 <= p99, 0 < busy <= 1", res.StoreP50Ms, res.StoreP99Ms, res.StoreBusy)
	}
	if res.EntryBytes < 400 || res.EntryBytes > 650 {
		t.Errorf("entry_bytes = %v, want about 500", res.EntryBytes)
	}
	// The apparent size holds every entry once, with its length prefix and
	// leaf hash; both sizes are well below 100 times the entries.
	if res.BytesPerEntryApparent < res.EntryBytes || res.BytesPerEntry < res.EntryBytes || res.Ratio > 100 {
		t.Errorf("bytes_per_entry %v, apparent %v, entry %v: want both at least the entry size",
			res.BytesPerEntry, res.BytesPerEntryApparent, res.EntryBytes)
	}

	var text bytes.Buffer
	if err := res.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"entries/s", "p99.9", "fsync", "bytes/entry", "temporary, removed"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("WriteText output lacks %q:\n%s", want, text.String())
		}
	}
}

func TestRunKeepsDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	res, err := bench.Run(t.Context(), bench.Config{N: 10, Batch: 1, Concurrency: 1, Dir: dir, FsyncSamples: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DirKept || res.Dir != dir {
		t.Errorf("Dir, DirKept = %q, %v; want %q, true", res.Dir, res.DirKept, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, ledger.VerifierKeyFile)); err != nil {
		t.Errorf("kept log lacks its verifier key: %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".fsync-probe-*")); len(matches) > 0 {
		t.Errorf("fsync probe left behind: %v", matches)
	}

	// A second run must refuse the directory, now holding a log.
	_, err = bench.Run(t.Context(), bench.Config{N: 10, Batch: 1, Concurrency: 1, Dir: dir})
	if !errors.Is(err, bench.ErrNotEmpty) {
		t.Errorf("Run into an existing log = %v, want ErrNotEmpty", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  bench.Config
		flag string
	}{
		{bench.Config{N: 0, Batch: 1, Concurrency: 1}, "-n"},
		{bench.Config{N: 1, Batch: 0, Concurrency: 1}, "-batch"},
		{bench.Config{N: 1, Batch: 1, Concurrency: -2}, "-c"},
		{bench.Config{N: 1, Batch: 1, Concurrency: 1, Events: "syslog"}, "-events"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag+" ") {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tc.cfg, err, tc.flag)
		}
	}
	if err := (&bench.Config{N: 1, Batch: 1, Concurrency: 1}).Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
}

func TestEvents(t *testing.T) {
	events := bench.Events(2000, 1)
	seen := map[string]bool{}
	for i, e := range events {
		if !json.Valid(e) {
			t.Fatalf("event %d is not valid JSON: %s", i, e)
		}
		if seen[string(e)] {
			t.Fatalf("event %d repeats an earlier one: %s", i, e)
		}
		seen[string(e)] = true
	}
	again := bench.Events(2000, 1)
	for i := range events {
		if !bytes.Equal(events[i], again[i]) {
			t.Fatalf("Events(2000, 1)[%d] differs between calls", i)
		}
	}
}

// TestSearchEvents checks that -events search appends exactly the events
// SearchEvent makes, in order, and reports their mean size.
func TestSearchEvents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	const n = 700
	res, err := bench.Run(t.Context(), bench.Config{N: n, Batch: 64, Concurrency: 1, Dir: dir, FsyncSamples: 3, Events: "search"})
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir)
	defer l.Close()
	if l.Size() != n {
		t.Fatalf("log holds %d entries, want %d", l.Size(), n)
	}
	got, err := l.ReadEntries(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	ids := map[string]bool{}
	for i, e := range got {
		want, id := bench.SearchEvent(nil, int64(i), n, bench.SearchDays(n))
		if !bytes.Equal(e, want) {
			t.Fatalf("entry %d = %s, want %s", i, e, want)
		}
		if !json.Valid(e) || ids[id] {
			t.Fatalf("entry %d: not JSON, or request id %s seen before", i, id)
		}
		ids[id] = true
		total += len(e)
	}
	// The tiles' interior hashes are written as by trail serve: 512 bytes
	// for each of the two full level-0 tiles.
	if fi, err := os.Stat(filepath.Join(dir, "state", "interior")); err != nil || fi.Size() != 2*512 {
		t.Errorf("state/interior: %v, %v; want 1024 bytes", fi, err)
	}
	if want := float64(total) / n; res.EntryBytes != want {
		t.Errorf("entry_bytes = %v, want %v", res.EntryBytes, want)
	}
}

// openLog opens the log in dir as trail serve does, without checkpoints of
// its own.
func openLog(t *testing.T, dir string) *ledger.Log {
	t.Helper()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
