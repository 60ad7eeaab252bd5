// Package tsa is an RFC 3161 time-stamp client: it asks a time-stamping
// authority (TSA) to sign the SHA-256 hash of some bytes with its time, and
// verifies the answer completely: the PKI status, the CMS SignedData
// signature over the signed attributes, the content-type and message-digest
// attributes, the ESS signing-certificate attribute, the TSTInfo's message
// imprint and nonce, the signer certificate's extended key usage (id-kp-
// timeStamping, critical and alone, RFC 3161 section 2.3) and, given the
// TSA's CA, its chain at the time of stamping.
//
// It is written on encoding/asn1 and crypto/x509 alone: the DER structures
// it reads are few and fixed, and a verifier of evidence should not depend
// on a general CMS library whose checks it cannot see.
//
// trail stamps each signed checkpoint note, byte for byte as the log signed
// it (the record in state/checkpoints), and keeps the TSA's whole response
// as state/timestamps/<size>.tsr (see Stamper and docs/timestamps.md).
package tsa

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
)

// Object identifiers of the structures and algorithms read here.
var (
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidTSTInfo    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}

	oidAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidAttrSigningCert   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidAttrSigningCertV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}

	oidRSA          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256RSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384RSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512RSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECPublicKey  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSASHA256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519      = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidExtKeyUsage  = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidKPTimeStamp  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	sha256Algorithm = pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue}
)

// Content types of the HTTP transport (RFC 3161 section 3.4).
const (
	QueryContentType = "application/timestamp-query"
	ReplyContentType = "application/timestamp-reply"
)

// messageImprint is RFC 3161's MessageImprint.
type messageImprint struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	HashedMessage []byte
}

// timeStampReq is RFC 3161's TimeStampReq, without extensions.
type timeStampReq struct {
	Version        int
	MessageImprint messageImprint
	ReqPolicy      asn1.ObjectIdentifier `asn1:"optional"`
	Nonce          *big.Int              `asn1:"optional"`
	CertReq        bool                  `asn1:"optional,default:false"`
}

// Request is a time-stamp request for the SHA-256 hash of some bytes.
type Request struct {
	// Digest is SHA-256 of the bytes to stamp.
	Digest [sha256.Size]byte
	// Nonce is a random 64-bit number the TSA must echo, so that an old
	// answer cannot be replayed for this request.
	Nonce *big.Int
	// DER is the encoded TimeStampReq, with certReq set: the TSA includes
	// its certificate, so that the token can be verified on its own.
	DER []byte
}

// NewRequest makes a request for SHA-256 of data with a fresh nonce.
func NewRequest(data []byte) (*Request, error) {
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	r := &Request{Digest: sha256.Sum256(data), Nonce: nonce}
	r.DER, err = asn1.Marshal(timeStampReq{
		Version:        1,
		MessageImprint: messageImprint{HashAlgorithm: sha256Algorithm, HashedMessage: r.Digest[:]},
		Nonce:          nonce,
		CertReq:        true,
	})
	if err != nil {
		return nil, fmt.Errorf("couldn't encode time-stamp request: %w", err)
	}
	return r, nil
}
