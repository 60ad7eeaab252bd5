package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/trailaudit/trail/internal/bundle"
)

// verifyHelpEvidence is the part of verify's help about bundles and receipts.
const verifyHelpEvidence = `
With -bundle FILE it checks an export bundle (see "trail export") offline,
and with -receipt FILE a receipt (see "trail receipt"), against the log's
verifier key, which -key must give: nothing else is needed, and nothing in
the file is trusted. A bundle verifies only if its checkpoint is signed by
the key, every tile hashes up to the checkpoint's root, every entry to its
leaf in the tiles, every large body to its reference, and every other byte
is as trail export writes it. It prints the range, tree size and root; a
receipt, the entry. A witness's cosignatures are checked against the
-witness keys given (-witness-quorum of them must have cosigned); other
signature lines are listed as not checked. On failure it names the place
(entry, tile, checkpoint, or byte offset) and what differs, and exits 1.
For example: trail verify -bundle q3.tar -key trail.vkey
`

// verifyEvidence is trail verify -bundle and -receipt.
func verifyEvidence(fs *flag.FlagSet, bundleFile, receiptFile, keyArg string, asJSON bool, stdout, stderr io.Writer) error {
	var other []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "bundle", "receipt", "key", "json", "witness", "witness-quorum":
		default:
			other = append(other, "-"+f.Name)
		}
	})
	switch {
	case bundleFile != "" && receiptFile != "":
		return usageError{"verify: -bundle and -receipt: one at a time"}
	case len(other) > 0:
		return usageError{fmt.Sprintf("verify: %s: not with -bundle or -receipt, which need only -key", strings.Join(other, ", "))}
	case keyArg == "":
		return usageError{"verify: -bundle and -receipt need -key: the log's verifier key (a file, or the key as \"trail key\" prints it)"}
	}
	key, err := loadKey(keyArg)
	if err != nil {
		return err
	}
	w, err := evidenceWitnesses(fs)
	if err != nil {
		return err
	}
	if receiptFile != "" {
		return verifyReceiptFile(receiptFile, key, w, asJSON, stdout, stderr)
	}
	return verifyBundleFile(bundleFile, key, w, asJSON, stdout, stderr)
}

// evidenceWitnesses reads verify's -witness and -witness-quorum flags,
// where verify has them.
func evidenceWitnesses(fs *flag.FlagSet) (bundle.Witnesses, error) {
	var w bundle.Witnesses
	if f := fs.Lookup("witness"); f != nil {
		if keys, ok := f.Value.(*stringsFlag); ok {
			for _, k := range *keys {
				if b, err := os.ReadFile(k); err == nil {
					k = strings.TrimSpace(string(b))
				}
				w.Keys = append(w.Keys, k)
			}
		}
	}
	if f := fs.Lookup("witness-quorum"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			w.Quorum, _ = g.Get().(int)
		}
	}
	if w.Quorum != 0 && (w.Quorum < 0 || w.Quorum > len(w.Keys)) {
		return w, usageError{fmt.Sprintf("-witness-quorum %d: must be 1 to the number of -witness keys, %d", w.Quorum, len(w.Keys))}
	}
	return w, nil
}

func printCosigned(w io.Writer, cs []bundle.Cosigned) {
	for _, c := range cs {
		fmt.Fprintf(w, "cosigned   by witness %s at %s\n", c.Name, c.Time.Format(time.RFC3339))
	}
}

type bundleJSON struct {
	OK            bool       `json:"ok"`
	File          string     `json:"file"`
	Origin        string     `json:"origin,omitempty"`
	From          *int64     `json:"from,omitempty"`
	To            *int64     `json:"to,omitempty"`
	TreeSize      int64      `json:"tree_size,omitempty"`
	Root          string     `json:"root,omitempty"`
	RootHex       string     `json:"root_hex,omitempty"`
	Entries       int64      `json:"entries,omitempty"`
	LargeEntries  int64      `json:"large_entries,omitempty"`
	Tiles         int64      `json:"tiles,omitempty"`
	Bytes         int64      `json:"bytes,omitempty"`
	Seconds       float64    `json:"seconds,omitempty"`
	FirstReceived *time.Time `json:"first_received,omitempty"`
	LastReceived  *time.Time `json:"last_received,omitempty"`
	Checkpoint    string     `json:"checkpoint,omitempty"`
	Unverified    []string   `json:"unverified_signatures,omitempty"`
	Cosigned      []string   `json:"cosigned_by,omitempty"`
	Error         *jsonError `json:"error,omitempty"`
}

func evidenceError(err error) *jsonError {
	var f *bundle.Failure
	if errors.As(err, &f) {
		return &jsonError{Where: f.Where, What: f.What}
	}
	return &jsonError{What: err.Error()}
}

func writeIndented(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func verifyBundleFile(file, key string, wit bundle.Witnesses, asJSON bool, stdout, stderr io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	opts := bundle.VerifyOptions{Witnesses: wit}
	bar := newBundleBar(stderr, "verifying", asJSON)
	if bar != nil {
		opts.Progress = bar.update
	}
	rep, err := bundle.Verify(context.Background(), f, key, opts)
	bar.clear()
	if err != nil {
		if asJSON {
			writeIndented(stdout, bundleJSON{File: file, Error: evidenceError(err)})
			return errReported
		}
		var fl *bundle.Failure
		if errors.As(err, &fl) {
			return fmt.Errorf("bundle %s does not verify: %w", file, err)
		}
		return err
	}
	if asJSON {
		j := bundleJSON{OK: true, File: file, Origin: rep.Origin, From: &rep.From, To: &rep.To, TreeSize: rep.TreeSize,
			Root: base64.StdEncoding.EncodeToString(rep.Root[:]), RootHex: hex.EncodeToString(rep.Root[:]),
			Entries: rep.Entries, LargeEntries: rep.Large, Tiles: rep.Tiles, Bytes: rep.Bytes, Seconds: rep.Duration.Seconds(),
			Checkpoint: string(rep.Checkpoint), Unverified: rep.Unverified, Cosigned: cosignedNames(rep.Cosigned)}
		if !rep.FirstReceived.IsZero() {
			j.FirstReceived, j.LastReceived = &rep.FirstReceived, &rep.LastReceived
		}
		writeIndented(stdout, j)
		return nil
	}
	fmt.Fprintf(stdout, "verified bundle %s\n", file)
	fmt.Fprintf(stdout, "log        %s\n", rep.Origin)
	fmt.Fprintf(stdout, "entries    %d to %d (%d entries, %d large)\n", rep.From, rep.To, rep.Entries, rep.Large)
	if !rep.FirstReceived.IsZero() {
		fmt.Fprintf(stdout, "received   %s to %s\n", rep.FirstReceived.UTC().Format(time.RFC3339Nano), rep.LastReceived.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(stdout, "tree size  %d\n", rep.TreeSize)
	fmt.Fprintf(stdout, "root hash  %s (hex %s)\n", base64.StdEncoding.EncodeToString(rep.Root[:]), hex.EncodeToString(rep.Root[:]))
	fmt.Fprintf(stdout, "checked    %d hash tiles, %s in %.2fs (%.0f entries/s, %s/s)\n", rep.Tiles, formatBytes(float64(rep.Bytes)),
		rep.Duration.Seconds(), float64(rep.Entries)/max(rep.Duration.Seconds(), 1e-9), formatBytes(float64(rep.Bytes)/max(rep.Duration.Seconds(), 1e-9)))
	printCosigned(stdout, rep.Cosigned)
	fmt.Fprintf(stdout, "checkpoint:\n%s", rep.Checkpoint)
	for _, u := range rep.Unverified {
		fmt.Fprintf(stderr, "trail: note: the checkpoint's signature by %s was not checked (no key for it)\n", u)
	}
	return nil
}

type receiptJSON struct {
	OK         bool            `json:"ok"`
	File       string          `json:"file"`
	Index      *int64          `json:"index,omitempty"`
	Leaf       json.RawMessage `json:"leaf,omitempty"`
	LeafBase64 string          `json:"leaf_base64,omitempty"`
	Origin     string          `json:"origin,omitempty"`
	TreeSize   int64           `json:"tree_size,omitempty"`
	Root       string          `json:"root,omitempty"`
	Checkpoint string          `json:"checkpoint,omitempty"`
	Body       string          `json:"large_body,omitempty"`
	Unverified []string        `json:"unverified_signatures,omitempty"`
	Cosigned   []string        `json:"cosigned_by,omitempty"`
	Error      *jsonError      `json:"error,omitempty"`
}

func verifyReceiptFile(file, key string, wit bundle.Witnesses, asJSON bool, stdout, stderr io.Writer) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	// The body of a large entry, if trail receipt -o wrote one beside it.
	body, err := os.ReadFile(file + ".body")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	r, err := bundle.VerifyReceipt(b, key, body, wit)
	if err != nil {
		if asJSON {
			writeIndented(stdout, receiptJSON{File: file, Error: evidenceError(err)})
			return errReported
		}
		var fl *bundle.Failure
		if errors.As(err, &fl) {
			return fmt.Errorf("receipt %s does not verify: %w", file, err)
		}
		return err
	}
	ref, large := r.LargeRef()
	if asJSON {
		j := receiptJSON{OK: true, File: file, Index: &r.Index, Origin: r.Origin, TreeSize: r.TreeSize,
			Root: base64.StdEncoding.EncodeToString(r.Root[:]), Checkpoint: string(r.Checkpoint), Unverified: r.Unverified, Cosigned: cosignedNames(r.Cosigned)}
		if json.Valid(r.Leaf) {
			j.Leaf = r.Leaf
		} else {
			j.LeafBase64 = base64.StdEncoding.EncodeToString(r.Leaf)
		}
		if large && r.Body != nil {
			j.Body = file + ".body"
		}
		writeIndented(stdout, j)
		return nil
	}
	fmt.Fprintf(stderr, "trail: verified receipt %s: entry %d is in the tree of size %d of %s, root %s\n", file, r.Index, r.TreeSize, r.Origin, r.Root)
	printCosigned(stderr, r.Cosigned)
	for _, u := range r.Unverified {
		fmt.Fprintf(stderr, "trail: note: the checkpoint's signature by %s was not checked (no key for it)\n", u)
	}
	shown := r.Leaf
	if large {
		if r.Body == nil {
			fmt.Fprintf(stderr, "trail: note: entry %d is a large entry: the receipt proves its reference (sha256 %x, %d bytes); no body beside it (%s.body) was checked\n", r.Index, ref.SHA256, ref.Size, file)
		} else {
			fmt.Fprintf(stderr, "trail: the body of the large entry, %s.body, matches its reference\n", file)
			shown = r.Body
		}
	}
	var out bytes.Buffer
	if json.Indent(&out, shown, "", "  ") != nil {
		out.Reset()
		out.Write(shown)
	}
	out.WriteByte('\n')
	_, err = stdout.Write(out.Bytes())
	return err
}

func cosignedNames(cs []bundle.Cosigned) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
