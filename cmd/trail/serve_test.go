package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
	storagefs "github.com/trailaudit/trail/internal/storage/fs"
)

// startServe runs trail serve in-process on 127.0.0.1:0 until the returned
// cancel is called (the same path as SIGINT/SIGTERM), and returns its URL
// and an admin client.
func startServe(t *testing.T, dir string) (url string, c *http.Client, stop func() error) {
	t.Helper()
	return startServeWith(t, dir, "-syslog-listen", "127.0.0.1:0")
}

// startServeWith runs trail serve in-process with extra flags, like
// startServe.
func startServeWith(t *testing.T, dir string, extra ...string) (url string, c *http.Client, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args := append([]string{"serve", "-data", dir, "-listen", "127.0.0.1:0", "-ops-listen", "127.0.0.1:0", "-syslog-listen", "off"}, extra...)
	go func() { done <- run(ctx, args, io.Discard, io.Discard) }()
	var info serveInfo
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, serveInfoFile))
		if err == nil && json.Unmarshal(b, &info) == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("serve did not start within 20 s")
		}
	}
	pkiDir := filepath.Join(dir, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, adminCertFile), filepath.Join(pkiDir, adminKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	var once sync.Once
	var serr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serr = <-done:
			case <-time.After(40 * time.Second):
				serr = fmt.Errorf("serve did not stop within 40 s")
			}
		})
		return serr
	}
	t.Cleanup(func() { stop() })
	return info.URL, &http.Client{Transport: tr, Timeout: 20 * time.Second}, stop
}

func TestServeStopUnderLoad(t *testing.T) {
	dir := t.TempDir()
	url, c, stop := startServe(t, dir)
	type ack struct {
		index int64
		hash  []byte
	}
	var mu sync.Mutex
	var acks []ack
	var wg sync.WaitGroup
	stopping := make(chan struct{})
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopping:
					if i > 1000 {
						return
					}
				default:
				}
				body := fmt.Sprintf(`[{"time":"2026-01-02T03:04:05Z","actor":{"id":"w%d"},"action":"a%d"},{"time":"2026-01-02T03:04:05Z","actor":{"id":"w%d"},"action":"b%d"}]`, w, i, w, i)
				resp, err := c.Post(url+"/v1/events", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					return // the server has stopped accepting
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					continue // 503 while stopping: not acknowledged
				}
				var reply struct {
					Entries []struct {
						Index    int64  `json:"index"`
						LeafHash []byte `json:"leaf_hash"`
					} `json:"entries"`
				}
				if err := json.Unmarshal(b, &reply); err != nil {
					t.Errorf("reply %q: %v", b, err)
					return
				}
				mu.Lock()
				for _, e := range reply.Entries {
					acks = append(acks, ack{e.Index, e.LeafHash})
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(stopping)
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	wg.Wait()
	if len(acks) == 0 {
		t.Fatal("no append was acknowledged")
	}

	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storagefs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	size := l.Size()
	if cp := l.Latest(); cp == nil || cp.Size != size {
		t.Errorf("last checkpoint %v does not cover the %d entries", cp, size)
	}
	for _, a := range acks {
		leaf, err := l.ReadEntry(t.Context(), a.index)
		if err != nil {
			t.Fatalf("acknowledged entry %d: %v", a.index, err)
		}
		if h := tlog.RecordHash(leaf); !bytes.Equal(h[:], a.hash) {
			t.Fatalf("entry %d hashes to %x, acknowledged as %x", a.index, h, a.hash)
		}
	}
	first, err := l.ReadEntry(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	last, err := l.ReadEntry(t.Context(), size-1)
	if err != nil {
		t.Fatal(err)
	}
	for leaf, want := range map[string]string{string(first): "trail.server.start", string(last): "trail.server.stop"} {
		env, err := event.DecodeLeaf([]byte(leaf))
		if err != nil || env.Event.Action != want || env.Source != "trail:server" {
			t.Errorf("entry %s, want %s by trail:server", leaf, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, serveInfoFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind after stop: %v", serveInfoFile, err)
	}
	t.Logf("%d entries acknowledged before the stop, log size %d", len(acks), size)
}
