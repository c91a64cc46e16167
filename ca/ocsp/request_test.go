package ocsp

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// encodeRequest re-encodes a parsed request in the RFC 5019 profile.
func encodeRequest(t testing.TB, r *Request) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					addCertID(b, certID{hash: r.HashAlgorithm, nameHash: r.IssuerNameHash, keyHash: r.IssuerKeyHash, serial: r.SerialNumber})
				})
			})
			if r.Nonce != nil {
				b.AddASN1(tagCtx2c, func(b *cryptobyte.Builder) { addExtensions(b, []pkix.Extension{nonceExtension(r.Nonce)}) })
			}
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestRequestRoundTrip(t *testing.T) {
	for _, alg := range []string{"SM2", "ECDSA"} {
		p := pkiFor(t, alg)
		other := pkiFor(t, map[string]string{"SM2": "ECDSA", "ECDSA": "SM2"}[alg])
		for _, h := range []HashAlg{0, SHA1, SHA256, SHA384, SHA512, SM3} {
			for _, nonce := range [][]byte{nil, {0x42}, bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{9}, 32)} {
				t.Run(alg+"/"+h.String()+"/nonce"+string(rune('0'+len(nonce)/8)), func(t *testing.T) {
					der, err := CreateRequest(p.leaf, p.ca, &RequestOptions{Hash: h, Nonce: nonce})
					if err != nil {
						t.Fatal(err)
					}
					r, err := ParseRequest(der)
					if err != nil {
						t.Fatal(err)
					}
					if r.HashAlgorithm != h.orDefault() {
						t.Errorf("hash %v, want %v", r.HashAlgorithm, h.orDefault())
					}
					if r.SerialNumber.Cmp(p.leaf.SerialNumber) != 0 {
						t.Errorf("serial %x, want %x", r.SerialNumber, p.leaf.SerialNumber)
					}
					if !bytes.Equal(r.Nonce, nonce) || (nonce == nil) != (r.Nonce == nil) {
						t.Errorf("nonce %x, want %x", r.Nonce, nonce)
					}
					if !r.MatchesIssuer(p.ca) {
						t.Error("MatchesIssuer(own CA) = false")
					}
					if r.MatchesIssuer(other.ca) || r.MatchesIssuer(p.signer) {
						t.Error("MatchesIssuer(another certificate) = true")
					}
					// The same answers from hashes computed beforehand.
					own, err1 := NewIssuer(p.ca)
					oth, err2 := NewIssuer(other.ca)
					if err1 != nil || err2 != nil {
						t.Fatal(err1, err2)
					}
					if !r.Matches(own) || r.Matches(oth) {
						t.Errorf("Matches(own CA) = %v, Matches(another CA) = %v", r.Matches(own), r.Matches(oth))
					}
					if !bytes.Equal(r.Raw, der) {
						t.Error("Raw differs from the input")
					}
					// DER round trip: parse -> encode is byte-identical.
					if got := encodeRequest(t, r); !bytes.Equal(got, der) {
						t.Errorf("re-encoded request differs:\n got %x\nwant %x", got, der)
					}
				})
			}
		}
	}
}

// TestKeyHashExcludesUnusedBits pins the RFC 6960 §4.1.1/§4.2.1 reading:
// the key hash covers the public key bits, not the BIT STRING's unused-bits
// octet (what OpenSSL computes; the OpenSSL interop test checks it too).
func TestKeyHashExcludesUnusedBits(t *testing.T) {
	p := pkiFor(t, "SM2")
	bits, err := spkiKeyBits(p.ca.RawSubjectPublicKeyInfo)
	if err != nil {
		t.Fatal(err)
	}
	if len(bits) != 65 || bits[0] != 0x04 {
		t.Fatalf("SM2 public key bits: %d octets starting %x, want 65 starting 04", len(bits), bits[:1])
	}
	der, _ := CreateRequest(p.leaf, p.ca, nil)
	r, err := ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	want := sha1.Sum(bits)
	if !bytes.Equal(r.IssuerKeyHash, want[:]) {
		t.Errorf("issuerKeyHash %x, want SHA-1 of the key bits %x", r.IssuerKeyHash, want)
	}
}

func TestRequestNonceLength(t *testing.T) {
	p := pkiFor(t, "SM2")
	for _, n := range []int{0, 1, 16, 32, 33, 128, 129} {
		t.Run(string(rune('0'+n/10))+string(rune('0'+n%10)), func(t *testing.T) {
			der, err := CreateRequest(p.leaf, p.ca, &RequestOptions{Nonce: make([]byte, n)})
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseRequest(der)
			ok := n >= MinNonceLen && n <= MaxNonceLen
			if ok {
				if err != nil {
					t.Fatalf("nonce of %d octets refused: %v", n, err)
				}
				if len(r.Nonce) != n {
					t.Fatalf("nonce %d octets, want %d", len(r.Nonce), n)
				}
				return
			}
			if !errors.Is(err, ErrMalformedRequest) || !errors.Is(err, ErrNonceLength) {
				t.Fatalf("nonce of %d octets: err = %v, want ErrMalformedRequest and ErrNonceLength", n, err)
			}
		})
	}
}

func TestParseRequestMalformed(t *testing.T) {
	p := pkiFor(t, "SM2")
	good, err := CreateRequest(p.leaf, p.ca, &RequestOptions{Nonce: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	id := p.idFor(t, SHA1)
	id256 := p.idFor(t, SHA256)
	unknownCrit := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: nullDER}
	unknownNonCrit := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: nullDER}
	nonce := nonceExtension([]byte("0123456789abcdef"))
	bareNonce := pkix.Extension{Id: OIDNonce, Value: []byte("0123456789abcdef")}
	critFalse := buildRequest(reqSpec{ids: []certID{id}, rawExtsBody: []byte{
		0x30, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x01, 0x01, 0x00, 0x04, 0x02, 0x05, 0x00}})
	longSerial := id
	longSerial.serial = new(big.Int).Lsh(big.NewInt(1), 8*80)

	tests := []struct {
		name string
		der  []byte
		want error // besides ErrMalformedRequest
	}{
		{"empty", nil, nil},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), nil},
		{"truncated", good[:len(good)-3], nil},
		{"truncated header", good[:1], nil},
		{"trailing bytes", append(bytes.Clone(good), 0x00), nil},
		{"trailing element", append(bytes.Clone(good), 0x05, 0x00), nil},
		{"indefinite length", append([]byte{0x30, 0x80}, append(good[2:], 0, 0)...), nil},
		{"too large", append(bytes.Clone(good), make([]byte, MaxRequestSize)...), ErrRequestTooLarge},
		{"version v1 explicit", buildRequest(reqSpec{version: ptr[int64](0), ids: []certID{id}}), errNotDER},
		{"version v2", buildRequest(reqSpec{version: ptr[int64](1), ids: []certID{id}}), ErrUnsupportedVersion},
		{"two requests", buildRequest(reqSpec{ids: []certID{id, id256}}), ErrTooManyRequests},
		{"three requests", buildRequest(reqSpec{ids: []certID{id, id, id}}), ErrTooManyRequests},
		{"no request", buildRequest(reqSpec{}), nil},
		{"unknown critical extension", buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{nonce, unknownCrit}}), ErrUnhandledCriticalExtension},
		{"unknown critical single extension", buildRequest(reqSpec{ids: []certID{id}, singleExts: []pkix.Extension{unknownCrit}}), ErrUnhandledCriticalExtension},
		{"critical FALSE encoded", critFalse, errNotDER},
		{"duplicate nonce", buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{nonce, nonce}}), nil},
		{"empty extensions", buildRequest(reqSpec{ids: []certID{id}, rawExtsBody: []byte{0x30, 0x00}}), nil},
		{"nonce not an OCTET STRING", buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{bareNonce}}), nil},
		{"huge nonce", buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{nonceExtension(make([]byte, 4000))}}), ErrNonceLength},
		{"zero nonce", buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{nonceExtension([]byte{})}}), ErrNonceLength},
		{"unknown hash", buildRequest(reqSpec{ids: []certID{id}, hashOID: asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}}), ErrUnsupportedHash},
		{"hash length wrong", buildRequest(reqSpec{ids: []certID{id}, hashOID: oidSHA256}), nil},
		{"hash parameters", buildRequest(reqSpec{ids: []certID{id}, hashParams: []byte{0x04, 0x00}}), nil},
		{"serial too long", buildRequest(reqSpec{ids: []certID{longSerial}}), nil},
		{"not DER length", append([]byte{0x30, 0x81, byte(len(good) - 2)}, good[2:]...), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest(tc.der)
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			if !errors.Is(err, ErrMalformedRequest) {
				t.Errorf("err = %v, does not wrap ErrMalformedRequest", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "ocsp: malformed request") {
				t.Errorf("message %q", err)
			}
		})
	}

	// What the profile tolerates: absent hash parameters, a requestor
	// name, a request signature (not verified), unknown non-critical
	// extensions.
	accepted := []struct {
		name string
		der  []byte
	}{
		{"hash parameters absent", buildRequest(reqSpec{ids: []certID{id}})},
		{"hash parameters NULL", buildRequest(reqSpec{ids: []certID{id}, hashParams: nullDER})},
		{"requestorName and signature", buildRequest(reqSpec{ids: []certID{id}, name: true, signature: true})},
		{"unknown non-critical extensions", buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{unknownNonCrit}, singleExts: []pkix.Extension{unknownNonCrit}})},
		{"critical nonce", buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{{Id: OIDNonce, Critical: true, Value: nonce.Value}}})},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest(tc.der)
			if err != nil {
				t.Fatal(err)
			}
			if !r.MatchesIssuer(p.ca) || r.SerialNumber.Cmp(p.leaf.SerialNumber) != 0 {
				t.Error("CertID not read back")
			}
		})
	}
}

func TestGETPath(t *testing.T) {
	p := pkiFor(t, "ECDSA")
	// Search serials until the base64 holds '/', '+' and "//" (C-08).
	var der []byte
	var b64 string
	// Serials of 16 pseudo-random octets make ~22 base64 characters vary:
	// about one in 700 holds both, so 100000 tries never run dry.
	for i := 0; i < 100000; i++ {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		d, err := CreateRequestForSerial(new(big.Int).SetBytes(h[:16]), p.ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := EncodeGETPath(d)
		if strings.Contains(s, "%2F%2F") && strings.Contains(s, "%2B") {
			der, b64 = d, s
			break
		}
	}
	if der == nil {
		t.Fatal("no request whose base64 holds // and +")
	}
	if strings.ContainsAny(b64, "+/=") {
		t.Fatalf("EncodeGETPath left a reserved character: %s", b64)
	}
	std := strings.NewReplacer("%2B", "+", "%2F", "/", "%3D", "=").Replace(b64)
	variants := map[string]string{
		"encoded":             b64,
		"raw base64":          std,
		"plus as space":       strings.ReplaceAll(std, "+", " "),
		"plus as %20":         strings.ReplaceAll(std, "+", "%20"),
		"no padding":          strings.TrimRight(std, "="),
		"lower-case escapes":  strings.ToLower(strings.ReplaceAll(b64, "%2F", "%2f")),
		"mixed with raw '/'":  strings.ReplaceAll(b64, "%2F", "/"),
		"escaped padding raw": strings.ReplaceAll(b64, "%3D", "="),
	}
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			if name == "lower-case escapes" {
				// Lower-casing touched the base64 too; only the escapes must be.
				v = strings.ReplaceAll(b64, "%2F", "%2f")
			}
			got, err := DecodeGETPath(v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, der) {
				t.Fatal("decoded request differs")
			}
			// What a router's wildcard holds: decoded once.
			unesc, err := url.PathUnescape(v)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := DecodeGETValue(unesc); err != nil || !bytes.Equal(got, der) {
				t.Fatalf("DecodeGETValue: %v, or the request differs", err)
			}
		})
	}
	for name, v := range map[string]string{
		"empty":         "",
		"bad escape":    "%zz",
		"not base64":    "!!!!",
		"merged slash":  strings.Replace(std, "//", "/", 1),
		"huge":          strings.Repeat("A", 4*base64Len(MaxRequestSize)),
		"invalid chars": "MEIw*EAw",
	} {
		t.Run("refuse "+name, func(t *testing.T) {
			if unesc, uerr := url.PathUnescape(v); uerr == nil {
				d, err := DecodeGETValue(unesc)
				if err == nil {
					if _, perr := ParseRequest(d); perr == nil {
						t.Fatal("DecodeGETValue: accepted")
					}
				} else if !errors.Is(err, ErrMalformedRequest) {
					t.Errorf("DecodeGETValue: err = %v, does not wrap ErrMalformedRequest", err)
				}
			}
			d, err := DecodeGETPath(v)
			if err == nil {
				// A merged "//" may still decode to bytes; ParseRequest
				// must then refuse them.
				if _, perr := ParseRequest(d); perr == nil {
					t.Fatal("accepted")
				}
				return
			}
			if !errors.Is(err, ErrMalformedRequest) {
				t.Errorf("err = %v, does not wrap ErrMalformedRequest", err)
			}
		})
	}
}

func base64Len(n int) int { return (n + 2) / 3 * 4 }
