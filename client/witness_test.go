package client

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/internal/witness/cosig"
)

// TestWitnessPolicy checks the quorum of cosignatures on a checkpoint, and
// that cosignature lines do not disturb the log's own signature check.
func TestWitnessPolicy(t *testing.T) {
	lskey, lvkey, _ := note.GenerateKey(rand.Reader, "example.com/log")
	logSigner, _ := note.NewSigner(lskey)
	logVerifier, _ := note.NewVerifier(lvkey)
	var signers []*cosig.Signer
	var vkeys []string
	for _, name := range []string{"w1.example/w", "w2.example/w", "w3.example/w"} {
		skey, vkey, err := cosig.GenerateKey(rand.Reader, name)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := cosig.NewSigner(skey)
		signers = append(signers, s)
		vkeys = append(vkeys, vkey)
	}
	text := "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
	// Signed by the log and by witnesses 1 and 2.
	msg, err := note.Sign(&note.Note{Text: text}, logSigner, signers[0], signers[1])
	if err != nil {
		t.Fatal(err)
	}
	cp, err := openCheckpoint(msg, logVerifier)
	if err != nil {
		t.Fatalf("openCheckpoint of a cosigned checkpoint: %v", err)
	}
	for _, tt := range []struct {
		keys   []string
		quorum int
		want   int // cosignatures recorded; -1: ErrWitnessQuorum
	}{
		{vkeys[:2], 0, 2},
		{vkeys, 2, 2},
		{vkeys, 0, -1}, // all three by default
		{vkeys[2:], 1, -1},
		{vkeys[1:], 1, 1},
	} {
		p, err := newWitnessPolicy(tt.keys, tt.quorum)
		if err != nil {
			t.Fatal(err)
		}
		c := cp
		err = p.check(&c)
		switch {
		case tt.want < 0 && !errors.Is(err, ErrWitnessQuorum):
			t.Errorf("%d keys, quorum %d: check = %v, want ErrWitnessQuorum", len(tt.keys), tt.quorum, err)
		case tt.want >= 0 && (err != nil || len(c.Cosignatures) != tt.want):
			t.Errorf("%d keys, quorum %d: check = %v with %d cosignatures, want %d", len(tt.keys), tt.quorum, err, len(c.Cosignatures), tt.want)
		}
	}
	// An altered cosignature is a verification failure, not a quorum miss.
	lines := strings.Split(string(msg), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "— w1.example/w ") {
			lines[i] = l[:len(l)-6] + "AAAAA="
		}
	}
	bad := Checkpoint{Size: 5, Note: []byte(strings.Join(lines, "\n"))}
	p, _ := newWitnessPolicy(vkeys[:1], 1)
	if err := p.check(&bad); !errors.Is(err, ErrVerification) {
		t.Errorf("altered cosignature: check = %v, want ErrVerification", err)
	}
	if _, err := newWitnessPolicy(vkeys, 4); err == nil {
		t.Error("quorum 4 of 3 keys: no error")
	}
	if _, err := newWitnessPolicy([]string{lvkey}, 1); err == nil {
		t.Error("a log key as a witness key: no error")
	}
}
