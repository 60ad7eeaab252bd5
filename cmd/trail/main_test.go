package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage/fs"
)

// TestMain lets scripts run the test binary as "trail", and as the
// test-only helper "mklog".
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"trail": func() {
			// As main does, so that scripts can stop a server gracefully
			// with kill -INT.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
			stop()
			os.Exit(exitCode(err, os.Stderr))
		},
		"mklog": mklog,
	})
}

// TestScripts runs testdata/script/*.txtar. Besides the standard commands,
// scripts have:
//
//	mklog DIR N [LARGE]        a log of N entries (LARGE of them over 64 KiB), closed
//	flipbyte FILE OFFSET       flip the low bit of a byte (OFFSET < 0 counts from the end)
//	status CODE PROG [ARGS]    run PROG and expect exit code CODE
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: false,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"flipbyte":  flipByte,
			"status":    status,
			"waitserve": waitServe,
		},
	})
}

func mklog() {
	if err := makeLog(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mklog:", err)
		os.Exit(1)
	}
}

func makeLog(args []string) error {
	if len(args) < 2 || len(args) > 3 {
		return errors.New("usage: mklog DIR N [LARGE]")
	}
	dir := args[0]
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	large := 0
	if len(args) == 3 {
		if large, err = strconv.Atoi(args[2]); err != nil {
			return err
		}
	}
	ctx := context.Background()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		return err
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		return err
	}
	for i := 0; i < n; {
		var batch [][]byte
		for ; i < n && len(batch) < 100; i++ {
			batch = append(batch, fmt.Appendf(nil, `{"i":%d,"event":{"action":"login"}}`, i))
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			return err
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			return err
		}
	}
	for i := range large {
		if _, err := l.Append(ctx, bytes.Repeat([]byte{'a' + byte(i%26)}, 70000+i)); err != nil {
			return err
		}
	}
	return l.Close()
}

func flipByte(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE OFFSET")
	}
	file := ts.MkAbs(args[0])
	off, err := strconv.Atoi(args[1])
	ts.Check(err)
	b, err := os.ReadFile(file)
	ts.Check(err)
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 1
	ts.Check(os.WriteFile(file, b, 0o644))
}

func status(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: status CODE PROG [ARGS]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// TestVerifySecurityError checks that a fork (two signed checkpoints of one
// size with different roots) is reported with both checkpoints.
func TestVerifySecurityError(t *testing.T) {
	dir := t.TempDir()
	if err := makeLog([]string{dir, "300"}); err != nil {
		t.Fatal(err)
	}
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	newest, err := os.ReadFile(filepath.Join(dir, "log", "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	text, _, _ := strings.Cut(string(newest), "\n\n")
	c, err := c2sp.ParseCheckpoint([]byte(text + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Hash[0] ^= 1
	fork, err := note.Sign(&note.Note{Text: string(c.Format())}, keys.Signer)
	if err != nil {
		t.Fatal(err)
	}
	rec := binary.BigEndian.AppendUint32(nil, uint32(len(fork)))
	rec = binary.BigEndian.AppendUint32(rec, crc32.Checksum(fork, crc32.MakeTable(crc32.Castagnoli)))
	rec = append(rec, fork...)
	f, err := os.OpenFile(filepath.Join(dir, "state", "checkpoints"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(rec)
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "log", "checkpoint"), fork, 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	err = run(t.Context(), []string{"verify", "-data", dir, "-key", keys.VerifierKey}, &stdout, &stderr)
	if !errors.Is(err, errReported) || exitCode(err, &stderr) != 1 {
		t.Fatalf("run(verify) = %v, want errReported (exit 1)", err)
	}
	first, rest, _ := strings.Cut(stderr.String(), "\n")
	if !strings.Contains(first, "SECURITY ERROR") || !strings.Contains(first, "checkpoint of size 300") {
		t.Errorf("first line of stderr = %q, want a SECURITY ERROR about the checkpoint of size 300", first)
	}
	for _, want := range []string{"older checkpoint (record 4):\n" + string(newest), "newer checkpoint (record 5):\n" + string(fork)} {
		if !strings.Contains(rest, want) {
			t.Errorf("stderr = %q, want it to contain %q", stderr.String(), want)
		}
	}
}
