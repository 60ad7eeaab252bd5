package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/verify"
)

const verifyHelp = `Usage: trail verify [-data DIR] [-key FILE|VKEY] [-tsa-ca FILE] [-json]
       trail verify -bundle FILE -key FILE|VKEY [-json]
       trail verify -receipt FILE -key FILE|VKEY [-json]
       trail verify -server URL [-state FILE|DIR] [-key FILE|VKEY] [-json] [connection flags]

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

Checkpoints time-stamped by an RFC 3161 authority (DIR/state/timestamps,
docs/timestamps.md) are checked too: each token must stamp its checkpoint
and be validly signed by a time-stamping certificate; with -tsa-ca, that
certificate must chain to the CA in FILE (else the report says the chain
was not checked). It reports how many checkpoints carry time evidence and
the times they were stamped.

With -server it verifies a running server instead, as a client that
remembers what it saw: it fetches the newest checkpoint, checks its
signature with the log's key, and checks that it extends the last
checkpoint this user verified of the same log (the trusted state) by a
consistency proof from the server; then it trusts the new checkpoint. The
trusted state is one file per log in -state if that is a directory, else
the file -state, by default in the user's config directory
(~/.config/trail/trusted/ on Linux). The first time there is nothing to
compare with: it trusts what it sees, and says so. If the log is smaller
than the trusted one (a rollback) or not an extension of it (a fork), it
prints SECURITY ERROR and both signed checkpoints, leaves the trusted state
as it was, and exits 1. Without -data or -server, a server running from
./trail-data (it writes trail-data/serve.json) is verified this way.
` + verifyHelpEvidence + clientHelp + `
Examples:
  trail verify -data ./trail-data
  trail verify -data /mnt/snapshot -key auditor/log.vkey
  trail verify -data ./trail-data -json
  trail verify -server https://trail.example.com:8443 -cacert ca.crt \
      -cert auditor-1.crt -key trail.vkey

Flags:
`

func init() { commands["verify"] = runVerify }

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr, verifyHelp)
	dataFlag := fs.String("data", "", "the data `directory` (default $TRAIL_DATA or ./trail-data)")
	key := fs.String("key", "", "the verifier key: a `file` holding it, or the key itself (default: DIR/keys/log.vkey, or with -server DIR/serve.json's)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	cf := addClientFlags(fs, false)
	cf.data, cf.key = dataFlag, key
	wf := addWitnessFlags(fs)
	tsaCA := fs.String("tsa-ca", "", "the PEM `file` of the RFC 3161 TSA's CA that the stored time-stamps must chain to (default: chains not checked)")
	state := fs.String("state", "", "with -server, the trusted state: a `file`, or a directory of one file per log (default: the user's config directory/trail/trusted)")
	bundleFile := fs.String("bundle", "", "check the export bundle `FILE` offline (needs -key)")
	receiptFile := fs.String("receipt", "", "check the receipt `FILE` offline (needs -key)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *bundleFile != "" || *receiptFile != "" {
		return verifyEvidence(fs, *bundleFile, *receiptFile, *key, *asJSON, stdout, stderr)
	}
	if err := cf.check(); err != nil {
		return err
	}
	dataDir := cf.dataDir()
	dir := &dataDir
	serveJSON := filepath.Join(*dir, serveInfoFile)
	if *tsaCA != "" && *cf.server != "" {
		return usageError{"-tsa-ca: only with -data (time-stamps are checked in the data directory)"}
	}
	if *cf.server != "" || *dataFlag == "" && (os.Getenv("TRAIL_SERVER") != "" || exists(serveJSON)) {
		return verifyServer(ctx, cf, wf, *state, *asJSON, stdout, stderr)
	}
	var online []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains([]string{"state", "cacert", "cert", "cert-key", "token", "witness", "witness-quorum"}, f.Name) {
			online = append(online, "-"+f.Name)
		}
	})
	if len(online) > 0 {
		return usageError{fmt.Sprintf("%s: only with -server (verifying a running server)", strings.Join(online, ", "))}
	}
	if exists(serveJSON) && !*asJSON {
		fmt.Fprintf(stderr, "trail: warning: a server is running from %s (see %s): what it appends meanwhile may fail the check; stop it, verify a copy, or verify it online with -server\n", *dir, serveJSON)
	}
	opts := verify.Options{TSACAFile: *tsaCA}
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
	if tm := rep.Time; tm.Stamped > 0 || tm.ChainChecked {
		printTimeEvidence(stdout, stderr, tm, rep.Checkpoints, *tsaCA)
	}
	fmt.Fprintf(stdout, "newest checkpoint:\n%s", rep.Checkpoint)
	return nil
}

// verifyServer is trail verify -server: the newest checkpoint of a server,
// checked against the trusted state and then trusted.
func verifyServer(ctx context.Context, cf *clientFlags, wf *witnessFlags, statePath string, asJSON bool, stdout, stderr io.Writer) error {
	cfg, err := cf.config(true)
	if err != nil {
		return err
	}
	if err := wf.apply(&cfg); err != nil {
		return err
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	if statePath != "" {
		if fi, err := os.Stat(statePath); err == nil && fi.IsDir() || os.IsPathSeparator(statePath[len(statePath)-1]) {
			statePath = filepath.Join(statePath, client.TrustedStateFile(c.Origin()))
		}
	}
	state, err := client.NewTrustedState(statePath, cfg.VerifierKey)
	if err != nil {
		return err
	}
	u, err := c.UpdateTrusted(ctx, state)
	var serr *client.SecurityError
	if err != nil && !errors.As(err, &serr) {
		if asJSON {
			printServerJSON(stdout, c, state, nil, err)
			return errReported
		}
		return err
	}
	if serr != nil {
		if asJSON {
			printServerJSON(stdout, c, state, nil, err)
		} else {
			fmt.Fprintf(stderr, "trail: %s\n\n%s\n", serr, serr.Evidence())
			fmt.Fprintf(stderr, "Both checkpoints are signed by the log's key %s: keep them as evidence and tell the log's operator.\n", c.Origin())
			fmt.Fprintf(stderr, "The server is %s; the trusted state, left as it was, is %s.\n", c.URL(), state.Path())
		}
		return errReported
	}
	if asJSON {
		printServerJSON(stdout, c, state, u, nil)
		return nil
	}
	cur := u.Current
	switch {
	case u.Previous == nil:
		fmt.Fprintf(stderr, "trail: note: no checkpoint of %s was verified before: trusting this one on first use (saved in %s); compare its root hash with one from another source, such as the log's operator\n",
			cur.Origin, state.Path())
		fmt.Fprintf(stdout, "verified %s: %s size %d root %s, trusted on first use\n", c.URL(), cur.Origin, cur.Size, cur.Hash)
	case u.Previous.Size == cur.Size:
		fmt.Fprintf(stdout, "verified %s: %s size %d root %s, unchanged since last verified\n", c.URL(), cur.Origin, cur.Size, cur.Hash)
	default:
		fmt.Fprintf(stdout, "verified %s: %s size %d root %s, consistent with size %d verified before\n", c.URL(), cur.Origin, cur.Size, cur.Hash, u.Previous.Size)
	}
	printCosignatures(stdout, cur)
	return nil
}

// serverReport is the -json output of verify -server.
type serverReport struct {
	OK           bool                 `json:"ok"`
	Server       string               `json:"server"`
	Origin       string               `json:"origin"`
	State        string               `json:"state"`
	Size         int64                `json:"size,omitempty"`
	Root         string               `json:"root,omitempty"`
	RootHex      string               `json:"root_hex,omitempty"`
	Checkpoint   string               `json:"checkpoint,omitempty"`
	FirstUse     bool                 `json:"first_use,omitempty"`
	PreviousSize *int64               `json:"previous_size,omitempty"`
	Cosignatures []client.Cosignature `json:"cosignatures,omitempty"`
	Error        *jsonError           `json:"error,omitempty"`
}

func printServerJSON(w io.Writer, c *client.Client, state *client.TrustedState, u *client.TrustUpdate, err error) {
	out := serverReport{OK: err == nil, Server: c.URL(), Origin: c.Origin(), State: state.Path()}
	if u != nil {
		out.Size = u.Current.Size
		out.Root = base64.StdEncoding.EncodeToString(u.Current.Hash[:])
		out.RootHex = hex.EncodeToString(u.Current.Hash[:])
		out.Checkpoint = string(u.Current.Note)
		out.FirstUse = u.Previous == nil
		out.Cosignatures = u.Current.Cosignatures
		if u.Previous != nil {
			out.PreviousSize = &u.Previous.Size
		}
	}
	if err != nil {
		out.Error = &jsonError{What: err.Error()}
		if serr := (*client.SecurityError)(nil); errors.As(err, &serr) {
			out.Error.Evidence = serr.Evidence()
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
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
	Time         *jsonTime  `json:"time_evidence,omitempty"`
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
	if tm := rep.Time; tm.Stamped > 0 || tm.ChainChecked {
		out.Time = &jsonTime{Stamped: tm.Stamped, LastSize: tm.LastSize, ChainChecked: tm.ChainChecked}
		if tm.Stamped > 0 {
			out.Time.First, out.Time.Last, out.Time.LastSizeTime = &tm.First, &tm.Last, &tm.LastSizeTime
		}
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

// progressBar draws progress on a terminal, at most ten times a second:
// verification, export, a bundle's verification.
type progressBar struct {
	w     io.Writer
	label string // what is in progress; default "verifying"
	start time.Time
	last  time.Time
	drawn bool
}

func (b *progressBar) update(p verify.Progress) { b.draw(p.Entries, p.TotalEntries, p.Bytes) }

// draw shows entries of total done, and bytes at their rate so far.
func (b *progressBar) draw(entries, total, bytes int64) {
	now := time.Now()
	if b.start.IsZero() {
		b.start, b.last = now, now // first draw after 100 ms, with a meaningful rate
	}
	if now.Sub(b.last) < 100*time.Millisecond || total == 0 {
		return
	}
	b.last = now
	label := b.label
	if label == "" {
		label = "verifying"
	}
	const width = 30
	frac := float64(entries) / float64(total)
	done := int(frac * width)
	rate := float64(bytes) / max(now.Sub(b.start).Seconds(), 1e-9)
	fmt.Fprintf(b.w, "\r\033[K%s [%s%s] %3.0f%%  %d of %d entries  %s  %s/s", label,
		strings.Repeat("=", done), strings.Repeat(" ", width-done), frac*100, entries, total,
		formatBytes(float64(bytes)), formatBytes(rate))
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
