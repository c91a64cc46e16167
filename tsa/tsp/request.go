package tsp

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// FailureInfo is a PKIFailureInfo bit number (RFC 3161 §2.4.2).
type FailureInfo int

// The failure bits a TSA uses.
const (
	BadAlg              FailureInfo = 0
	BadRequest          FailureInfo = 2
	BadDataFormat       FailureInfo = 5
	TimeNotAvailable    FailureInfo = 14
	UnacceptedPolicy    FailureInfo = 15
	UnacceptedExtension FailureInfo = 16
	AddInfoNotAvailable FailureInfo = 17
	SystemFailure       FailureInfo = 25
)

var failureNames = map[FailureInfo]string{
	BadAlg: "badAlg", BadRequest: "badRequest", BadDataFormat: "badDataFormat", TimeNotAvailable: "timeNotAvailable",
	UnacceptedPolicy: "unacceptedPolicy", UnacceptedExtension: "unacceptedExtension",
	AddInfoNotAvailable: "addInfoNotAvailable", SystemFailure: "systemFailure",
}

// String returns the RFC 3161 name of the bit.
func (f FailureInfo) String() string {
	if n, ok := failureNames[f]; ok {
		return n
	}
	return fmt.Sprintf("failureInfo(%d)", int(f))
}

// RequestError is a request the TSA must reject, with the failure bit to
// answer and a text safe to send back (statusString).
type RequestError struct {
	Fail FailureInfo
	Text string
}

func (e *RequestError) Error() string { return "tsp: " + e.Fail.String() + ": " + e.Text }

func reqErr(f FailureInfo, format string, args ...any) error {
	return &RequestError{Fail: f, Text: fmt.Sprintf(format, args...)}
}

// FailureOf returns the failure bit carried by err, or systemFailure.
func FailureOf(err error) FailureInfo {
	var re *RequestError
	if errors.As(err, &re) {
		return re.Fail
	}
	return SystemFailure
}

// MessageImprint is the hash of the data to be time-stamped (RFC 3161 §2.4.1).
type MessageImprint struct {
	// HashAlgorithm is the OID as sent; Hash is the accepted algorithm it
	// names (nil when it names none, which parsing a request refuses).
	HashAlgorithm asn1.ObjectIdentifier
	Hash          *HashAlg
	HashedMessage []byte
	// raw is the DER of the MessageImprint as received, copied into the
	// TSTInfo octet for octet.
	raw []byte
}

// Extension is an X.509-style extension (RFC 5280 §4.1).
type Extension struct {
	ID       asn1.ObjectIdentifier
	Critical bool
	Value    []byte
}

// Request is a TimeStampReq (RFC 3161 §2.4.1).
type Request struct {
	Version        int
	MessageImprint MessageImprint
	// ReqPolicy is nil when the request names no policy.
	ReqPolicy asn1.ObjectIdentifier
	// Nonce is nil when absent.
	Nonce      *big.Int
	CertReq    bool
	Extensions []Extension
}

// MaxNonceLen bounds a nonce (octets); OpenSSL sends 8, RFC 3161 sets no
// limit, a nonce bigger than this is refused as badDataFormat.
const MaxNonceLen = 64

// NewRequest returns a v1 request for digest computed with h.
func NewRequest(h *HashAlg, digest []byte, nonce *big.Int, certReq bool) *Request {
	return &Request{Version: 1, MessageImprint: MessageImprint{HashAlgorithm: h.OID, Hash: h, HashedMessage: digest},
		Nonce: nonce, CertReq: certReq}
}

// Marshal returns the DER of the request.
func (r *Request) Marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(int64(r.Version))
		addImprint(b, &r.MessageImprint)
		if r.ReqPolicy != nil {
			b.AddASN1ObjectIdentifier(r.ReqPolicy)
		}
		if r.Nonce != nil {
			b.AddASN1BigInt(r.Nonce)
		}
		if r.CertReq {
			b.AddASN1Boolean(true)
		}
		if len(r.Extensions) > 0 {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { addExtensions(b, r.Extensions) })
		}
	})
	return b.Bytes()
}

func addImprint(b *cryptobyte.Builder, m *MessageImprint) {
	if m.raw != nil {
		b.AddBytes(m.raw)
		return
	}
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addAlgorithm(b, m.HashAlgorithm, false)
		b.AddASN1OctetString(m.HashedMessage)
	})
}

// addAlgorithm writes an AlgorithmIdentifier; null adds NULL parameters.
func addAlgorithm(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, null bool) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if null {
			b.AddASN1NULL()
		}
	})
}

func addExtensions(b *cryptobyte.Builder, exts []Extension) {
	for _, e := range exts {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(e.ID)
			if e.Critical {
				b.AddASN1Boolean(true)
			}
			b.AddASN1OctetString(e.Value)
		})
	}
}

// ParseRequest parses a DER TimeStampReq strictly. Its errors are
// *RequestError: badDataFormat for anything that is not a well-formed v1
// request (RFC 3161 §2.4.2 "the data submitted has the wrong format"),
// badAlg for a hash algorithm outside HashAlgs, badDataFormat for a digest
// whose length is not the algorithm's. Policy and extensions are the
// caller's to judge (they depend on the TSA's configuration).
func ParseRequest(der []byte) (*Request, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil, reqErr(BadDataFormat, "not a DER TimeStampReq")
	}
	if !in.Empty() {
		return nil, reqErr(BadDataFormat, "trailing data after TimeStampReq")
	}
	r := &Request{}
	var version int64
	if !seq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, reqErr(BadDataFormat, "malformed version")
	}
	if version != 1 {
		return nil, reqErr(BadDataFormat, "version %d is not v1", version)
	}
	r.Version = 1
	mi, err := parseImprint(&seq)
	if err != nil {
		return nil, err
	}
	r.MessageImprint = *mi
	if seq.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
		var oid asn1.ObjectIdentifier
		if !seq.ReadASN1ObjectIdentifier(&oid) {
			return nil, reqErr(BadDataFormat, "malformed reqPolicy")
		}
		r.ReqPolicy = oid
	}
	if seq.PeekASN1Tag(cbasn1.INTEGER) {
		var el cryptobyte.String
		if !seq.ReadASN1Element(&el, cbasn1.INTEGER) {
			return nil, reqErr(BadDataFormat, "malformed nonce")
		}
		if len(el) > MaxNonceLen+2 {
			return nil, reqErr(BadDataFormat, "nonce longer than %d octets", MaxNonceLen)
		}
		n := new(big.Int)
		if !el.ReadASN1Integer(n) {
			return nil, reqErr(BadDataFormat, "malformed nonce")
		}
		r.Nonce = n
	}
	if seq.PeekASN1Tag(cbasn1.BOOLEAN) {
		var v bool
		if !seq.ReadASN1Boolean(&v) {
			return nil, reqErr(BadDataFormat, "malformed certReq")
		}
		if !v {
			// X.690 §11.5: a DEFAULT value is not encoded in DER.
			return nil, reqErr(BadDataFormat, "certReq FALSE encoded (DER omits DEFAULT values)")
		}
		r.CertReq = true
	}
	if seq.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var exts cryptobyte.String
		if !seq.ReadASN1(&exts, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, reqErr(BadDataFormat, "malformed extensions")
		}
		list, err := parseExtensions(exts)
		if err != nil {
			return nil, err
		}
		r.Extensions = list
	}
	if !seq.Empty() {
		return nil, reqErr(BadDataFormat, "unexpected fields in TimeStampReq")
	}
	return r, nil
}

func parseImprint(s *cryptobyte.String) (*MessageImprint, error) {
	var full, seq cryptobyte.String
	if !s.ReadASN1Element(&full, cbasn1.SEQUENCE) {
		return nil, reqErr(BadDataFormat, "malformed messageImprint")
	}
	seq = full
	var body cryptobyte.String
	seq.ReadASN1(&body, cbasn1.SEQUENCE)
	oid, err := parseAlgorithm(&body)
	if err != nil {
		return nil, err
	}
	var digest []byte
	if !body.ReadASN1Bytes(&digest, cbasn1.OCTET_STRING) || !body.Empty() {
		return nil, reqErr(BadDataFormat, "malformed messageImprint")
	}
	mi := &MessageImprint{HashAlgorithm: oid, Hash: HashByOID(oid), HashedMessage: digest, raw: []byte(full)}
	if mi.Hash == nil {
		return nil, reqErr(BadAlg, "hash algorithm %s is not accepted (SM3, SHA-256, SHA-384, SHA-512 are)", oid)
	}
	if len(digest) != mi.Hash.Size {
		return nil, reqErr(BadDataFormat, "%s digest of %d octets, want %d", mi.Hash.Name, len(digest), mi.Hash.Size)
	}
	return mi, nil
}

// parseAlgorithm reads an AlgorithmIdentifier whose parameters are absent
// or NULL (both are seen for hash algorithms, RFC 5754 §2).
func parseAlgorithm(s *cryptobyte.String) (asn1.ObjectIdentifier, error) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, reqErr(BadDataFormat, "malformed AlgorithmIdentifier")
	}
	if !alg.Empty() {
		var null cryptobyte.String
		if !alg.ReadASN1(&null, cbasn1.NULL) || len(null) != 0 || !alg.Empty() {
			return nil, reqErr(BadAlg, "algorithm %s with unexpected parameters", oid)
		}
	}
	return oid, nil
}

func parseExtensions(s cryptobyte.String) ([]Extension, error) {
	var out []Extension
	if s.Empty() {
		return nil, reqErr(BadDataFormat, "empty extensions")
	}
	for !s.Empty() {
		var e cryptobyte.String
		var x Extension
		if !s.ReadASN1(&e, cbasn1.SEQUENCE) || !e.ReadASN1ObjectIdentifier(&x.ID) {
			return nil, reqErr(BadDataFormat, "malformed extension")
		}
		if e.PeekASN1Tag(cbasn1.BOOLEAN) {
			if !e.ReadASN1Boolean(&x.Critical) || !x.Critical {
				return nil, reqErr(BadDataFormat, "malformed extension criticality")
			}
		}
		if !e.ReadASN1Bytes(&x.Value, cbasn1.OCTET_STRING) || !e.Empty() {
			return nil, reqErr(BadDataFormat, "malformed extension")
		}
		out = append(out, x)
	}
	return out, nil
}
