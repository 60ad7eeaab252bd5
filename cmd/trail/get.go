package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

const getHelp = `Usage: trail get [flags] INDEX

Fetches entry INDEX (from 0) of the log of a trail server, checks that the
checkpoint it comes with is signed by the log's key and that the entry is
in that checkpoint's tree (its inclusion proof), and prints the entry as
indented JSON: the event in the envelope the server wrote around it (when
it was received, from whom, how). With -json it prints one line of JSON:
the entry byte for byte as the log hashed it ("leaf"), its hash, the
checkpoint and the inclusion proof.

A failed check is an error, exit code 1: the server, or something between,
is not telling the truth about its log.
` + clientHelp + `
Examples:
  trail get 0
  trail get -json 41 > entry-41.json
  trail get -server https://trail.example.com:8443 -cacert ca.crt \
      -cert auditor-1.crt -key trail.vkey 41

Flags:
`

func init() { commands["get"] = runGet }

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("get", stderr, getHelp)
	cf := addClientFlags(fs, true)
	asJSON := fs.Bool("json", false, "print the verified entry, checkpoint and proof as one JSON object")
	arg, err := parseNameAndFlags(fs, args)
	if err != nil {
		if ue, ok := err.(usageError); ok && ue.msg == "get: missing NAME" {
			return usageError{"get: missing INDEX"}
		}
		return err
	}
	index, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || index < 0 {
		return usageError{fmt.Sprintf("get: bad INDEX %q: want a number from 0", arg)}
	}
	if err := cf.check(); err != nil {
		return err
	}
	c, err := cf.newClient(true)
	if err != nil {
		return err
	}
	e, err := c.Get(ctx, index)
	if err != nil {
		return err
	}
	if *asJSON {
		// Written by hand so that the leaf is byte for byte what the log
		// hashed: an encoder would re-indent or compact it.
		proof := make([]string, len(e.Proof))
		for i, h := range e.Proof {
			proof[i] = base64.StdEncoding.EncodeToString(h[:])
		}
		cp, _ := json.Marshal(string(e.Checkpoint.Note))
		ps, _ := json.Marshal(proof)
		_, err := fmt.Fprintf(stdout, "{\"index\":%d,\"leaf\":%s,\"leaf_hash\":\"%s\",\"checkpoint\":%s,\"inclusion_proof\":%s,\"verified\":true}\n",
			e.Index, e.Leaf, base64.StdEncoding.EncodeToString(e.LeafHash[:]), cp, ps)
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, e.Leaf, "", "  "); err != nil {
		return fmt.Errorf("entry %d is not JSON: %w", index, err)
	}
	b.WriteByte('\n')
	fmt.Fprintf(stderr, "trail: verified entry %d: in the tree of size %d of %s, root %s\n",
		e.Index, e.Checkpoint.Size, e.Checkpoint.Origin, e.Checkpoint.Hash)
	_, err = stdout.Write(b.Bytes())
	return err
}
