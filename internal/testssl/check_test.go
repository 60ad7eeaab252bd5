package testssl_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/trailaudit/trail/internal/testssl"
)

// goodFindings is a scan that check accepts: the shape of a real one, cut
// down.
func goodFindings() []testssl.Finding {
	f := []testssl.Finding{
		{ID: "SSLv2", Severity: testssl.OK, Finding: "not offered"},
		{ID: "SSLv3", Severity: testssl.OK, Finding: "not offered"},
		{ID: "TLS1", Severity: testssl.Info, Finding: "not offered"},
		{ID: "TLS1_1", Severity: testssl.Info, Finding: "not offered"},
		{ID: "TLS1_2", Severity: testssl.OK, Finding: "offered"},
		{ID: "TLS1_3", Severity: testssl.OK, Finding: "offered with final"},
		{ID: "cipher_x1301", Severity: testssl.Info, Finding: "x1301   TLS_AES_128_GCM_SHA256            ECDH 253   AESGCM      128      TLS_AES_128_GCM_SHA256"},
		{ID: "cipher_xcca9", Severity: testssl.Info, Finding: "xcca9   ECDHE-ECDSA-CHACHA20-POLY1305     ECDH 253   ChaCha20    256      TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
		{ID: "cipher-tls1_2_xc030", Severity: testssl.Info, Finding: "TLS 1.2   xc030   ECDHE-RSA-AES256-GCM-SHA384       ECDH 253   AESGCM      256      TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
		{ID: "HSTS_time", Severity: testssl.OK, Finding: "730 days (=63072000 seconds) > 15552000 seconds"},
		{ID: "cert_revocation", Severity: testssl.High, Finding: "Neither CRL nor OCSP URI provided"},
		{ID: "DNS_CAArecord", Severity: testssl.Low, Finding: "--"},
		{ID: "TLS_session_ticket", Severity: testssl.Info, Finding: "no -- no lifetime advertised"},
	}
	for id := range pending {
		f = append(f, testssl.Finding{ID: id, Severity: testssl.Medium, Finding: "--"})
	}
	for _, id := range vulnerabilities {
		f = append(f, testssl.Finding{ID: id, Severity: testssl.OK, Finding: "not vulnerable"})
	}
	return f
}

func TestCheck(t *testing.T) {
	offered := []string{"TLS1_2", "TLS1_3"}
	if got := check(goodFindings(), offered); len(got) > 0 {
		t.Fatalf("check(good findings) = %q, want none", got)
	}
	set := func(id string, sev testssl.Severity, finding string) func([]testssl.Finding) []testssl.Finding {
		return func(fs []testssl.Finding) []testssl.Finding {
			for i := range fs {
				if fs[i].ID == id {
					fs[i].Severity, fs[i].Finding = sev, finding
					return fs
				}
			}
			return append(fs, testssl.Finding{ID: id, Severity: sev, Finding: finding})
		}
	}
	drop := func(id string) func([]testssl.Finding) []testssl.Finding {
		return func(fs []testssl.Finding) []testssl.Finding {
			return slices.DeleteFunc(fs, func(f testssl.Finding) bool { return f.ID == id })
		}
	}
	tests := []struct {
		name string
		edit func([]testssl.Finding) []testssl.Finding
		want string // in the one problem reported; "" for none
	}{
		{"tls1 offered", set("TLS1", testssl.Low, "offered (deprecated)"), "TLS1: "},
		{"tls1.3 missing", set("TLS1_3", testssl.Medium, "not offered"), "want offered"},
		{"no protocol finding", drop("SSLv3"), "no finding for protocol SSLv3"},
		{"rsa key exchange", set("cipher_x9c", testssl.Info, "x9c     AES128-GCM-SHA256                 RSA        AESGCM      128      TLS_RSA_WITH_AES_128_GCM_SHA256"), "not a forward-secret AEAD"},
		{"cbc", set("cipher_xc013", testssl.Info, "xc013   ECDHE-RSA-AES128-SHA              ECDH 253   AES         128      TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"), "not a forward-secret AEAD"},
		{"no hsts", drop("HSTS_time"), "HSTS_time"},
		{"short hsts", set("HSTS_time", testssl.Medium, "1 day (=86400 seconds) < 15552000 seconds"), "HSTS_time"},
		{"vulnerable", set("heartbleed", testssl.Critical, "VULNERABLE"), "heartbleed: CRITICAL"},
		{"vulnerable at INFO", set("BREACH", testssl.Info, "potentially VULNERABLE, gzip HTTP compression detected"), "BREACH"},
		{"check did not run", drop("LUCKY13"), "LUCKY13 did not run"},
		{"unlisted low", set("TLS_session_ticket", testssl.Low, "valid for 604800 seconds (>daily)"), "TLS_session_ticket: LOW"},
		{"scan problem", set("scanProblem", testssl.Fatal, "connect problem"), "scanProblem: FATAL"},
		{"check failed", set("cert_chain_of_trust", testssl.Warn, "test failed"), "cert_chain_of_trust: WARN"},
		{"allowed for a second certificate", set("cert_revocation <cert#2>", testssl.High, "Neither CRL nor OCSP URI provided"), ""},
	}
	for id := range pending {
		tests = append(tests, struct {
			name string
			edit func([]testssl.Finding) []testssl.Finding
			want string
		}{"pending fixed: " + id, drop(id), id + " is no longer reported"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(tt.edit(goodFindings()), offered)
			if tt.want == "" {
				if len(got) > 0 {
					t.Errorf("check = %q, want none", got)
				}
				return
			}
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("check = %q, want a problem containing %q", got, tt.want)
			}
		})
	}
}

func TestParseFindings(t *testing.T) {
	const in = `[
  {"id" : "TLS1_3", "ip" : "127.0.0.1/127.0.0.1", "port" : "8443", "severity" : "OK", "finding" : "offered with final"},
  {"id" : "heartbleed", "ip" : "127.0.0.1/127.0.0.1", "port" : "8443", "severity" : "OK", "cve" : "CVE-2014-0160", "cwe" : "CWE-119", "finding" : "not vulnerable, no heartbeat extension", "future" : 1}
]`
	got, err := testssl.ParseFindings([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []testssl.Finding{
		{ID: "TLS1_3", IP: "127.0.0.1/127.0.0.1", Port: "8443", Severity: testssl.OK, Finding: "offered with final"},
		{ID: "heartbleed", IP: "127.0.0.1/127.0.0.1", Port: "8443", Severity: testssl.OK, CVE: "CVE-2014-0160", CWE: "CWE-119", Finding: "not vulnerable, no heartbeat extension"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseFindings = %+v, want %+v", got, want)
	}
	if _, err := testssl.ParseFindings([]byte(`{"id":"x"}`)); err == nil {
		t.Error("ParseFindings(an object) succeeded, want an error")
	}
}
