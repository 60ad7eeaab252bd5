package fs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/storage"
)

func journalEntry(i int64) []byte { return fmt.Appendf(nil, `{"journal":%d}`, i) }

func appendEntries(t *testing.T, s *FS, n int64) {
	t.Helper()
	b := &storage.Batch{Start: s.Size()}
	for i := b.Start; i < b.Start+n; i++ {
		b.Entries = append(b.Entries, journalEntry(i))
		b.Hashes = append(b.Hashes, tlog.RecordHash(journalEntry(i)))
	}
	if err := storage.Append(t.Context(), s, b); err != nil {
		t.Fatal(err)
	}
}

// powerLoss copies the data directory of an open log as a power failure
// could leave it: the staging files of each bundle in durable as they were
// at the last sync of the staging files ({entries, hashes} bytes long),
// everything written after that lost, except what the journal holds.
func powerLoss(t *testing.T, dir string, durable map[int64][2]int64) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	for n, sizes := range durable {
		for i, kind := range []string{"entries", "hashes"} {
			p := filepath.Join(dst, "state", "staging", fmt.Sprintf("%s-%012d", kind, n))
			if err := os.Truncate(p, sizes[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func checkEntries(t *testing.T, dir string, want int64) *FS {
	t.Helper()
	var logs bytes.Buffer
	s, err := Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Size() != want {
		t.Fatalf("recovered %d entries, want %d; log:\n%s", s.Size(), want, logs.String())
	}
	got, err := s.ReadEntries(t.Context(), 0, want)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if !bytes.Equal(e, journalEntry(int64(i))) {
			t.Fatalf("entry %d = %q, want %q", i, e, journalEntry(int64(i)))
		}
	}
	return s
}

// TestJournal checks that single-entry commits are made durable by the
// journal alone, and that after a power failure that lost what they wrote
// to the staging files, Open puts them back from the journal.
func TestJournal(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Fill bundle 0 and start bundle 1: a commit that the journal cannot
	// take (it seals a bundle), so the staging files are synced.
	appendEntries(t, s, 257)
	if len(s.unsynced) != 0 {
		t.Fatalf("%d staging files left unsynced by a commit that sealed a bundle", len(s.unsynced))
	}
	ep, hp := s.stagePath("entries", 1), s.stagePath("hashes", 1)
	durableEntries, durableHashes := fileSize(t, ep), fileSize(t, hp)
	for range 20 {
		appendEntries(t, s, 1)
	}
	if s.journal.seq != 20 || len(s.unsynced) == 0 {
		t.Fatalf("journal took %d of 20 single-entry commits, %d files unsynced", s.journal.seq, len(s.unsynced))
	}
	if fileSize(t, ep) == durableEntries {
		t.Fatal("the commits did not write the staging file")
	}
	const total = 277
	lost := map[int64][2]int64{1: {durableEntries, durableHashes}}

	t.Run("replayed", func(t *testing.T) {
		checkEntries(t, powerLoss(t, dir, lost), total)
	})
	t.Run("staging files lost entirely", func(t *testing.T) {
		// Worse than a power failure can do to synced data: the journal
		// holds the 20 commits and replays them, but the entry synced in
		// the staging files before them is gone, a hole that Open must
		// report, not paper over.
		d := powerLoss(t, dir, map[int64][2]int64{1: {0, 0}})
		_, err := Open(d, nil)
		var ce *storage.CorruptionError
		if !errors.As(err, &ce) || !strings.Contains(ce.Error(), "entry 256") {
			t.Fatalf("Open = %v, want a CorruptionError naming entry 256", err)
		}
	})
	t.Run("torn last record", func(t *testing.T) {
		d := powerLoss(t, dir, lost)
		j := filepath.Join(d, "state", "journal")
		b, err := os.ReadFile(j)
		if err != nil {
			t.Fatal(err)
		}
		b[s.journal.pos-3] ^= 0xff // the last record's last entry
		if err := os.WriteFile(j, b, 0o600); err != nil {
			t.Fatal(err)
		}
		checkEntries(t, d, total-1)
	})
	t.Run("earlier epoch", func(t *testing.T) {
		// A journal whose header is of another epoch (a log reopened
		// since) replays nothing.
		d := powerLoss(t, dir, lost)
		f, err := os.OpenFile(filepath.Join(d, "state", "journal"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := writeJournalHeader(f, s.journal.epoch+1); err != nil {
			t.Fatal(err)
		}
		checkEntries(t, d, 257)
	})

	// A commit that fills a bundle goes to the journal too; the bundle is
	// sealed only once a sync of the staging files (here the one before a
	// checkpoint) has made it durable, and the journal then starts again
	// from its beginning.
	appendEntries(t, s, 256)
	t.Run("record across bundles", func(t *testing.T) {
		lost := map[int64][2]int64{1: {durableEntries, durableHashes}, 2: {0, 0}}
		checkEntries(t, powerLoss(t, dir, lost), total+256)
	})
	sealed := filepath.Join(dir, "log", "tile", "entries", "001")
	if _, err := os.Stat(sealed); err == nil {
		t.Fatal("bundle 1 sealed before its staging files were synced")
	}
	s.syncMu.Lock()
	err = s.flushLocked(s.syncedSeq)
	s.syncMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sealed); err != nil {
		t.Fatalf("bundle 1 not sealed after a sync of the staging files: %v", err)
	}
	t.Run("killed between the renames of a seal", func(t *testing.T) {
		// The journal still holds the records of bundle 1, whose hash
		// tile was renamed into place but not its entries.
		d := filepath.Join(t.TempDir(), "copy")
		if err := os.CopyFS(d, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(d, "log", "tile", "entries", "001"), filepath.Join(d, "state", "staging", "entries-000000000001")); err != nil {
			t.Fatal(err)
		}
		checkEntries(t, d, total+256)
	})
	appendEntries(t, s, 1)
	if want := int64(journalHeader + journalRecHeader + 2 + len(journalEntry(total+256))); s.journal.pos != want {
		t.Fatalf("after a sync of the staging files, the next record ends at %d, want %d", s.journal.pos, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if size := fileSize(t, filepath.Join(dir, "state", "journal")); size != journalHeader {
		t.Errorf("journal of %d bytes after Close, want only its header (%d)", size, journalHeader)
	}

	// After Close the staging files hold everything and the journal's
	// records are void: reopened, the log replays nothing.
	var logs bytes.Buffer
	s2, err := Open(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Size() != total+257 || strings.Contains(logs.String(), "replayed") {
		t.Fatalf("reopened with %d entries, want %d; log:\n%s", s2.Size(), total+257, logs.String())
	}
}
