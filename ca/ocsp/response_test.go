package ocsp

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func TestResponseRoundTrip(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	revokedAt := now.Add(-3 * time.Hour)
	statuses := []struct {
		name   string
		status Status
		at     time.Time
		reason int
		want   int // RevocationReason read back
	}{
		{"good", Good, time.Time{}, NoReason, NoReason},
		{"revoked keyCompromise", Revoked, revokedAt, ReasonKeyCompromise, ReasonKeyCompromise},
		{"revoked superseded", Revoked, revokedAt, ReasonSuperseded, ReasonSuperseded},
		{"revoked without reason", Revoked, revokedAt, NoReason, NoReason},
		{"revoked unspecified omitted", Revoked, revokedAt, ReasonUnspecified, NoReason},
		{"unknown", Unknown, time.Time{}, NoReason, NoReason},
	}
	for _, alg := range []string{"SM2", "ECDSA"} {
		p := pkiFor(t, alg)
		for _, delegated := range []bool{true, false} {
			for _, h := range []HashAlg{SHA1, SHA256, SM3} {
				for _, st := range statuses {
					name := fmt.Sprintf("%s/delegated=%v/%v/%s", alg, delegated, h, st.name)
					t.Run(name, func(t *testing.T) {
						tmpl := p.baseTemplate(now)
						tmpl.HashAlgorithm, tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = h, st.status, st.at, st.reason
						tmpl.Nonce = []byte("nonce-" + name)[:16]
						responder, key := p.signer, p.signerKey
						if !delegated {
							responder, key = p.ca, p.caKey
						}
						der, err := CreateResponse(p.ca, responder, tmpl, key)
						if err != nil {
							t.Fatal(err)
						}
						r, err := ParseResponse(der, p.ca)
						if err != nil {
							t.Fatal(err)
						}
						checkResponse(t, r, tmpl, st.want)
						if delegated {
							if r.Certificate == nil || !r.Certificate.Equal(p.signer) || len(r.Certificates) != 1 {
								t.Error("delegated responder certificate not included")
							}
						} else if r.Certificate != nil || len(r.Certificates) != 0 {
							t.Error("issuer-signed response carries certificates")
						}
						wantAlg := map[string]smx509.SignatureAlgorithm{"SM2": smx509.SM2WithSM3, "ECDSA": smx509.ECDSAWithSHA256}[alg]
						if r.SignatureAlgorithm != wantAlg {
							t.Errorf("signature algorithm %v, want %v", r.SignatureAlgorithm, wantAlg)
						}
						if alg == "SM2" && !r.SignatureAlgorithmOID.Equal(OIDSM2WithSM3) {
							t.Errorf("SM2 signature OID %v, want 1.2.156.10197.1.501", r.SignatureAlgorithmOID)
						}
						// The response's CertID is what a request made with the
						// same hash names, so clients match it.
						req, _ := CreateRequest(p.leaf, p.ca, &RequestOptions{Hash: h})
						pr, _ := ParseRequest(req)
						if !bytes.Equal(pr.IssuerNameHash, r.IssuerNameHash) || !bytes.Equal(pr.IssuerKeyHash, r.IssuerKeyHash) {
							t.Error("response CertID differs from the request's")
						}
					})
				}
			}
		}
	}
}

func checkResponse(t *testing.T, r *Response, tmpl Template, wantReason int) {
	t.Helper()
	if r.Status != tmpl.Status {
		t.Errorf("status %v, want %v", r.Status, tmpl.Status)
	}
	if r.SerialNumber.Cmp(tmpl.SerialNumber) != 0 {
		t.Errorf("serial %x, want %x", r.SerialNumber, tmpl.SerialNumber)
	}
	if r.HashAlgorithm != tmpl.HashAlgorithm.orDefault() {
		t.Errorf("hash %v, want %v", r.HashAlgorithm, tmpl.HashAlgorithm)
	}
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{
		{"thisUpdate", r.ThisUpdate, tmpl.ThisUpdate},
		{"nextUpdate", r.NextUpdate, tmpl.NextUpdate},
		{"producedAt", r.ProducedAt, tmpl.ProducedAt},
		{"revocationTime", r.RevokedAt, tmpl.RevokedAt},
	} {
		if !c.got.Equal(c.want.Truncate(time.Second)) {
			t.Errorf("%s %v, want %v", c.name, c.got, c.want)
		}
	}
	if r.RevocationReason != wantReason {
		t.Errorf("reason %d, want %d", r.RevocationReason, wantReason)
	}
	if !bytes.Equal(r.Nonce, tmpl.Nonce) {
		t.Errorf("nonce %x, want %x", r.Nonce, tmpl.Nonce)
	}
	if r.ExtendedRevoke != tmpl.ExtendedRevoke {
		t.Errorf("extended revoke %v", r.ExtendedRevoke)
	}
	if len(r.ResponderKeyHash) != 20 || r.RawResponderName != nil {
		t.Error("ResponderID is not byKey with a SHA-1 hash")
	}
}

// TestNonceEcho follows a nonce from a request into the response.
func TestNonceEcho(t *testing.T) {
	p := pkiFor(t, "SM2")
	now := time.Now()
	for _, n := range []int{1, 16, 32} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			nonce := bytes.Repeat([]byte{byte(n)}, n)
			der, _ := CreateRequest(p.leaf, p.ca, &RequestOptions{Hash: SM3, Nonce: nonce})
			req, err := ParseRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			tmpl := p.baseTemplate(now)
			tmpl.HashAlgorithm, tmpl.SerialNumber, tmpl.Nonce = req.HashAlgorithm, req.SerialNumber, req.Nonce
			resp, err := CreateResponse(p.ca, p.signer, tmpl, p.signerKey)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseResponse(resp, p.ca)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Nonce, nonce) {
				t.Fatalf("nonce %x, want %x", r.Nonce, nonce)
			}
		})
	}
}

func TestExtendedRevokeAndExtraExtensions(t *testing.T) {
	p := pkiFor(t, "ECDSA")
	tmpl := p.baseTemplate(time.Now())
	// RFC 6960 §2.2: a serial never issued answered "revoked",
	// certificateHold, revocationTime 1970-01-01, with extended revoke.
	tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = Revoked, time.Unix(0, 0), ReasonCertificateHold
	tmpl.SerialNumber = big.NewInt(987654321)
	tmpl.ExtendedRevoke = true
	tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 9}, Value: nullDER}}
	der, err := CreateResponse(p.ca, p.signer, tmpl, p.signerKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponse(der, p.ca)
	if err != nil {
		t.Fatal(err)
	}
	checkResponse(t, r, tmpl, ReasonCertificateHold)
	if len(r.Extensions) != 2 || findExtension(r.Extensions, asn1.ObjectIdentifier{1, 2, 3, 9}) == nil {
		t.Errorf("extensions %v", r.Extensions)
	}
}

func TestResponseP384(t *testing.T) {
	ca := pkiFor(t, "ECDSA")
	key := newKey(t, "ECDSA-P384")
	now := time.Now()
	signer := issue(t, signerTemplate("P-384 signer", now.Add(-time.Hour), now.Add(time.Hour), true), ca.ca, key.Public(), ca.caKey)
	der, err := CreateResponse(ca.ca, signer, ca.baseTemplate(now), key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponse(der, ca.ca)
	if err != nil {
		t.Fatal(err)
	}
	if r.SignatureAlgorithm != smx509.ECDSAWithSHA384 {
		t.Errorf("P-384 signs with %v, want ECDSA-SHA384", r.SignatureAlgorithm)
	}
}

// TestSM2SignOIDAccepted: a response naming its algorithm by the bare SM2
// signature OID 1.2.156.10197.1.301.1 (seen in the wild) verifies, and an
// unknown algorithm does not.
func TestSM2SignOIDAccepted(t *testing.T) {
	p := pkiFor(t, "SM2")
	der, err := CreateResponse(p.ca, p.signer, p.baseTemplate(time.Now()), p.signerKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResponse(der, p.ca)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		oid    asn1.ObjectIdentifier
		params []byte
		ok     bool
	}{
		{"301.1", OIDSM2Sign, nil, true},
		{"501 with NULL", OIDSM2WithSM3, nullDER, true},
		{"ECDSA OID on SM2 key", oidECDSAWithSHA256, nil, false},
		{"SHA-1 RSA", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, nullDER, false},
		{"parameters", OIDSM2WithSM3, []byte{0x04, 0x00}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResponse(assemble(r.TBSResponseData, tc.oid, tc.params, r.Signature, p.signer), p.ca)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if got.SignatureAlgorithm != smx509.SM2WithSM3 {
					t.Errorf("algorithm %v", got.SignatureAlgorithm)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestResponseVerification: ParseResponse refuses responses whose signer is
// not the issuer or a delegate it authorised.
func TestResponseVerification(t *testing.T) {
	now := time.Now()
	for _, alg := range []string{"SM2", "ECDSA"} {
		p := pkiFor(t, alg)
		other := newTestPKI(t, alg)
		good, err := CreateResponse(p.ca, p.signer, p.baseTemplate(now), p.signerKey)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseResponse(good, p.ca)
		if err != nil {
			t.Fatal(err)
		}
		tbs := r.TBSResponseData
		oid := r.SignatureAlgorithmOID

		// Certificates for the same signer key that do not authorise it.
		noEKU := issue(t, signerTemplate("no EKU", now.Add(-time.Hour), now.Add(time.Hour), false), p.ca, p.signerKey.Public(), p.caKey)
		expired := issue(t, signerTemplate("expired", now.Add(-48*time.Hour), now.Add(-24*time.Hour), true), p.ca, p.signerKey.Public(), p.caKey)
		// A rogue CA with the same subject name but another key.
		rogueKey := newKey(t, alg)
		rogue := issue(t, &smx509.Certificate{
			SerialNumber: nextSerial(), Subject: p.ca.Subject, NotBefore: p.ca.NotBefore, NotAfter: p.ca.NotAfter,
			KeyUsage: smx509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		}, nil, rogueKey.Public(), rogueKey)
		rogueSigned := issue(t, signerTemplate("rogue", now.Add(-time.Hour), now.Add(time.Hour), true), rogue, p.signerKey.Public(), rogueKey)

		_, otherSig := signWith(t, other.signerKey, tbs)
		tampered := bytes.Clone(tbs)
		tampered[len(tampered)-5] ^= 0x01

		tests := []struct {
			name   string
			der    []byte
			issuer *smx509.Certificate
			want   error
		}{
			{"other issuer", good, other.ca, ErrIssuerMismatch},
			{"tampered TBS", assemble(tampered, oid, nil, r.Signature, p.signer), p.ca, nil},
			{"truncated signature", assemble(tbs, oid, nil, r.Signature[:len(r.Signature)-1], p.signer), p.ca, nil},
			{"signature by another key", assemble(tbs, oid, nil, otherSig, p.signer), p.ca, ErrResponseSignature},
			{"no certificate included", assemble(tbs, oid, nil, r.Signature), p.ca, ErrResponderNotAuthorized},
			{"delegate without id-kp-OCSPSigning", assemble(tbs, oid, nil, r.Signature, noEKU), p.ca, ErrResponderNotAuthorized},
			{"delegate expired at producedAt", assemble(tbs, oid, nil, r.Signature, expired), p.ca, ErrResponderNotAuthorized},
			{"delegate from a same-name rogue CA", assemble(tbs, oid, nil, r.Signature, rogueSigned), p.ca, ErrResponderNotAuthorized},
			{"another PKI's signer", assemble(tbs, oid, nil, r.Signature, other.signer), p.ca, ErrResponderNotAuthorized},
		}
		for _, tc := range tests {
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				got, err := ParseResponse(tc.der, tc.issuer)
				if err == nil {
					t.Fatalf("accepted: %+v", got)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("err = %v, want %v", err, tc.want)
				}
				if tc.want == nil && !errors.Is(err, ErrResponseSignature) && !errors.Is(err, ErrMalformedResponse) {
					t.Errorf("err = %v, want a signature or encoding error", err)
				}
			})
		}
		t.Run(alg+"/control: re-assembled original verifies", func(t *testing.T) {
			if _, err := ParseResponse(assemble(tbs, oid, nil, r.Signature, p.signer), p.ca); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCreateResponseRefuses(t *testing.T) {
	p := pkiFor(t, "SM2")
	e := pkiFor(t, "ECDSA")
	now := time.Now()
	noEKU := issue(t, signerTemplate("no EKU", now.Add(-time.Hour), now.Add(time.Hour), false), p.ca, p.signerKey.Public(), p.caKey)
	mod := func(f func(*Template)) Template {
		tm := p.baseTemplate(now)
		f(&tm)
		return tm
	}
	tests := []struct {
		name      string
		responder *smx509.Certificate
		key       crypto.Signer
		tmpl      Template
	}{
		{"no serial", p.signer, p.signerKey, mod(func(t *Template) { t.SerialNumber = nil })},
		{"no thisUpdate", p.signer, p.signerKey, mod(func(t *Template) { t.ThisUpdate = time.Time{} })},
		{"no producedAt", p.signer, p.signerKey, mod(func(t *Template) { t.ProducedAt = time.Time{} })},
		{"nextUpdate before thisUpdate", p.signer, p.signerKey, mod(func(t *Template) { t.NextUpdate = t.ThisUpdate.Add(-time.Second) })},
		{"revoked without time", p.signer, p.signerKey, mod(func(t *Template) { t.Status = Revoked })},
		{"revoked after thisUpdate", p.signer, p.signerKey, mod(func(t *Template) { t.Status, t.RevokedAt = Revoked, t.ThisUpdate.Add(time.Hour) })},
		{"reason 7", p.signer, p.signerKey, mod(func(t *Template) { t.Status, t.RevokedAt, t.RevocationReason = Revoked, now.Add(-time.Hour), 7 })},
		{"good with a reason", p.signer, p.signerKey, mod(func(t *Template) { t.RevocationReason = ReasonKeyCompromise })},
		{"bad status", p.signer, p.signerKey, mod(func(t *Template) { t.Status = 3 })},
		{"bad hash", p.signer, p.signerKey, mod(func(t *Template) { t.HashAlgorithm = 99 })},
		{"empty nonce", p.signer, p.signerKey, mod(func(t *Template) { t.Nonce = []byte{} })},
		{"nonce of 129", p.signer, p.signerKey, mod(func(t *Template) { t.Nonce = make([]byte, 129) })},
		{"duplicate extension", p.signer, p.signerKey, mod(func(t *Template) {
			t.Nonce = []byte{1}
			t.ExtraExtensions = []pkix.Extension{nonceExtension([]byte{2})}
		})},
		{"producedAt after responder expiry", p.signer, p.signerKey, mod(func(t *Template) { t.ProducedAt = p.signer.NotAfter.Add(time.Second) })},
		{"signer key is not the responder's", p.signer, p.caKey, p.baseTemplate(now)},
		{"responder without id-kp-OCSPSigning", noEKU, p.signerKey, p.baseTemplate(now)},
		{"responder from another CA", e.signer, e.signerKey, p.baseTemplate(now)},
		{"ECDSA algorithm for SM2 key", p.signer, p.signerKey, mod(func(t *Template) { t.SignatureAlgorithm = smx509.ECDSAWithSHA256 })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der, err := CreateResponse(p.ca, tc.responder, tc.tmpl, tc.key)
			if err == nil {
				t.Fatalf("signed %x", der)
			}
			if !strings.HasPrefix(err.Error(), "ocsp: create response: ") {
				t.Errorf("message %q", err)
			}
		})
	}
}

func TestErrorResponses(t *testing.T) {
	p := pkiFor(t, "SM2")
	for _, s := range []ResponseStatus{MalformedRequest, InternalError, TryLater, SigRequired, Unauthorized} {
		t.Run(s.String(), func(t *testing.T) {
			der := CreateErrorResponse(s)
			// RFC 6960 §4.2.1: SEQUENCE { ENUMERATED }, no responseBytes.
			want := []byte{0x30, 0x03, 0x0a, 0x01, byte(s)}
			if !bytes.Equal(der, want) {
				t.Errorf("%x, want %x", der, want)
			}
			_, err := ParseResponse(der, p.ca)
			var re *ResponseError
			if !errors.As(err, &re) || re.Status != s {
				t.Fatalf("err = %v, want ResponseError %v", err, s)
			}
		})
	}
	for _, s := range []ResponseStatus{Successful, 4, 7, -1} {
		t.Run(fmt.Sprintf("panics on %d", int(s)), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			CreateErrorResponse(s)
		})
	}
}

// TestParseResponseMalformed feeds broken encodings; each must be an error
// wrapping ErrMalformedResponse, not a panic.
func TestParseResponseMalformed(t *testing.T) {
	p := pkiFor(t, "SM2")
	good, err := CreateResponse(p.ca, p.signer, p.baseTemplate(time.Now()), p.signerKey)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := ParseResponse(good, p.ca)
	// ResponseData with an explicit version, re-signed so only the version
	// is wrong.
	withVersion := func(v int64) []byte {
		s := cryptobyte.String(r.TBSResponseData)
		var body cryptobyte.String
		s.ReadASN1(&body, cbasn1.SEQUENCE)
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(tagCtx0c, func(b *cryptobyte.Builder) { b.AddASN1Int64(v) })
			b.AddBytes(body)
		})
		tbs := b.BytesOrPanic()
		oid, sig := signWith(t, p.signerKey, tbs)
		return assemble(tbs, oid, nil, sig, p.signer)
	}
	// tryLater followed by the responseBytes of a good response.
	outer := cryptobyte.String(good)
	var body cryptobyte.String
	var st int
	outer.ReadASN1(&body, cbasn1.SEQUENCE)
	body.ReadASN1Enum(&st)
	var eb cryptobyte.Builder
	eb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(int64(TryLater))
		b.AddBytes(body)
	})
	errorWithBytes := eb.BytesOrPanic()
	tests := []struct {
		name string
		der  []byte
		want error
	}{
		{"empty", nil, nil},
		{"garbage", []byte("<html>503</html>"), nil},
		{"truncated", good[:len(good)/2], nil},
		{"trailing bytes", append(bytes.Clone(good), 0), nil},
		{"status only successful", []byte{0x30, 0x03, 0x0a, 0x01, 0x00}, nil},
		{"undefined status", []byte{0x30, 0x03, 0x0a, 0x01, 0x04}, nil},
		{"error status with responseBytes", errorWithBytes, nil},
		{"version v2", withVersion(1), ErrUnsupportedVersion},
		{"version v1 explicit", withVersion(0), errNotDER},
		{"too large", make([]byte, MaxResponseSize+1), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResponse(tc.der, p.ca)
			if err == nil {
				t.Fatalf("accepted %+v", got)
			}
			if !errors.Is(err, ErrMalformedResponse) {
				t.Errorf("err = %v, want ErrMalformedResponse", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestParseResponseForCert picks one of several SingleResponses.
func TestParseResponseForCert(t *testing.T) {
	p := pkiFor(t, "ECDSA")
	now := time.Now()
	one, _ := CreateResponse(p.ca, p.signer, p.baseTemplate(now), p.signerKey)
	r, err := ParseResponse(one, p.ca)
	if err != nil {
		t.Fatal(err)
	}
	// Build ResponseData with two SingleResponses: another serial, then ours.
	s := cryptobyte.String(r.TBSResponseData)
	var body, rid, produced, list cryptobyte.String
	var tag cbasn1.Tag
	s.ReadASN1(&body, cbasn1.SEQUENCE)
	body.ReadAnyASN1Element(&rid, &tag)
	body.ReadAnyASN1Element(&produced, &tag)
	body.ReadASN1(&list, cbasn1.SEQUENCE)
	single := []byte(list)
	otherTmpl := p.baseTemplate(now)
	otherTmpl.SerialNumber, otherTmpl.Status = big.NewInt(77), Unknown
	o, _ := CreateResponse(p.ca, p.signer, otherTmpl, p.signerKey)
	or, _ := ParseResponse(o, p.ca)
	s2 := cryptobyte.String(or.TBSResponseData)
	var body2, list2 cryptobyte.String
	s2.ReadASN1(&body2, cbasn1.SEQUENCE)
	body2.ReadAnyASN1Element(&rid, &tag)
	body2.ReadAnyASN1Element(&produced, &tag)
	body2.ReadASN1(&list2, cbasn1.SEQUENCE)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(rid)
		b.AddBytes(produced)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(list2)
			b.AddBytes(single)
		})
		b.AddBytes(body) // the remaining responseExtensions, if any
	})
	tbs := b.BytesOrPanic()
	oid, sig := signWith(t, p.signerKey, tbs)
	der := assemble(tbs, oid, nil, sig, p.signer)

	if _, err := ParseResponse(der, p.ca); err == nil {
		t.Error("ParseResponse accepted two SingleResponses")
	}
	got, err := ParseResponseForCert(der, p.leaf, p.ca)
	if err != nil {
		t.Fatal(err)
	}
	if got.SerialNumber.Cmp(p.leaf.SerialNumber) != 0 || got.Status != Good {
		t.Errorf("picked serial %x status %v", got.SerialNumber, got.Status)
	}
	if _, err := ParseResponseForCert(der, p.signer, p.ca); !errors.Is(err, ErrNoSuchSerial) {
		t.Errorf("serial absent: err = %v, want ErrNoSuchSerial", err)
	}
}

func TestCheckResponder(t *testing.T) {
	for _, alg := range []string{"SM2", "ECDSA"} {
		p := pkiFor(t, alg)
		if err := CheckResponder(p.ca, p.signer); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
		if !HasNoCheck(p.signer) || HasNoCheck(p.leaf) {
			t.Errorf("%s: HasNoCheck wrong", alg)
		}
		if err := CheckResponder(p.ca, p.leaf); !errors.Is(err, ErrResponderNotAuthorized) {
			t.Errorf("%s: leaf without OCSPSigning: %v", alg, err)
		}
	}
}

func TestGeneralizedTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want time.Time
	}{
		{"20260102030405Z", true, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"20260102030405.5Z", true, time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC)},
		{"20260102030405.123456789Z", true, time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)},
		{"20260102030405.50Z", false, time.Time{}},  // trailing zero
		{"20260102030405.Z", false, time.Time{}},    // empty fraction
		{"20260102030405+0800", false, time.Time{}}, // not Z
		{"202601020304Z", false, time.Time{}},       // no seconds
		{"20261302030405Z", false, time.Time{}},     // month 13
		{"20260230030405Z", false, time.Time{}},     // 30 February
		{"2026010203040 Z", false, time.Time{}},
		{"+0260102030405Z", false, time.Time{}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var b cryptobyte.Builder
			b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte(tc.in)) })
			s := cryptobyte.String(b.BytesOrPanic())
			got, ok := readGeneralizedTime(&s)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Errorf("got %v %v, want %v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestCheckTime: the time checks ParseResponse leaves to the caller (RFC
// 6960 §3.2 items 4 to 6) at a time of the caller's choosing, with the skew
// tolerance and a maximum age.
func TestCheckTime(t *testing.T) {
	p := pkiFor(t, "ECDSA")
	now := time.Now().Truncate(time.Second)
	// The signer is valid from now-1h to now+30d (newTestPKI); a second one
	// valid for an hour from now-2h expired an hour ago.
	shortSigner := issue(t, signerTemplate("short-lived signer", now.Add(-2*time.Hour), now.Add(-time.Hour), true), p.ca, p.signerKey.Public(), p.caKey)
	parse := func(t *testing.T, tmpl Template, responder *smx509.Certificate) *Response {
		t.Helper()
		key := p.signerKey
		if responder == p.ca {
			key = p.caKey
		}
		der, err := CreateResponse(p.ca, responder, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseResponse(der, p.ca)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tmpl := Template{Status: Good, SerialNumber: p.leaf.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), ProducedAt: now, RevocationReason: NoReason}
	good := parse(t, tmpl, p.signer)
	noNext := tmpl
	noNext.NextUpdate = time.Time{}
	open := parse(t, noNext, p.signer)
	byCA := parse(t, tmpl, p.ca)
	// Produced while the short-lived signer was valid: ParseResponse accepts
	// it (producedAt), CheckTime now does not.
	old := tmpl
	old.ThisUpdate, old.ProducedAt, old.NextUpdate = now.Add(-90*time.Minute), now.Add(-90*time.Minute), now.Add(22*time.Hour)
	oldSigner := parse(t, old, shortSigner)

	tests := []struct {
		name string
		r    *Response
		at   time.Time
		opts *TimeOptions
		want error // nil: accepted
	}{
		{"now", good, now.Add(time.Minute), nil, nil},
		{"at thisUpdate", good, now, nil, nil},
		{"thisUpdate a minute ahead, default skew", good, now.Add(-time.Minute), nil, nil},
		{"thisUpdate a minute ahead, no skew", good, now.Add(-time.Minute), &TimeOptions{Skew: -1}, ErrResponseTime},
		{"thisUpdate 10 min ahead", good, now.Add(-10 * time.Minute), nil, ErrResponseTime},
		{"thisUpdate 10 min ahead, 15 min skew", good, now.Add(-10 * time.Minute), &TimeOptions{Skew: 15 * time.Minute}, nil},
		{"just before nextUpdate", good, now.Add(24*time.Hour - time.Second), &TimeOptions{Skew: -1}, nil},
		{"at nextUpdate, no skew", good, now.Add(24 * time.Hour), &TimeOptions{Skew: -1}, ErrResponseTime},
		{"nextUpdate passed within the skew", good, now.Add(24*time.Hour + time.Minute), nil, nil},
		{"nextUpdate passed", good, now.Add(25 * time.Hour), nil, ErrResponseTime},
		{"within max age", good, now.Add(time.Hour), &TimeOptions{MaxAge: 2 * time.Hour}, nil},
		{"older than max age", good, now.Add(3 * time.Hour), &TimeOptions{MaxAge: 2 * time.Hour}, ErrResponseTime},
		{"no nextUpdate, no max age", open, now, nil, ErrResponseTime},
		{"no nextUpdate, within max age", open, now.Add(time.Minute), &TimeOptions{MaxAge: time.Hour}, nil},
		{"no nextUpdate, older than max age", open, now.Add(2 * time.Hour), &TimeOptions{MaxAge: time.Hour}, ErrResponseTime},
		{"signed by the CA: no certificate to check", byCA, now.Add(time.Hour), nil, nil},
		{"responder certificate expired at the time checked", oldSigner, now, nil, ErrResponderNotAuthorized},
		{"responder certificate valid at the time checked", oldSigner, now.Add(-80 * time.Minute), nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.CheckTime(tc.at, tc.opts)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// The responder certificate's own start, apart from thisUpdate: a
	// response whose thisUpdate predates its signer's notBefore (allowed:
	// thisUpdate is when the status was known), checked before notBefore.
	early := tmpl
	early.ThisUpdate = now.Add(-3 * time.Hour)
	r := parse(t, early, p.signer)
	if err := r.CheckTime(now.Add(-2*time.Hour), nil); !errors.Is(err, ErrResponderNotAuthorized) {
		t.Errorf("before the responder certificate's notBefore: %v", err)
	}
	if err := r.CheckTime(now.Add(-time.Hour+time.Minute), nil); err != nil {
		t.Errorf("after the responder certificate's notBefore: %v", err)
	}
	if err := good.CheckTime(time.Time{}, nil); err == nil {
		t.Error("zero time accepted")
	}
}
