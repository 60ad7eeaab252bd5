package witness_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/witness"
	"github.com/trailaudit/trail/internal/witness/cosig"
	"github.com/trailaudit/trail/internal/witness/witnesstest"
)

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("gave up waiting for %s", what)
}

// published returns the size and cosigners of the sender's checkpoint.
func published(t *testing.T, s *witness.Sender, vs []*cosig.Verifier) (int64, int) {
	t.Helper()
	b := s.Checkpoint()
	if b == nil {
		return -1, 0
	}
	sigs, err := cosig.Verify(b, vs)
	if err != nil {
		t.Fatalf("published checkpoint: %v", err)
	}
	return checkpointText(t, b).Size, len(sigs)
}

func logKeys(t *testing.T, dir string) *ledger.Keys {
	t.Helper()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func verifiers(t *testing.T, ws ...*witnesstest.Witness) []*cosig.Verifier {
	var vs []*cosig.Verifier
	for _, w := range ws {
		v, err := cosig.NewVerifier(w.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestSenderQuorum runs a real log with two witnesses over mutual TLS and a
// quorum of two: a checkpoint is published only once both cosigned it;
// while one witness is down the log keeps appending and the published
// checkpoint stays where it was; when it is back, the newest is published.
func TestSenderQuorum(t *testing.T) {
	dir := t.TempDir()
	keys := logKeys(t, dir)
	w1, w2 := witnesstest.Start(t, keys.VerifierKey), witnesstest.Start(t, keys.VerifierKey)
	s, err := witness.NewSender(witness.SenderConfig{
		Witnesses:   []witness.Endpoint{w1.Endpoint(), w2.Endpoint()},
		Quorum:      2,
		LogVerifier: keys.Verifier,
		File:        filepath.Join(dir, "cosigned-checkpoint"),
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, s.Offer)
	s.Start(l)
	defer s.Close()
	vs := verifiers(t, w1, w2)

	l.grow(t, 10, "a")
	waitFor(t, "size 10 with 2 cosignatures", func() bool { n, k := published(t, s, vs); return n == 10 && k == 2 })
	// The cosigned checkpoint still parses as the log's.
	if _, err := l.ParseCheckpoint(s.Checkpoint()); err != nil {
		t.Errorf("ParseCheckpoint(published) = %v", err)
	}

	w2.Stop()
	l.grow(t, 10, "a")
	waitFor(t, "witness 1 to cosign size 20", func() bool { return bytes.Contains(w1.Latest(l.Origin()), []byte("\n20\n")) })
	time.Sleep(100 * time.Millisecond) // a few retries of witness 2
	if n, k := published(t, s, vs); n != 10 || k != 2 {
		t.Errorf("with one witness of two down: published size %d with %d cosignatures, want 10 with 2", n, k)
	}
	if got := l.Size(); got != 20 {
		t.Errorf("log size %d, want 20: appends must not wait for witnesses", got)
	}

	w2.Restart(t)
	l.grow(t, 5, "a")
	waitFor(t, "size 25 with 2 cosignatures", func() bool { n, k := published(t, s, vs); return n == 25 && k == 2 })

	// A new sender (a restarted server) serves the stored checkpoint at
	// once. (Close waits for the file write that follows a publication.)
	s.Close()
	s2, err := witness.NewSender(witness.SenderConfig{
		Witnesses: []witness.Endpoint{w1.Endpoint(), w2.Endpoint()}, Quorum: 2,
		LogVerifier: l.keys.Verifier, File: filepath.Join(dir, "cosigned-checkpoint"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, k := published(t, s2, vs); n != 25 || k != 2 {
		t.Errorf("restarted sender: published size %d with %d cosignatures, want 25 with 2", n, k)
	}
}

// TestSenderNoQuorum: without a quorum each checkpoint is published at once
// and gains the cosignature when it comes; a witness that is down from the
// start never holds anything up.
func TestSenderNoQuorum(t *testing.T) {
	dir := t.TempDir()
	keys := logKeys(t, dir)
	w1, w2 := witnesstest.Start(t, keys.VerifierKey), witnesstest.Start(t, keys.VerifierKey)
	w2.Stop()
	s, err := witness.NewSender(witness.SenderConfig{
		Witnesses:  []witness.Endpoint{w1.Endpoint(), w2.Endpoint()},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	vs := verifiers(t, w1, w2)
	l := openLog(t, dir, s.Offer)
	l.grow(t, 3, "a")
	if n, k := published(t, s, vs); n != 3 || k != 0 {
		t.Errorf("before Start: published size %d with %d cosignatures, want 3 with 0", n, k)
	}
	s.Start(l)
	defer s.Close()
	waitFor(t, "size 3 with 1 cosignature", func() bool { n, k := published(t, s, vs); return n == 3 && k == 1 })
	l.grow(t, 3, "a")
	waitFor(t, "size 6 with 1 cosignature", func() bool { n, k := published(t, s, vs); return n == 6 && k == 1 })
}
