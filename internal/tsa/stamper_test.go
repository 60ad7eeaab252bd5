package tsa_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailaudit/trail/internal/ledger"
	fsstore "github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tsa"
	"github.com/trailaudit/trail/internal/tsa/tsatest"
	"github.com/trailaudit/trail/internal/verify"
)

// metric returns the value of a counter or gauge in reg, summed over labels
// matching label=value (or all, if label is empty).
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				match = match || lp.GetName() == label && lp.GetValue() == value
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStamperLedger runs a real ledger whose checkpoints a Stamper sends to
// openssl ts, through an outage of the TSA, and checks that every
// checkpoint ends up with a time-stamp that trail verify and openssl accept.
func TestStamperLedger(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	st, err := tsa.NewStamper(tsa.StamperConfig{
		Client:     &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client},
		Dir:        filepath.Join(dir, tsa.Dir),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Register(reg); err != nil {
		t.Fatal(err)
	}
	st.Start()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := fsstore.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), ledger.Options{
		Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1,
		OnCheckpoint: func(cp *ledger.Checkpoint) { st.Add(cp.Size, cp.Note) },
	})
	if err != nil {
		t.Fatal(err)
	}
	appendAndSign := func(i int) *ledger.Checkpoint {
		t.Helper()
		if _, err := l.Append(t.Context(), fmt.Appendf(nil, `{"i":%d}`, i)); err != nil {
			t.Fatal(err)
		}
		cp, err := l.Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	tokenFile := func(size int64) string { return filepath.Join(dir, tsa.Dir, tsa.TokenFile(size)) }
	exists := func(size int64) func() bool {
		return func() bool { _, err := os.Stat(tokenFile(size)); return err == nil }
	}
	for i := range 3 {
		cp := appendAndSign(i)
		waitFor(t, fmt.Sprintf("the time-stamp of size %d", cp.Size), exists(cp.Size))
	}

	// The TSA goes down: appends and checkpoints go on, the stamper retries.
	a.Down.Store(true)
	var during []*ledger.Checkpoint
	for i := 3; i < 6; i++ {
		during = append(during, appendAndSign(i))
	}
	waitFor(t, "a failed request to be counted", func() bool {
		return metric(t, reg, "trail_timestamp_requests_total", "result", "error") >= 2
	})
	if exists(during[0].Size)() {
		t.Fatalf("a time-stamp for size %d while the TSA was down", during[0].Size)
	}
	a.Down.Store(false)
	for _, cp := range during {
		waitFor(t, fmt.Sprintf("the time-stamp of size %d after the outage", cp.Size), exists(cp.Size))
	}
	last := appendAndSign(6)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st.Close(ctx) // stamps what is queued
	if !exists(last.Size)() {
		t.Fatalf("no time-stamp for the last checkpoint (size %d) after Close", last.Size)
	}
	if got := metric(t, reg, "trail_timestamp_last_size", "", ""); got != float64(last.Size) {
		t.Errorf("trail_timestamp_last_size = %v, want %d", got, last.Size)
	}

	// Every checkpoint is stamped, and trail verify checks them all.
	store2, err := fsstore.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := store2.Checkpoints(t.Context())
	store2.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verify.Dir(t.Context(), dir, verify.Options{TSACAFile: a.CAFile})
	if err != nil {
		t.Fatalf("verify.Dir = %v", err)
	}
	if rep.Time.Stamped != int64(len(notes)) || rep.Time.Stamped != rep.Checkpoints || !rep.Time.ChainChecked || rep.Time.LastSize != last.Size {
		t.Errorf("verify.Dir Time = %+v, want %d checkpoints stamped up to size %d, chain checked", rep.Time, len(notes), last.Size)
	}
	if len(rep.Warnings) > 0 {
		t.Errorf("verify.Dir warnings: %q", rep.Warnings)
	}
	// An auditor without trail checks the same files with openssl.
	noteFile := filepath.Join(t.TempDir(), "note")
	os.WriteFile(noteFile, last.Note, 0o644)
	if err := a.Verify(t, tokenFile(last.Size), noteFile); err != nil {
		t.Errorf("openssl ts -verify = %v", err)
	}

	// A stored time-stamp is never replaced, nor asked for again.
	before, _ := os.ReadFile(tokenFile(last.Size))
	n := a.Requests.Load()
	st2, err := tsa.NewStamper(tsa.StamperConfig{Client: &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client}, Dir: filepath.Join(dir, tsa.Dir)})
	if err != nil {
		t.Fatal(err)
	}
	st2.Start()
	st2.Add(last.Size, last.Note)
	st2.Close(ctx)
	after, _ := os.ReadFile(tokenFile(last.Size))
	if !bytes.Equal(before, after) || a.Requests.Load() != n {
		t.Errorf("re-adding a stamped checkpoint: file changed %v, requests %d -> %d; want neither", !bytes.Equal(before, after), n, a.Requests.Load())
	}
}

// TestStamperBounded checks that a TSA that stays down costs a bounded
// queue and a bounded Close, and that the drops are counted.
func TestStamperBounded(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	a.Down.Store(true)
	reg := prometheus.NewRegistry()
	st, err := tsa.NewStamper(tsa.StamperConfig{
		Client:     &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client},
		Dir:        t.TempDir(),
		MinBackoff: time.Hour, // the first failure parks it
		QueueSize:  2,
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Register(reg)
	st.Start()
	for i := range 5 {
		st.Add(int64(i+1), fmt.Appendf(nil, "note %d", i))
	}
	if got := metric(t, reg, "trail_timestamp_dropped_total", "", ""); got != 3 {
		t.Errorf("trail_timestamp_dropped_total = %v, want 3", got)
	}
	if got := metric(t, reg, "trail_timestamp_queue_length", "", ""); got != 2 {
		t.Errorf("trail_timestamp_queue_length = %v, want 2", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	st.Close(ctx)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Close took %v with the TSA down; want it bounded by its context", d)
	}
}

// TestStamperEvery checks that with Every set only the newest of the
// checkpoints queued meanwhile is stamped, and that Close does not wait
// out the interval.
func TestStamperEvery(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	st, err := tsa.NewStamper(tsa.StamperConfig{
		Client: &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client},
		Dir:    dir,
		Every:  time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Register(reg)
	st.Start()
	exists := func(size int64) bool { _, err := os.Stat(filepath.Join(dir, tsa.TokenFile(size))); return err == nil }
	st.Add(1, []byte("note 1"))
	waitFor(t, "the first time-stamp", func() bool { return exists(1) })
	for i := int64(2); i <= 4; i++ {
		st.Add(i, fmt.Appendf(nil, "note %d", i))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st.Close(ctx)
	if !exists(4) || exists(2) || exists(3) {
		t.Errorf("stamped 2: %v, 3: %v, 4: %v; want only 4 after 1", exists(2), exists(3), exists(4))
	}
	if got := metric(t, reg, "trail_timestamp_skipped_total", "", ""); got != 2 {
		t.Errorf("trail_timestamp_skipped_total = %v, want 2", got)
	}
	if n := a.Requests.Load(); n != 2 {
		t.Errorf("%d requests to the TSA, want 2", n)
	}
}
