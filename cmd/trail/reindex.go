package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/trailaudit/trail/internal/index"
	"github.com/trailaudit/trail/internal/ledger"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
)

const reindexHelp = `Usage: trail reindex [-data DIR] [-json]

Rebuilds the search index (DIR/index) from the log in DIR, with the server
stopped. The index is derived from the log and can be deleted at any time;
trail serve also rebuilds it by itself when it is missing, damaged or of
another log, and catches up after a crash. Use reindex to rebuild it ahead
of a start, or to measure. It prints progress on a terminal and, at the
end, the entries indexed, the time taken and the index's size.

Example:
  trail reindex -data ./trail-data

Flags:
`

func init() { commands["reindex"] = runReindex }

func runReindex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reindex", stderr, reindexHelp)
	dir := fs.String("data", "", "the data `directory` (default $TRAIL_DATA or ./trail-data)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	data := *dir
	if data == "" {
		if data = os.Getenv("TRAIL_DATA"); data == "" {
			data = "trail-data"
		}
	}
	if !exists(filepath.Join(data, filepath.FromSlash(ledger.SigningKeyFile))) {
		return fmt.Errorf("no log in %s: its signing key %s is missing", data, ledger.SigningKeyFile)
	}
	keys, err := ledger.LoadOrCreateKeys(data)
	if err != nil {
		return err
	}
	store, err := storagefs.Open(data, nil)
	if errors.Is(err, storagefs.ErrLocked) {
		return fmt.Errorf("%s is in use: a trail serve holds it; stop it first (trail serve keeps the index up to date itself)", data)
	}
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		store.Close()
		return err
	}
	defer l.Close()
	idxDir := filepath.Join(data, index.DirName)
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Remove(filepath.Join(idxDir, index.FileName+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("couldn't remove the old index: %w", err)
		}
	}
	ix, err := index.Open(ctx, index.Options{Dir: idxDir, Source: l})
	if err != nil {
		return err
	}
	var progress func(done, total int64)
	start := time.Now()
	drawn := false
	if f, ok := stderr.(*os.File); ok && !*asJSON && term.IsTerminal(int(f.Fd())) {
		last := start
		progress = func(done, total int64) {
			if now := time.Now(); now.Sub(last) >= 100*time.Millisecond || done == total {
				last = now
				const width = 30
				frac := float64(done) / float64(max(total, 1))
				n := int(frac * width)
				fmt.Fprintf(stderr, "\r\033[Kindexing [%s%s] %3.0f%%  %d of %d entries  %.0f/s",
					strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100, done, total,
					float64(done)/max(now.Sub(start).Seconds(), 1e-9))
				drawn = true
			}
		}
	}
	err = ix.CatchUp(ctx, progress)
	elapsed := time.Since(start)
	if drawn {
		fmt.Fprint(stderr, "\r\033[K")
	}
	n := ix.Next()
	if cerr := ix.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	size := dirSize(idxDir)
	if *asJSON {
		fmt.Fprintf(stdout, "{\"entries\":%d,\"seconds\":%.3f,\"entries_per_second\":%.0f,\"index_bytes\":%d,\"bytes_per_entry\":%.1f}\n",
			n, elapsed.Seconds(), float64(n)/max(elapsed.Seconds(), 1e-9), size, float64(size)/float64(max(n, 1)))
		return nil
	}
	fmt.Fprintf(stdout, "indexed %d entries in %.2fs (%.0f/s)\nindex %s: %s (%.0f bytes per entry)\n",
		n, elapsed.Seconds(), float64(n)/max(elapsed.Seconds(), 1e-9), idxDir, formatBytes(float64(size)), float64(size)/float64(max(n, 1)))
	return nil
}

// dirSize returns the bytes of the files directly in dir.
func dirSize(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
