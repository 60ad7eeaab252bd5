// Package verify checks a trail data directory offline, as an auditor would:
// it re-hashes every entry, rebuilds every tile from the level below, checks
// the bodies of large entries, and checks every signed checkpoint against the
// verifier key, against the data and against the checkpoint before it, and
// the RFC 3161 time-stamps stored beside them (timestamps.go).
//
// It reads the files itself, through the fixed formats only (package c2sp,
// golang.org/x/mod/sumdb/tlog and note, ledger.ParseLargeRef for the
// large-entry reference, and package tsa's RFC 3161 parser), and shares no code with the engine's recovery in
// packages ledger and fs: a bug there must not hide damage here.
// It never writes to the directory. Run it on a stopped log or on a copy: a
// running log changes under it, and a log that crashed must be reopened (which
// drops its torn tail and signs a checkpoint) before it verifies.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Options configure Dir. The zero value is ready to use.
type Options struct {
	// Key is the verifier key that must have signed the checkpoints, as
	// printed by "trail key": "<origin>+<hash>+<key>". An auditor passes
	// their own copy. Default: the directory's keys/log.vkey, which whoever
	// can write the directory can replace (Report.KeyFromDir says so).
	Key string
	// Progress, if not nil, is called from one goroutine after each entry
	// bundle is checked. It must return quickly.
	Progress func(Progress)
	// Workers is the number of goroutines that read and hash entries.
	// Default: GOMAXPROCS.
	Workers int
	// TSACAFile is a PEM file of the RFC 3161 time-stamping authorities'
	// CAs that the stored time-stamps must chain to. Default: none, and
	// the chains are not checked (Report.Time.ChainChecked is false).
	TSACAFile string
}

// Progress reports how far a verification has come.
type Progress struct {
	Entries      int64 // entries checked so far
	TotalEntries int64 // entries to check in all
	Bytes        int64 // bytes read and checked so far, all files together
}

// Report says what a verification checked. On failure it counts what was
// checked before the failure, and Size, Root and Checkpoint are zero.
type Report struct {
	// Size and Root are the tree size and root hash of the newest signed
	// checkpoint, and Checkpoint is that signed note.
	Size       int64
	Root       tlog.Hash
	Checkpoint []byte

	Entries      int64 // entries re-hashed
	LargeEntries int64 // bodies of large entries re-hashed
	Bundles      int64 // entry bundle files checked, full and partial
	Tiles        int64 // hash tile files checked, every level, full and partial
	Checkpoints  int64 // signed checkpoints checked
	Bytes        int64 // bytes read and checked, all files together
	Duration     time.Duration

	// Key is the verifier key used; KeyFromDir is set when it was read from
	// the directory under verification rather than given in Options.Key.
	Key        string
	KeyFromDir bool
	// Warnings are findings that do not fail verification, such as
	// unexpected files.
	Warnings []string
	// Time is what the checkpoints' RFC 3161 time-stamps say.
	Time TimeEvidence
}

// Failure is a failed verification: stored data that differs from what was
// signed, or a directory that is not in a state a running or cleanly closed
// log leaves. It is the first problem found; the check stops there.
type Failure struct {
	// Where names the entry (index and file), file, tile or checkpoint.
	Where string
	// What says what differs, with the expected and the actual value.
	What string
	// Evidence, for a SECURITY ERROR (two signed checkpoints that
	// contradict each other), holds both checkpoints; otherwise empty.
	Evidence string
}

func (f *Failure) Error() string {
	return "verification failed: " + f.Where + ": " + f.What
}

// ErrNoLog is returned by Dir for a directory that holds no trail log at all.
var ErrNoLog = errors.New("no trail log")

// Dir verifies the data directory dir. It returns a *Failure if verification
// fails, ErrNoLog (wrapped) if dir holds no log, and other errors for I/O
// failures and a malformed Options.Key. The Report is never nil.
func Dir(ctx context.Context, dir string, opts Options) (*Report, error) {
	start := time.Now()
	v := &verifier{l: layout{dir}, opts: opts, rep: &Report{}}
	if v.opts.Workers <= 0 {
		v.opts.Workers = runtime.GOMAXPROCS(0)
	}
	err := v.run(ctx)
	v.rep.Duration = time.Since(start)
	if err != nil {
		v.rep.Size, v.rep.Root, v.rep.Checkpoint = 0, tlog.Hash{}, nil
	}
	return v.rep, err
}

// verifier holds the state of one verification.
type verifier struct {
	l    layout
	opts Options
	rep  *Report

	key note.Verifier
	// cps is the checkpoint history, oldest first; cps[len-1] is the newest.
	cps []*checkpoint
	// plan lists the files holding the stored entries.
	plan *plan
}

func (v *verifier) run(ctx context.Context) error {
	fi, err := os.Stat(v.l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", ErrNoLog, v.l.dir)
	} else if err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrNoLog, v.l.dir)
	}
	if !exists(v.l.path(historyFile)) && !exists(v.l.path(checkpointFile)) {
		return fmt.Errorf("%w in %s (no %s or %s)", ErrNoLog, v.l.dir, filepath.FromSlash(historyFile), filepath.FromSlash(checkpointFile))
	}
	if err := v.loadKey(); err != nil {
		return err
	}
	if err := v.checkHistory(); err != nil {
		return err
	}
	if err := v.checkPublished(); err != nil {
		return err
	}
	inv, err := takeInventory(v.l)
	if err != nil {
		return err
	}
	v.rep.Warnings = append(v.rep.Warnings, inv.warnings...)
	if v.plan, err = v.makePlan(inv); err != nil {
		return err
	}
	if err := v.checkData(ctx); err != nil {
		return err
	}
	if err := v.checkCoverage(); err != nil {
		return err
	}
	if err := v.checkTimestamps(); err != nil {
		return err
	}
	newest := v.cps[len(v.cps)-1]
	v.rep.Size, v.rep.Root, v.rep.Checkpoint = newest.Size, newest.Hash, newest.note
	return nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
