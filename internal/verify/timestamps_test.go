package verify_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/tsa"
	"github.com/trailaudit/trail/internal/tsa/tsatest"
	"github.com/trailaudit/trail/internal/verify"
)

// stampedLog builds a log of four checkpoints (sizes 0, 1, 3, 6), each
// time-stamped by a, as trail serve stores them.
func stampedLog(t *testing.T, a *tsatest.TSA) (dir string, notes map[int64][]byte) {
	t.Helper()
	dir = t.TempDir()
	notes = buildCheckpoints(t, dir, "")
	os.MkdirAll(filepath.Join(dir, tsa.Dir), 0o755)
	for size, note := range notes {
		stamp(t, a, dir, size, note)
	}
	return dir, notes
}

// buildCheckpoints appends entries to the log in dir, signing checkpoints of
// sizes 0, 1, 3 and 6; the third entry's action is action if not empty.
func buildCheckpoints(t *testing.T, dir, action string) map[int64][]byte {
	t.Helper()
	l := openLog(t, dir)
	notes := map[int64][]byte{}
	for i := range 4 {
		for j := range i {
			e := fmt.Appendf(nil, `{"i":%d,"j":%d}`, i, j)
			if i == 2 && j == 0 && action != "" {
				e = fmt.Appendf(nil, `{"i":%d,"j":%d,"action":%q}`, i, j, action)
			}
			if _, err := l.Append(t.Context(), e); err != nil {
				t.Fatal(err)
			}
		}
		cp, err := l.Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		notes[cp.Size] = cp.Note
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return notes
}

// stamp asks a to stamp note and stores it as the time-stamp of size.
func stamp(t *testing.T, a *tsatest.TSA, dir string, size int64, note []byte) string {
	t.Helper()
	_, der, err := (&tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client}).Stamp(t.Context(), note)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, tsa.Dir, tsa.TokenFile(size))
	if err := os.WriteFile(p, der, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTimestamps checks that trail verify accepts the stored time-stamps of
// a log, reports them, and fails on each way a time-stamp can be false,
// naming the file.
func TestTimestamps(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	rogue := tsatest.New(t, tsatest.Options{}) // a TSA the auditor does not trust
	start := time.Now().Add(-2 * time.Second)
	base, notes := stampedLog(t, a)

	t.Run("healthy", func(t *testing.T) {
		for _, ca := range []string{a.CAFile, ""} {
			rep, err := verify.Dir(t.Context(), base, verify.Options{TSACAFile: ca})
			if err != nil {
				t.Fatalf("Dir(-tsa-ca %q) = %v", ca, err)
			}
			tm := rep.Time
			if tm.Stamped != 4 || tm.LastSize != 6 || tm.ChainChecked != (ca != "") || tm.First.Before(start) || tm.Last.Before(tm.First) || tm.Last.After(time.Now().Add(2*time.Second)) {
				t.Errorf("Dir(-tsa-ca %q).Time = %+v, want 4 stamped up to size 6 between %v and now, chain checked %v", ca, tm, start, ca != "")
			}
			if len(rep.Warnings) > 0 {
				t.Errorf("warnings: %q", rep.Warnings)
			}
		}
	})

	for _, tc := range []struct {
		name string
		// tamper changes the directory and returns the file to be named.
		tamper func(t *testing.T, dir string) string
		noCA   bool // verify without -tsa-ca
		want   string
	}{
		{"tampered token", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, tsa.Dir, tsa.TokenFile(3))
			b, _ := os.ReadFile(p)
			tok, err := tsa.ParseResponse(b)
			if err != nil {
				t.Fatal(err)
			}
			// Move the stamped time back a year: 2026 -> 2025.
			i := bytes.Index(b, []byte(tok.GenTime.Format("20060102150405Z")))
			b[i+3]--
			os.WriteFile(p, b, 0o644)
			return p
		}, false, "the token was altered"},
		{"tampered token, no CA", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, tsa.Dir, tsa.TokenFile(1))
			b, _ := os.ReadFile(p)
			b[len(b)-5] ^= 0x40 // in the signature
			os.WriteFile(p, b, 0o644)
			return p
		}, true, "signature"},
		{"token of another checkpoint", func(t *testing.T, dir string) string {
			from, to := filepath.Join(dir, tsa.Dir, tsa.TokenFile(1)), filepath.Join(dir, tsa.Dir, tsa.TokenFile(3))
			b, _ := os.ReadFile(from)
			os.WriteFile(to, b, 0o644)
			return to
		}, true, "does not stamp the checkpoint of size 3"},
		{"untrusted TSA", func(t *testing.T, dir string) string {
			return stamp(t, rogue, dir, 6, notes[6])
		}, false, "not signed by a TSA that"},
		{"token without a checkpoint", func(t *testing.T, dir string) string {
			b, _ := os.ReadFile(filepath.Join(dir, tsa.Dir, tsa.TokenFile(6)))
			p := filepath.Join(dir, tsa.Dir, tsa.TokenFile(10))
			os.WriteFile(p, b, 0o644)
			return p
		}, true, "the history"},
		{"not a token", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, tsa.Dir, tsa.TokenFile(0))
			os.WriteFile(p, []byte("hello"), 0o644)
			return p
		}, true, "not a valid time-stamp response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			file := tc.tamper(t, dir)
			ca := a.CAFile
			if tc.noCA {
				ca = ""
			}
			_, err := verify.Dir(t.Context(), dir, verify.Options{TSACAFile: ca})
			var f *verify.Failure
			if !errors.As(err, &f) || f.Where != file || !strings.Contains(f.What, tc.want) {
				t.Fatalf("Dir = %v, want a failure at %s containing %q", err, file, tc.want)
			}
			t.Log(err)
		})
	}

	t.Run("untrusted TSA, no CA", func(t *testing.T) {
		// Without -tsa-ca a rogue TSA's token passes: the report says the
		// chain was not checked.
		dir := copyDir(t, base)
		stamp(t, rogue, dir, 6, notes[6])
		rep, err := verify.Dir(t.Context(), dir, verify.Options{})
		if err != nil || rep.Time.ChainChecked {
			t.Fatalf("Dir = %v, ChainChecked %v; want success with the chain not checked", err, rep.Time.ChainChecked)
		}
	})
	t.Run("log rebuilt and re-signed", func(t *testing.T) {
		// The operator's attack: the whole log rebuilt with the same key and
		// one entry changed. Every checkpoint verifies, but the time-stamps
		// kept from before stamp the old checkpoints.
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
		for _, f := range []string{"keys/log.key", "keys/log.vkey"} {
			copyFile(t, filepath.Join(base, f), filepath.Join(dir, f))
		}
		buildCheckpoints(t, dir, "rewritten")
		if _, err := verify.Dir(t.Context(), dir, verify.Options{}); err != nil {
			t.Fatalf("the rebuilt log without time-stamps: %v", err)
		}
		os.MkdirAll(filepath.Join(dir, tsa.Dir), 0o755)
		for _, size := range []int64{0, 1, 3, 6} {
			copyFile(t, filepath.Join(base, tsa.Dir, tsa.TokenFile(size)), filepath.Join(dir, tsa.Dir, tsa.TokenFile(size)))
		}
		_, err := verify.Dir(t.Context(), dir, verify.Options{TSACAFile: a.CAFile})
		var f *verify.Failure
		want := filepath.Join(dir, tsa.Dir, tsa.TokenFile(3)) // the first checkpoint covering the changed entry
		if !errors.As(err, &f) || f.Where != want || !strings.Contains(f.What, "does not stamp the checkpoint of size 3") {
			t.Fatalf("Dir(rebuilt log, old time-stamps) = %v, want a failure at %s", err, want)
		}
	})
	t.Run("unexpected file", func(t *testing.T) {
		dir := copyDir(t, base)
		p := filepath.Join(dir, tsa.Dir, "notes.txt")
		os.WriteFile(p, nil, 0o644)
		rep, err := verify.Dir(t.Context(), dir, verify.Options{TSACAFile: a.CAFile})
		if err != nil || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], p) {
			t.Fatalf("Dir = %v, warnings %q; want success with one warning naming %s", err, rep.Warnings, p)
		}
	})
	t.Run("bad CA file", func(t *testing.T) {
		_, err := verify.Dir(t.Context(), base, verify.Options{TSACAFile: filepath.Join(base, "log", "checkpoint")})
		var f *verify.Failure
		if err == nil || errors.As(err, &f) || !strings.Contains(err.Error(), "holds no PEM certificate") {
			t.Fatalf("Dir(bad CA file) = %v, want an error naming the file", err)
		}
	})
}
