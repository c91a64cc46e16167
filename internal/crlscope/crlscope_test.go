package crlscope

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func uriName(u string) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
	return b.BytesOrPanic()
}

// fullDPName is a distributionPoint [0] holding a fullName of the names.
func fullDPName(names ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tagDPName, func(b *cryptobyte.Builder) {
		b.AddASN1(tagFullName, func(b *cryptobyte.Builder) {
			for _, n := range names {
				b.AddBytes(n)
			}
		})
	})
	return b.BytesOrPanic()
}

// relativeDPName is a distributionPoint [0] holding a nameRelativeToCRLIssuer
// of one CN.
func relativeDPName(cn string) []byte {
	atv, _ := asn1.Marshal(pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn})
	var b cryptobyte.Builder
	b.AddASN1(tagDPName, func(b *cryptobyte.Builder) {
		b.AddASN1(tagRelative, func(b *cryptobyte.Builder) { b.AddBytes(atv) })
	})
	return b.BytesOrPanic()
}

// crlDP is a cRLDistributionPoints extension: one DistributionPoint per
// distributionPoint name.
func crlDP(dpNames ...[]byte) pkix.Extension {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, n := range dpNames {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(n) })
		}
	})
	return pkix.Extension{Id: oidExtCRLDP, Value: b.BytesOrPanic()}
}

type idpSpec struct {
	dpName                               []byte
	onlyUser, onlyCA, indirect, onlyAttr bool
	reasons                              []byte // onlySomeReasons BIT STRING contents
}

func idpValue(s idpSpec) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(s.dpName)
		flag := func(on bool, tag int) {
			if on {
				b.AddASN1(cbasn1.Tag(tag).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddUint8(0xff) })
			}
		}
		flag(s.onlyUser, 1)
		flag(s.onlyCA, 2)
		if s.reasons != nil {
			b.AddASN1(cbasn1.Tag(3).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(s.reasons) })
		}
		flag(s.indirect, 4)
		flag(s.onlyAttr, 5)
	})
	return b.BytesOrPanic()
}

var issuer, _ = asn1.Marshal(pkix.Name{CommonName: "scope CA"}.ToRDNSequence())

func number(n int64) pkix.Extension {
	v, _ := asn1.Marshal(big.NewInt(n))
	return pkix.Extension{Id: oidExtCRLNumber, Value: v}
}

// Read tells a delta CRL from a complete one and refuses what must not be
// used (RFC 5280 §5.2).
func TestRead(t *testing.T) {
	base, _ := asn1.Marshal(big.NewInt(41))
	delta := pkix.Extension{Id: oidExtDeltaCRL, Critical: true, Value: base}
	idp := pkix.Extension{Id: oidExtIDP, Critical: true, Value: idpValue(idpSpec{onlyUser: true})}
	s, err := Read([]pkix.Extension{number(42), delta, idp}, issuer)
	if err != nil || s.Base == nil || s.Base.Int64() != 41 || s.IDP == nil || string(s.RawIDP) != string(idp.Value) {
		t.Fatalf("delta with IDP: %+v, %v", s, err)
	}
	if s, err := Read([]pkix.Extension{number(42), {Id: asn1.ObjectIdentifier{2, 5, 29, 46}, Value: []byte{0x30, 0}}}, issuer); err != nil || s.Base != nil || s.IDP != nil {
		t.Fatalf("complete CRL with a non-critical freshestCRL: %+v, %v", s, err)
	}
	for _, tc := range []struct {
		name, want string
		exts       []pkix.Extension
	}{
		{"unknown critical", "unrecognised critical extension 1.2.3.4", []pkix.Extension{number(1), {Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}},
		{"indirect", "indirect CRLs are not supported", []pkix.Extension{number(1), {Id: oidExtIDP, Critical: true, Value: idpValue(idpSpec{indirect: true})}}},
		{"two scopes at once", "malformed issuingDistributionPoint", []pkix.Extension{number(1), {Id: oidExtIDP, Critical: true, Value: idpValue(idpSpec{onlyUser: true, onlyCA: true})}}},
		{"malformed delta", "malformed deltaCRLIndicator", []pkix.Extension{number(1), {Id: oidExtDeltaCRL, Critical: true, Value: []byte{4, 0}}}},
		{"delta without number", "without a cRLNumber", []pkix.Extension{delta}},
		{"twice", "appears twice", []pkix.Extension{number(1), number(2)}},
	} {
		if _, err := Read(tc.exts, issuer); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := CheckEntry([]pkix.Extension{{Id: oidExtReasonCode, Critical: true, Value: []byte{10, 1, 1}}}); err != nil {
		t.Errorf("critical reasonCode: %v", err)
	}
	if err := CheckEntry([]pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 29}, Critical: true, Value: []byte{0x30, 0}}}); err == nil ||
		!strings.Contains(err.Error(), "2.5.29.29") {
		t.Errorf("critical certificateIssuer: %v", err)
	}
}

// Covers applies an issuingDistributionPoint to a certificate (RFC 5280
// §6.3.3 (b)).
func TestCovers(t *testing.T) {
	here, there := uriName("http://crl.example.gov.cn/here.crl"), uriName("http://crl.example.gov.cn/there.crl")
	dpHere := DistributionPoints(issuer, []pkix.Extension{crlDP(fullDPName(here))})
	noDP := DistributionPoints(issuer, nil)
	issuerName, _ := directoryName(issuer)
	keyCompromise := []byte{6, 0x40}
	for _, tc := range []struct {
		name string
		idp  *idpSpec // nil: no issuingDistributionPoint
		isCA bool
		dps  []DistributionPoint
		want Reasons
	}{
		{"no IDP", nil, false, noDP, AllReasons},
		{"user only, leaf", &idpSpec{onlyUser: true}, false, noDP, AllReasons},
		{"user only, CA", &idpSpec{onlyUser: true}, true, noDP, 0},
		{"CA only (ARL), leaf", &idpSpec{onlyCA: true}, false, dpHere, 0},
		{"CA only (ARL), CA", &idpSpec{onlyCA: true}, true, dpHere, AllReasons},
		{"attribute certificates only", &idpSpec{onlyAttr: true}, false, dpHere, 0},
		{"some reasons", &idpSpec{reasons: keyCompromise}, false, dpHere, 1 << 1},
		{"its distribution point", &idpSpec{dpName: fullDPName(here)}, false, dpHere, AllReasons},
		{"another distribution point", &idpSpec{dpName: fullDPName(there)}, false, dpHere, 0},
		{"a distribution point, certificate without", &idpSpec{dpName: fullDPName(here)}, false, noDP, 0},
		{"named by the issuer", &idpSpec{dpName: fullDPName([]byte(issuerName))}, false, noDP, AllReasons},
	} {
		var p *IDP
		if tc.idp != nil {
			var err error
			if p, err = parseIDP(idpValue(*tc.idp), issuer); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		if got := p.Covers(tc.isCA, tc.dps); got != tc.want {
			t.Errorf("%s: covers %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

// FuzzCRLScope feeds the issuingDistributionPoint and cRLDistributionPoints
// parsers arbitrary bytes: an error or nothing, never a panic.
func FuzzCRLScope(f *testing.F) {
	here := fullDPName(uriName("http://crl.example.gov.cn/here.crl"))
	f.Add(idpValue(idpSpec{dpName: here, onlyUser: true}))
	f.Add(idpValue(idpSpec{dpName: relativeDPName("part 7"), reasons: []byte{6, 0x40}}))
	f.Add(idpValue(idpSpec{onlyCA: true, indirect: true}))
	f.Add([]byte{0x30, 0x06, 0x30, 0x04, 0xa0, 0x02, 0x80, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		dps := DistributionPoints(issuer, []pkix.Extension{{Id: oidExtCRLDP, Value: b}})
		if p, err := parseIDP(b, issuer); err == nil {
			p.Covers(false, dps)
			p.Covers(true, dps)
		}
		_, _ = Read([]pkix.Extension{number(1), {Id: oidExtIDP, Critical: true, Value: b}}, issuer)
		_, _ = Read([]pkix.Extension{number(1), {Id: oidExtDeltaCRL, Critical: true, Value: b}}, issuer)
	})
}
