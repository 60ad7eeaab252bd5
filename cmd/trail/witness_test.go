package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/internal/ledger"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/witness"
	"github.com/trailaudit/trail/internal/witness/cosig"
)

// BenchmarkWitnessRoundTrip measures the witness round trip per checkpoint
// with the witness in its own process ("trail witness", over mutual TLS on
// 127.0.0.1) and the log in this one: each iteration appends an entry,
// signs a checkpoint, and times what the log's Sender does with it (the
// consistency proof from the witness's size, the add-checkpoint request,
// the witness's checks, fsync of its state and cosignature, and the check
// of the cosignature). It reports the median and 99th percentile.
//
//	go test ./cmd/trail -run '^$' -bench WitnessRoundTrip -benchtime 1000x
func BenchmarkWitnessRoundTrip(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	logDir, wdir := filepath.Join(dir, "data"), filepath.Join(dir, "wdir")
	keys, err := ledger.LoadOrCreateKeys(logDir)
	if err != nil {
		b.Fatal(err)
	}
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(logDir, "pki")})
	if err != nil {
		b.Fatal(err)
	}
	certPEM, keyPEM, err := pki.IssueClient("witness-client", tlsconf.RoleReader)
	if err != nil {
		b.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)

	// The witness: this test binary run as "trail" (see TestMain).
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	exe, _ := os.Executable()
	if err := os.Symlink(exe, filepath.Join(bin, "trail")); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "trail"), "witness", "-data", wdir, "-listen", "127.0.0.1:0", "-ops-listen", "off",
		"-log", keys.VerifierKey, "-client-ca", filepath.Join(logDir, "pki", tlsconf.CACertFile))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	var info witnessInfo
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if raw, err := os.ReadFile(filepath.Join(wdir, witnessInfoFile)); err == nil && json.Unmarshal(raw, &info) == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the witness did not start")
		}
	}
	hc, err := witness.NewHTTPClient(info.CAFile, certFile, keyFile)
	if err != nil {
		b.Fatal(err)
	}
	v, err := cosig.NewVerifier(info.VerifierKey)
	if err != nil {
		b.Fatal(err)
	}

	store, err := storagefs.Open(logDir, nil)
	if err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(ctx, ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var old int64
	roundTrip := func() time.Duration {
		if _, err := l.Append(ctx, fmt.Appendf(nil, `{"n":%d}`, old)); err != nil {
			b.Fatal(err)
		}
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		req := witness.Request{OldSize: old, Checkpoint: cp.Note}
		if old > 0 {
			if req.Proof, err = l.ProveConsistency(ctx, old, cp.Size); err != nil {
				b.Fatal(err)
			}
		}
		resp, err := hc.Post(info.URL+"/add-checkpoint", "text/plain", bytes.NewReader(req.Format()))
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("witness answered %d %s", resp.StatusCode, body)
		}
		if sigs, err := cosig.Verify(append(bytes.Clone(cp.Note), body...), []*cosig.Verifier{v}); err != nil || len(sigs) != 1 {
			b.Fatalf("cosignature: %v %v", sigs, err)
		}
		old = cp.Size
		return time.Since(start)
	}
	roundTrip() // the first, with the TLS handshake, is not counted
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		times = append(times, roundTrip())
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[min(len(times)-1, len(times)*99/100)].Microseconds())/1000, "p99-ms")
}

// TestWitnessConfig checks the witnesses: and witness_quorum settings.
func TestWitnessConfig(t *testing.T) {
	_, vkey, err := cosig.GenerateKey(nil, "w.example/w1")
	if err != nil {
		t.Fatal(err)
	}
	_, logVkey, _ := note.GenerateKey(nil, "log.example/log")
	for _, tt := range []struct {
		yaml, err string
	}{
		{"witnesses:\n  - url: https://w:7443\n    key: " + vkey + "\nwitness_quorum: 1\n", ""},
		{"witnesses:\n  - url: http://w:7443\n    key: " + vkey + "\n", "witnesses[0].url \"http://w:7443\": must be https://HOST:PORT"},
		{"witnesses:\n  - url: https://w:7443\n    key: " + logVkey + "\n", "witnesses[0].key: witness key log.example/log is of type 0x01"},
		{"witnesses:\n  - url: https://w:7443\n    key: " + vkey + "\nwitness_quorum: 2\n", "witness_quorum 2: must be 0 to the number of witnesses, 1"},
		{"witnesses:\n  - url: https://w:7443\n    key: " + vkey + "\n    cert_file: a.crt\n", "witnesses[0]: cert_file and key_file go together"},
		{"witnesses:\n  - url: https://w:7443\n    kee: " + vkey + "\n", "unknown key kee"},
	} {
		f := filepath.Join(t.TempDir(), "trail.yaml")
		os.WriteFile(f, []byte(tt.yaml), 0o644)
		_, err := loadServeConfig(f)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("loadServeConfig(%q) = %v, want no error", tt.yaml, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("loadServeConfig(%q) = %v, want an error with %q", tt.yaml, err, tt.err)
		}
	}
}
