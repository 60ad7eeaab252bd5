package tsa_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/internal/tsa"
	"github.com/trailaudit/trail/internal/tsa/tsatest"
)

var note = []byte("example.com/trail/0123abcd\n42\nq1c3H6bQRSTsUxV9Ni5Jz2kcjj2b6OqqNGhrbMoV4ig=\n\n— example.com/trail/0123abcd AAAAAAAA\n")

// TestStampOpenSSL gets time-stamps from openssl ts, with either key type
// and either ESS attribute, verifies them, and has openssl verify what
// would be stored.
func TestStampOpenSSL(t *testing.T) {
	for _, opts := range []tsatest.Options{
		{},
		{Key: "rsa"},
		{ESSCertIDAlg: "sha1"},
	} {
		t.Run(opts.Key+"/"+opts.ESSCertIDAlg, func(t *testing.T) {
			a := tsatest.New(t, opts)
			c := &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client}
			before := time.Now().Add(-2 * time.Second)
			tok, der, err := c.Stamp(t.Context(), note)
			if err != nil {
				t.Fatalf("Stamp = %v", err)
			}
			if tok.GenTime.Before(before) || tok.GenTime.After(time.Now().Add(2*time.Second)) {
				t.Errorf("GenTime = %v, want about now", tok.GenTime)
			}
			if sum := sha256.Sum256(note); !bytes.Equal(tok.HashedMessage, sum[:]) {
				t.Errorf("HashedMessage = %x, want %x", tok.HashedMessage, sum)
			}
			if tok.Accuracy != time.Second {
				t.Errorf("Accuracy = %v, want 1s", tok.Accuracy)
			}
			if tok.Signer == nil || tok.Signer.Subject.CommonName != "trail test TSA" {
				t.Errorf("Signer = %v, want the test TSA's certificate", tok.Signer)
			}
			// What trail stores is what openssl accepts.
			dir := t.TempDir()
			resp, data := filepath.Join(dir, "42.tsr"), filepath.Join(dir, "note")
			os.WriteFile(resp, der, 0o644)
			os.WriteFile(data, note, 0o644)
			if err := a.Verify(t, resp, data); err != nil {
				t.Errorf("openssl ts -verify = %v", err)
			}
			// The stored response parses and verifies again, offline.
			tok2, err := tsa.ParseResponse(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok2.Verify(note, tsa.VerifyOptions{Roots: a.CA}); err != nil {
				t.Errorf("Verify of the stored response = %v", err)
			}
		})
	}
}

// TestVerifyRejects checks that each kind of wrong token is refused, with
// the error callers branch on.
func TestVerifyRejects(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	other := tsatest.New(t, tsatest.Options{})
	c := &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client}
	_, der, err := c.Stamp(t.Context(), note)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tsa.ParseResponse(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Verify(append(bytes.Clone(note), 'x'), tsa.VerifyOptions{}); !errors.Is(err, tsa.ErrImprint) {
		t.Errorf("Verify(other data) = %v, want ErrImprint", err)
	}
	if err := tok.Verify(note, tsa.VerifyOptions{Roots: other.CA}); !errors.Is(err, tsa.ErrUntrusted) {
		t.Errorf("Verify(another CA) = %v, want ErrUntrusted", err)
	}
	if err := tok.Verify(note, tsa.VerifyOptions{Nonce: new(big.Int).Add(tok.Nonce, big.NewInt(1))}); !errors.Is(err, tsa.ErrNonce) {
		t.Errorf("Verify(other nonce) = %v, want ErrNonce", err)
	}
	// A client that trusts another CA refuses the TSA's answer.
	if _, _, err := (&tsa.Client{URL: a.URL, Roots: other.CA, HTTPClient: a.Client}).Stamp(t.Context(), note); !errors.Is(err, tsa.ErrUntrusted) {
		t.Errorf("Stamp with another CA = %v, want ErrUntrusted", err)
	}

	// Altered bytes: the time, the serial number, the signature.
	genTime := []byte(tok.GenTime.Format("20060102150405Z"))
	i := bytes.Index(der, genTime)
	if i < 0 {
		t.Fatalf("GenTime %s not found in the response", genTime)
	}
	for _, tc := range []struct {
		name string
		off  int
		want string
	}{
		{"time", i + 3, "message-digest attribute"},
		{"signature", len(der) - 3, "signature does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(der)
			bad[tc.off] ^= 0x01
			tok, err := tsa.ParseResponse(bad)
			if err == nil {
				err = tok.Verify(note, tsa.VerifyOptions{Roots: a.CA})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify(altered %s) = %v, want an error about the %s", tc.name, err, tc.want)
			}
		})
	}
	// A response cut short or with bytes after it is refused at parsing.
	for _, bad := range [][]byte{der[:len(der)-1], append(bytes.Clone(der), 0)} {
		if _, err := tsa.ParseResponse(bad); err == nil {
			t.Errorf("ParseResponse(%d of %d bytes) = nil error", len(bad), len(der))
		}
	}
}

// TestStatusError asks openssl for a policy it does not offer: it answers
// rejection with unacceptedPolicy, which ParseResponse reports.
func TestStatusError(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	sum := sha256.Sum256(note)
	req, err := asn1.Marshal(struct {
		Version        int
		MessageImprint struct {
			HashAlgorithm pkix.AlgorithmIdentifier
			HashedMessage []byte
		}
		ReqPolicy asn1.ObjectIdentifier
	}{Version: 1, MessageImprint: struct {
		HashAlgorithm pkix.AlgorithmIdentifier
		HashedMessage []byte
	}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}}, sum[:]}, ReqPolicy: asn1.ObjectIdentifier{1, 2, 3, 4, 5}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.Client.Post(a.URL, tsa.QueryContentType, bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_, err = tsa.ParseResponse(body)
	var se *tsa.StatusError
	if !errors.As(err, &se) || se.Status != 2 || !strings.Contains(err.Error(), "unacceptedPolicy") {
		t.Fatalf("ParseResponse(rejection) = %v, want a StatusError rejection (2) naming unacceptedPolicy", err)
	}
	t.Log(err)
}

// TestClientErrors checks the messages for a TSA that cannot be used.
func TestClientErrors(t *testing.T) {
	a := tsatest.New(t, tsatest.Options{})
	for _, tc := range []struct {
		name string
		c    *tsa.Client
		want string
	}{
		{"http", &tsa.Client{URL: "http://127.0.0.1:1/", Roots: a.CA}, "https:// URL"},
		{"no roots", &tsa.Client{URL: a.URL}, "no TSA CA"},
		{"404", &tsa.Client{URL: strings.TrimSuffix(a.URL, "/tsa"), Roots: a.CA, HTTPClient: &http.Client{Transport: a.Client.Transport}}, "HTTP 404"},
		{"untrusted TLS", &tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: &http.Client{}}, "couldn't reach the TSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tc.c.Stamp(t.Context(), note)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Stamp = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	a.Down.Store(true)
	_, _, err := (&tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client}).Stamp(t.Context(), note)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Stamp(TSA down) = %v, want an error naming HTTP 503", err)
	}
}

func TestParseTokenFile(t *testing.T) {
	for name, want := range map[string]int64{"0.tsr": 0, "42.tsr": 42, "042.tsr": -1, ".tsr": -1, "42.tsq": -1, "-1.tsr": -1, "x.tsr": -1, ".tmp-123": -1} {
		got, ok := tsa.ParseTokenFile(name)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("ParseTokenFile(%q) = %d, want %d", name, got, want)
		}
		if ok && tsa.TokenFile(got) != name {
			t.Errorf("TokenFile(%d) = %q, want %q", got, tsa.TokenFile(got), name)
		}
	}
}
