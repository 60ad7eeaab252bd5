package tsa

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"
)

// TestCheckTSACert checks RFC 3161 section 2.3 on certificates openssl
// would refuse to sign with: the extended key usage must be
// id-kp-timeStamping alone and critical.
func TestCheckTSACert(t *testing.T) {
	now := time.Now()
	tsEKU, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidKPTimeStamp})
	twoEKU, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidKPTimeStamp, {1, 3, 6, 1, 5, 5, 7, 3, 3}})
	for _, tc := range []struct {
		name   string
		ext    []pkix.Extension
		usage  x509.KeyUsage
		at     time.Time
		wantOK bool
		want   string
	}{
		{"critical timeStamping", []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: tsEKU}}, x509.KeyUsageDigitalSignature, now, true, ""},
		{"not critical", []pkix.Extension{{Id: oidExtKeyUsage, Value: tsEKU}}, x509.KeyUsageDigitalSignature, now, false, "marked critical"},
		{"not alone", []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: twoEKU}}, x509.KeyUsageDigitalSignature, now, false, "only extended key usage"},
		{"no EKU", nil, x509.KeyUsageDigitalSignature, now, false, "only extended key usage"},
		{"may not sign", []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: tsEKU}}, x509.KeyUsageCertSign, now, false, "digitalSignature"},
		{"expired at the stamped time", []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: tsEKU}}, x509.KeyUsageDigitalSignature, now.Add(48 * time.Hour), false, "not valid at the stamped time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tsa"},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
				KeyUsage: tc.usage, ExtraExtensions: tc.ext,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				t.Fatal(err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			err = checkTSACert(c, tc.at)
			if tc.wantOK != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkTSACert = %v, want ok %v or an error containing %q", err, tc.wantOK, tc.want)
			}
		})
	}
}
