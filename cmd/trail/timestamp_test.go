package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/tsa"
	"github.com/trailaudit/trail/internal/tsa/tsatest"
)

// TestServeTimestamps runs trail serve with a timestamp block whose TSA is
// openssl ts, appends through the API, stops it, and checks that trail
// verify finds every checkpoint stamped, and fails on a tampered token, on
// a token for another checkpoint and on a token from an untrusted TSA.
func TestServeTimestamps(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	dir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "trail.yaml")
	os.WriteFile(cfgFile, fmt.Appendf(nil, "checkpoint_interval: 50ms\ntimestamp:\n  url: %s\n  ca_file: %s\n  tls_ca_file: %s\n  timeout: 10s\n", a.URL, a.CAFile, a.TLSCAFile), 0o600)

	url, c, stop := startServeWith(t, dir, "-config", cfgFile)
	for i := range 5 {
		resp, err := c.Post(url+"/v1/events", "application/json", strings.NewReader(fmt.Sprintf(`{"time":"2026-01-02T03:04:05Z","actor":{"id":"alice"},"action":"a%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST /v1/events = %d", resp.StatusCode)
		}
		time.Sleep(60 * time.Millisecond) // a checkpoint each
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	verifyJSON := func(dir string, args ...string) (map[string]any, string, error) {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append([]string{"verify", "-data", dir, "-json"}, args...), &out, &errOut)
		var m map[string]any
		if jerr := json.Unmarshal(out.Bytes(), &m); jerr != nil {
			t.Fatalf("verify -json printed %q: %v", out.String(), jerr)
		}
		return m, errOut.String(), err
	}
	m, _, err := verifyJSON(dir, "-tsa-ca", a.CAFile)
	if err != nil {
		t.Fatalf("verify = %v: %v", err, m["error"])
	}
	te, _ := m["time_evidence"].(map[string]any)
	if te == nil || te["stamped"] != m["checkpoints"] || te["chain_checked"] != true || te["last_size"] != m["size"] {
		t.Fatalf("verify time_evidence = %v, want every one of %v checkpoints stamped, up to size %v, chain checked", te, m["checkpoints"], m["size"])
	}
	if m["checkpoints"].(float64) < 2 { // the empty log's and the last, whatever the timing
		t.Fatalf("only %v checkpoints", m["checkpoints"])
	}
	t.Logf("%v checkpoints, all stamped", m["checkpoints"])

	// The text report says what the stamps vouch for.
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"verify", "-data", dir}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "checkpoints time-stamped (RFC 3161)") || !strings.Contains(errOut.String(), "pass the TSA's CA with -tsa-ca") {
		t.Errorf("verify without -tsa-ca printed\n%s\n%s\nwant the time line and a note that the chain was not checked", out.String(), errOut.String())
	}

	size := int64(m["size"].(float64))
	for _, tc := range []struct {
		name   string
		tamper func(dir string)
		args   []string
		file   int64 // the token named
		want   string
	}{
		{"tampered token", func(dir string) {
			p := filepath.Join(dir, filepath.FromSlash(tsa.Dir), tsa.TokenFile(size))
			b, _ := os.ReadFile(p)
			b[len(b)-4] ^= 1
			os.WriteFile(p, b, 0o644)
		}, nil, size, "signature does not verify"},
		{"token of another checkpoint", func(dir string) {
			des, _ := os.ReadDir(filepath.Join(dir, filepath.FromSlash(tsa.Dir)))
			other, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(tsa.Dir), des[0].Name()))
			os.WriteFile(filepath.Join(dir, filepath.FromSlash(tsa.Dir), tsa.TokenFile(size)), other, 0o644)
		}, nil, size, "does not stamp the checkpoint of size"},
		// The first token, of the empty log's checkpoint, fails first.
		{"untrusted TSA", func(string) {}, []string{"-tsa-ca", tsatest.New(t, tsatest.Options{}).CAFile}, 0, "not signed by a TSA that"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyTree(t, dir)
			tc.tamper(d)
			m, _, err := verifyJSON(d, tc.args...)
			e, _ := m["error"].(map[string]any)
			want := filepath.Join(d, filepath.FromSlash(tsa.Dir), tsa.TokenFile(tc.file))
			if err == nil || e == nil || e["where"] != want || !strings.Contains(e["what"].(string), tc.want) {
				t.Fatalf("verify = %v, error %v; want a failure at %s containing %q", err, e, want, tc.want)
			}
		})
	}

	// Bad configurations are refused before anything starts.
	for _, tc := range []struct{ yaml, want string }{
		{"timestamp:\n  url: http://tsa.example/\n  ca_file: x\n", "want an https:// URL"},
		{"timestamp:\n  url: https://tsa.example/\n", "timestamp.ca_file is required"},
		{"timestamp:\n  ca_file: x\n", "timestamp.url is missing"},
		{"timestamp:\n  url: https://tsa.example/\n  ca_file: /nonexistent/ca.pem\n", "timestamp.ca_file"},
	} {
		f := filepath.Join(t.TempDir(), "trail.yaml")
		os.WriteFile(f, []byte(tc.yaml), 0o600)
		err := run(t.Context(), []string{"serve", "-config", f, "-data", t.TempDir(), "-listen", "127.0.0.1:0", "-ops-listen", "off", "-syslog-listen", "off"}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve with %q = %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
	if err := run(t.Context(), []string{"verify", "-server", "https://127.0.0.1:1", "-tsa-ca", a.CAFile}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-tsa-ca: only with -data") {
		t.Errorf("verify -server -tsa-ca = %v, want a usage error", err)
	}
}

// copyTree copies a directory tree into a new temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
