package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/storage/fs"
)

// monitoredServer is a TLS endpoint on 127.0.0.1 whose configuration the
// test changes between scans, with a certificate from its own CA that
// expires in five days.
type monitoredServer struct {
	addr   string
	caFile string
	weak   atomic.Bool
}

func startMonitoredServer(t *testing.T) *monitoredServer {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "monitor test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "expiring.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	m := &monitoredServer{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	writeTestFile(t, m.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	cert := tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}
	strong := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}
	weak := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=63072000")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the scan's probes fail handshakes by design
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if m.weak.Load() {
			return weak, nil
		}
		return strong, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	m.addr = srv.Listener.Addr().String()
	return m
}

// TestMonitor runs trail serve with a monitored endpoint and its own
// listeners scanned at start: each scan and each finding is appended to
// the log, an expiring certificate alerts, and so does a grade that drops
// between two scans.
func TestMonitor(t *testing.T) {
	if testing.Short() {
		t.Skip("scans endpoints from a trail serve process")
	}
	target := startMonitoredServer(t)
	r := newTamperRig(t) // its webhook receiver and ops port
	writeTestFile(t, r.cfg, fmt.Appendf(nil, `monitor:
  self: true
  endpoints: [%s]
  every: 2s
  check_every: 1h
  ca_files: [%s]
  expiry_days: 30
alerts:
  webhooks:
    - url: %s
      secret_file: %s
      ca_file: %s
`, target.addr, target.caFile, hookURL(t, r), filepath.Join(filepath.Dir(r.cfg), "hook-secret"), filepath.Join(filepath.Dir(r.cfg), "hook-ca.pem")))
	r.start()

	want := func(kind, where string) alertSeen {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, a := range r.hook.got() {
				if a.Kind == kind && strings.Contains(a.Where, where) {
					return alertSeen{a.Summary}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no %s alert for %s; got %+v\n%s", kind, where, r.hook.got(), r.srv.out)
		return alertSeen{}
	}
	a := want("certificate.expiry", "expiring.test")
	if !strings.Contains(a.summary, "in 4 days") && !strings.Contains(a.summary, "in 5 days") {
		t.Errorf("expiry alert %q, want the days left", a.summary)
	}
	// The endpoint starts strong; weaken it before the next scan.
	target.weak.Store(true)
	a = want("scan.grade", target.addr)
	if !strings.Contains(a.summary, "dropped from A") {
		t.Errorf("grade alert %q, want a drop from A", a.summary)
	}
	want("scan.deviation", target.addr+" Mozilla intermediate")
	// /healthz: the certificate expires within a week, so it is critical.
	resp, err := r.opsHTTP.Get("https://" + r.ops + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz %s, want 503 for a certificate expiring within a week", resp.Status)
	}
	r.stop()

	// The log holds each scan (the endpoint's and the server's own
	// listeners') and each finding.
	store, err := fs.Open(r.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	leaves, err := store.ReadEntries(context.Background(), 0, store.Size())
	if err != nil {
		t.Fatal(err)
	}
	scans := map[string]int{}
	var findings, expiries int
	for _, leaf := range leaves {
		env, err := event.DecodeLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		switch env.Event.Action {
		case "tls.scan":
			scans[env.Event.Resource.ID]++
			var d struct {
				Grade string `json:"grade"`
			}
			json.Unmarshal(env.Event.Details, &d)
			if d.Grade == "" {
				t.Errorf("tls.scan of %s has no grade: %s", env.Event.Resource.ID, env.Event.Details)
			}
		case "tls.finding":
			findings++
		case "certificate.expiry":
			expiries++
		}
	}
	if scans[target.addr] < 2 {
		t.Errorf("scans of the endpoint recorded: %d, want at least 2 (%v)", scans[target.addr], scans)
	}
	if len(scans) < 3 {
		t.Errorf("scans recorded of %v, want the endpoint and the server's own API and ops listeners", scans)
	}
	if findings == 0 || expiries == 0 {
		t.Errorf("recorded %d findings and %d certificate expiries, want some of each", findings, expiries)
	}
}

type alertSeen struct{ summary string }

// hookURL is the rig's webhook receiver URL, read back from its config.
func hookURL(t *testing.T, r *tamperRig) string {
	t.Helper()
	cfg, err := loadServeConfig(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(cfg.Alerts.Webhooks[0].URL, "/alerts") + "/alerts"
}
