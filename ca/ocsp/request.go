package ocsp

import (
	"bytes"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Request limits.
const (
	// MaxRequestSize bounds a DER OCSPRequest. An RFC 5019 request (one
	// CertID, a nonce) is under 200 octets; a signed one with a certificate
	// chain a few KiB.
	MaxRequestSize = 16 << 10
	// MinNonceLen and MaxNonceLen are the nonce lengths ParseRequest accepts
	// (see the package comment for how this narrows RFC 9654 §2.1).
	MinNonceLen = 1
	MaxNonceLen = 32
	// maxCreateNonce bounds the nonce CreateRequest writes: RFC 9654's
	// SIZE(1..128) plus room to build out-of-range test requests.
	maxCreateNonce = 1024
)

// ErrMalformedRequest is wrapped by every error ParseRequest and
// DecodeGETPath return: the responder answers each with the
// malformedRequest response status (RFC 6960 §2.3). The sentinels below are
// also wrapped where they apply, for callers and logs that want the cause.
var ErrMalformedRequest = errors.New("ocsp: malformed request")

// Causes of a malformed request. They are always wrapped together with
// ErrMalformedRequest (or ErrMalformedResponse), hence no "ocsp:" prefix.
var (
	ErrRequestTooLarge            = errors.New("request too large")
	ErrTooManyRequests            = errors.New("more than one Request in requestList (RFC 5019 §2.1.1)")
	ErrNonceLength                = errors.New("nonce length out of range")
	ErrUnsupportedHash            = errors.New("unsupported CertID hash algorithm")
	ErrUnsupportedVersion         = errors.New("unsupported version")
	ErrUnhandledCriticalExtension = errors.New("unhandled critical extension")
)

// Request is the single CertID of an OCSPRequest (RFC 6960 §4.1.1) with the
// nonce, as ParseRequest reads it.
type Request struct {
	HashAlgorithm  HashAlg
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	SerialNumber   *big.Int
	// Nonce is the value of the nonce extension (RFC 9654), nil if absent.
	Nonce []byte
	// Signed reports that the request carried an optionalSignature, which
	// is not verified (RFC 6960 §4.1.2: responders may ignore it).
	Signed bool
	// Extensions are the requestExtensions, nonce included.
	Extensions []pkix.Extension
	// Raw is a copy of the DER request; the byte slices above alias it.
	Raw []byte
}

// reqErr wraps err as a malformed request.
func reqErr(err error) error { return fmt.Errorf("%w: %w", ErrMalformedRequest, err) }

// reqErrf formats a malformed-request error.
func reqErrf(format string, args ...any) error {
	return reqErr(fmt.Errorf(format, args...))
}

// ParseRequest parses a DER OCSPRequest (RFC 6960 §4.1.1) under the RFC 5019
// §2.1 profile. Every error wraps ErrMalformedRequest; see the package
// comment for what is refused. The input is copied, never retained.
func ParseRequest(der []byte) (*Request, error) {
	if len(der) == 0 {
		return nil, reqErrf("empty request")
	}
	if len(der) > MaxRequestSize {
		return nil, reqErr(fmt.Errorf("%w: %d octets, limit %d", ErrRequestTooLarge, len(der), MaxRequestSize))
	}
	r := &Request{Raw: bytes.Clone(der)}
	input := cryptobyte.String(r.Raw)
	var ocspReq, tbs cryptobyte.String
	if !input.ReadASN1(&ocspReq, cbasn1.SEQUENCE) {
		return nil, reqErrf("OCSPRequest is not a DER SEQUENCE")
	}
	if !input.Empty() {
		return nil, reqErrf("%w after OCSPRequest", errTrailing)
	}
	if !ocspReq.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, reqErrf("bad TBSRequest")
	}

	// version [0] EXPLICIT Version DEFAULT v1
	var ver cryptobyte.String
	var has bool
	if !tbs.ReadOptionalASN1(&ver, &has, tagCtx0c) {
		return nil, reqErrf("bad TBSRequest version")
	}
	if has {
		var v int64
		if !ver.ReadASN1Integer(&v) || !ver.Empty() {
			return nil, reqErrf("bad TBSRequest version")
		}
		if v == 0 {
			return nil, reqErrf("version v1 encoded explicitly: %w (X.690 §11.5 omits DEFAULT values)", errNotDER)
		}
		return nil, reqErr(fmt.Errorf("%w: %d", ErrUnsupportedVersion, v))
	}

	// requestorName [1] EXPLICIT GeneralName OPTIONAL: shape only.
	var name cryptobyte.String
	if !tbs.ReadOptionalASN1(&name, &has, tagCtx1c) {
		return nil, reqErrf("bad requestorName")
	}
	if has {
		var gn cryptobyte.String
		var tag cbasn1.Tag
		if !name.ReadAnyASN1Element(&gn, &tag) || !name.Empty() {
			return nil, reqErrf("bad requestorName")
		}
	}

	// requestList SEQUENCE OF Request: exactly one (RFC 5019 §2.1.1).
	var list, one cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, reqErrf("bad requestList")
	}
	if !list.ReadASN1(&one, cbasn1.SEQUENCE) {
		return nil, reqErrf("empty or bad requestList")
	}
	if n := 1; !list.Empty() {
		for ; !list.Empty(); n++ {
			var more cryptobyte.String
			if !list.ReadASN1(&more, cbasn1.SEQUENCE) {
				return nil, reqErrf("bad Request in requestList")
			}
		}
		return nil, reqErr(fmt.Errorf("%w: %d requests", ErrTooManyRequests, n))
	}
	id, err := readCertID(&one)
	if err != nil {
		return nil, reqErr(err)
	}
	r.HashAlgorithm, r.IssuerNameHash, r.IssuerKeyHash, r.SerialNumber = id.hash, id.nameHash, id.keyHash, id.serial

	// singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL
	var sext cryptobyte.String
	if !one.ReadOptionalASN1(&sext, &has, tagCtx0c) || !one.Empty() {
		return nil, reqErrf("bad Request")
	}
	if has {
		exts, err := parseExtensions(sext)
		if err != nil {
			return nil, reqErr(fmt.Errorf("singleRequestExtensions: %w", err))
		}
		if err := checkCritical(exts); err != nil {
			return nil, reqErr(err)
		}
	}

	// requestExtensions [2] EXPLICIT Extensions OPTIONAL
	var rext cryptobyte.String
	if !tbs.ReadOptionalASN1(&rext, &has, tagCtx2c) {
		return nil, reqErrf("bad requestExtensions")
	}
	if has {
		if r.Extensions, err = parseExtensions(rext); err != nil {
			return nil, reqErr(fmt.Errorf("requestExtensions: %w", err))
		}
		if err := checkCritical(r.Extensions, OIDNonce); err != nil {
			return nil, reqErr(err)
		}
		if e := findExtension(r.Extensions, OIDNonce); e != nil {
			if r.Nonce, err = parseNonce(e.Value); err != nil {
				return nil, reqErr(err)
			}
			if len(r.Nonce) < MinNonceLen || len(r.Nonce) > MaxNonceLen {
				return nil, reqErr(fmt.Errorf("%w: %d octets, accepted %d to %d", ErrNonceLength, len(r.Nonce), MinNonceLen, MaxNonceLen))
			}
		}
	}
	if !tbs.Empty() {
		return nil, reqErrf("%w in TBSRequest", errTrailing)
	}

	// optionalSignature [0] EXPLICIT Signature OPTIONAL: shape only.
	var sig cryptobyte.String
	if !ocspReq.ReadOptionalASN1(&sig, &has, tagCtx0c) {
		return nil, reqErrf("bad optionalSignature")
	}
	if has {
		if err := checkRequestSignatureShape(sig); err != nil {
			return nil, reqErr(err)
		}
		r.Signed = true
	}
	if !ocspReq.Empty() {
		return nil, reqErrf("%w in OCSPRequest", errTrailing)
	}
	return r, nil
}

// checkRequestSignatureShape checks Signature ::= SEQUENCE {
// signatureAlgorithm, signature BIT STRING, certs [0] EXPLICIT SEQUENCE OF
// Certificate OPTIONAL } without verifying anything.
func checkRequestSignatureShape(s cryptobyte.String) error {
	var seq, certs cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return errors.New("bad optionalSignature")
	}
	if _, _, err := readAlgorithmIdentifier(&seq); err != nil {
		return fmt.Errorf("optionalSignature: %w", err)
	}
	var sig cryptobyte.String
	var has bool
	if !seq.ReadASN1(&sig, cbasn1.BIT_STRING) || !seq.ReadOptionalASN1(&certs, &has, tagCtx0c) || !seq.Empty() {
		return errors.New("bad optionalSignature")
	}
	return nil
}

// MatchesIssuer reports whether the request's CertID names issuer: its
// issuerNameHash and issuerKeyHash, recomputed with the request's hash
// algorithm, are equal (RFC 6960 §4.1.1).
func (r *Request) MatchesIssuer(issuer *smx509.Certificate) bool {
	if issuer == nil || !r.HashAlgorithm.Valid() {
		return false
	}
	nh, kh, err := issuerHashes(r.HashAlgorithm, issuer.RawSubject, issuer.RawSubjectPublicKeyInfo)
	if err != nil {
		return false
	}
	return bytes.Equal(nh, r.IssuerNameHash) && bytes.Equal(kh, r.IssuerKeyHash)
}

// Issuer is an issuer's CertID hashes under every algorithm of HashAlg,
// computed once, for a responder that checks every request against the
// same CA (Request.Matches).
type Issuer struct {
	nameHash, keyHash map[HashAlg][]byte
}

// NewIssuer hashes issuer's subject and public key bits with every
// algorithm a CertID may use.
func NewIssuer(issuer *smx509.Certificate) (*Issuer, error) {
	is := &Issuer{nameHash: map[HashAlg][]byte{}, keyHash: map[HashAlg][]byte{}}
	for _, a := range hashAlgs {
		nh, kh, err := issuerHashes(a.alg, issuer.RawSubject, issuer.RawSubjectPublicKeyInfo)
		if err != nil {
			return nil, fmt.Errorf("ocsp: issuer hashes: %w", err)
		}
		is.nameHash[a.alg], is.keyHash[a.alg] = nh, kh
	}
	return is, nil
}

// Matches is MatchesIssuer with the hashes computed beforehand.
func (r *Request) Matches(is *Issuer) bool {
	nh, ok := is.nameHash[r.HashAlgorithm]
	return ok && bytes.Equal(nh, r.IssuerNameHash) && bytes.Equal(is.keyHash[r.HashAlgorithm], r.IssuerKeyHash)
}

// RequestOptions are the options of CreateRequest.
type RequestOptions struct {
	// Hash is the CertID hash algorithm; zero means SHA1.
	Hash HashAlg
	// Nonce, when non-nil, is sent in the nonce extension (RFC 9654) as
	// given. RFC 9654 allows 1 to 128 octets and govtrust responders accept
	// 1 to 32; other lengths, an empty non-nil slice included, are written
	// anyway (up to 1024 octets) so tests can build the requests a responder
	// must refuse.
	Nonce []byte
}

// CreateRequest returns a DER OCSPRequest for cert, issued by issuer, in the
// RFC 5019 §2.1 profile: one CertID, no requestorName, no signature.
func CreateRequest(cert, issuer *smx509.Certificate, opts *RequestOptions) ([]byte, error) {
	if cert == nil || issuer == nil {
		return nil, errors.New("ocsp: create request: nil certificate")
	}
	return CreateRequestForSerial(cert.SerialNumber, issuer, opts)
}

// CreateRequestForSerial is CreateRequest for a serial number rather than a
// certificate (a client that only knows the serial, or a test asking about a
// serial never issued).
func CreateRequestForSerial(serial *big.Int, issuer *smx509.Certificate, opts *RequestOptions) ([]byte, error) {
	if serial == nil || issuer == nil {
		return nil, errors.New("ocsp: create request: nil serial or issuer")
	}
	var o RequestOptions
	if opts != nil {
		o = *opts
	}
	h := o.Hash.orDefault()
	if !h.Valid() {
		return nil, fmt.Errorf("ocsp: create request: %w: %v", ErrUnsupportedHash, h)
	}
	if len(o.Nonce) > maxCreateNonce {
		return nil, fmt.Errorf("ocsp: create request: nonce of %d octets, limit %d", len(o.Nonce), maxCreateNonce)
	}
	nh, kh, err := issuerHashes(h, issuer.RawSubject, issuer.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fmt.Errorf("ocsp: create request: issuer: %w", err)
	}
	id := certID{hash: h, nameHash: nh, keyHash: kh, serial: serial}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // OCSPRequest
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // TBSRequest
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // requestList
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // Request
					addCertID(b, id)
				})
			})
			if o.Nonce != nil {
				b.AddASN1(tagCtx2c, func(b *cryptobyte.Builder) {
					addExtensions(b, []pkix.Extension{nonceExtension(o.Nonce)})
				})
			}
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ocsp: create request: %w", err)
	}
	return der, nil
}
