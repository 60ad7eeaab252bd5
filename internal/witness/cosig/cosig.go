// Package cosig implements C2SP tlog-cosignature/v1 with Ed25519 keys
// (https://c2sp.org/tlog-cosignature): timestamped cosignatures of
// checkpoints, as note.Signer and note.Verifier, so that golang.org/x/mod's
// note.Sign and note.Open add and check them like any note signature.
//
// The key ID is SHA-256(name || "\n" || 0x04 || public key)[:4]; the
// signature is an 8-byte big-endian POSIX timestamp followed by an Ed25519
// signature of
//
//	cosignature/v1
//	time <timestamp>
//	<the checkpoint's note body>
//
// Keys are written like note's: the verifier key
// "<name>+<key ID hex>+<base64(0x04 || public key)>" and the signing key
// "PRIVATE+KEY+<name>+<key ID hex>+<base64(0x04 || seed)>".
package cosig

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Alg is the signature type byte of Ed25519 cosignature/v1 keys.
const Alg = 0x04

// SignatureSize is the size of a cosignature after the key ID: a timestamp
// and an Ed25519 signature.
const SignatureSize = 8 + ed25519.SignatureSize

// KeyID returns the key ID of an Ed25519 cosigner key.
func KeyID(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', Alg})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// Message returns the message a cosignature of the note body text, made at
// POSIX time t, signs.
func Message(text []byte, t uint64) []byte {
	msg := fmt.Appendf(nil, "cosignature/v1\ntime %d\n", t)
	return append(msg, text...)
}

func validName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

// GenerateKey makes a new cosigner key named name and returns it encoded.
func GenerateKey(rand io.Reader, name string) (skey, vkey string, err error) {
	if !validName(name) {
		return "", "", fmt.Errorf("bad cosigner name %q: it must be non-empty, without spaces or '+'", name)
	}
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return "", "", err
	}
	id := KeyID(name, pub)
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, id, base64.StdEncoding.EncodeToString(append([]byte{Alg}, priv.Seed()...)))
	vkey = fmt.Sprintf("%s+%08x+%s", name, id, base64.StdEncoding.EncodeToString(append([]byte{Alg}, pub...)))
	return skey, vkey, nil
}

// Signer makes cosignatures. It is a note.Signer: note.Sign with it adds a
// cosignature line.
type Signer struct {
	name string
	id   uint32
	priv ed25519.PrivateKey
	// Now is the clock of the timestamps. Default time.Now.
	Now func() time.Time
}

var _ note.Signer = (*Signer)(nil)

// NewSigner decodes a signing key made by GenerateKey.
func NewSigner(skey string) (*Signer, error) {
	bad := errors.New("malformed cosigner signing key")
	rest, ok := strings.CutPrefix(strings.TrimSpace(skey), "PRIVATE+KEY+")
	if !ok {
		return nil, bad
	}
	name, rest, _ := strings.Cut(rest, "+")
	id16, key64, _ := strings.Cut(rest, "+")
	id, err1 := strconv.ParseUint(id16, 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(key64)
	if len(id16) != 8 || err1 != nil || err2 != nil || !validName(name) || len(key) != 1+ed25519.SeedSize {
		return nil, bad
	}
	if key[0] != Alg {
		return nil, fmt.Errorf("cosigner signing key of type %#02x, want %#02x (Ed25519 cosignature/v1)", key[0], Alg)
	}
	priv := ed25519.NewKeyFromSeed(key[1:])
	if KeyID(name, priv.Public().(ed25519.PublicKey)) != uint32(id) {
		return nil, errors.New("cosigner signing key: key ID does not match the key")
	}
	return &Signer{name: name, id: uint32(id), priv: priv}, nil
}

// Name returns the cosigner's name.
func (s *Signer) Name() string { return s.name }

// KeyHash returns the key ID.
func (s *Signer) KeyHash() uint32 { return s.id }

// Sign returns a timestamped cosignature of the note body msg.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := uint64(max(now().Unix(), 0))
	sig := binary.BigEndian.AppendUint64(make([]byte, 0, SignatureSize), t)
	return append(sig, ed25519.Sign(s.priv, Message(msg, t))...), nil
}

// VerifierKey returns the encoded verifier key.
func (s *Signer) VerifierKey() string {
	pub := s.priv.Public().(ed25519.PublicKey)
	return fmt.Sprintf("%s+%08x+%s", s.name, s.id, base64.StdEncoding.EncodeToString(append([]byte{Alg}, pub...)))
}

// Verifier checks cosignatures. It is a note.Verifier: note.Open with it
// checks a cosignature line and ignores the rest.
type Verifier struct {
	name string
	id   uint32
	pub  ed25519.PublicKey
	vkey string
}

var _ note.Verifier = (*Verifier)(nil)

// NewVerifier decodes a verifier key: "<name>+<key ID>+<base64(0x04 ||
// public key)>".
func NewVerifier(vkey string) (*Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	name, rest, _ := strings.Cut(vkey, "+")
	id16, key64, _ := strings.Cut(rest, "+")
	id, err1 := strconv.ParseUint(id16, 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(key64)
	if len(id16) != 8 || err1 != nil || err2 != nil || !validName(name) || len(key) == 0 {
		return nil, fmt.Errorf("malformed witness key %q: want NAME+KEYID+BASE64KEY", vkey)
	}
	if key[0] != Alg {
		return nil, fmt.Errorf("witness key %s is of type %#02x, want %#02x (an Ed25519 cosignature/v1 key; a log's key is type 0x01)", name, key[0], Alg)
	}
	if len(key) != 1+ed25519.PublicKeySize {
		return nil, fmt.Errorf("malformed witness key %s: wrong key length", name)
	}
	pub := ed25519.PublicKey(key[1:])
	if KeyID(name, pub) != uint32(id) {
		return nil, fmt.Errorf("malformed witness key %s: key ID does not match the key", name)
	}
	return &Verifier{name: name, id: uint32(id), pub: pub, vkey: vkey}, nil
}

// Name returns the cosigner's name.
func (v *Verifier) Name() string { return v.name }

// KeyHash returns the key ID.
func (v *Verifier) KeyHash() uint32 { return v.id }

// String returns the encoded verifier key.
func (v *Verifier) String() string { return v.vkey }

// Verify reports whether sig is a cosignature of the note body msg.
func (v *Verifier) Verify(msg, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > 1<<63-1 {
		return false
	}
	return ed25519.Verify(v.pub, Message(msg, t), sig[8:])
}

// Cosignature is one verified cosignature of a note.
type Cosignature struct {
	// Name is the cosigner's name.
	Name string
	// Time is when the cosigner signed, to the second.
	Time time.Time
	// Line is the signature line, without its final newline.
	Line string
}

// Verify checks the cosignatures on the signed note msg against the
// verifiers and returns those that verify, one per verifier at most, in the
// order of the note. Signatures by other keys are ignored. A line that
// claims to be by one of the verifiers but does not verify is an error:
// the note was altered.
func Verify(msg []byte, verifiers []*Verifier) ([]Cosignature, error) {
	if len(verifiers) == 0 {
		return nil, nil
	}
	list := make([]note.Verifier, len(verifiers))
	for i, v := range verifiers {
		list[i] = v
	}
	n, err := note.Open(msg, note.VerifierList(list...))
	if _, ok := errors.AsType[*note.UnverifiedNoteError](err); ok {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Cosignature, 0, len(n.Sigs))
	for _, s := range n.Sigs {
		sig, _ := base64.StdEncoding.DecodeString(s.Base64) // note.Open decoded it
		c := Cosignature{Name: s.Name, Line: "— " + s.Name + " " + s.Base64}
		if len(sig) == 4+SignatureSize {
			c.Time = time.Unix(int64(binary.BigEndian.Uint64(sig[4:])), 0).UTC()
		}
		out = append(out, c)
	}
	return out, nil
}
