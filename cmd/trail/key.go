package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/trailaudit/trail/internal/ledger"
)

const keyHelp = `Usage: trail key [-data DIR]

Prints the log's verifier key: give it to auditors, witnesses and clients,
who check checkpoints with it. It never prints the signing key.

Flags:
`

func init() { commands["key"] = runKey }

func runKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("key", stderr, keyHelp)
	dir := fs.String("data", "trail-data", "the data `directory`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	vkey, err := readVerifierKey(*dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}

func readVerifierKey(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, ledger.VerifierKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no log in %s (no %s)", dir, ledger.VerifierKeyFile)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
