package crl

import (
	"bytes"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

var update = flag.Bool("update", false, "regenerate testdata (issuer certificates and CRLs)")

// testdataCRLs are the seed CRLs in testdata and the issuer of each. They
// hold certificates and signed CRLs only, never a private key.
var testdataCRLs = []struct{ crl, issuer string }{
	{"sm2-full.crl", "sm2-ca.pem"},
	{"sm2-delta-idp.crl", "sm2-ca.pem"},
	{"ecdsa-full.crl", "ecdsa-ca.pem"},
	{"ecdsa-empty-arl.crl", "ecdsa-ca.pem"},
}

func writeTestdata(t *testing.T) {
	t.Helper()
	now := time.Date(2026, 1, 15, 8, 0, 0, 0, time.UTC)
	for _, alg := range []string{algSM2, algP256} {
		prefix := map[string]string{algSM2: "sm2", algP256: "ecdsa"}[alg]
		ca := newRoot(t, alg)
		writeFile(t, "testdata", prefix+"-ca.pem", certPEM(ca.cert))
		full := baseTemplate(ca, now, 100)
		full.FreshestCRL = []string{"http://crl.example.gov.cn/delta.crl"}
		writeFile(t, "testdata", prefix+"-full.crl", build(t, full, sampleEntries(t, 8, now), ca.signer))
		if alg == algSM2 {
			d := baseTemplate(ca, now, 101)
			d.DeltaBase = big.NewInt(100)
			d.IDP = &IssuingDistributionPoint{FullName: []string{"http://crl.example.gov.cn/3.crl"}, OnlyUser: true}
			writeFile(t, "testdata", prefix+"-delta-idp.crl", build(t, d, sampleEntries(t, 3, now), ca.signer))
		} else {
			a := baseTemplate(ca, now, 102)
			a.IDP = &IssuingDistributionPoint{OnlyCA: true}
			writeFile(t, "testdata", prefix+"-empty-arl.crl", build(t, a, nil, ca.signer))
		}
	}
}

func readTestdata(t testing.TB, crlName, issuerName string) ([]byte, *smx509.Certificate) {
	t.Helper()
	der, err := os.ReadFile(filepath.Join("testdata", crlName))
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.ReadFile(filepath.Join("testdata", issuerName))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(p)
	if blk == nil {
		t.Fatalf("%s: no PEM", issuerName)
	}
	c, err := smx509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return der, c
}

// TestTestdata checks the stored CRLs still verify and lint, so a change in
// the parser or in gmsm that breaks CRLs already published shows here.
// go test -run TestTestdata -update regenerates them.
func TestTestdata(t *testing.T) {
	if *update {
		writeTestdata(t)
	}
	for _, td := range testdataCRLs {
		t.Run(td.crl, func(t *testing.T) {
			der, issuer := readTestdata(t, td.crl, td.issuer)
			rl, err := Verify(der, issuer)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := Lint(rl, issuer); err != nil {
				t.Errorf("Lint: %v", err)
			}
		})
	}
}

// FuzzVerify feeds arbitrary bytes to Verify, ParseScope and Lint: none may
// panic, and whatever Verify accepts is exactly the input and parses again.
func FuzzVerify(f *testing.F) {
	var issuers []*smx509.Certificate
	for i, td := range testdataCRLs {
		der, issuer := readTestdata(f, td.crl, td.issuer)
		issuers = append(issuers, issuer)
		f.Add(der, uint8(i))
	}
	f.Fuzz(func(t *testing.T, der []byte, which uint8) {
		issuer := issuers[int(which)%len(issuers)]
		rl, err := Verify(der, issuer)
		if err == nil {
			if !bytes.Equal(rl.Raw, der) {
				t.Fatal("Verify accepted bytes other than the CRL")
			}
			_ = Lint(rl, issuer)
		}
		if parsed, err := smx509.ParseRevocationList(der); err == nil {
			_, _ = ParseScope(parsed)
			_ = Lint(parsed, issuer)
		}
	})
}
