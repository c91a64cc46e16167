package ocsp

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxResponseSize bounds a DER OCSPResponse ParseResponse reads.
const MaxResponseSize = 1 << 20

// ResponseStatus is OCSPResponseStatus (RFC 6960 §4.2.1).
type ResponseStatus int

// Response statuses; 4 is not used.
const (
	Successful       ResponseStatus = 0
	MalformedRequest ResponseStatus = 1
	InternalError    ResponseStatus = 2
	TryLater         ResponseStatus = 3
	SigRequired      ResponseStatus = 5
	Unauthorized     ResponseStatus = 6
)

func (s ResponseStatus) String() string {
	switch s {
	case Successful:
		return "successful"
	case MalformedRequest:
		return "malformedRequest"
	case InternalError:
		return "internalError"
	case TryLater:
		return "tryLater"
	case SigRequired:
		return "sigRequired"
	case Unauthorized:
		return "unauthorized"
	}
	return fmt.Sprintf("ResponseStatus(%d)", int(s))
}

func (s ResponseStatus) defined() bool {
	return s >= Successful && s <= Unauthorized && s != 4
}

// Status is CertStatus (RFC 6960 §4.2.1); the values are its CHOICE tags.
type Status int

// Certificate statuses.
const (
	Good Status = iota
	Revoked
	Unknown
)

func (s Status) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Revocation reasons (CRLReason, RFC 5280 §5.3.1). NoReason means the
// revocationReason field is absent.
const (
	NoReason                   = -1
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

func validReason(r int) bool { return r >= 0 && r <= 10 && r != 7 }

// ErrMalformedResponse is wrapped by ParseResponse errors about the encoding.
var ErrMalformedResponse = errors.New("ocsp: malformed response")

// Verification failures of ParseResponse.
var (
	ErrResponseSignature      = errors.New("ocsp: response signature invalid")
	ErrResponderNotAuthorized = errors.New("ocsp: responder not authorized by the issuer")
	ErrIssuerMismatch         = errors.New("ocsp: response CertID is not for this issuer")
	ErrNoSuchSerial           = errors.New("ocsp: no SingleResponse for the serial")
)

// ResponseError is returned by ParseResponse when the responder answered
// with a status other than successful (an unsigned error response).
type ResponseError struct {
	Status ResponseStatus
}

func (e *ResponseError) Error() string {
	return "ocsp: responder answered " + e.Status.String()
}

// Response is a verified BasicOCSPResponse (RFC 6960 §4.2.1) and the one
// SingleResponse asked about.
type Response struct {
	Status       Status
	SerialNumber *big.Int
	// HashAlgorithm, IssuerNameHash and IssuerKeyHash are the CertID's.
	HashAlgorithm  HashAlg
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	ThisUpdate     time.Time
	// NextUpdate is zero when the response has none.
	NextUpdate time.Time
	// RevokedAt and RevocationReason are set for Revoked; RevocationReason
	// is NoReason when absent.
	RevokedAt        time.Time
	RevocationReason int
	ProducedAt       time.Time
	// ResponderKeyHash is the byKey ResponderID, RawResponderName the DER
	// Name of a byName one; one of them is nil.
	ResponderKeyHash []byte
	RawResponderName []byte
	// Certificate is the delegated responder certificate that signed the
	// response, nil when the issuer signed it.
	Certificate *smx509.Certificate
	// Certificates are all the certificates in the response.
	Certificates []*smx509.Certificate
	// Nonce is the value of the nonce extension, nil if absent.
	Nonce []byte
	// ExtendedRevoke reports the extended-revoke extension (RFC 6960 §4.4.8).
	ExtendedRevoke   bool
	Extensions       []pkix.Extension // responseExtensions
	SingleExtensions []pkix.Extension
	// Raw is a copy of the OCSPResponse; TBSResponseData (the signed DER)
	// and the other slices alias it.
	Raw                   []byte
	TBSResponseData       []byte
	SignatureAlgorithm    smx509.SignatureAlgorithm
	SignatureAlgorithmOID asn1.ObjectIdentifier
	Signature             []byte
}

// Template holds what CreateResponse signs.
type Template struct {
	Status       Status
	SerialNumber *big.Int
	// HashAlgorithm is the CertID hash; answer with the request's, since
	// clients match CertIDs algorithm and all (zero means SHA1).
	HashAlgorithm HashAlg
	// ThisUpdate and ProducedAt are required; NextUpdate is omitted when
	// zero (RFC 5019 §2.2.4 and the CA/B Forum BR 4.9.10 expect it).
	ThisUpdate time.Time
	NextUpdate time.Time
	ProducedAt time.Time
	// RevokedAt is required for Revoked and must not be after ThisUpdate.
	// RevocationReason is a CRLReason; 0 (unspecified) and NoReason both
	// omit it, as BR 7.3 asks.
	RevokedAt        time.Time
	RevocationReason int
	// Nonce is echoed in the nonce extension when non-nil (1 to 128 octets,
	// RFC 9654 §2.1).
	Nonce []byte
	// ExtendedRevoke adds the extended-revoke extension, for a responder
	// that answers "revoked" for serials never issued (RFC 6960 §2.2).
	ExtendedRevoke bool
	// ExtraExtensions are added to responseExtensions as given.
	ExtraExtensions []pkix.Extension
	// SignatureAlgorithm overrides the algorithm chosen by key type.
	SignatureAlgorithm smx509.SignatureAlgorithm
}

// CreateErrorResponse returns the unsigned OCSPResponse carrying status
// alone (RFC 6960 §4.2.1: responseBytes absent). Passing Successful, or a
// value RFC 6960 does not define, is a programming error and panics.
func CreateErrorResponse(status ResponseStatus) []byte {
	if status == Successful || !status.defined() {
		panic(fmt.Sprintf("ocsp: CreateErrorResponse(%v)", status))
	}
	return []byte{0x30, 0x03, 0x0a, 0x01, byte(status)}
}

// CreateResponse signs an OCSP response for one certificate of issuer with
// signer, whose public key must be responderCert's. responderCert is either
// issuer itself (or nil, meaning the same) or a delegated responder
// certificate issued by issuer with id-kp-OCSPSigning (RFC 6960 §4.2.2.2),
// which is then included in the response. The ResponderID is byKey
// (RFC 6960 §4.2.2.3). The delegated certificate's signature is not rechecked
// here on every call; CheckResponder does that once when a responder loads it.
//
// An SM2 signer must follow gmsm's contract, as *sm2.PrivateKey and the hsm
// signers do: given sm2.DefaultSM2SignerOpts, Sign receives the message and
// computes Z (default user ID) and e itself. ECDSA and RSA signers receive
// the digest. The signature is not verified again here; ParseResponse does
// that for anyone who wants to check a response before serving it.
func CreateResponse(issuer, responderCert *smx509.Certificate, t Template, signer crypto.Signer) ([]byte, error) {
	der, err := createResponse(issuer, responderCert, t, signer)
	if err != nil {
		return nil, fmt.Errorf("ocsp: create response: %w", err)
	}
	return der, nil
}

func createResponse(issuer, responderCert *smx509.Certificate, t Template, signer crypto.Signer) ([]byte, error) {
	if issuer == nil || signer == nil {
		return nil, errors.New("nil issuer or signer")
	}
	if responderCert == nil {
		responderCert = issuer
	}
	delegated := !bytes.Equal(responderCert.Raw, issuer.Raw)
	if err := checkTemplate(&t); err != nil {
		return nil, err
	}
	if delegated {
		if !bytes.Equal(responderCert.RawIssuer, issuer.RawSubject) {
			return nil, errors.New("responder certificate is not issued by the issuer")
		}
		if !hasOCSPSigning(responderCert) {
			return nil, errors.New("responder certificate lacks id-kp-OCSPSigning (RFC 6960 §4.2.2.2)")
		}
	}
	if t.ProducedAt.Before(responderCert.NotBefore) || t.ProducedAt.After(responderCert.NotAfter) {
		return nil, fmt.Errorf("producedAt %v outside the responder certificate's validity %v to %v",
			t.ProducedAt.UTC(), responderCert.NotBefore.UTC(), responderCert.NotAfter.UTC())
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(responderCert.PublicKey) {
		return nil, errors.New("signer's public key is not the responder certificate's")
	}
	alg, err := chooseSigAlg(signer.Public(), t.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	h := t.HashAlgorithm.orDefault()
	nh, kh, err := issuerHashes(h, issuer.RawSubject, issuer.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	bits, err := spkiKeyBits(responderCert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fmt.Errorf("responder certificate: %w", err)
	}
	keyHash := sha1.Sum(bits) // RFC 6960 §4.2.1 KeyHash is SHA-1

	var exts []pkix.Extension
	if t.Nonce != nil {
		exts = append(exts, nonceExtension(t.Nonce))
	}
	if t.ExtendedRevoke {
		exts = append(exts, pkix.Extension{Id: OIDExtendedRevoke, Value: nullDER})
	}
	for _, e := range t.ExtraExtensions {
		if findExtension(exts, e.Id) != nil {
			return nil, fmt.Errorf("extension %v given twice", e.Id)
		}
		exts = append(exts, e)
	}

	var tb cryptobyte.Builder
	tb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseData; version v1 omitted
		b.AddASN1(tagCtx2c, func(b *cryptobyte.Builder) { // ResponderID byKey
			b.AddASN1OctetString(keyHash[:])
		})
		addGeneralizedTime(b, t.ProducedAt)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // responses
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SingleResponse
				addCertID(b, certID{hash: h, nameHash: nh, keyHash: kh, serial: t.SerialNumber})
				switch t.Status {
				case Good: // [0] IMPLICIT NULL
					b.AddASN1(tagCtx0, func(*cryptobyte.Builder) {})
				case Revoked: // [1] IMPLICIT RevokedInfo
					b.AddASN1(tagCtx1c, func(b *cryptobyte.Builder) {
						addGeneralizedTime(b, t.RevokedAt)
						if t.RevocationReason > ReasonUnspecified {
							b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) {
								b.AddASN1Enum(int64(t.RevocationReason))
							})
						}
					})
				case Unknown: // [2] IMPLICIT UnknownInfo (NULL)
					b.AddASN1(tagCtx2, func(*cryptobyte.Builder) {})
				}
				addGeneralizedTime(b, t.ThisUpdate)
				if !t.NextUpdate.IsZero() {
					b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) { addGeneralizedTime(b, t.NextUpdate) })
				}
			})
		})
		if len(exts) > 0 {
			b.AddASN1(tagCtx1c, func(b *cryptobyte.Builder) { addExtensions(b, exts) })
		}
	})
	tbs, err := tb.Bytes()
	if err != nil {
		return nil, err
	}
	sig, err := signTBS(signer, alg, tbs)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}

	var bb cryptobyte.Builder
	bb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // BasicOCSPResponse
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(alg.oid)
			if alg.nullParam {
				b.AddASN1NULL()
			}
		})
		b.AddASN1BitString(sig)
		if delegated {
			b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(responderCert.Raw) })
			})
		}
	})
	basic, err := bb.Bytes()
	if err != nil {
		return nil, err
	}
	var ob cryptobyte.Builder
	ob.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // OCSPResponse
		b.AddASN1Enum(int64(Successful))
		b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseBytes
				b.AddASN1ObjectIdentifier(OIDOCSPBasic)
				b.AddASN1OctetString(basic)
			})
		})
	})
	return ob.Bytes()
}

// checkTemplate refuses templates that would sign something wrong: the
// response-side lint of RELIABILITY.md §1.1 ("lint every OCSP response").
func checkTemplate(t *Template) error {
	if t.SerialNumber == nil {
		return errors.New("template has no serial number")
	}
	if !t.HashAlgorithm.orDefault().Valid() {
		return fmt.Errorf("%w: %v", ErrUnsupportedHash, t.HashAlgorithm)
	}
	if t.ThisUpdate.IsZero() || t.ProducedAt.IsZero() {
		return errors.New("thisUpdate and producedAt are required")
	}
	if !t.NextUpdate.IsZero() && !t.NextUpdate.After(t.ThisUpdate) {
		return fmt.Errorf("nextUpdate %v not after thisUpdate %v", t.NextUpdate.UTC(), t.ThisUpdate.UTC())
	}
	switch t.Status {
	case Revoked:
		if t.RevokedAt.IsZero() || t.RevokedAt.After(t.ThisUpdate) {
			return errors.New("revoked status needs a revocation time not after thisUpdate")
		}
		if t.RevocationReason != NoReason && !validReason(t.RevocationReason) {
			return fmt.Errorf("invalid revocation reason %d", t.RevocationReason)
		}
	case Good, Unknown:
		if !t.RevokedAt.IsZero() || t.RevocationReason > ReasonUnspecified {
			return fmt.Errorf("revocation time or reason set for status %v", t.Status)
		}
	default:
		return fmt.Errorf("invalid status %d", int(t.Status))
	}
	if t.Nonce != nil && (len(t.Nonce) < 1 || len(t.Nonce) > 128) {
		return fmt.Errorf("%w: %d octets, RFC 9654 allows 1 to 128", ErrNonceLength, len(t.Nonce))
	}
	return nil
}

func hasOCSPSigning(c *smx509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == smx509.ExtKeyUsageOCSPSigning {
			return true
		}
	}
	return false
}

// HasNoCheck reports whether cert carries id-pkix-ocsp-nocheck
// (RFC 6960 §4.2.2.2.1).
func HasNoCheck(cert *smx509.Certificate) bool {
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDNoCheck) {
			return true
		}
	}
	return false
}

// CheckResponder checks that responder may sign OCSP responses for issuer's
// certificates as a delegated responder (RFC 6960 §4.2.2.2): issued by
// issuer (name and signature) and carrying id-kp-OCSPSigning. It does not
// check validity periods; ParseResponse checks them at producedAt and
// [Response.CheckTime] at a time of the caller's choosing.
func CheckResponder(issuer, responder *smx509.Certificate) error {
	if !bytes.Equal(responder.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("%w: responder certificate issuer name differs", ErrResponderNotAuthorized)
	}
	if err := responder.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: responder certificate signature: %w", ErrResponderNotAuthorized, err)
	}
	if !hasOCSPSigning(responder) {
		return fmt.Errorf("%w: responder certificate lacks id-kp-OCSPSigning", ErrResponderNotAuthorized)
	}
	return nil
}

// DefaultSkew is the clock difference [Response.CheckTime] tolerates when
// [TimeOptions] leaves Skew zero: five minutes, OpenSSL's default
// (`openssl ocsp -validity_period`, OCSP_check_validity).
const DefaultSkew = 5 * time.Minute

// ErrResponseTime is wrapped by [Response.CheckTime] errors about the
// response's own times: thisUpdate in the future, nextUpdate passed,
// thisUpdate older than MaxAge.
var ErrResponseTime = errors.New("ocsp: response not current")

// TimeOptions tune [Response.CheckTime].
type TimeOptions struct {
	// Skew is the tolerance of every comparison, for the difference between
	// the verifier's and the responder's clocks: zero means DefaultSkew, a
	// negative value none.
	Skew time.Duration
	// MaxAge, when positive, refuses a response whose thisUpdate is more than
	// MaxAge (plus Skew) before the time checked, as `openssl ocsp -status_age`
	// does. A response without nextUpdate (RFC 6960 §4.2.2.1: newer
	// information is always available) is accepted only with a MaxAge;
	// RFC 5019 §4 clients reject it, which is what a zero MaxAge does.
	MaxAge time.Duration
}

// CheckTime checks that r, as returned by ParseResponse, states the status
// at time at (now for a live check; for evidence validated later, the time
// the status must hold at, e.g. a signing time a time-stamp proves), the
// checks of RFC 6960 §3.2 items 4 to 6 that ParseResponse leaves to the
// caller because this package reads no clock:
//   - thisUpdate ≤ at + skew: not a response from the future;
//   - at < nextUpdate + skew: not expired (RFC 5019 §4: the time must fall
//     between thisUpdate and nextUpdate); a response without nextUpdate
//     needs opts.MaxAge;
//   - at ≤ thisUpdate + MaxAge + skew, when opts.MaxAge is set;
//   - a delegated responder's certificate (r.Certificate) valid at at:
//     notBefore − skew ≤ at ≤ notAfter + skew. ParseResponse checked it at
//     producedAt only, the time the responder claims.
//
// opts may be nil (DefaultSkew, no MaxAge). Errors about the response's
// times wrap [ErrResponseTime], about the responder certificate
// [ErrResponderNotAuthorized].
func (r *Response) CheckTime(at time.Time, opts *TimeOptions) error {
	if at.IsZero() {
		return errors.New("ocsp: CheckTime: zero time")
	}
	var o TimeOptions
	if opts != nil {
		o = *opts
	}
	skew := o.Skew
	switch {
	case skew == 0:
		skew = DefaultSkew
	case skew < 0:
		skew = 0
	}
	at = at.UTC()
	if r.ThisUpdate.After(at.Add(skew)) {
		return fmt.Errorf("%w: thisUpdate %v is after %v", ErrResponseTime, r.ThisUpdate.UTC(), at)
	}
	if r.NextUpdate.IsZero() {
		if o.MaxAge <= 0 {
			return fmt.Errorf("%w: no nextUpdate, and no maximum age given", ErrResponseTime)
		}
	} else if !at.Before(r.NextUpdate.Add(skew)) {
		return fmt.Errorf("%w: nextUpdate %v is not after %v", ErrResponseTime, r.NextUpdate.UTC(), at)
	}
	if o.MaxAge > 0 && at.After(r.ThisUpdate.Add(o.MaxAge+skew)) {
		return fmt.Errorf("%w: thisUpdate %v is older than %v at %v", ErrResponseTime, r.ThisUpdate.UTC(), o.MaxAge, at)
	}
	if c := r.Certificate; c != nil && (at.Before(c.NotBefore.Add(-skew)) || at.After(c.NotAfter.Add(skew))) {
		return fmt.Errorf("%w: responder certificate valid %v to %v, not at %v", ErrResponderNotAuthorized, c.NotBefore.UTC(), c.NotAfter.UTC(), at)
	}
	return nil
}

// respErr wraps err as a malformed response.
func respErr(err error) error { return fmt.Errorf("%w: %w", ErrMalformedResponse, err) }

func respErrf(format string, args ...any) error { return respErr(fmt.Errorf(format, args...)) }

// singleResponse is a decoded SingleResponse.
type singleResponse struct {
	id         certID
	status     Status
	revokedAt  time.Time
	reason     int
	thisUpdate time.Time
	nextUpdate time.Time
	exts       []pkix.Extension
}

// ParseResponse parses a DER OCSPResponse holding one SingleResponse and
// verifies it for issuer: the CertID must name issuer, and the signature
// must be issuer's or that of an included delegated responder certificate
// (see CheckResponder) valid at producedAt. Time checks against the clock
// (thisUpdate ≤ now < nextUpdate, the responder certificate valid now) are
// the caller's, since this package reads no clock: call [Response.CheckTime]
// with the time that matters. A non-successful answer returns a
// *ResponseError.
func ParseResponse(der []byte, issuer *smx509.Certificate) (*Response, error) {
	return parseResponse(der, nil, issuer)
}

// ParseResponseForCert is ParseResponse for a response that may hold several
// SingleResponses: it picks the one for cert's serial number.
func ParseResponseForCert(der []byte, cert, issuer *smx509.Certificate) (*Response, error) {
	if cert == nil {
		return nil, errors.New("ocsp: parse response: nil certificate")
	}
	return parseResponse(der, cert.SerialNumber, issuer)
}

func parseResponse(der []byte, serial *big.Int, issuer *smx509.Certificate) (*Response, error) {
	if issuer == nil {
		return nil, errors.New("ocsp: parse response: nil issuer")
	}
	if len(der) == 0 {
		return nil, respErrf("empty response")
	}
	if len(der) > MaxResponseSize {
		return nil, respErrf("%d octets, limit %d", len(der), MaxResponseSize)
	}
	r := &Response{Raw: bytes.Clone(der), RevocationReason: NoReason}
	input := cryptobyte.String(r.Raw)
	var outer, rb cryptobyte.String
	var status int
	var has bool
	if !input.ReadASN1(&outer, cbasn1.SEQUENCE) || !outer.ReadASN1Enum(&status) {
		return nil, respErrf("bad OCSPResponse")
	}
	if !input.Empty() {
		return nil, respErrf("%w after OCSPResponse", errTrailing)
	}
	if !ResponseStatus(status).defined() {
		return nil, respErrf("undefined responseStatus %d", status)
	}
	if !outer.ReadOptionalASN1(&rb, &has, tagCtx0c) || !outer.Empty() {
		return nil, respErrf("bad OCSPResponse")
	}
	if ResponseStatus(status) != Successful {
		if has {
			return nil, respErrf("responseBytes in a %v response", ResponseStatus(status))
		}
		return nil, &ResponseError{Status: ResponseStatus(status)}
	}
	if !has {
		return nil, respErrf("successful response without responseBytes")
	}
	var rbSeq, basic cryptobyte.String
	var rtype asn1.ObjectIdentifier
	if !rb.ReadASN1(&rbSeq, cbasn1.SEQUENCE) || !rb.Empty() ||
		!rbSeq.ReadASN1ObjectIdentifier(&rtype) || !rbSeq.ReadASN1(&basic, cbasn1.OCTET_STRING) || !rbSeq.Empty() {
		return nil, respErrf("bad ResponseBytes")
	}
	if !rtype.Equal(OIDOCSPBasic) {
		return nil, respErrf("unsupported responseType %v", rtype)
	}

	// BasicOCSPResponse
	var bseq, tbsElem, certs cryptobyte.String
	var sigBits asn1.BitString
	if !basic.ReadASN1(&bseq, cbasn1.SEQUENCE) || !basic.Empty() || !bseq.ReadASN1Element(&tbsElem, cbasn1.SEQUENCE) {
		return nil, respErrf("bad BasicOCSPResponse")
	}
	r.TBSResponseData = tbsElem
	algOID, algParams, err := readAlgorithmIdentifier(&bseq)
	if err != nil {
		return nil, respErr(fmt.Errorf("signatureAlgorithm: %w", err))
	}
	if !bseq.ReadASN1BitString(&sigBits) || sigBits.BitLength%8 != 0 {
		return nil, respErrf("bad signature")
	}
	r.Signature, r.SignatureAlgorithmOID = sigBits.Bytes, algOID
	if !bseq.ReadOptionalASN1(&certs, &has, tagCtx0c) || !bseq.Empty() {
		return nil, respErrf("bad BasicOCSPResponse")
	}
	var rawCerts []cryptobyte.String
	if has {
		var list cryptobyte.String
		if !certs.ReadASN1(&list, cbasn1.SEQUENCE) || !certs.Empty() {
			return nil, respErrf("bad certs")
		}
		for !list.Empty() {
			if len(rawCerts) == maxCerts {
				return nil, respErrf("more than %d certificates", maxCerts)
			}
			var c cryptobyte.String
			if !list.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return nil, respErrf("bad certs")
			}
			rawCerts = append(rawCerts, c)
		}
	}

	singles, err := parseResponseData(tbsElem, r)
	if err != nil {
		return nil, respErr(err)
	}
	alg, err := sigAlgForOID(algOID, algParams)
	if err != nil {
		return nil, respErr(err)
	}
	r.SignatureAlgorithm = alg.algo

	// Choose the SingleResponse.
	var sr *singleResponse
	if serial == nil {
		if len(singles) != 1 {
			return nil, respErrf("%d SingleResponses, ParseResponseForCert picks one", len(singles))
		}
		sr = &singles[0]
	} else {
		for i := range singles {
			if singles[i].id.serial.Cmp(serial) == 0 && certIDMatches(singles[i].id, issuer) {
				sr = &singles[i]
				break
			}
		}
		if sr == nil {
			return nil, fmt.Errorf("%w %x", ErrNoSuchSerial, serial)
		}
	}
	if !certIDMatches(sr.id, issuer) {
		return nil, ErrIssuerMismatch
	}
	r.Status, r.SerialNumber, r.HashAlgorithm = sr.status, sr.id.serial, sr.id.hash
	r.IssuerNameHash, r.IssuerKeyHash = sr.id.nameHash, sr.id.keyHash
	r.ThisUpdate, r.NextUpdate, r.RevokedAt, r.RevocationReason = sr.thisUpdate, sr.nextUpdate, sr.revokedAt, sr.reason
	r.SingleExtensions = sr.exts

	// Certificates are parsed only now: the cheap checks above turn most
	// bad or foreign responses away first.
	for _, c := range rawCerts {
		cert, err := smx509.ParseCertificate(c)
		if err != nil {
			return nil, respErr(fmt.Errorf("certificate: %w", err))
		}
		r.Certificates = append(r.Certificates, cert)
	}

	// Find the signer: the issuer itself, or an included delegated responder.
	signerKey := issuer.PublicKey
	if !matchesResponderID(issuer, r) {
		for _, c := range r.Certificates {
			if matchesResponderID(c, r) {
				r.Certificate = c
				break
			}
		}
		if r.Certificate == nil {
			return nil, fmt.Errorf("%w: no certificate matches the ResponderID", ErrResponderNotAuthorized)
		}
		if err := CheckResponder(issuer, r.Certificate); err != nil {
			return nil, err
		}
		if r.ProducedAt.Before(r.Certificate.NotBefore) || r.ProducedAt.After(r.Certificate.NotAfter) {
			return nil, fmt.Errorf("%w: responder certificate not valid at producedAt %v", ErrResponderNotAuthorized, r.ProducedAt.UTC())
		}
		signerKey = r.Certificate.PublicKey
	}
	if err := verifySig(alg, signerKey, r.TBSResponseData, r.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrResponseSignature, err)
	}
	return r, nil
}

// parseResponseData decodes ResponseData into r and returns the
// SingleResponses.
func parseResponseData(tbsElem []byte, r *Response) ([]singleResponse, error) {
	s := cryptobyte.String(tbsElem)
	var rd cryptobyte.String
	if !s.ReadASN1(&rd, cbasn1.SEQUENCE) {
		return nil, errors.New("bad ResponseData")
	}
	var ver cryptobyte.String
	var has bool
	if !rd.ReadOptionalASN1(&ver, &has, tagCtx0c) {
		return nil, errors.New("bad ResponseData version")
	}
	if has {
		var v int64
		if !ver.ReadASN1Integer(&v) || !ver.Empty() {
			return nil, errors.New("bad ResponseData version")
		}
		if v == 0 {
			return nil, fmt.Errorf("version v1 encoded explicitly: %w", errNotDER)
		}
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, v)
	}

	// ResponderID ::= CHOICE { byName [1] Name, byKey [2] KeyHash }
	var rid cryptobyte.String
	switch {
	case rd.PeekASN1Tag(tagCtx1c):
		var name cryptobyte.String
		if !rd.ReadASN1(&rid, tagCtx1c) || !rid.ReadASN1Element(&name, cbasn1.SEQUENCE) || !rid.Empty() {
			return nil, errors.New("bad ResponderID byName")
		}
		r.RawResponderName = name
	case rd.PeekASN1Tag(tagCtx2c):
		var kh cryptobyte.String
		if !rd.ReadASN1(&rid, tagCtx2c) || !rid.ReadASN1(&kh, cbasn1.OCTET_STRING) || !rid.Empty() {
			return nil, errors.New("bad ResponderID byKey")
		}
		r.ResponderKeyHash = kh
	default:
		return nil, errors.New("bad ResponderID")
	}
	var ok bool
	if r.ProducedAt, ok = readGeneralizedTime(&rd); !ok {
		return nil, errors.New("bad producedAt")
	}
	var list cryptobyte.String
	if !rd.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, errors.New("bad responses")
	}
	var singles []singleResponse
	for !list.Empty() {
		sr, err := readSingleResponse(&list)
		if err != nil {
			return nil, err
		}
		singles = append(singles, sr)
	}
	if len(singles) == 0 {
		return nil, errors.New("no SingleResponse")
	}
	var ext cryptobyte.String
	if !rd.ReadOptionalASN1(&ext, &has, tagCtx1c) || !rd.Empty() {
		return nil, errors.New("bad ResponseData")
	}
	if has {
		var err error
		if r.Extensions, err = parseExtensions(ext); err != nil {
			return nil, fmt.Errorf("responseExtensions: %w", err)
		}
		if err := checkCritical(r.Extensions, OIDNonce, OIDExtendedRevoke); err != nil {
			return nil, err
		}
		if e := findExtension(r.Extensions, OIDNonce); e != nil {
			if r.Nonce, err = parseNonce(e.Value); err != nil {
				return nil, err
			}
		}
		if e := findExtension(r.Extensions, OIDExtendedRevoke); e != nil {
			if !bytes.Equal(e.Value, nullDER) {
				return nil, errors.New("extended-revoke extension value is not NULL")
			}
			r.ExtendedRevoke = true
		}
	}
	return singles, nil
}

// readSingleResponse reads one SingleResponse (RFC 6960 §4.2.1).
func readSingleResponse(s *cryptobyte.String) (singleResponse, error) {
	sr := singleResponse{reason: NoReason}
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return sr, errors.New("bad SingleResponse")
	}
	var err error
	if sr.id, err = readCertID(&seq); err != nil {
		return sr, err
	}
	var st cryptobyte.String
	var tag cbasn1.Tag
	if !seq.ReadAnyASN1(&st, &tag) {
		return sr, errors.New("bad certStatus")
	}
	switch tag {
	case tagCtx0: // good [0] IMPLICIT NULL
		sr.status = Good
	case tagCtx2: // unknown [2] IMPLICIT NULL
		sr.status = Unknown
	case tagCtx1c: // revoked [1] IMPLICIT RevokedInfo
		sr.status = Revoked
		var ok, has bool
		var reason cryptobyte.String
		if sr.revokedAt, ok = readGeneralizedTime(&st); !ok {
			return sr, errors.New("bad revocationTime")
		}
		if !st.ReadOptionalASN1(&reason, &has, tagCtx0c) || !st.Empty() {
			return sr, errors.New("bad RevokedInfo")
		}
		if has {
			if !reason.ReadASN1Enum(&sr.reason) || !reason.Empty() || !validReason(sr.reason) {
				return sr, errors.New("bad revocationReason")
			}
		}
	default:
		return sr, errors.New("bad certStatus")
	}
	if sr.status != Revoked && !st.Empty() {
		return sr, errors.New("certStatus NULL with contents")
	}
	var ok, has bool
	if sr.thisUpdate, ok = readGeneralizedTime(&seq); !ok {
		return sr, errors.New("bad thisUpdate")
	}
	var nu, ext cryptobyte.String
	if !seq.ReadOptionalASN1(&nu, &has, tagCtx0c) {
		return sr, errors.New("bad nextUpdate")
	}
	if has {
		if sr.nextUpdate, ok = readGeneralizedTime(&nu); !ok || !nu.Empty() {
			return sr, errors.New("bad nextUpdate")
		}
		if sr.nextUpdate.Before(sr.thisUpdate) {
			return sr, errors.New("nextUpdate before thisUpdate")
		}
	}
	if !seq.ReadOptionalASN1(&ext, &has, tagCtx1c) || !seq.Empty() {
		return sr, errors.New("bad SingleResponse")
	}
	if has {
		if sr.exts, err = parseExtensions(ext); err != nil {
			return sr, fmt.Errorf("singleExtensions: %w", err)
		}
		if err := checkCritical(sr.exts); err != nil {
			return sr, err
		}
	}
	return sr, nil
}

// certIDMatches reports whether id names issuer.
func certIDMatches(id certID, issuer *smx509.Certificate) bool {
	nh, kh, err := issuerHashes(id.hash, issuer.RawSubject, issuer.RawSubjectPublicKeyInfo)
	return err == nil && bytes.Equal(nh, id.nameHash) && bytes.Equal(kh, id.keyHash)
}

// matchesResponderID reports whether c is the responder r names: byName
// compares the DER Name; byKey the SHA-1 key hash of RFC 6960 §4.2.1, or,
// for 32-octet hashes some GM responders write, SM3 or SHA-256.
func matchesResponderID(c *smx509.Certificate, r *Response) bool {
	if r.RawResponderName != nil {
		return bytes.Equal(c.RawSubject, r.RawResponderName)
	}
	bits, err := spkiKeyBits(c.RawSubjectPublicKeyInfo)
	if err != nil {
		return false
	}
	switch len(r.ResponderKeyHash) {
	case sha1.Size:
		h := sha1.Sum(bits)
		return bytes.Equal(h[:], r.ResponderKeyHash)
	case sha256.Size:
		s2 := sha256.Sum256(bits)
		s3 := sm3.Sum(bits)
		return bytes.Equal(s2[:], r.ResponderKeyHash) || bytes.Equal(s3[:], r.ResponderKeyHash)
	}
	return false
}
