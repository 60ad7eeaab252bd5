package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/bundle"
	"github.com/trailaudit/trail/internal/durable"
)

const exportHelp = `Usage: trail export -o FILE [-from N] [-to M] [flags]
       trail export -o FILE -since TIME [-until TIME] [flags]

Writes a bundle of a range of the log's entries to FILE: the entries, the
hash tiles that link them to the root of the newest signed checkpoint, that
checkpoint with all its signatures (a witness's cosignatures too), and the
bodies of entries over 64 KiB. It is what an auditor takes away: "trail
verify -bundle FILE -key KEY" checks it on another machine with nothing but
the log's verifier key. Entries outside the range are not in the bundle.

The range is -from N to -to M (indexes from 0, inclusive; -to defaults to
the newest entry), or the entries received from -since to before -until.
A TIME is RFC 3339 (2026-11-29T08:00:00Z), a date (2026-11-29, midnight
UTC), or a duration ago (24h, 90m, 7d). Received times are stamped by the
server at append and rise with the index but for appends in flight
together; the range is contiguous, found assuming no entry was received
more than -slack after a later one.

The log is read from a running server (through /checkpoint and /tile/,
with the reader role; on the server's machine no flag is needed), or, with
-data DIR, from a data directory, offline: it reads the files and never
writes them, so a running server may keep appending. A server cannot serve
the bodies of large entries: export a range holding them with -data.

Everything is checked while it is written, so a damaged log gives an
error, not a bad bundle. The file is created with mode 0600 and never
overwritten. The export is recorded in the log itself (action
trail.export, with the range and the bundle's SHA-256): through the server
with the admin certificate on the server's machine, else with the
identity given, if it may append; -no-record skips that, for a copy of a
data directory that must not change.

A progress bar is drawn on a terminal. With -json it prints one JSON
object.
` + clientHelp + `
Examples:
  trail export -o last-day.tar -since 24h
  trail export -o q3.tar -since 2026-07-01 -until 2026-10-01
  trail export -o first.tar -from 0 -to 9999
  trail export -data /mnt/snapshot -key auditor/log.vkey -no-record -o all.tar

Flags:
`

func init() { commands["export"] = runExport }

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr, exportHelp)
	cf := addClientFlags(fs, true)
	out := fs.String("o", "", "write the bundle to `FILE` (- for standard output)")
	from := fs.Int64("from", 0, "the first `index` to export")
	to := &lastIndex{n: -1}
	fs.Var(to, "to", "the last `index` to export (default the newest)")
	since := fs.String("since", "", "export entries received at or after `TIME`")
	until := fs.String("until", "", "export entries received before `TIME`")
	slack := fs.Duration("slack", bundle.DefaultSlack, "how far received times may run out of order")
	noRecord := fs.Bool("no-record", false, "do not record the export in the log")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cf.check(); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *out == "" {
		return usageError{"export: -o FILE is required"}
	}
	if (set["from"] || set["to"]) && (set["since"] || set["until"]) {
		return usageError{"export: give an index range (-from, -to) or a time range (-since, -until), not both"}
	}
	if set["slack"] && *slack <= 0 {
		return usageError{"export: -slack must be positive"}
	}
	opts := bundle.ExportOptions{From: *from, To: to.n, Slack: *slack}
	now := time.Now()
	var err error
	if *since != "" {
		if opts.Since, err = parseWhen(*since, now); err != nil {
			return usageError{"export: -since: " + err.Error()}
		}
	}
	if *until != "" {
		if opts.Until, err = parseWhen(*until, now); err != nil {
			return usageError{"export: -until: " + err.Error()}
		}
	}
	if *out == "-" {
		if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return usageError{"export: not writing a bundle to a terminal: give -o FILE"}
		}
	} else if _, err := os.Lstat(*out); err == nil {
		return fmt.Errorf("%s exists: not overwriting it", *out)
	}
	bs, err := openBundleSource(fs, cf)
	if err != nil {
		return err
	}
	opts.VerifierKey = bs.key
	bar := newBundleBar(stderr, "exporting", *asJSON)
	if bar != nil {
		opts.Progress = bar.update
	}

	// Written to a temporary file beside FILE, recorded, then linked into
	// place: a bundle whose export could not be recorded never appears.
	var w io.Writer = stdout
	var tmp *os.File
	if *out != "-" {
		if tmp, err = os.CreateTemp(filepath.Dir(*out), ".tmp-export-*"); err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		w = tmp
	}
	sum := sha256.New()
	rep, err := bundle.Export(ctx, bs.src, io.MultiWriter(w, sum), opts)
	bar.clear()
	if err != nil {
		if errors.Is(err, bundle.ErrRange) {
			return errors.New(strings.Replace(err.Error(), bundle.ErrRange.Error()+": ", "", 1))
		}
		return err
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return err
		}
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	recorded := int64(-1)
	if !*noRecord {
		details := map[string]any{"from": rep.From, "to": rep.To, "tree_size": rep.TreeSize, "entries": rep.Entries, "bytes": rep.Bytes, "sha256": digest}
		if !opts.Since.IsZero() {
			details["since"] = opts.Since.UTC()
		}
		if !opts.Until.IsZero() {
			details["until"] = opts.Until.UTC()
		}
		recorded, err = bs.record(ctx, "trail.export", rep.Origin, details, stderr)
		if err != nil {
			return fmt.Errorf("export not recorded in the log, so not written: %w (-no-record exports without recording)", err)
		}
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Link(tmp.Name(), *out); err != nil {
			return fmt.Errorf("couldn't write %s: %w", *out, err)
		}
		if err := durable.SyncDir(filepath.Dir(*out)); err != nil {
			return err
		}
	}

	rate := float64(rep.Entries) / max(rep.Duration.Seconds(), 1e-9)
	if *asJSON {
		j := map[string]any{
			"ok": true, "file": *out, "origin": rep.Origin, "from": rep.From, "to": rep.To, "tree_size": rep.TreeSize,
			"entries": rep.Entries, "large_entries": rep.Large, "bytes": rep.Bytes, "sha256": digest,
			"seconds": rep.Duration.Seconds(), "entries_per_second": rate, "checkpoint": string(rep.Checkpoint),
		}
		if recorded >= 0 {
			j["recorded_as"] = recorded
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(j)
	}
	msg := stdout
	if *out == "-" {
		msg = stderr
	}
	fmt.Fprintf(msg, "exported entries %d to %d (%d entries, %d large) of %s, tree size %d\n",
		rep.From, rep.To, rep.Entries, rep.Large, rep.Origin, rep.TreeSize)
	if !rep.FirstReceived.IsZero() {
		fmt.Fprintf(msg, "received   %s to %s\n", rep.FirstReceived.UTC().Format(time.RFC3339Nano), rep.LastReceived.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(msg, "bundle     %s, %s, sha256 %s\n", *out, formatBytes(float64(rep.Bytes)), digest)
	fmt.Fprintf(msg, "took       %.2fs: %.0f entries/s, %s/s\n", rep.Duration.Seconds(), rate, formatBytes(float64(rep.Bytes)/max(rep.Duration.Seconds(), 1e-9)))
	if recorded >= 0 {
		fmt.Fprintf(msg, "recorded in the log as entry %d\n", recorded)
	}
	return nil
}

// parseWhen reads a time: RFC 3339, a date (midnight UTC), or a duration
// before now ("24h", "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("bad time %q: want RFC 3339 (2026-11-29T08:00:00Z), a date (2026-11-29) or a duration ago (24h, 7d)", s)
}

// bundleSource is where export and receipt read the log.
type bundleSource struct {
	src     bundle.Source
	key     string
	dataDir string         // the data directory read, or of the server's machine
	client  *client.Client // nil when reading a data directory
}

// openBundleSource chooses the source as verify does: a data directory if
// -data is given, or if no server is known; else the server.
func openBundleSource(fs *flag.FlagSet, cf *clientFlags) (*bundleSource, error) {
	dataSet := false
	fs.Visit(func(f *flag.Flag) { dataSet = dataSet || f.Name == "data" })
	dir := cf.dataDir()
	if *cf.server != "" || !dataSet && (os.Getenv("TRAIL_SERVER") != "" || exists(filepath.Join(dir, serveInfoFile))) {
		cfg, err := cf.config(true)
		if err != nil {
			return nil, err
		}
		c, err := client.New(cfg)
		if err != nil {
			return nil, err
		}
		return &bundleSource{src: bundle.Server{Client: c}, key: cfg.VerifierKey, dataDir: dir, client: c}, nil
	}
	var online []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "cacert", "cert", "cert-key", "token":
			online = append(online, "-"+f.Name)
		}
	})
	if len(online) > 0 {
		return nil, usageError{fmt.Sprintf("%s: only with a server (-data reads a data directory offline)", strings.Join(online, ", "))}
	}
	if !exists(dir) {
		return nil, fmt.Errorf("no data directory %s and no server (give -data DIR, or -server URL)", dir)
	}
	bs := &bundleSource{src: bundle.Dir{Root: dir}, dataDir: dir}
	var err error
	if *cf.key != "" {
		bs.key, err = loadKey(*cf.key)
	} else {
		bs.key, err = loadKey(filepath.Join(dir, "keys", "log.vkey"))
	}
	return bs, err
}

// record appends an event about an operation on the log: into the data
// directory (or through the server holding it, as admin) with recordOp, or
// through a remote server with the identity given. A remote identity that
// may not append gets a warning, not an error: an auditor can read tiles
// anyway, unrecorded.
func (bs *bundleSource) record(ctx context.Context, action, origin string, details map[string]any, stderr io.Writer) (int64, error) {
	res := event.Resource{Type: "trail.log", ID: origin}
	if bs.client == nil || exists(filepath.Join(bs.dataDir, serveInfoFile)) && exists(filepath.Join(bs.dataDir, "pki", adminCertFile)) {
		return recordOp(ctx, bs.dataDir, action, res, details)
	}
	d, err := json.Marshal(details)
	if err != nil {
		return 0, err
	}
	ev, err := json.Marshal(event.Event{
		Time: time.Now().UTC(), Actor: event.Actor{ID: osUser(), Type: "user"},
		Action: action, Resource: res, Outcome: event.Success, Details: d,
	})
	if err != nil {
		return 0, err
	}
	got, err := bs.client.Append(ctx, ev)
	var ce *client.Error
	if errors.As(err, &ce) && ce.StatusCode == http.StatusForbidden {
		fmt.Fprintf(stderr, "trail: warning: the export is not recorded in the log: %s\n", ce.Message)
		return -1, nil
	}
	if err != nil {
		return 0, err
	}
	return got[0].Index, nil
}

// bundleBar draws export or bundle verification progress on a terminal.
type bundleBar struct{ bar progressBar }

// newBundleBar returns a bar if w is a terminal and not in -json mode, or
// nil.
func newBundleBar(w io.Writer, label string, asJSON bool) *bundleBar {
	if f, ok := w.(*os.File); ok && !asJSON && term.IsTerminal(int(f.Fd())) {
		return &bundleBar{bar: progressBar{w: w, label: label}}
	}
	return nil
}

func (b *bundleBar) update(p bundle.Progress) { b.bar.draw(p.Entries, p.TotalEntries, p.Bytes) }

func (b *bundleBar) clear() {
	if b != nil {
		b.bar.clear()
	}
}

// lastIndex is -to: an index, or -1 (unset) for the newest entry.
type lastIndex struct {
	n   int64
	set bool
}

func (l *lastIndex) String() string {
	if l == nil || !l.set {
		return ""
	}
	return strconv.FormatInt(l.n, 10)
}

func (l *lastIndex) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New("want a number from 0")
	}
	l.n, l.set = n, true
	return nil
}
