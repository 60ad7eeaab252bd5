package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/internal/witness/cosig"
)

// cosign keeps a cosigned form of the data directory's newest checkpoint,
// by a new witness named name, as trail serve does, and returns the
// witness's key.
func cosign(t *testing.T, dir, logKey, name string) string {
	t.Helper()
	skey, vkey, err := cosig.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cosig.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(logKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "log", "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(b, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(n, s)
	if err != nil {
		t.Fatal(err)
	}
	// As trail serve keeps it; log/checkpoint stays as the ledger wrote it.
	if err := os.WriteFile(filepath.Join(dir, "state", "cosigned-checkpoint"), signed, 0o644); err != nil {
		t.Fatal(err)
	}
	return vkey
}

func TestWitnesses(t *testing.T) {
	dir, key := testLog(t, 300, 300, plainLeaf)
	w1 := cosign(t, dir, key, "witness1.example")
	_, other, _ := cosig.GenerateKey(rand.Reader, "witness2.example")
	ctx := context.Background()
	b, _ := export(t, Dir{Root: dir}, key, ExportOptions{From: 3, To: 5})
	r, err := MakeReceipt(ctx, Dir{Root: dir}, key, 4)
	if err != nil {
		t.Fatal(err)
	}

	// Without the witness's key its line is listed, not checked.
	rep, err := Verify(ctx, bytes.NewReader(b), key, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unverified) != 1 || !strings.HasPrefix(rep.Unverified[0], "witness1.example+") || len(rep.Cosigned) != 0 {
		t.Errorf("Verify without witness keys: unverified %q, cosigned %v; want witness1.example unverified", rep.Unverified, rep.Cosigned)
	}
	rr, err := VerifyReceipt(r.Proof, key, nil, Witnesses{})
	if err != nil || len(rr.Unverified) != 1 {
		t.Errorf("VerifyReceipt without witness keys = %v, unverified %q", err, rr.Unverified)
	}

	// With it, the cosignature is checked.
	rep, err = Verify(ctx, bytes.NewReader(b), key, VerifyOptions{Witnesses: Witnesses{Keys: []string{w1}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unverified) != 0 || len(rep.Cosigned) != 1 || rep.Cosigned[0].Name != "witness1.example" {
		t.Errorf("Verify with the witness key: unverified %q, cosigned %v", rep.Unverified, rep.Cosigned)
	}
	rr, err = VerifyReceipt(r.Proof, key, nil, Witnesses{Keys: []string{w1}})
	if err != nil || len(rr.Cosigned) != 1 {
		t.Errorf("VerifyReceipt with the witness key = %v, cosigned %v", err, rr.Cosigned)
	}

	// A quorum the checkpoint does not meet, and an altered cosignature.
	_, err = Verify(ctx, bytes.NewReader(b), key, VerifyOptions{Witnesses: Witnesses{Keys: []string{w1, other}}})
	var f *Failure
	if !errors.As(err, &f) || f.Where != CheckpointName || !strings.Contains(f.What, "1 valid cosignature(s) of the 2 required") {
		t.Errorf("Verify with two witnesses required = %v", err)
	}
	if _, err := VerifyReceipt(r.Proof, key, nil, Witnesses{Keys: []string{other}}); err == nil {
		t.Errorf("VerifyReceipt with another witness required succeeded")
	}
	i := bytes.Index(b, []byte("— witness1.example "))
	c := bytes.Clone(b)
	c[i+len("— witness1.example ")+20] ^= 1
	if _, err := Verify(ctx, bytes.NewReader(c), key, VerifyOptions{Witnesses: Witnesses{Keys: []string{w1}}}); !errors.As(err, &f) || f.Where != CheckpointName {
		t.Errorf("Verify with the cosignature altered = %v, want a failure of the checkpoint", err)
	}
}
