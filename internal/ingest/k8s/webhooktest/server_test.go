package webhooktest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/k8s"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// trailServer is trail serving the Kubernetes endpoint on real TLS over
// 127.0.0.1, as trail serve runs it, with wrap around its handler to inject
// failures.
type trailServer struct {
	url    string
	log    *ledger.Log
	pki    *tlsconf.PKI
	caFile string
}

func startTrail(t *testing.T, wrap func(http.Handler) http.Handler) *trailServer {
	t.Helper()
	dir := t.TempDir()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dir, "pki")
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: pkiDir})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Log: l, LogDir: filepath.Join(dir, "log"), ClientCAs: pki.CAPool()})
	if err != nil {
		t.Fatal(err)
	}
	k8s.Register(srv, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	tc, err := tlsconf.ServerConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(srv)
	}
	hs := server.NewHTTPServer("", h, server.TLSConfig(tc), slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS = %v", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &trailServer{url: "https://" + ln.Addr().String(), log: l, pki: pki, caFile: filepath.Join(pkiDir, tlsconf.CACertFile)}
}

// entries returns every envelope in the log.
func (ts *trailServer) entries(t *testing.T) []event.Envelope {
	t.Helper()
	ctx := context.Background()
	leaves, err := ts.log.ReadEntries(ctx, 0, ts.log.Size())
	if err != nil {
		t.Fatal(err)
	}
	envs := make([]event.Envelope, len(leaves))
	for i, leaf := range leaves {
		if leaf, err = ts.log.Body(ctx, leaf); err != nil {
			t.Fatal(err)
		}
		if envs[i], err = event.DecodeLeaf(leaf); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	return envs
}
