package crl

//lint:file-ignore SA1019 TestLint uses smx509's deprecated RevokedCertificates on purpose: only it writes an explicit reasonCode, the violation Lint must catch

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"iter"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var allAlgs = []string{algSM2, algP256, algP384, algRSA}

// TestBuildParseBack builds full, delta, partitioned and ARL CRLs with every
// algorithm, parses them back with smx509 and checks every field.
func TestBuildParseBack(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	for _, alg := range allAlgs {
		root := newRoot(t, alg)
		sub := newSub(t, root, alg)
		es := sampleEntries(t, 50, now)
		kinds := []struct {
			name    string
			ca      *testCA
			entries []Entry
			mod     func(*Template)
		}{
			{"full", sub, es, func(tp *Template) {
				tp.FreshestCRL = []string{"http://crl.example.gov.cn/sub/delta.crl", "ldap:///cn=Sub,o=gov?deltaRevocationList;binary"}
			}},
			{"delta", sub, es[:7], func(tp *Template) { tp.DeltaBase = big.NewInt(41) }},
			{"partition", sub, es[10:20], func(tp *Template) {
				tp.IDP = &IssuingDistributionPoint{FullName: []string{"http://crl.example.gov.cn/sub/3.crl"}, OnlyUser: true}
			}},
			{"arl", root, es[:3], func(tp *Template) {
				tp.IDP = &IssuingDistributionPoint{FullName: []string{"http://crl.example.gov.cn/root.arl"}, OnlyCA: true}
			}},
			{"empty", sub, nil, func(*Template) {}},
		}
		for _, k := range kinds {
			t.Run(alg+"/"+k.name, func(t *testing.T) {
				tmpl := baseTemplate(k.ca, now, 42)
				tmpl.NextUpdate = now.Add(MaxValidity) // the longest allowed
				k.mod(&tmpl)
				der := build(t, tmpl, k.entries, k.ca.signer)
				rl, err := Verify(der, k.ca.cert)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if err := Lint(rl, k.ca.cert); err != nil {
					t.Errorf("Lint: %v", err)
				}
				checkFields(t, rl, tmpl, k.entries)
				if _, err := Verify(der, otherCA(t, k.ca).cert); err == nil {
					t.Error("Verify accepted the CRL with another issuer")
				}
			})
		}
	}
}

// otherCA returns a CA with the same subject as ca but another key, so only
// the signature tells them apart.
func otherCA(t *testing.T, ca *testCA) *testCA {
	t.Helper()
	o := newCAWithKey(t, nil, ca.alg, generateKey(t, ca.alg), ca.cert.Subject.CommonName, smx509.KeyUsageCertSign|smx509.KeyUsageCRLSign)
	if !bytes.Equal(o.cert.RawSubject, ca.cert.RawSubject) {
		t.Fatal("other CA has a different subject")
	}
	return o
}

func checkFields(t *testing.T, rl *smx509.RevocationList, tmpl Template, es []Entry) {
	t.Helper()
	if !bytes.Equal(rl.RawIssuer, tmpl.Issuer.RawSubject) {
		t.Error("issuer not byte-identical to the CA subject")
	}
	if rl.Number.Cmp(tmpl.Number) != 0 {
		t.Errorf("number %v, want %v", rl.Number, tmpl.Number)
	}
	if !rl.ThisUpdate.Equal(tmpl.ThisUpdate) || !rl.NextUpdate.Equal(tmpl.NextUpdate) {
		t.Errorf("times %v..%v, want %v..%v", rl.ThisUpdate, rl.NextUpdate, tmpl.ThisUpdate, tmpl.NextUpdate)
	}
	if !bytes.Equal(rl.AuthorityKeyId, tmpl.Issuer.SubjectKeyId) {
		t.Errorf("AKI %x, want %x", rl.AuthorityKeyId, tmpl.Issuer.SubjectKeyId)
	}
	wantAlg := map[smx509.SignatureAlgorithm]bool{smx509.SM2WithSM3: true, smx509.ECDSAWithSHA256: true,
		smx509.ECDSAWithSHA384: true, smx509.SHA256WithRSA: true}
	if !wantAlg[rl.SignatureAlgorithm] {
		t.Errorf("signature algorithm %v", rl.SignatureAlgorithm)
	}
	if tmpl.Issuer.SignatureAlgorithm == smx509.SM2WithSM3 && rl.SignatureAlgorithm != smx509.SM2WithSM3 {
		t.Errorf("SM2 issuer, CRL signed with %v", rl.SignatureAlgorithm)
	}

	crit := map[string]bool{}
	var ids []string
	for _, e := range rl.Extensions {
		crit[e.Id.String()] = e.Critical
		ids = append(ids, e.Id.String())
	}
	want := []string{"2.5.29.35", "2.5.29.20"}
	if tmpl.DeltaBase != nil {
		want = append(want, "2.5.29.27")
	}
	if tmpl.IDP != nil {
		want = append(want, "2.5.29.28")
	}
	if tmpl.FreshestCRL != nil {
		want = append(want, "2.5.29.46")
	}
	if !slices.Equal(ids, want) {
		t.Errorf("extensions %v, want %v", ids, want)
	}
	for id, c := range crit {
		if wantCrit := id == "2.5.29.27" || id == "2.5.29.28"; c != wantCrit {
			t.Errorf("extension %s critical=%v", id, c)
		}
	}

	sc, err := ParseScope(rl)
	if err != nil {
		t.Fatalf("ParseScope: %v", err)
	}
	if (sc.DeltaBase == nil) != (tmpl.DeltaBase == nil) || sc.DeltaBase != nil && sc.DeltaBase.Cmp(tmpl.DeltaBase) != 0 {
		t.Errorf("delta base %v, want %v", sc.DeltaBase, tmpl.DeltaBase)
	}
	if (sc.IDP == nil) != (tmpl.IDP == nil) || sc.IDP != nil && (!slices.Equal(sc.IDP.FullName, tmpl.IDP.FullName) ||
		sc.IDP.OnlyUser != tmpl.IDP.OnlyUser || sc.IDP.OnlyCA != tmpl.IDP.OnlyCA) {
		t.Errorf("IDP %+v, want %+v", sc.IDP, tmpl.IDP)
	}
	if !slices.Equal(sc.FreshestCRL, tmpl.FreshestCRL) {
		t.Errorf("freshestCRL %v, want %v", sc.FreshestCRL, tmpl.FreshestCRL)
	}

	if len(rl.RevokedCertificateEntries) != len(es) {
		t.Fatalf("%d entries, want %d", len(rl.RevokedCertificateEntries), len(es))
	}
	for i, got := range rl.RevokedCertificateEntries {
		w := es[i]
		if got.SerialNumber.Cmp(w.Serial) != 0 || !got.RevocationTime.Equal(w.RevokedAt.Truncate(time.Second)) {
			t.Errorf("entry %d: %x at %v, want %x at %v", i, got.SerialNumber, got.RevocationTime, w.Serial, w.RevokedAt)
		}
		wantReason := max(w.Reason, 0)
		if got.ReasonCode != wantReason {
			t.Errorf("entry %d: reason %d, want %d", i, got.ReasonCode, wantReason)
		}
		if hasExt := len(got.Extensions) > 0; hasExt != (wantReason != 0) {
			t.Errorf("entry %d: reason %d with extensions %v (unspecified must be omitted)", i, w.Reason, got.Extensions)
		}
		for _, e := range got.Extensions {
			if e.Critical {
				t.Errorf("entry %d: critical extension %v", i, e.Id)
			}
		}
	}
	if len(es) == 0 {
		// RFC 5280 §5.1.2.6: revokedCertificates absent, not an empty SEQUENCE.
		if fields := tbsFields(t, rl.RawTBSRevocationList); !slices.Equal(fields, []cbasn1.Tag{
			cbasn1.INTEGER, cbasn1.SEQUENCE, cbasn1.SEQUENCE, cbasn1.UTCTime, cbasn1.UTCTime,
			cbasn1.Tag(0).Constructed().ContextSpecific()}) {
			t.Errorf("TBS fields %v", fields)
		}
	}
}

// tbsFields lists the tags of the TBSCertList's fields.
func tbsFields(t *testing.T, tbs []byte) []cbasn1.Tag {
	t.Helper()
	s := cryptobyte.String(tbs)
	var in cryptobyte.String
	if !s.ReadASN1(&in, cbasn1.SEQUENCE) {
		t.Fatal("malformed TBS")
	}
	var tags []cbasn1.Tag
	for !in.Empty() {
		var (
			tag   cbasn1.Tag
			field cryptobyte.String
		)
		if !in.ReadAnyASN1(&field, &tag) {
			t.Fatal("malformed TBS field")
		}
		tags = append(tags, tag)
	}
	return tags
}

// TestMatchesSMX509 checks the hand-written streaming encoder against an
// independent one: smx509.CreateRevocationList, given the same input, must
// produce a byte-identical TBSCertList (only the signatures differ). The
// times cover UTCTime and GeneralizedTime (2050 and later, RFC 5280 §5.1.2.4).
func TestMatchesSMX509(t *testing.T) {
	for _, alg := range []string{algSM2, algP256, algRSA} {
		ca := newRoot(t, alg)
		for _, now := range []time.Time{
			time.Now().Truncate(time.Second),
			time.Date(2049, 12, 31, 23, 0, 0, 0, time.UTC), // thisUpdate UTCTime, nextUpdate GeneralizedTime
			time.Date(2051, 6, 1, 8, 0, 0, 0, time.UTC),
		} {
			t.Run(alg+"/"+now.Format("2006"), func(t *testing.T) {
				es := sampleEntries(t, 40, now)
				es = append(es, Entry{Serial: new(big.Int).Sub(maxNumber, big.NewInt(1)), RevokedAt: now, Reason: ReasonSuperseded}) // 20 octets
				es[0].Serial = big.NewInt(1)                                                                                         // 1 octet
				es[1].Serial = big.NewInt(0x80)                                                                                      // leading zero octet
				tmpl := baseTemplate(ca, now, 1<<40)
				tmpl.Number = new(big.Int).Sub(maxNumber, big.NewInt(1))
				tmpl.NextUpdate = now.Add(2 * time.Hour)
				tmpl.DeltaBase = big.NewInt(7)
				tmpl.IDP = &IssuingDistributionPoint{FullName: []string{"http://a.example/1.crl", "http://b.example/1.crl"}}
				der := build(t, tmpl, es, ca.signer)
				mine, err := Verify(der, ca.cert)
				if err != nil {
					t.Fatal(err)
				}

				var rce []smx509.RevocationListEntry
				for _, e := range es {
					rce = append(rce, smx509.RevocationListEntry{SerialNumber: e.Serial, RevocationTime: e.RevokedAt, ReasonCode: max(e.Reason, 0)})
				}
				theirs, err := smx509.CreateRevocationList(rand.Reader, &smx509.RevocationList{
					RevokedCertificateEntries: rce,
					Number:                    tmpl.Number,
					ThisUpdate:                tmpl.ThisUpdate,
					NextUpdate:                tmpl.NextUpdate,
					ExtraExtensions:           mine.Extensions[2:], // deltaCRLIndicator, IDP
				}, ca.cert, ca.signer)
				if err != nil {
					t.Fatal(err)
				}
				ref, err := smx509.ParseRevocationList(theirs)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(mine.RawTBSRevocationList, ref.RawTBSRevocationList) {
					t.Errorf("TBS differs from smx509's:\n mine   %x\n smx509 %x", mine.RawTBSRevocationList, ref.RawTBSRevocationList)
				}
			})
		}
	}
}

// TestReasons covers ACCEPTANCE.md C-01: every reason the CA uses is kept,
// unspecified is omitted, certificateHold and the other refused values never
// reach a CRL.
func TestReasons(t *testing.T) {
	ca := newRoot(t, algSM2)
	now := time.Now()
	kept := map[string]int{"unspecified": 0, "omitted": -1, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
		"superseded": 4, "cessationOfOperation": 5, "privilegeWithdrawn": 9}
	for name, r := range kept {
		t.Run(name, func(t *testing.T) {
			es := []Entry{{Serial: big.NewInt(1000), RevokedAt: now.Add(-time.Hour), Reason: r}}
			rl, err := Verify(build(t, baseTemplate(ca, now, 1), es, ca.signer), ca.cert)
			if err != nil {
				t.Fatal(err)
			}
			e := rl.RevokedCertificateEntries[0]
			if e.ReasonCode != max(r, 0) || (len(e.Extensions) == 0) != (r <= 0) {
				t.Errorf("reason %d came back as %d with %d extensions", r, e.ReasonCode, len(e.Extensions))
			}
		})
	}
	for _, r := range []int{ReasonCertificateHold, 7, ReasonRemoveFromCRL, ReasonAACompromise, 11, 255, 256, -2} {
		t.Run("refused/"+big.NewInt(int64(r)).String(), func(t *testing.T) {
			es := []Entry{{Serial: big.NewInt(1000), RevokedAt: now.Add(-time.Hour), Reason: r}}
			var buf bytes.Buffer
			err := Build(context.Background(), &buf, baseTemplate(ca, now, 1), entries(es), 1, ca.signer)
			if !errors.Is(err, ErrInvalid) || buf.Len() != 0 {
				t.Errorf("reason %d: err %v, %d bytes written", r, err, buf.Len())
			}
		})
	}
}

// countingSigner counts signatures, to show that refused input is never signed.
type countingSigner struct {
	crypto.Signer
	n int
}

func (c *countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.n++
	return c.Signer.Sign(r, d, o)
}

func TestRefused(t *testing.T) {
	now := time.Now()
	ca := newRoot(t, algP256)
	sm2CA := newRoot(t, algSM2)
	ok := sampleEntries(t, 5, now)
	e := func(serial *big.Int, at time.Time) Entry { return Entry{Serial: serial, RevokedAt: at} }
	noCRLSign := newCAWithKey(t, nil, algP256, generateKey(t, algP256), "no crl sign", smx509.KeyUsageCertSign)
	leaf := newCAWithKey(t, nil, algP256, generateKey(t, algP256), "leaf", smx509.KeyUsageDigitalSignature)
	leaf.cert.IsCA = false
	noSKI := newCAWithKey(t, nil, algP256, generateKey(t, algP256), "no ski", smx509.KeyUsageCRLSign)
	noSKI.cert.SubjectKeyId = nil

	tests := []struct {
		name   string
		mod    func(*Template)
		es     []Entry
		count  int64
		signer crypto.Signer
		want   error
	}{
		{name: "number zero", mod: func(tp *Template) { tp.Number = big.NewInt(0) }, want: ErrInvalid},
		{name: "number negative", mod: func(tp *Template) { tp.Number = big.NewInt(-5) }, want: ErrInvalid},
		{name: "number nil", mod: func(tp *Template) { tp.Number = nil }, want: ErrInvalid},
		{name: "number 2^159", mod: func(tp *Template) { tp.Number = new(big.Int).Set(maxNumber) }, want: ErrInvalid},
		{name: "nextUpdate over 7 days", mod: func(tp *Template) { tp.NextUpdate = tp.ThisUpdate.Add(MaxValidity + time.Second) }, want: ErrInvalid},
		{name: "nextUpdate equals thisUpdate", mod: func(tp *Template) { tp.NextUpdate = tp.ThisUpdate }, want: ErrInvalid},
		{name: "nextUpdate before thisUpdate", mod: func(tp *Template) { tp.NextUpdate = tp.ThisUpdate.Add(-time.Hour) }, want: ErrInvalid},
		{name: "zero thisUpdate", mod: func(tp *Template) { tp.ThisUpdate = time.Time{} }, want: ErrInvalid},
		{name: "delta base equals number", mod: func(tp *Template) { tp.DeltaBase = tp.Number }, want: ErrInvalid},
		{name: "delta base zero", mod: func(tp *Template) { tp.DeltaBase = big.NewInt(0) }, want: ErrInvalid},
		{name: "freshestCRL on delta", mod: func(tp *Template) {
			tp.DeltaBase, tp.FreshestCRL = big.NewInt(1), []string{"http://x.example/d.crl"}
		}, want: ErrInvalid},
		{name: "IDP user and CA", mod: func(tp *Template) { tp.IDP = &IssuingDistributionPoint{OnlyUser: true, OnlyCA: true} }, want: ErrInvalid},
		{name: "IDP empty", mod: func(tp *Template) { tp.IDP = &IssuingDistributionPoint{} }, want: ErrInvalid},
		{name: "IDP non-ASCII URI", mod: func(tp *Template) {
			tp.IDP = &IssuingDistributionPoint{FullName: []string{"http://政务.example/1.crl"}}
		}, want: ErrInvalid},
		{name: "IDP relative URI", mod: func(tp *Template) { tp.IDP = &IssuingDistributionPoint{FullName: []string{"/1.crl"}} }, want: ErrInvalid},
		{name: "issuer nil", mod: func(tp *Template) { tp.Issuer = nil }, want: ErrInvalid},
		{name: "issuer without cRLSign", mod: func(tp *Template) { tp.Issuer = noCRLSign.cert }, signer: noCRLSign.signer, want: ErrInvalid},
		{name: "issuer not a CA", mod: func(tp *Template) { tp.Issuer = leaf.cert }, signer: leaf.signer, want: ErrInvalid},
		{name: "issuer without SKI", mod: func(tp *Template) { tp.Issuer = noSKI.cert }, signer: noSKI.signer, want: ErrInvalid},
		{name: "signer is not the issuer", signer: generateKey(t, algP256), want: ErrInvalid},
		{name: "SM2 signer, ECDSA issuer", signer: sm2CA.signer, want: ErrInvalid},
		{name: "negative count", count: -1, want: ErrInvalid},
		{name: "duplicate serial", es: []Entry{ok[0], ok[1], ok[1], ok[2]}, want: ErrInvalid},
		{name: "unsorted", es: []Entry{ok[0], ok[2], ok[1]}, want: ErrInvalid},
		{name: "serial zero", es: []Entry{e(big.NewInt(0), now)}, want: ErrInvalid},
		{name: "serial negative", es: []Entry{e(big.NewInt(-3), now)}, want: ErrInvalid},
		{name: "serial nil", es: []Entry{e(nil, now)}, want: ErrInvalid},
		{name: "serial 21 octets", es: []Entry{e(new(big.Int).Lsh(big.NewInt(1), 160), now)}, want: ErrInvalid},
		{name: "revoked after thisUpdate", es: []Entry{e(big.NewInt(9), now.Add(time.Second))}, want: ErrInvalid},
		{name: "revocation time zero", es: []Entry{e(big.NewInt(9), time.Time{})}, want: ErrInvalid},
		{name: "fewer entries than announced", es: ok[:3], count: 4, want: ErrInconsistent},
		{name: "more entries than announced", es: ok[:3], count: 2, want: ErrInconsistent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := baseTemplate(ca, now, 10)
			if tt.mod != nil {
				tt.mod(&tmpl)
			}
			s := &countingSigner{Signer: ca.signer}
			if tt.signer != nil {
				s.Signer = tt.signer
			}
			count := tt.count
			if count == 0 {
				count = int64(len(tt.es))
			}
			var buf bytes.Buffer
			err := Build(context.Background(), &buf, tmpl, entries(tt.es), count, s)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if s.n != 0 || buf.Len() != 0 {
				t.Errorf("refused input: %d signatures, %d bytes written", s.n, buf.Len())
			}
		})
	}
}

// changing yields entries that differ on the given pass (1-based).
func changing(es []Entry, pass int, change func([]Entry) []Entry) iter.Seq2[Entry, error] {
	calls := 0
	return func(yield func(Entry, error) bool) {
		calls++
		src := es
		if calls == pass {
			src = change(slices.Clone(es))
		}
		for _, e := range src {
			if !yield(e, nil) {
				return
			}
		}
	}
}

// TestInconsistentPasses: an iterator that does not repeat itself is caught,
// before signing when the sizes differ and at the latest when the written TBS
// does not hash to the signed digest.
func TestInconsistentPasses(t *testing.T) {
	now := time.Now()
	ca := newRoot(t, algSM2)
	es := sampleEntries(t, 20, now)
	longer := func(es []Entry) []Entry {
		es[3].Reason = ReasonKeyCompromise
		es[2].Reason = ReasonKeyCompromise
		return es
	}
	es[2].Reason, es[3].Reason = ReasonUnspecified, ReasonSuperseded
	sameSize := func(es []Entry) []Entry { es[3].Reason = ReasonCessationOfOperation; return es }
	dropped := func(es []Entry) []Entry { return append(es[:5], es[6:]...) }
	tests := []struct {
		name   string
		pass   int
		change func([]Entry) []Entry
		signed int
	}{
		{"pass 2 longer", 2, longer, 0},
		{"pass 2 fewer", 2, dropped, 0},
		{"pass 3 same size", 3, sameSize, 1},
		{"pass 3 fewer", 3, dropped, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &countingSigner{Signer: ca.signer}
			err := Build(context.Background(), io.Discard, baseTemplate(ca, now, 3), changing(es, tt.pass, tt.change), int64(len(es)), s)
			if !errors.Is(err, ErrInconsistent) {
				t.Fatalf("err = %v, want ErrInconsistent", err)
			}
			if s.n != tt.signed {
				t.Errorf("%d signatures, want %d", s.n, tt.signed)
			}
		})
	}
}

func TestIteratorErrorAndCancel(t *testing.T) {
	now := time.Now()
	ca := newRoot(t, algP256)
	es := sampleEntries(t, 3000, now)
	errCursor := errors.New("cursor: connection reset")
	broken := func(yield func(Entry, error) bool) {
		for i, e := range es {
			if i == 2500 {
				yield(Entry{}, errCursor)
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	}
	var buf bytes.Buffer
	if err := Build(context.Background(), &buf, baseTemplate(ca, now, 1), broken, int64(len(es)), ca.signer); !errors.Is(err, errCursor) || buf.Len() != 0 {
		t.Errorf("cursor error: %v, %d bytes", err, buf.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Build(ctx, &buf, baseTemplate(ca, now, 1), entries(es), int64(len(es)), ca.signer); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

type failWriter struct{ after int }

var errDisk = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errDisk
	}
	return len(p), nil
}

func TestWriterError(t *testing.T) {
	now := time.Now()
	ca := newRoot(t, algP256)
	es := sampleEntries(t, 2000, now)
	for _, after := range []int{0, 10, 50000} {
		err := Build(context.Background(), &failWriter{after: after}, baseTemplate(ca, now, 1), entries(es), int64(len(es)), ca.signer)
		if !errors.Is(err, errDisk) {
			t.Errorf("writer failing after %d bytes: %v", after, err)
		}
	}
}

// TestDeterministic: the same input gives the same bytes apart from the
// signature value.
func TestDeterministic(t *testing.T) {
	now := time.Now()
	for _, alg := range []string{algSM2, algP256} {
		t.Run(alg, func(t *testing.T) {
			ca := newRoot(t, alg)
			es := sampleEntries(t, 100, now)
			tmpl := baseTemplate(ca, now, 77)
			tmpl.IDP = &IssuingDistributionPoint{FullName: []string{"http://crl.example/7.crl"}}
			a, b := build(t, tmpl, es, ca.signer), build(t, tmpl, es, ca.signer)
			ra, err := Verify(a, ca.cert)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := Verify(b, ca.cert)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ra.RawTBSRevocationList, rb.RawTBSRevocationList) {
				t.Error("same input, different TBS")
			}
			// Everything outside the signature BIT STRING is identical too.
			if tailA, tailB := len(a)-len(ra.Signature), len(b)-len(rb.Signature); !bytes.Equal(a[4:tailA-3], b[4:tailB-3]) {
				t.Error("same input, different bytes outside the signature")
			}
		})
	}
}

// TestVerify covers both SM2 signature OIDs (with absent and NULL
// parameters) and what Verify must refuse.
func TestVerify(t *testing.T) {
	now := time.Now()
	ca := newRoot(t, algSM2)
	der := build(t, baseTemplate(ca, now, 5), sampleEntries(t, 10, now), ca.signer)

	sm2Sign := asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301, 1}
	for _, tt := range []struct {
		name string
		oid  asn1.ObjectIdentifier
		null bool
	}{{"501 NULL", oidSM2WithSM3, true}, {"301.1", sm2Sign, false}, {"301.1 NULL", sm2Sign, true}} {
		t.Run(tt.name, func(t *testing.T) {
			v := resign(t, der, ca, tt.oid, tt.null)
			rl, err := Verify(v, ca.cert)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rl.SignatureAlgorithm != smx509.SM2WithSM3 || len(rl.RevokedCertificateEntries) != 10 {
				t.Errorf("algorithm %v, %d entries", rl.SignatureAlgorithm, len(rl.RevokedCertificateEntries))
			}
		})
	}

	tampered := bytes.Clone(der)
	tampered[len(tampered)/2] ^= 1
	noCRLSign := newCAWithKey(t, nil, algSM2, ca.signer, ca.cert.Subject.CommonName, smx509.KeyUsageCertSign)
	for _, tt := range []struct {
		name   string
		der    []byte
		issuer *smx509.Certificate
	}{
		{"tampered", tampered, ca.cert},
		{"trailing bytes", append(bytes.Clone(der), 0), ca.cert},
		{"truncated", der[:len(der)-1], ca.cert},
		{"empty", nil, ca.cert},
		{"other issuer name", der, newRoot(t, algSM2).cert},
		{"same key, issuer without cRLSign", der, noCRLSign.cert},
		{"no issuer", der, nil},
		{"SM2 params not NULL", resignRaw(t, der, ca, []byte{0x30, 0x0c, 0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75, 0x02, 0x00}), ca.cert},
	} {
		t.Run("refuse/"+tt.name, func(t *testing.T) {
			if _, err := Verify(tt.der, tt.issuer); err == nil {
				t.Error("Verify accepted it")
			}
		})
	}
}

// resign replaces the signature algorithm of a CRL and signs it again with
// the default SM2 user ID.
func resign(t *testing.T, der []byte, ca *testCA, oid asn1.ObjectIdentifier, null bool) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if null {
			b.AddASN1NULL()
		}
	})
	return resignRaw(t, der, ca, b.BytesOrPanic())
}

func resignRaw(t *testing.T, der []byte, ca *testCA, ai []byte) []byte {
	t.Helper()
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	in := cryptobyte.String(rl.RawTBSRevocationList)
	var tbs cryptobyte.String
	var version, oldAI cryptobyte.String
	if !in.ReadASN1(&tbs, cbasn1.SEQUENCE) || !tbs.ReadASN1Element(&version, cbasn1.INTEGER) || !tbs.ReadASN1Element(&oldAI, cbasn1.SEQUENCE) {
		t.Fatal("malformed TBS")
	}
	var nb cryptobyte.Builder
	nb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(version)
		b.AddBytes(ai)
		b.AddBytes(tbs)
	})
	newTBS := nb.BytesOrPanic()
	signature, err := signSM2(ca, newTBS)
	if err != nil {
		t.Fatal(err)
	}
	var out cryptobyte.Builder
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(newTBS)
		b.AddBytes(ai)
		b.AddASN1BitString(signature)
	})
	return out.BytesOrPanic()
}

// TestLint checks that Lint catches profile violations in CRLs made by an
// independent encoder (smx509.CreateRevocationList).
func TestLint(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := newRoot(t, algP256)
	other := newCAWithKey(t, nil, algP256, generateKey(t, algP256), "Other", smx509.KeyUsageCertSign|smx509.KeyUsageCRLSign)
	idp := mustExt(t, oidExtIDP, false, build(t, func() Template {
		tp := baseTemplate(ca, now, 1)
		tp.IDP = &IssuingDistributionPoint{OnlyUser: true}
		return tp
	}(), nil, ca.signer))
	reason := func(r int) pkix.Extension {
		v, _ := asn1.Marshal(asn1.Enumerated(r))
		return pkix.Extension{Id: oidExtReasonCode, Value: v}
	}
	rc := func(serial int64, at time.Time, exts ...pkix.Extension) pkix.RevokedCertificate {
		return pkix.RevokedCertificate{SerialNumber: big.NewInt(serial), RevocationTime: at, Extensions: exts}
	}
	// The deprecated RevokedCertificates field is the only way to make smx509
	// write an explicit reasonCode (see the lint directive at the top).
	tests := []struct {
		name   string
		tmpl   smx509.RevocationList
		issuer *testCA
		want   string
	}{
		{"clean", smx509.RevocationList{RevokedCertificates: []pkix.RevokedCertificate{rc(1, now, reason(1))}}, ca, ""},
		{"explicit unspecified", smx509.RevocationList{RevokedCertificates: []pkix.RevokedCertificate{rc(1, now, reason(0))}}, ca, "unspecified must be omitted"},
		{"certificateHold", smx509.RevocationList{RevokedCertificates: []pkix.RevokedCertificate{rc(1, now, reason(6))}}, ca, "suspension"},
		{"duplicate serial", smx509.RevocationList{RevokedCertificates: []pkix.RevokedCertificate{rc(5, now), rc(5, now)}}, ca, "listed twice"},
		{"revoked after thisUpdate", smx509.RevocationList{RevokedCertificates: []pkix.RevokedCertificate{rc(5, now.Add(time.Minute))}}, ca, "after thisUpdate"},
		{"nextUpdate 8 days", smx509.RevocationList{NextUpdate: now.Add(8 * 24 * time.Hour)}, ca, "more than"},
		{"number 0", smx509.RevocationList{Number: big.NewInt(0)}, ca, "cRLNumber"},
		{"IDP not critical", smx509.RevocationList{ExtraExtensions: []pkix.Extension{idp}}, ca, "must be critical"},
		{"unknown critical", smx509.RevocationList{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3}, Critical: true, Value: []byte{5, 0}}}}, ca, "unknown critical"},
		{"wrong issuer", smx509.RevocationList{}, other, "byte-identical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := tt.tmpl
			if tmpl.Number == nil {
				tmpl.Number = big.NewInt(3)
			}
			tmpl.ThisUpdate = now
			if tmpl.NextUpdate.IsZero() {
				tmpl.NextUpdate = now.Add(time.Hour)
			}
			der, err := smx509.CreateRevocationList(rand.Reader, &tmpl, ca.cert, ca.signer)
			if err != nil {
				t.Fatal(err)
			}
			rl, err := smx509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			err = Lint(rl, tt.issuer.cert)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Lint = %v, want %q", err, tt.want)
			}
		})
	}
}

// mustExt returns the extension id of a built CRL with its criticality set.
func mustExt(t *testing.T, id asn1.ObjectIdentifier, critical bool, der []byte) pkix.Extension {
	t.Helper()
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := extension(rl, id)
	if !ok {
		t.Fatalf("no extension %v", id)
	}
	e.Critical = critical
	return e
}

func TestCheckNumber(t *testing.T) {
	n := big.NewInt
	tests := []struct {
		prev, next *big.Int
		want       error
	}{
		{nil, n(1), nil},
		{n(1), n(2), nil},
		{n(41), n(1 << 40), nil},
		{n(2), n(2), ErrNumberRegression},
		{n(3), n(2), ErrNumberRegression},
		{nil, n(0), ErrInvalid},
		{n(1), nil, ErrInvalid},
		{n(1), new(big.Int).Set(maxNumber), ErrInvalid},
	}
	for _, tt := range tests {
		if err := CheckNumber(tt.prev, tt.next); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("CheckNumber(%v, %v) = %v, want %v", tt.prev, tt.next, err, tt.want)
		}
	}
}

func TestRefresh(t *testing.T) {
	this := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	next := this.Add(12 * time.Minute) // 2/3 = 8 min, 3/4 = 9 min
	tests := []struct {
		at   time.Duration
		want bool
	}{
		{-time.Hour, false}, {0, false}, {7*time.Minute + 59*time.Second, false},
		{8 * time.Minute, true}, {9 * time.Minute, true}, {13 * time.Minute, true},
	}
	for _, tt := range tests {
		if got := RefreshDue(this, next, this.Add(tt.at)); got != tt.want {
			t.Errorf("RefreshDue at +%v = %v, want %v", tt.at, got, tt.want)
		}
	}
	if !RefreshDue(this, this, this.Add(-time.Hour)) {
		t.Error("a CRL without a valid interval is not due")
	}
	if d := RefreshDeadline(this, next); !d.Equal(this.Add(9 * time.Minute)) {
		t.Errorf("deadline %v", d)
	}
	// The schedule leaves room to publish before the 75% promise for every
	// allowed interval.
	for _, iv := range []time.Duration{time.Minute, 10 * time.Minute, 24 * time.Hour, MaxValidity} {
		if gap := RefreshDeadline(this, this.Add(iv)).Sub(RefreshAt(this, this.Add(iv))); gap < iv/13 {
			t.Errorf("interval %v: %v between refresh and deadline", iv, gap)
		}
	}
}

func TestRetain(t *testing.T) {
	exp := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		last time.Time
		want bool
	}{
		{time.Time{}, true},                   // nothing published yet
		{exp.Add(-time.Hour), true},           // last CRL before expiry: not yet on a CRL beyond it
		{exp, true},                           // issued at expiry, not beyond it
		{exp.Add(time.Second), false},         // listed on a CRL issued after expiry: may go
		{exp.Add(30 * 24 * time.Hour), false}, // long gone
	}
	for _, tt := range tests {
		if got := Retain(exp, tt.last); got != tt.want {
			t.Errorf("Retain(expiry, last full %v) = %v, want %v", tt.last, got, tt.want)
		}
	}
}

// TestNextNumber: numbers follow the time in microseconds, and go up by
// one when the clock stands still or goes back.
func TestNextNumber(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	base := t0.UnixMicro()
	for _, tc := range []struct {
		name string
		prev int64
		at   time.Time
		want int64
	}{
		{"first CRL", 0, t0, base},
		{"a counter from before time-derived numbers", 41, t0, base},
		{"same microsecond", base, t0, base + 1},
		{"a burst ahead of the clock", base + 7, t0.Add(3 * time.Microsecond), base + 8},
		{"a millisecond later", base + 7, t0.Add(time.Millisecond), base + 1000},
		{"a day after a restore", base - 5_000_000, t0.Add(24 * time.Hour), base + 86_400_000_000},
		{"clock set back", base, t0.Add(-time.Hour), base + 1},
	} {
		got := NextNumber(tc.prev, tc.at)
		if got != tc.want {
			t.Errorf("%s: NextNumber(%d, %v) = %d, want %d", tc.name, tc.prev, tc.at, got, tc.want)
		}
		if err := CheckNumber(big.NewInt(tc.prev), big.NewInt(got)); err != nil {
			t.Errorf("%s: CheckNumber(%d, %d): %v", tc.name, tc.prev, got, err)
		}
	}
}

// TestOfflineValidity: the CRL of an offline CA (Template.Offline, an ARL
// signed in a ceremony) may be valid up to MaxOfflineValidity, no longer;
// an online CRL stays within MaxValidity, and Lint and LintOffline apply
// the matching bound.
func TestOfflineValidity(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	for _, alg := range []string{algSM2, algP256} {
		root := newRoot(t, alg)
		tmpl := baseTemplate(root, now, 7)
		tmpl.NextUpdate = now.Add(MaxOfflineValidity)
		var buf bytes.Buffer
		if err := Build(context.Background(), &buf, tmpl, entries(nil), 0, root.signer); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: a CRL valid %v without Offline: %v", alg, MaxOfflineValidity, err)
		}
		tmpl.Offline = true
		der := build(t, tmpl, sampleEntries(t, 2, now), root.signer)
		rl, err := Verify(der, root.cert)
		if err != nil {
			t.Fatal(err)
		}
		if err := LintOffline(rl, root.cert); err != nil {
			t.Errorf("%s: LintOffline: %v", alg, err)
		}
		if err := Lint(rl, root.cert); err == nil {
			t.Errorf("%s: Lint accepted a CRL valid %v", alg, MaxOfflineValidity)
		}
		tmpl.NextUpdate = now.Add(MaxOfflineValidity + time.Second)
		if err := Build(context.Background(), &buf, tmpl, entries(nil), 0, root.signer); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: an offline CRL valid over %v: %v", alg, MaxOfflineValidity, err)
		}
	}
}
