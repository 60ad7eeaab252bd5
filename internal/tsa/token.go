package tsa

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

var (
	// ErrImprint is wrapped by Token.Verify when the token stamps other
	// bytes than those given: it belongs to something else.
	ErrImprint = errors.New("time-stamp is for other data")
	// ErrNonce is wrapped by Token.Verify when the token does not echo the
	// request's nonce: an old or foreign answer.
	ErrNonce = errors.New("time-stamp nonce differs from the request's")
	// ErrUntrusted is wrapped by Token.Verify when the signer certificate
	// does not chain to the given roots.
	ErrUntrusted = errors.New("time-stamp signer is not trusted")
)

// StatusError is a TSA's refusal: a PKIStatus other than granted.
type StatusError struct {
	Status   int
	Text     []string
	FailInfo asn1.BitString
}

var statusNames = []string{"granted", "grantedWithMods", "rejection", "waiting", "revocationWarning", "revocationNotification"}

// failInfoNames are the PKIFailureInfo bits RFC 3161 defines, by position.
var failInfoNames = map[int]string{0: "badAlg", 2: "badRequest", 5: "badDataFormat", 14: "timeNotAvailable", 15: "unacceptedPolicy", 16: "unacceptedExtension", 17: "addInfoNotAvailable", 25: "systemFailure"}

func (e *StatusError) Error() string {
	name := fmt.Sprintf("status %d", e.Status)
	if e.Status >= 0 && e.Status < len(statusNames) {
		name = fmt.Sprintf("%s (%d)", statusNames[e.Status], e.Status)
	}
	msg := "time-stamp refused by the TSA: " + name
	if len(e.Text) > 0 {
		msg += ": " + strings.Join(e.Text, "; ")
	}
	var fails []string
	for i := range e.FailInfo.BitLength {
		if e.FailInfo.At(i) == 1 {
			if n, ok := failInfoNames[i]; ok {
				fails = append(fails, n)
			} else {
				fails = append(fails, fmt.Sprintf("bit %d", i))
			}
		}
	}
	if len(fails) > 0 {
		msg += " (failure: " + strings.Join(fails, ", ") + ")"
	}
	return msg
}

// DER structures of RFC 3161 and RFC 5652 (CMS), as far as they are read.
type (
	pkiStatusInfo struct {
		Status       int
		StatusString []asn1.RawValue `asn1:"optional"`
		FailInfo     asn1.BitString  `asn1:"optional"`
	}
	timeStampResp struct {
		Status pkiStatusInfo
		Token  asn1.RawValue `asn1:"optional"`
	}
	contentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	encapContentInfo struct {
		EContentType asn1.ObjectIdentifier
		EContent     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	signedData struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		EncapContentInfo encapContentInfo
		Certificates     asn1.RawValue `asn1:"optional,tag:0"`
		CRLs             asn1.RawValue `asn1:"optional,tag:1"`
		SignerInfos      []signerInfo  `asn1:"set"`
	}
	signerInfo struct {
		Version            int
		SID                asn1.RawValue
		DigestAlgorithm    pkix.AlgorithmIdentifier
		SignedAttrs        asn1.RawValue `asn1:"optional,tag:0"`
		SignatureAlgorithm pkix.AlgorithmIdentifier
		Signature          []byte
		UnsignedAttrs      asn1.RawValue `asn1:"optional,tag:1"`
	}
	issuerAndSerial struct {
		Issuer asn1.RawValue
		Serial *big.Int
	}
	attribute struct {
		Type   asn1.ObjectIdentifier
		Values asn1.RawValue
	}
	accuracy struct {
		Seconds int `asn1:"optional"`
		Millis  int `asn1:"optional,tag:0"`
		Micros  int `asn1:"optional,tag:1"`
	}
	tstInfo struct {
		Version        int
		Policy         asn1.ObjectIdentifier
		MessageImprint messageImprint
		SerialNumber   *big.Int
		GenTime        time.Time     `asn1:"generalized"`
		Accuracy       accuracy      `asn1:"optional"`
		Ordering       bool          `asn1:"optional,default:false"`
		Nonce          *big.Int      `asn1:"optional"`
		TSA            asn1.RawValue `asn1:"optional,tag:0"`
		Extensions     asn1.RawValue `asn1:"optional,tag:1"`
	}
	essCertID struct {
		CertHash     []byte
		IssuerSerial asn1.RawValue `asn1:"optional"`
	}
	signingCertificate struct {
		Certs    []essCertID
		Policies asn1.RawValue `asn1:"optional"`
	}
	essCertIDv2 struct {
		HashAlgorithm pkix.AlgorithmIdentifier `asn1:"optional"`
		CertHash      []byte
		IssuerSerial  asn1.RawValue `asn1:"optional"`
	}
	signingCertificateV2 struct {
		Certs    []essCertIDv2
		Policies asn1.RawValue `asn1:"optional"`
	}
)

// Token is a parsed RFC 3161 time-stamp token. Parsing checks its form
// only; Verify checks what it says.
type Token struct {
	// GenTime is when the TSA says it stamped the data.
	GenTime time.Time
	// Accuracy is the TSA's stated accuracy of GenTime; zero if unstated.
	Accuracy time.Duration
	// Policy is the TSA policy the token was issued under.
	Policy asn1.ObjectIdentifier
	// SerialNumber is the TSA's serial number of the token.
	SerialNumber *big.Int
	// Nonce is the request's nonce as echoed, or nil.
	Nonce *big.Int
	// HashAlgorithm and HashedMessage are the message imprint: what was
	// stamped.
	HashAlgorithm asn1.ObjectIdentifier
	HashedMessage []byte
	// Certificates are those the token carries; Signer is the one its
	// signer information names, or nil if the token does not carry it.
	Certificates []*x509.Certificate
	Signer       *x509.Certificate

	eContent    []byte // the DER TSTInfo, as signed
	signedAttrs []byte // the signed attributes, re-tagged as a SET for the signature
	digestAlg   asn1.ObjectIdentifier
	sigAlg      asn1.ObjectIdentifier
	signature   []byte
	contentType asn1.ObjectIdentifier // the content-type attribute
	msgDigest   []byte                // the message-digest attribute
	essHashAlg  asn1.ObjectIdentifier // hash of the signing-certificate attribute's first ESSCertID
	essHash     []byte
}

// ParseResponse parses a DER TimeStampResp. A response whose status is
// neither granted nor grantedWithMods is a *StatusError. It checks the form
// of the token, not its signature or content: call Token.Verify.
func ParseResponse(der []byte) (*Token, error) {
	var resp timeStampResp
	if err := unmarshalAll(der, &resp, "time-stamp response"); err != nil {
		return nil, err
	}
	if s := resp.Status.Status; s != 0 && s != 1 {
		e := &StatusError{Status: s, FailInfo: resp.Status.FailInfo}
		for _, rv := range resp.Status.StatusString {
			var text string
			if _, err := asn1.UnmarshalWithParams(rv.FullBytes, &text, "utf8"); err == nil {
				e.Text = append(e.Text, text)
			}
		}
		return nil, e
	}
	if len(resp.Token.FullBytes) == 0 {
		return nil, errors.New("time-stamp response is granted but holds no token")
	}
	return ParseToken(resp.Token.FullBytes)
}

// ParseToken parses a DER TimeStampToken (a CMS ContentInfo holding
// SignedData over a TSTInfo). It checks its form, not its signature.
func ParseToken(der []byte) (*Token, error) {
	var ci contentInfo
	if err := unmarshalAll(der, &ci, "time-stamp token"); err != nil {
		return nil, err
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("time-stamp token holds content type %v, not SignedData", ci.ContentType)
	}
	var sd signedData
	// A RawValue under an EXPLICIT tag is the tagged element: its Bytes
	// are the inner element's encoding.
	if err := unmarshalAll(ci.Content.Bytes, &sd, "time-stamp token's SignedData"); err != nil {
		return nil, err
	}
	if !sd.EncapContentInfo.EContentType.Equal(oidTSTInfo) {
		return nil, fmt.Errorf("time-stamp token signs content type %v, not TSTInfo", sd.EncapContentInfo.EContentType)
	}
	var eContent []byte
	if err := unmarshalAll(sd.EncapContentInfo.EContent.Bytes, &eContent, "time-stamp token's content"); err != nil {
		return nil, err
	}
	t := &Token{eContent: eContent}
	var info tstInfo
	if err := unmarshalAll(eContent, &info, "TSTInfo"); err != nil {
		return nil, err
	}
	if info.Version != 1 {
		return nil, fmt.Errorf("TSTInfo version %d, want 1", info.Version)
	}
	if info.SerialNumber == nil {
		return nil, errors.New("TSTInfo has no serial number")
	}
	t.GenTime = info.GenTime.UTC()
	t.Accuracy = time.Duration(info.Accuracy.Seconds)*time.Second + time.Duration(info.Accuracy.Millis)*time.Millisecond + time.Duration(info.Accuracy.Micros)*time.Microsecond
	t.Policy, t.SerialNumber, t.Nonce = info.Policy, info.SerialNumber, info.Nonce
	t.HashAlgorithm, t.HashedMessage = info.MessageImprint.HashAlgorithm.Algorithm, info.MessageImprint.HashedMessage

	if len(sd.Certificates.Bytes) > 0 {
		certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
		if err != nil {
			return nil, fmt.Errorf("time-stamp token's certificates: %w", err)
		}
		t.Certificates = certs
	}
	// RFC 3161 section 2.4.2: the TSA's is the only signature.
	if len(sd.SignerInfos) != 1 {
		return nil, fmt.Errorf("time-stamp token has %d signers, want 1", len(sd.SignerInfos))
	}
	si := sd.SignerInfos[0]
	signer, err := findSigner(si.SID, t.Certificates)
	if err != nil {
		return nil, err
	}
	t.Signer = signer
	t.digestAlg, t.sigAlg, t.signature = si.DigestAlgorithm.Algorithm, si.SignatureAlgorithm.Algorithm, si.Signature
	if len(si.SignedAttrs.FullBytes) == 0 {
		return nil, errors.New("time-stamp token has no signed attributes")
	}
	// The signature covers the attributes' DER with the SET tag (RFC 5652
	// section 5.4), not the [0] IMPLICIT tag they are stored under.
	t.signedAttrs = bytes.Clone(si.SignedAttrs.FullBytes)
	t.signedAttrs[0] = 0x31
	if err := t.parseAttributes(si.SignedAttrs.Bytes); err != nil {
		return nil, err
	}
	return t, nil
}

// parseAttributes reads the content-type, message-digest and ESS
// signing-certificate attributes, each of which must be there exactly once.
func (t *Token) parseAttributes(b []byte) error {
	seen := map[string]bool{}
	for len(b) > 0 {
		var a attribute
		var err error
		if b, err = asn1.Unmarshal(b, &a); err != nil {
			return fmt.Errorf("time-stamp token's signed attributes: %w", err)
		}
		if seen[a.Type.String()] {
			return fmt.Errorf("time-stamp token's signed attribute %v is there twice", a.Type)
		}
		seen[a.Type.String()] = true
		if a.Values.Class != asn1.ClassUniversal || a.Values.Tag != asn1.TagSet {
			return fmt.Errorf("time-stamp token's signed attribute %v has no SET of values", a.Type)
		}
		var target any
		switch {
		case a.Type.Equal(oidAttrContentType):
			target = &t.contentType
		case a.Type.Equal(oidAttrMessageDigest):
			target = &t.msgDigest
		case a.Type.Equal(oidAttrSigningCert):
			var sc signingCertificate
			if err := unmarshalAll(a.Values.Bytes, &sc, "signing-certificate attribute"); err != nil {
				return err
			}
			if len(sc.Certs) == 0 {
				return errors.New("time-stamp token's signing-certificate attribute names no certificate")
			}
			t.essHashAlg, t.essHash = oidSHA1, sc.Certs[0].CertHash
			continue
		case a.Type.Equal(oidAttrSigningCertV2):
			var sc signingCertificateV2
			if err := unmarshalAll(a.Values.Bytes, &sc, "signing-certificate-v2 attribute"); err != nil {
				return err
			}
			if len(sc.Certs) == 0 {
				return errors.New("time-stamp token's signing-certificate-v2 attribute names no certificate")
			}
			t.essHashAlg, t.essHash = sc.Certs[0].HashAlgorithm.Algorithm, sc.Certs[0].CertHash
			if len(t.essHashAlg) == 0 {
				t.essHashAlg = oidSHA256 // the DEFAULT
			}
			continue
		default:
			continue
		}
		if err := unmarshalAll(a.Values.Bytes, target, fmt.Sprintf("signed attribute %v", a.Type)); err != nil {
			return err
		}
	}
	switch {
	case t.contentType == nil:
		return errors.New("time-stamp token has no content-type attribute")
	case t.msgDigest == nil:
		return errors.New("time-stamp token has no message-digest attribute")
	case t.essHash == nil:
		return errors.New("time-stamp token has no signing-certificate attribute (RFC 3161 section 2.4.1)")
	}
	return nil
}

// findSigner returns the certificate the SignerIdentifier names, or nil if
// the token does not carry it.
func findSigner(sid asn1.RawValue, certs []*x509.Certificate) (*x509.Certificate, error) {
	switch {
	case sid.Class == asn1.ClassUniversal && sid.Tag == asn1.TagSequence:
		var ias issuerAndSerial
		if err := unmarshalAll(sid.FullBytes, &ias, "signer identifier"); err != nil {
			return nil, err
		}
		if ias.Serial == nil {
			return nil, errors.New("time-stamp token's signer identifier has no serial number")
		}
		for _, c := range certs {
			if bytes.Equal(c.RawIssuer, ias.Issuer.FullBytes) && c.SerialNumber.Cmp(ias.Serial) == 0 {
				return c, nil
			}
		}
	case sid.Class == asn1.ClassContextSpecific && sid.Tag == 0 && !sid.IsCompound:
		for _, c := range certs {
			if len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, sid.Bytes) {
				return c, nil
			}
		}
	default:
		return nil, errors.New("time-stamp token's signer identifier is neither issuer and serial nor key identifier")
	}
	return nil, nil
}

// VerifyOptions say what Token.Verify checks beyond the token itself.
type VerifyOptions struct {
	// Roots are the TSA CAs the signer must chain to, at GenTime. If nil,
	// the chain is not checked (the caller must say so to its user).
	Roots *x509.CertPool
	// Nonce, if not nil, must equal the token's.
	Nonce *big.Int
}

// Verify checks that t stamps SHA-256 of data (else an error wrapping
// ErrImprint), echoes opts.Nonce (ErrNonce), is signed by the certificate
// it names over the TSTInfo it holds, with the ESS signing-certificate
// attribute naming that certificate, whose only extended key usage is a
// critical id-kp-timeStamping, valid at GenTime; and, with opts.Roots, that
// the certificate chains to them (ErrUntrusted).
func (t *Token) Verify(data []byte, opts VerifyOptions) error {
	if !t.HashAlgorithm.Equal(oidSHA256) {
		return fmt.Errorf("%w: it stamps a hash with algorithm %v, not SHA-256", ErrImprint, t.HashAlgorithm)
	}
	if sum := sha256.Sum256(data); !bytes.Equal(sum[:], t.HashedMessage) {
		return fmt.Errorf("%w: it stamps SHA-256 %s, the data hashes to %s", ErrImprint, hex.EncodeToString(t.HashedMessage), hex.EncodeToString(sum[:]))
	}
	if opts.Nonce != nil && (t.Nonce == nil || t.Nonce.Cmp(opts.Nonce) != 0) {
		return fmt.Errorf("%w: got %v, sent %v", ErrNonce, t.Nonce, opts.Nonce)
	}
	if err := t.checkSignature(); err != nil {
		return err
	}
	if err := checkTSACert(t.Signer, t.GenTime); err != nil {
		return err
	}
	if opts.Roots == nil {
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range t.Certificates {
		if c != t.Signer {
			inter.AddCert(c)
		}
	}
	_, err := t.Signer.Verify(x509.VerifyOptions{
		Roots:         opts.Roots,
		Intermediates: inter,
		CurrentTime:   t.GenTime,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	})
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrUntrusted, t.Signer.Subject.String(), err)
	}
	return nil
}

// checkSignature checks the CMS signature and the attributes it covers.
func (t *Token) checkSignature() error {
	if t.Signer == nil {
		return errors.New("time-stamp token does not carry its signer's certificate")
	}
	if !t.contentType.Equal(oidTSTInfo) {
		return fmt.Errorf("time-stamp token's content-type attribute is %v, not TSTInfo", t.contentType)
	}
	h, err := hashFor(t.digestAlg)
	if err != nil {
		return err
	}
	d := h.New()
	d.Write(t.eContent)
	if sum := d.Sum(nil); !bytes.Equal(sum, t.msgDigest) {
		return fmt.Errorf("time-stamp token's message-digest attribute is %x, but its TSTInfo hashes to %x: the token was altered", t.msgDigest, sum)
	}
	var certSum []byte
	switch {
	case t.essHashAlg.Equal(oidSHA1):
		s := sha1.Sum(t.Signer.Raw) // ESSCertID is defined with SHA-1; it names, the chain secures
		certSum = s[:]
	default:
		eh, err := hashFor(t.essHashAlg)
		if err != nil {
			return fmt.Errorf("signing-certificate-v2 attribute: %w", err)
		}
		d := eh.New()
		d.Write(t.Signer.Raw)
		certSum = d.Sum(nil)
	}
	if !bytes.Equal(certSum, t.essHash) {
		return errors.New("time-stamp token's signing-certificate attribute names another certificate than its signer")
	}
	alg, err := signatureAlgorithm(t.digestAlg, t.sigAlg)
	if err != nil {
		return err
	}
	if err := t.Signer.CheckSignature(alg, t.signedAttrs, t.signature); err != nil {
		return fmt.Errorf("time-stamp token's signature does not verify with %q: %w", t.Signer.Subject.String(), err)
	}
	return nil
}

// checkTSACert applies RFC 3161 section 2.3: the TSA's certificate has
// exactly one extended key usage, id-kp-timeStamping, marked critical. It
// must also have been valid when it stamped.
func checkTSACert(c *x509.Certificate, at time.Time) error {
	critical := false
	for _, e := range c.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			critical = e.Critical
		}
	}
	eku := len(c.ExtKeyUsage) == 1 && c.ExtKeyUsage[0] == x509.ExtKeyUsageTimeStamping && len(c.UnknownExtKeyUsage) == 0
	if !eku || !critical {
		return fmt.Errorf("time-stamp signer %q is not a TSA certificate: RFC 3161 wants id-kp-timeStamping as its only extended key usage, marked critical", c.Subject.String())
	}
	if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("time-stamp signer %q may not sign: its key usage lacks digitalSignature", c.Subject.String())
	}
	if at.Before(c.NotBefore) || at.After(c.NotAfter) {
		return fmt.Errorf("time-stamp signer %q was not valid at the stamped time %s (valid %s to %s)", c.Subject.String(),
			at.Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func hashFor(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("time-stamp token uses digest algorithm %v; only SHA-256, SHA-384 and SHA-512 are accepted", oid)
}

// signatureAlgorithm maps CMS's digest and signature algorithms onto
// crypto/x509's. RSA-PSS is not accepted: TSAs use PKCS #1 v1.5 or ECDSA.
func signatureAlgorithm(digest, sig asn1.ObjectIdentifier) (x509.SignatureAlgorithm, error) {
	h, err := hashFor(digest)
	if err != nil {
		return 0, err
	}
	byHash := func(a256, a384, a512 x509.SignatureAlgorithm) x509.SignatureAlgorithm {
		switch h {
		case crypto.SHA384:
			return a384
		case crypto.SHA512:
			return a512
		}
		return a256
	}
	switch {
	case sig.Equal(oidRSA):
		return byHash(x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA), nil
	case sig.Equal(oidECPublicKey):
		return byHash(x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512), nil
	case sig.Equal(oidSHA256RSA):
		return x509.SHA256WithRSA, nil
	case sig.Equal(oidSHA384RSA):
		return x509.SHA384WithRSA, nil
	case sig.Equal(oidSHA512RSA):
		return x509.SHA512WithRSA, nil
	case sig.Equal(oidECDSASHA256):
		return x509.ECDSAWithSHA256, nil
	case sig.Equal(oidECDSASHA384):
		return x509.ECDSAWithSHA384, nil
	case sig.Equal(oidECDSASHA512):
		return x509.ECDSAWithSHA512, nil
	case sig.Equal(oidEd25519):
		return x509.PureEd25519, nil
	}
	return 0, fmt.Errorf("time-stamp token uses signature algorithm %v, which is not accepted", sig)
}

// unmarshalAll parses der into v and refuses trailing bytes.
func unmarshalAll(der []byte, v any, what string) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		// encoding/asn1 appends a dump of its field parameters: noise.
		msg, _, _ := strings.Cut(err.Error(), " {optional:")
		return fmt.Errorf("malformed %s: %s", what, msg)
	}
	if len(rest) > 0 {
		return fmt.Errorf("malformed %s: %d bytes after it", what, len(rest))
	}
	return nil
}
