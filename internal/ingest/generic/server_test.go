package generic_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/generic"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// testServer is trail on real TLS over 127.0.0.1 with a fresh log and the
// generic endpoint registered, as trail serve runs it.
type testServer struct {
	url string
	log *ledger.Log
	pki *tlsconf.PKI
}

func startServer(tb testing.TB) *testServer {
	tb.Helper()
	dir := tb.TempDir()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		tb.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := server.New(server.Config{Log: l, LogDir: filepath.Join(dir, "log"), ClientCAs: pki.CAPool()})
	if err != nil {
		tb.Fatal(err)
	}
	generic.Register(srv, nil)
	tc, err := tlsconf.ServerConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := server.NewHTTPServer("", srv, server.TLSConfig(tc), slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("ServeTLS = %v", err)
		}
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return &testServer{url: "https://" + ln.Addr().String(), log: l, pki: pki}
}

// client returns an HTTP/2 client with a certificate for name and role.
func (ts *testServer) client(tb testing.TB, name string, role tlsconf.Role) *http.Client {
	tb.Helper()
	certPEM, keyPEM, err := ts.pki.IssueClient(name, role)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pki.CAPool(), Certificates: []tls.Certificate{cert}}, ForceAttemptHTTP2: true}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// post sends body to url as Teleport's event handler does and returns
// the status and the response body.
func post(tb testing.TB, c *http.Client, url string, body []byte) (int, string) {
	tb.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// entries returns every envelope in the log.
func (ts *testServer) entries(tb testing.TB) []event.Envelope {
	tb.Helper()
	ctx := context.Background()
	leaves, err := ts.log.ReadEntries(ctx, 0, ts.log.Size())
	if err != nil {
		tb.Fatal(err)
	}
	envs := make([]event.Envelope, len(leaves))
	for i, leaf := range leaves {
		if leaf, err = ts.log.Body(ctx, leaf); err != nil {
			tb.Fatal(err)
		}
		if envs[i], err = event.DecodeLeaf(leaf); err != nil {
			tb.Fatalf("entry %d: %v", i, err)
		}
	}
	return envs
}
