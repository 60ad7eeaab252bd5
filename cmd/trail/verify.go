package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"

	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/verify"
)

const verifyHelp = `Usage: trail verify [-data DIR] [-key FILE|VKEY] [-json]

Verifies a data directory offline, as an auditor would: re-hashes every
entry, rebuilds every tile from the level below, re-hashes the bodies of
large entries, and checks every signed checkpoint: its signature, its root
against the stored entries, and its consistency with the one before. It
never writes to the directory. Run it on a stopped log or on a copy.

By default the verifier key is DIR/keys/log.vkey; whoever can write the
directory can replace it, so an auditor passes their own copy with -key
(a file, or the key itself as printed by "trail key").

On success it prints the tree size, the root hash, the newest checkpoint
and what was checked, and exits 0. Otherwise it prints the first problem,
naming the entry, file or checkpoint and what differs, and exits 1.

Examples:
  trail verify -data ./trail-data
  trail verify -data /mnt/snapshot -key auditor/log.vkey
  trail verify -data ./trail-data -json

Flags:
`

func init() { commands["verify"] = runVerify }

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr, verifyHelp)
	dir := fs.String("data", "trail-data", "the data `directory`")
	key := fs.String("key", "", "the verifier key: a `file` holding it, or the key itself (default: DIR/keys/log.vkey)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := verify.Options{}
	if *key != "" {
		k, err := loadKey(*key)
		if err != nil {
			return err
		}
		opts.Key = k
	}
	var bar *progressBar
	if f, ok := stderr.(*os.File); ok && !*asJSON && term.IsTerminal(int(f.Fd())) {
		bar = &progressBar{w: stderr}
		opts.Progress = bar.update
	}
	rep, err := verify.Dir(ctx, *dir, opts)
	bar.clear()
	var failure *verify.Failure
	if err != nil && !errors.As(err, &failure) {
		if *asJSON {
			printJSON(stdout, rep, err)
			return errReported
		}
		return err
	}
	if *asJSON {
		printJSON(stdout, rep, err)
		if err != nil {
			return errReported
		}
		return nil
	}
	if rep.KeyFromDir {
		fmt.Fprintf(stderr, "trail: note: the verifier key was read from %s, which whoever can write the directory can replace; pass your own copy with -key\n",
			filepath.Join(*dir, filepath.FromSlash(ledger.VerifierKeyFile)))
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(stderr, "trail: warning: %s\n", w)
	}
	if failure != nil {
		fmt.Fprintf(stderr, "trail: %s\n", failure)
		if failure.Evidence != "" {
			fmt.Fprintf(stderr, "\n%s", failure.Evidence)
		}
		return errReported
	}
	fmt.Fprintf(stdout, "verified %s\n", *dir)
	fmt.Fprintf(stdout, "tree size  %d\n", rep.Size)
	fmt.Fprintf(stdout, "root hash  %s (hex %s)\n", base64.StdEncoding.EncodeToString(rep.Root[:]), hex.EncodeToString(rep.Root[:]))
	fmt.Fprintf(stdout, "checked    %d entries (%d large), %d entry bundles, %d hash tiles, %d checkpoints: %s in %.2fs (%s/s)\n",
		rep.Entries, rep.LargeEntries, rep.Bundles, rep.Tiles, rep.Checkpoints,
		formatBytes(float64(rep.Bytes)), rep.Duration.Seconds(), formatBytes(float64(rep.Bytes)/max(rep.Duration.Seconds(), 1e-9)))
	fmt.Fprintf(stdout, "newest checkpoint:\n%s", rep.Checkpoint)
	return nil
}

// loadKey reads a verifier key from a file, or takes s as the key itself.
func loadKey(s string) (string, error) {
	b, err := os.ReadFile(s)
	if err == nil {
		s = strings.TrimSpace(string(b))
		if _, err := note.NewVerifier(s); err != nil {
			return "", fmt.Errorf("-key file holds no verifier key: %v", err)
		}
		return s, nil
	}
	if _, verr := note.NewVerifier(s); verr != nil {
		return "", usageError{fmt.Sprintf("-key %q is neither a readable file (%v) nor a verifier key", s, err)}
	}
	return s, nil
}

// jsonReport is the -json output.
type jsonReport struct {
	OK           bool       `json:"ok"`
	Size         int64      `json:"size"`
	Root         string     `json:"root,omitempty"`
	RootHex      string     `json:"root_hex,omitempty"`
	Checkpoint   string     `json:"checkpoint,omitempty"`
	Entries      int64      `json:"entries"`
	LargeEntries int64      `json:"large_entries"`
	Bundles      int64      `json:"bundles"`
	Tiles        int64      `json:"tiles"`
	Checkpoints  int64      `json:"checkpoints"`
	Bytes        int64      `json:"bytes"`
	Seconds      float64    `json:"seconds"`
	Key          string     `json:"key,omitempty"`
	KeyFromDir   bool       `json:"key_from_dir"`
	Warnings     []string   `json:"warnings,omitempty"`
	Error        *jsonError `json:"error,omitempty"`
}

type jsonError struct {
	Where    string `json:"where,omitempty"`
	What     string `json:"what"`
	Evidence string `json:"evidence,omitempty"`
}

func printJSON(w io.Writer, rep *verify.Report, err error) {
	out := jsonReport{
		OK:           err == nil,
		Size:         rep.Size,
		Entries:      rep.Entries,
		LargeEntries: rep.LargeEntries,
		Bundles:      rep.Bundles,
		Tiles:        rep.Tiles,
		Checkpoints:  rep.Checkpoints,
		Bytes:        rep.Bytes,
		Seconds:      rep.Duration.Seconds(),
		Key:          rep.Key,
		KeyFromDir:   rep.KeyFromDir,
		Warnings:     rep.Warnings,
	}
	if err == nil {
		out.Root = base64.StdEncoding.EncodeToString(rep.Root[:])
		out.RootHex = hex.EncodeToString(rep.Root[:])
		out.Checkpoint = string(rep.Checkpoint)
	} else if f := (*verify.Failure)(nil); errors.As(err, &f) {
		out.Error = &jsonError{Where: f.Where, What: f.What, Evidence: f.Evidence}
	} else {
		out.Error = &jsonError{What: err.Error()}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

// progressBar draws verification progress on a terminal, at most ten
// times a second.
type progressBar struct {
	w     io.Writer
	start time.Time
	last  time.Time
	drawn bool
}

func (b *progressBar) update(p verify.Progress) {
	now := time.Now()
	if b.start.IsZero() {
		b.start, b.last = now, now // first draw after 100 ms, with a meaningful rate
	}
	if now.Sub(b.last) < 100*time.Millisecond || p.TotalEntries == 0 {
		return
	}
	b.last = now
	const width = 30
	frac := float64(p.Entries) / float64(p.TotalEntries)
	done := int(frac * width)
	rate := float64(p.Bytes) / max(now.Sub(b.start).Seconds(), 1e-9)
	fmt.Fprintf(b.w, "\r\033[Kverifying [%s%s] %3.0f%%  %d of %d entries  %s  %s/s",
		strings.Repeat("=", done), strings.Repeat(" ", width-done), frac*100, p.Entries, p.TotalEntries,
		formatBytes(float64(p.Bytes)), formatBytes(rate))
	b.drawn = true
}

// clear erases the bar, if one was drawn. It may be called on a nil bar.
func (b *progressBar) clear() {
	if b != nil && b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

func formatBytes(n float64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%.0f B", n)
	}
	exp, div := 0, float64(unit)
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", n/div, "kMGTP"[exp])
}
