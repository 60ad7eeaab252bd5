package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/bundle"
	"github.com/trailaudit/trail/internal/durable"
)

const receiptHelp = `Usage: trail receipt [-o FILE] [flags] INDEX

Writes the receipt of entry INDEX (from 0): a C2SP tlog-proof that anyone
with the log's verifier key can check offline, with "trail verify -receipt
FILE -key KEY" or any tlog-proof verifier. It holds the entry itself (the
leaf, byte for byte, on the proof's "extra" line), its inclusion proof, and
the newest signed checkpoint as the log publishes it, a witness's
cosignatures included. The proof is computed from the hash tiles, each
checked against that checkpoint first.

The receipt goes to standard output, or to FILE with -o (mode 0600, never
overwritten). For an entry over 64 KiB the leaf is a reference to the
body (its SHA-256 and size); with -o the body is written beside the
receipt as FILE.body, where verify -receipt finds it. A server cannot serve
such bodies: read them with -data.

The log is read from a running server (on the server's machine no flag is
needed), or, with -data DIR, from a data directory, offline. The receipt is
recorded in the log (action trail.receipt, with the index and leaf hash),
as trail export records exports: through the server as admin on its
machine, else with the identity given if it may append (a reader gets a
warning); -no-record skips it.
` + clientHelp + `
Examples:
  trail receipt 41 > 41.tlog-proof
  trail receipt -o 41.tlog-proof 41
  trail receipt -data /mnt/snapshot -key auditor/log.vkey -no-record 41

Flags:
`

func init() { commands["receipt"] = runReceipt }

func runReceipt(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("receipt", stderr, receiptHelp)
	cf := addClientFlags(fs, true)
	out := fs.String("o", "", "write the receipt to `FILE` instead of standard output")
	noRecord := fs.Bool("no-record", false, "do not record the receipt in the log")
	arg, err := parseNameAndFlags(fs, args)
	if err != nil {
		if ue, ok := err.(usageError); ok && strings.HasSuffix(ue.msg, "missing NAME") {
			return usageError{"receipt: missing INDEX"}
		}
		return err
	}
	index, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || index < 0 {
		return usageError{fmt.Sprintf("receipt: bad INDEX %q: want a number from 0", arg)}
	}
	if err := cf.check(); err != nil {
		return err
	}
	if *out != "" {
		for _, p := range []string{*out, *out + ".body"} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists: not overwriting it", p)
			}
		}
	}
	bs, err := openBundleSource(fs, cf)
	if err != nil {
		return err
	}
	r, err := bundle.MakeReceipt(ctx, bs.src, bs.key, index)
	if err != nil {
		if errors.Is(err, bundle.ErrRange) {
			return errors.New(strings.Replace(err.Error(), bundle.ErrRange.Error()+": ", "", 1))
		}
		return err
	}
	if !*noRecord {
		lh := tlog.RecordHash(r.Leaf)
		details := map[string]any{"index": index, "tree_size": r.TreeSize, "leaf_hash": base64.StdEncoding.EncodeToString(lh[:])}
		rec, err := bs.record(ctx, "trail.receipt", r.Origin, details, stderr)
		if err != nil {
			return fmt.Errorf("receipt not recorded in the log, so not written: %w (-no-record writes it without recording)", err)
		}
		if rec >= 0 {
			defer fmt.Fprintf(stderr, "trail: the receipt is recorded in the log as entry %d\n", rec)
		}
	}
	ref, large := r.LargeRef()
	if *out == "" {
		if _, err := stdout.Write(r.Proof); err != nil {
			return err
		}
		if large {
			fmt.Fprintf(stderr, "trail: note: entry %d is a large entry: the receipt proves its reference (sha256 %x, %d bytes); write it with -o to have the body beside it\n", index, ref.SHA256, ref.Size)
		}
		return nil
	}
	if err := durable.CreateFile(*out, r.Proof, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "trail: receipt of entry %d in the tree of size %d of %s, root %s, written to %s\n", index, r.TreeSize, r.Origin, r.Root, *out)
	if large {
		if r.Body == nil {
			fmt.Fprintf(stderr, "trail: note: entry %d is a large entry whose body the server cannot serve: the receipt proves its reference (sha256 %x, %d bytes); read the body with -data\n", index, ref.SHA256, ref.Size)
			return nil
		}
		if err := durable.CreateFile(*out+".body", r.Body, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "trail: the body of the large entry (%d bytes) is in %s.body\n", len(r.Body), *out)
	}
	return nil
}
