package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// waitServeTimeout bounds waitserve: a server starts in well under a
// second, but the machine is shared.
const waitServeTimeout = 20 * time.Second

// waitServe is the script command
//
//	waitserve DIR        wait for the trail serve of data directory DIR to listen
//	waitserve -down DIR  wait for it to be gone
//
// A server is up when DIR/serve.json names a live process and its URL
// completes a TLS handshake with a certificate from DIR/pki/ca.crt; the URL
// is then in $SERVE_URL. It is gone when serve.json is removed or names a
// dead process. Either fails the script after waitServeTimeout.
func waitServe(ts *testscript.TestScript, neg bool, args []string) {
	down := len(args) == 2 && args[0] == "-down"
	if neg || len(args) != 1 && !down {
		ts.Fatalf("usage: waitserve [-down] DIR")
	}
	dir := ts.MkAbs(args[len(args)-1])
	deadline := time.Now().Add(waitServeTimeout)
	var why error
	for time.Now().Before(deadline) {
		info, err := readServeInfo(dir)
		switch {
		case down && (err == nil && info == nil || info != nil && !alive(info.PID)):
			return
		case down:
			why = errors.New("the server is still running")
		case err != nil:
			why = err
		case info == nil:
			why = errors.New("no " + serveInfoFile)
		case !alive(info.PID):
			why = errors.New(serveInfoFile + " names a process that is gone")
		default:
			if why = handshake(dir, info.URL); why == nil {
				ts.Setenv("SERVE_URL", info.URL)
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("waitserve %s: gave up after %v: %v", dir, waitServeTimeout, why)
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH)
}

// handshake completes a TLS handshake with the server at rawURL, verifying
// its certificate against the CA in dir.
func handshake(dir, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(dir, "pki", tlsconf.CACertFile))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: &tls.Config{RootCAs: pool, ServerName: u.Hostname()}}
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		return err
	}
	return c.Close()
}

// TestStreamSource checks that trail append sends what a pipe has given so
// far without waiting for more, as "tail -f | trail append" needs.
func TestStreamSource(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	batches := make(chan []sourced)
	done := make(chan error, 1)
	go func() {
		_, err := streamSource{pr, "standard input"}.batches(t.Context(), func(b []sourced) error {
			batches <- b
			return nil
		})
		done <- err
	}()
	for i, lines := range []string{
		`{"time":"2026-11-29T08:00:00Z","actor":{"id":"a"},"action":"one"}` + "\n",
		`{"time":"2026-11-29T08:00:01Z","actor":{"id":"a"},"action":"two"}` + "\n",
	} {
		if _, err := io.WriteString(pw, lines); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-batches:
			if want := fmt.Sprintf("standard input: line %d", i+1); len(b) != 1 || b[0].where != want {
				t.Errorf("batch %d = %v, want one event from %s", i, b, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not sent while the pipe stays open", i)
		}
	}
	io.WriteString(pw, `{"time": 1}`+"\n")
	if err := <-done; err == nil || !strings.HasPrefix(err.Error(), "standard input: line 3: time: ") {
		t.Errorf("batches after a bad event = %v, want its line", err)
	}
}

func TestSliceSourceBatches(t *testing.T) {
	ev := json.RawMessage(`{"time":"2026-11-29T08:00:00Z","actor":{"id":"a"},"action":"x"}`)
	big := json.RawMessage(`{"time":"2026-11-29T08:00:00Z","actor":{"id":"a"},"action":"x","reason":"` + strings.Repeat("r", 10000) + `"}`)
	for _, tt := range []struct {
		name string
		evs  []json.RawMessage
		want []int
	}{
		{"one", []json.RawMessage{ev}, []int{1}},
		{"by count", slices.Repeat([]json.RawMessage{ev}, 2*appendBatch+1), []int{appendBatch, appendBatch, 1}},
		{"by size", slices.Repeat([]json.RawMessage{big}, 1000), []int{appendBatchBytes / len(big), appendBatchBytes / len(big), 1000 - 2*(appendBatchBytes/len(big))}},
	} {
		var src sliceSource
		for _, e := range tt.evs {
			src = append(src, sourced{ev: e})
		}
		var got []int
		n, err := src.batches(t.Context(), func(b []sourced) error { got = append(got, len(b)); return nil })
		if err != nil || n != len(tt.evs) || !slices.Equal(got, tt.want) {
			t.Errorf("%s: batches of %v, %d sent, %v; want %v", tt.name, got, n, err, tt.want)
		}
	}
}

// FuzzEventReader checks that reading events never panics and returns only
// events the server would accept.
func FuzzEventReader(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-29T08:00:00Z","actor":{"id":"a"},"action":"x"}` + "\n"))
	f.Add([]byte("[\n" + `{"time":"2026-11-29T08:00:00Z","actor":{"id":"a"},"action":"x"},` + "\n 1]"))
	f.Add([]byte(`{"a":` + "\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := readEvents(newEventReader(bytes.NewReader(b), "in", true))
		if err != nil {
			return
		}
		for _, e := range evs {
			if _, err := event.Parse(e.ev); err != nil {
				t.Errorf("readEvents returned %s (%s), which Parse refuses: %v", e.ev, e.where, err)
			}
		}
	})
}
