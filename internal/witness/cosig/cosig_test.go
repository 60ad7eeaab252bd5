package cosig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

const text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

// TestFormat checks the key ID and signed message against the words of
// c2sp.org/tlog-cosignature, computed independently here.
func TestFormat(t *testing.T) {
	skey, vkey, err := GenerateKey(rand.Reader, "witness.example/w1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return time.Unix(1679315147, 0) }
	if s.VerifierKey() != vkey {
		t.Errorf("VerifierKey() = %s, want %s", s.VerifierKey(), vkey)
	}
	parts := strings.SplitN(vkey, "+", 3)
	raw, _ := base64.StdEncoding.DecodeString(parts[2])
	if raw[0] != 0x04 || len(raw) != 33 {
		t.Fatalf("verifier key material %x, want 0x04 and 32 bytes", raw)
	}
	h := sha256.Sum256(append([]byte("witness.example/w1\n\x04"), raw[1:]...))
	if got, want := parts[1], fmt.Sprintf("%08x", h[:4]); got != want || binary.BigEndian.Uint32(h[:4]) != s.KeyHash() {
		t.Errorf("key ID %s, want SHA-256(name || \\n || 0x04 || key)[:4] = %s", got, want)
	}
	signed, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(strings.SplitN(string(signed), "\n\n", 2)[1], "\n")
	sig, _ := base64.StdEncoding.DecodeString(strings.Fields(line)[2])
	if len(sig) != 4+8+64 || binary.BigEndian.Uint64(sig[4:]) != 1679315147 {
		t.Fatalf("signature %x: want key ID, timestamp 1679315147, 64 bytes", sig)
	}
	msg := "cosignature/v1\ntime 1679315147\n" + text
	if !ed25519.Verify(ed25519.PublicKey(raw[1:]), []byte(msg), sig[12:]) {
		t.Error("the Ed25519 signature is not over the cosignature/v1 message")
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Verify(signed, []*Verifier{v})
	if err != nil || len(cs) != 1 || !cs[0].Time.Equal(time.Unix(1679315147, 0)) || cs[0].Line != line {
		t.Errorf("Verify = %+v, %v", cs, err)
	}
	// Altered text: the cosignature no longer verifies.
	bad := strings.Replace(string(signed), "20852163", "20852164", 1)
	if _, err := Verify([]byte(bad), []*Verifier{v}); err == nil {
		t.Error("Verify of an altered note: no error")
	}
	// A log key (type 0x01) is not a witness key.
	_, logVkey, _ := note.GenerateKey(rand.Reader, "example.com/log")
	if _, err := NewVerifier(logVkey); err == nil || !strings.Contains(err.Error(), "type 0x01") {
		t.Errorf("NewVerifier(log key) = %v, want a type error", err)
	}
	// No cosignature by v: none, no error.
	if cs, err := Verify([]byte(text+"\n— other AAAAAAAAAAAA\n"), []*Verifier{v}); err != nil || len(cs) != 0 {
		t.Errorf("Verify of a note without v's signature = %v, %v", cs, err)
	}
}
