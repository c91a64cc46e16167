package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/clock"
)

// TestCarryOverCRL: each kind of CRL entry, as a restore meets them. A
// good certificate is revoked with the CRL's date and reason (and dropped
// from OCSP, audited, blocked for keyCompromise); one revoked with the same
// reason counts as already; another reason, certificateHold and
// removeFromCRL are skipped; a serial the database has no certificate of
// becomes a revocation without a certificate, on the next CRLs (full and
// delta) and revoked in OCSP; a CRL that no CA of the database signed is
// refused.
func TestCarryOverCRL(t *testing.T) {
	tn := startNode(t, t.TempDir())
	ctx := t.Context()
	a := tn.svc.cas["ecdsa-issuing"]
	var serials []string
	for range 5 {
		serials = append(serials, tn.issueECDSA(t).Serial)
	}
	for _, i := range []int{1, 2} {
		if status, raw := tn.revoke(a.id, "ra", serials[i], "superseded"); status != http.StatusOK {
			t.Fatalf("revoke: %d %s", status, raw)
		}
	}
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	hexInt := func(s string) *big.Int { n, _ := new(big.Int).SetString(s, 16); return n }
	entries := []smx509.RevocationListEntry{
		{SerialNumber: hexInt(serials[0]), RevocationTime: at, ReasonCode: reasonKeyCompromise}, // good → revoked
		{SerialNumber: hexInt(serials[1]), RevocationTime: at, ReasonCode: 4},                   // superseded already
		{SerialNumber: hexInt(serials[2]), RevocationTime: at, ReasonCode: 3},                   // another reason
		{SerialNumber: hexInt(serials[3]), RevocationTime: at, ReasonCode: 6},                   // certificateHold
		{SerialNumber: hexInt(serials[4]), RevocationTime: at, ReasonCode: 8},                   // removeFromCRL
		{SerialNumber: hexInt("01deadbeef"), RevocationTime: at},                                // never issued
	}
	tmpl := &smx509.RevocationList{Number: hexInt("ff"), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: entries}
	der, err := smx509.CreateRevocationList(rand.Reader, tmpl, a.cert, a.signer)
	if err != nil {
		t.Fatal(err)
	}
	before := tn.count(revokeRecords)
	got, err := CarryOverCRL(ctx, tn.db(), tn.n.Env().Audit, clock.New(), der)
	if err != nil {
		t.Fatal(err)
	}
	if got.CA != a.id || len(got.Revoked) != 1 || got.Revoked[0] != serials[0] || got.Already != 1 ||
		len(got.WithoutCertificate) != 1 || got.WithoutCertificate[0] != "01deadbeef" || len(got.Skipped) != 3 {
		t.Fatalf("carried over: %+v", got)
	}
	c, err := certBySerial(ctx, tn.db(), a.id, serials[0])
	if err != nil || c.status != "revoked" || c.reason != reasonKeyCompromise || !c.revokedAt.Equal(at) {
		t.Errorf("carried-over revocation: %+v %v; want keyCompromise at %v", c, err, at)
	}
	if n := tn.count(revokeRecords); n != before+2 {
		t.Errorf("revocation audit records: %d more, want 2", n-before)
	}
	stub, err := certBySerial(ctx, tn.db(), a.id, "01deadbeef")
	if err != nil || stub.status != "revoked" || stub.reason != 0 || !stub.revokedAt.Equal(at) || len(stub.der) != 0 ||
		stub.profile != carriedOverProfile || !stub.notAfter.Equal(a.cert.NotAfter.UTC().Truncate(time.Second)) {
		t.Errorf("revocation without a certificate: %+v %v", stub, err)
	}
	resp, err := Certificate(ctx, tn.db(), a.id, "01deadbeef")
	if err != nil || resp.Status != "revoked" || resp.Certificate != "" {
		t.Errorf("API view of the revocation without a certificate: %+v %v", resp, err)
	}
	// The next CRLs list it, and OCSP answers revoked: a delta on the base
	// from before (the insertion got a revocation sequence), and a full CRL.
	for _, gen := range []func(context.Context, *authority) (*storedCRL, error){tn.svc.generateDelta, tn.svc.generateBase} {
		c, err := gen(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if got := serialsOf(t, c, a); !strings.Contains(got, "01deadbeef") {
			t.Errorf("%s CRL %d lists %q, not the revocation without a certificate", c.kind, c.number, got)
		}
	}
	if st, _, _, _, err := tn.svc.certStatus(ctx, a, hexInt("01deadbeef")); err != nil || st != ocsp.Revoked {
		t.Errorf("OCSP status of the revocation without a certificate: %v %v", st, err)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_blocked_keys"); n != 1 {
		t.Errorf("blocked keys: %d, want the keyCompromise one", n)
	}
	if c, _ := certBySerial(ctx, tn.db(), a.id, serials[2]); c.reason != 4 {
		t.Errorf("a certificate revoked with another reason changed: reason %d", c.reason)
	}
	// Again: nothing more to do.
	again, err := CarryOverCRL(ctx, tn.db(), tn.n.Env().Audit, clock.New(), der)
	if err != nil || len(again.Revoked) != 0 || again.Already != 3 || len(again.WithoutCertificate) != 0 {
		t.Errorf("second carry-over: %+v %v", again, err)
	}

	// Signed by a key no CA of the database has, under the same name.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := smx509.CreateRevocationList(rand.Reader, tmpl, a.cert, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CarryOverCRL(ctx, tn.db(), tn.n.Env().Audit, clock.New(), forged); !errors.Is(err, ErrRequest) {
		t.Errorf("a CRL no CA signed: %v, want ErrRequest", err)
	}
	if _, err := CRLIssuer(ctx, tn.db(), []byte("not a CRL")); !errors.Is(err, ErrRequest) {
		t.Errorf("garbage: %v, want ErrRequest", err)
	}
}
