package crl

import (
	"context"
	"crypto/ecdsa"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// openssl runs OpenSSL and returns its combined output.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testenv.LookPath(t, "openssl"), args...).CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func certPEM(c *smx509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// opensslReasons are the names openssl crl -text prints (crypto/x509/v3_enum.c).
var opensslReasons = map[int]string{
	ReasonKeyCompromise: "Key Compromise", ReasonCACompromise: "CA Compromise",
	ReasonAffiliationChanged: "Affiliation Changed", ReasonSuperseded: "Superseded",
	ReasonCessationOfOperation: "Cessation Of Operation", ReasonPrivilegeWithdrawn: "Privilege Withdrawn",
}

// checkOpenSSLText checks what openssl crl -text shows of a built CRL: every
// entry once, its reason (none for unspecified), and the scope extensions.
func checkOpenSSLText(t *testing.T, crlFile string, tmpl Template, es []Entry, sigAlg string) {
	t.Helper()
	text, err := openssl(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl crl -text: %v\n%s", err, text)
	}
	for _, want := range []string{"Version 2 (0x1)", "Signature Algorithm: " + sigAlg, "X509v3 Authority Key Identifier",
		"X509v3 CRL Number", "\n                " + tmpl.Number.String() + "\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl text lacks %q", want)
		}
	}
	// Entries: split at "Serial Number:" and check each block's reason.
	blocks := strings.Split(text, "Serial Number: ")[1:]
	if len(blocks) != len(es) {
		t.Fatalf("openssl shows %d entries, want %d", len(blocks), len(es))
	}
	for i, b := range blocks {
		e := es[i]
		if !strings.HasPrefix(b, serialHex(e.Serial)+"\n") && !strings.HasPrefix(b, "0"+serialHex(e.Serial)+"\n") {
			t.Errorf("entry %d: openssl serial %q, want %s", i, strings.SplitN(b, "\n", 2)[0], serialHex(e.Serial))
		}
		date := e.RevokedAt.UTC().Format("Jan _2 15:04:05 2006 GMT")
		if !strings.Contains(b, "Revocation Date: "+date) {
			t.Errorf("entry %d: revocation date %s not shown", i, date)
		}
		name, has := opensslReasons[e.Reason]
		if has != strings.Contains(b, "X509v3 CRL Reason Code") || has && !strings.Contains(b, name) {
			t.Errorf("entry %d: reason %d shown as %q", i, e.Reason, b)
		}
	}
	header := strings.Split(text, "Revoked Certificates:")[0]
	check := func(cond bool, want string) {
		if cond != strings.Contains(header, want) {
			t.Errorf("openssl text: %q present=%v, want %v", want, !cond, cond)
		}
	}
	check(tmpl.DeltaBase != nil, "X509v3 Delta CRL Indicator: critical")
	check(tmpl.IDP != nil, "X509v3 Issuing Distribution Point: critical")
	check(tmpl.IDP != nil && tmpl.IDP.OnlyUser, "Only User Certificates")
	check(tmpl.IDP != nil && tmpl.IDP.OnlyCA, "Only CA Certificates")
	check(len(tmpl.FreshestCRL) > 0, "X509v3 Freshest CRL")
	if tmpl.IDP != nil {
		for _, u := range tmpl.IDP.FullName {
			check(true, "URI:"+u)
		}
	}
	if tmpl.DeltaBase != nil {
		check(true, "X509v3 Delta CRL Indicator: critical\n                "+tmpl.DeltaBase.String())
	}
}

func interopCases(ca *testCA, now time.Time) []struct {
	name string
	tmpl Template
	n    int
} {
	full := baseTemplate(ca, now, 1001)
	full.FreshestCRL = []string{"http://crl.example.gov.cn/delta.crl"}
	delta := baseTemplate(ca, now, 1002)
	delta.DeltaBase = big.NewInt(1001)
	part := baseTemplate(ca, now, 1003)
	part.IDP = &IssuingDistributionPoint{FullName: []string{"http://crl.example.gov.cn/7.crl"}, OnlyUser: true}
	arl := baseTemplate(ca, now, 1004)
	arl.IDP = &IssuingDistributionPoint{FullName: []string{"http://crl.example.gov.cn/root.arl"}, OnlyCA: true}
	return []struct {
		name string
		tmpl Template
		n    int
	}{{"full", full, 24}, {"delta", delta, 5}, {"partition", part, 9}, {"arl", arl, 2}, {"empty", baseTemplate(ca, now, 1005), 0}}
}

// TestOpenSSLECDSA: OpenSSL parses and verifies ECDSA CRLs (openssl crl
// prints "verify failure" with exit code 0, so the text is what counts).
func TestOpenSSLECDSA(t *testing.T) {
	testenv.LookPath(t, "openssl")
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	for _, alg := range []string{algP256, algP384} {
		root := newRoot(t, alg)
		ca := newSub(t, root, alg)
		caFile := writeFile(t, dir, alg+"-ca.pem", certPEM(ca.cert))
		impostor := writeFile(t, dir, alg+"-impostor.pem", certPEM(otherCA(t, ca).cert))
		sigAlg := map[string]string{algP256: "ecdsa-with-SHA256", algP384: "ecdsa-with-SHA384"}[alg]
		for _, c := range interopCases(ca, now) {
			t.Run(alg+"/"+c.name, func(t *testing.T) {
				es := sampleEntries(t, c.n, now)
				crlFile := writeFile(t, dir, alg+"-"+c.name+".crl", build(t, c.tmpl, es, ca.signer))
				checkOpenSSLText(t, crlFile, c.tmpl, es, sigAlg)
				out, _ := openssl(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-CAfile", caFile, "-verify")
				if !strings.Contains(out, "verify OK") {
					t.Errorf("openssl crl -verify: %s", out)
				}
				out, _ = openssl(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-CAfile", impostor, "-verify")
				if strings.Contains(out, "verify OK") || !strings.Contains(out, "verify failure") {
					t.Errorf("openssl crl -verify with another key of the same name: %s", out)
				}
			})
		}
	}
}

// sm2DetachedCheck is INTEROP.md §2 sm2-tbs-verify.sh for a DER CRL: cut the
// TBSCertList and the signature out with openssl asn1parse and verify them
// with pkeyutl and the default SM2 ID, as OpenSSL 3.0's crl -verify cannot.
func sm2DetachedCheck(t *testing.T, dir, crlFile, issuerFile string) (string, error) {
	t.Helper()
	parsed, err := openssl(t, "asn1parse", "-inform", "DER", "-in", crlFile)
	if err != nil {
		t.Fatalf("asn1parse: %v\n%s", err, parsed)
	}
	var tbsOff, sigOff string
	for _, line := range strings.Split(parsed, "\n") {
		if !strings.Contains(line, "d=1") {
			continue
		}
		off := strings.TrimSpace(strings.SplitN(line, ":", 2)[0])
		if tbsOff == "" {
			tbsOff = off
		}
		if strings.Contains(line, "BIT STRING") {
			sigOff = off
		}
	}
	tbs, sig := filepath.Join(dir, "tbs"), filepath.Join(dir, "sig")
	for off, out := range map[string]string{tbsOff: tbs, sigOff: sig} {
		if o, err := openssl(t, "asn1parse", "-inform", "DER", "-in", crlFile, "-strparse", off, "-out", out, "-noout"); err != nil {
			t.Fatalf("asn1parse -strparse %s: %v\n%s", off, err, o)
		}
	}
	return openssl(t, "pkeyutl", "-verify", "-certin", "-inkey", issuerFile, "-rawin", "-digest", "sm3",
		"-pkeyopt", "distid:1234567812345678", "-in", tbs, "-sigfile", sig)
}

// TestOpenSSLSM2: OpenSSL parses SM2 CRLs and the detached check verifies
// their signatures (ACCEPTANCE.md C-03 "SM2 detached check").
func TestOpenSSLSM2(t *testing.T) {
	testenv.LookPath(t, "openssl")
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	root := newRoot(t, algSM2)
	ca := newSub(t, root, algSM2)
	caFile := writeFile(t, dir, "ca.pem", certPEM(ca.cert))
	impostor := writeFile(t, dir, "impostor.pem", certPEM(otherCA(t, ca).cert))
	for _, c := range interopCases(ca, now) {
		t.Run(c.name, func(t *testing.T) {
			es := sampleEntries(t, c.n, now)
			crlFile := writeFile(t, dir, c.name+".crl", build(t, c.tmpl, es, ca.signer))
			checkOpenSSLText(t, crlFile, c.tmpl, es, "SM2-with-SM3")
			if out, err := sm2DetachedCheck(t, dir, crlFile, caFile); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
				t.Errorf("SM2 detached check: %v\n%s", err, out)
			}
			if out, err := sm2DetachedCheck(t, dir, crlFile, impostor); err == nil || !strings.Contains(out, "Signature Verification Failure") {
				t.Errorf("SM2 detached check with another key of the same name: %v\n%s", err, out)
			}
		})
	}
}

// TestTjfocSM2: an independent SM2 implementation verifies the signature.
func TestTjfocSM2(t *testing.T) {
	now := time.Now()
	ca := newSub(t, newRoot(t, algSM2), algSM2)
	tmpl := baseTemplate(ca, now, 9)
	tmpl.IDP = &IssuingDistributionPoint{FullName: []string{"http://crl.example.gov.cn/9.crl"}}
	rl, err := Verify(build(t, tmpl, sampleEntries(t, 200, now), ca.signer), ca.cert)
	if err != nil {
		t.Fatal(err)
	}
	var r, s big.Int
	in := cryptobyte.String(rl.Signature)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() || !seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		t.Fatalf("malformed SM2 signature %x", rl.Signature)
	}
	k, err := sm2.PublicKeyToECDH(ca.cert.PublicKey.(*ecdsa.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	point := k.Bytes() // 04 ‖ x ‖ y
	tp := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(big.Int).SetBytes(point[1:33]), Y: new(big.Int).SetBytes(point[33:])}
	uid := []byte("1234567812345678")
	if !tjsm2.Sm2Verify(tp, rl.RawTBSRevocationList, uid, &r, &s) {
		t.Error("tjfoc/gmsm rejects the CRL signature")
	}
	tampered := append([]byte(nil), rl.RawTBSRevocationList...)
	tampered[len(tampered)-1] ^= 1
	if tjsm2.Sm2Verify(tp, tampered, uid, &r, &s) {
		t.Error("tjfoc/gmsm accepts a tampered TBS")
	}
}

// TestHSMSigner signs through the key manager's crypto.Signer (hsm/soft),
// the path the CA uses: SM2 keys get e = SM3(Z ‖ TBS), ECDSA keys a digest.
func TestHSMSigner(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t, soft.Migrations)
	km, err := soft.Open(ctx, soft.NewSQLStore(db), soft.Config{AllowDev: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { km.Close() })
	now := time.Now()
	for alg, name := range map[hsm.Algorithm]string{hsm.SM2: algSM2, hsm.ECDSAP384: algP384} {
		t.Run(name, func(t *testing.T) {
			uri := fmt.Sprintf("soft:ca/crl-test-%s", alg)
			if _, err := km.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: alg, Usage: hsm.UsageSign, Service: "ca"}); err != nil {
				t.Fatal(err)
			}
			signer, err := km.Signer(ctx, &hsm.SignerRequest{URI: uri, Service: "ca"})
			if err != nil {
				t.Fatal(err)
			}
			ca := newCAWithKey(t, nil, name, signer, "HSM "+name, smx509.KeyUsageCertSign|smx509.KeyUsageCRLSign)
			es := sampleEntries(t, 30, now)
			rl, err := Verify(build(t, baseTemplate(ca, now, 12), es, signer), ca.cert)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := Lint(rl, ca.cert); err != nil {
				t.Error(err)
			}
		})
	}
}
