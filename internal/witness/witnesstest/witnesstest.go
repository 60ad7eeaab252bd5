// Package witnesstest starts real witnesses for tests: a witness.Witness
// with its own key and state directory, served over mutual TLS on
// 127.0.0.1 with a private CA, and the client side a log needs to reach
// it.
//
//	w := witnesstest.Start(t, logVerifierKey)
//	sender, _ := witness.NewSender(witness.SenderConfig{Witnesses: []witness.Endpoint{w.Endpoint()}, Quorum: 1})
//	status, body := w.Submit(t, log, note)  // offer a checkpoint with a proof from log, as a log would
//	status, body = w.Post(t, requestBody)   // or a raw add-checkpoint body
//	w.Refusals(t)                           // what the witness refused, with evidence
//
// The server stops when the test ends, or at Stop; Restart serves the same
// directory again (the state survives, as it must).
package witnesstest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/witness"
)

// Witness is a running test witness.
type Witness struct {
	*witness.Witness
	// Dir is the witness directory (key, state, refusals, pki/).
	Dir string
	// URL is the submission prefix, https://127.0.0.1:PORT.
	URL string
	// CAFile is the PEM CA of the witness's server certificate.
	CAFile string
	// CertFile and KeyFile are a client certificate the witness accepts.
	CertFile, KeyFile string
	// HTTPClient presents that certificate and trusts CAFile.
	HTTPClient *http.Client
	// Registry holds the witness's metrics.
	Registry *prometheus.Registry

	logs []string
	addr string
	srv  *http.Server
}

// Start starts a witness for the logs with the given verifier keys, in a
// new temporary directory.
func Start(t testing.TB, logs ...string) *Witness {
	t.Helper()
	return StartDir(t, t.TempDir(), logs...)
}

// StartDir starts a witness in dir, which may hold one from before.
func StartDir(t testing.TB, dir string, logs ...string) *Witness {
	t.Helper()
	w := &Witness{Dir: dir, logs: logs, addr: "127.0.0.1:0"}
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(dir, "pki"), Name: "test witness"})
	if err != nil {
		t.Fatal(err)
	}
	w.CAFile = filepath.Join(dir, "pki", tlsconf.CACertFile)
	w.CertFile, w.KeyFile = filepath.Join(dir, "log-client.crt"), filepath.Join(dir, "log-client.key")
	if _, err := os.Stat(w.CertFile); errors.Is(err, os.ErrNotExist) {
		certPEM, keyPEM, err := pki.IssueClient("log", tlsconf.RoleWriter)
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(os.WriteFile(w.KeyFile, keyPEM, 0o600), os.WriteFile(w.CertFile, certPEM, 0o644)); err != nil {
			t.Fatal(err)
		}
	}
	if w.HTTPClient, err = witness.NewHTTPClient(w.CAFile, w.CertFile, w.KeyFile); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.HTTPClient.CloseIdleConnections)
	w.serve(t, pki)
	return w
}

func (w *Witness) serve(t testing.TB, pki *tlsconf.PKI) {
	t.Helper()
	w.Registry = prometheus.NewRegistry()
	var err error
	w.Witness, err = witness.New(witness.Config{Dir: w.Dir, Logs: w.logs, Registerer: w.Registry})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := witness.TLSConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // a restart asks for the same port, which may linger a moment
		if ln, err = net.Listen("tcp", w.addr); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	w.URL = "https://" + w.addr
	w.srv = &http.Server{Handler: w.Witness, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second}
	go w.srv.ServeTLS(ln, "", "")
	t.Cleanup(w.Stop)
}

// Stop stops serving; requests then fail to connect.
func (w *Witness) Stop() {
	if w.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		w.srv.Shutdown(ctx)
		cancel()
		w.srv = nil
	}
	w.HTTPClient.CloseIdleConnections()
}

// Restart stops the witness and serves its directory again on the same
// address, as a restarted process would.
func (w *Witness) Restart(t testing.TB) {
	t.Helper()
	w.Stop()
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(w.Dir, "pki"), Name: "test witness"})
	if err != nil {
		t.Fatal(err)
	}
	w.serve(t, pki)
}

// Endpoint returns the witness as a Sender reaches it.
func (w *Witness) Endpoint() witness.Endpoint {
	return witness.Endpoint{URL: w.URL, VerifierKey: w.VerifierKey(), HTTPClient: w.HTTPClient}
}

// Post sends a raw add-checkpoint body and returns the status and body of
// the answer.
func (w *Witness) Post(t testing.TB, body []byte) (int, []byte) {
	t.Helper()
	resp, err := w.HTTPClient.Post(w.URL+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// Submit offers a signed checkpoint as a log would: with the size of the
// checkpoint the witness holds for its origin as the old size, and a
// consistency proof from p (the log that signed it, or a forged copy of
// it) from that size. It returns the witness's status and body: 200 and a
// cosignature, or a refusal.
func (w *Witness) Submit(t testing.TB, p witness.Prover, checkpoint []byte) (int, []byte) {
	t.Helper()
	cp := parse(t, checkpoint)
	req := witness.Request{Checkpoint: checkpoint}
	if held := w.Latest(cp.Origin); held != nil {
		req.OldSize = parse(t, held).Size
	}
	if req.OldSize > 0 && req.OldSize < cp.Size {
		proof, err := p.ProveConsistency(context.Background(), req.OldSize, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		req.Proof = proof
	}
	return w.Post(t, req.Format())
}

func parse(t testing.TB, note []byte) c2sp.Checkpoint {
	t.Helper()
	text, _, ok := bytes.Cut(note, []byte("\n\n"))
	if !ok {
		t.Fatalf("not a signed note: %q", note)
	}
	c, err := c2sp.ParseCheckpoint(text[: len(text)+1 : len(text)+1])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Refusals returns the refusals the witness recorded, oldest first.
func (w *Witness) Refusals(t testing.TB) []witness.Refusal {
	t.Helper()
	rs, err := witness.ReadRefusals(w.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// RefusalCount returns trail_witness_refusals_total for origin and reason.
func (w *Witness) RefusalCount(origin, reason string) float64 {
	mfs, err := w.Registry.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != "trail_witness_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var o, r string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "origin":
					o = l.GetValue()
				case "reason":
					r = l.GetValue()
				}
			}
			if o == origin && r == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
