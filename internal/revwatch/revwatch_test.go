package revwatch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/httpx"
)

// chain makes leaf, sub and root (DER, leaf first), each issued by the next.
func chain(t *testing.T) ([][]byte, []*smx509.Certificate) {
	t.Helper()
	var ders [][]byte
	var certs []*smx509.Certificate
	var parent *x509.Certificate
	var parentKey *ecdsa.PrivateKey
	for i, cn := range []string{"root", "sub", "leaf"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(100 + i)), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: cn != "leaf", BasicConstraintsValid: true}
		p, pk := parent, parentKey
		if p == nil {
			p, pk = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p, &key.PublicKey, pk)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if parent, err = x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
		parentKey = key
		ders = append([][]byte{der}, ders...)
		certs = append([]*smx509.Certificate{c}, certs...)
	}
	return ders, certs
}

func TestHit(t *testing.T) {
	ders, c := chain(t) // leaf, sub, root
	for _, tc := range []struct {
		issuer *smx509.Certificate
		serial int64
		want   string
	}{
		{c[1], 102, "certificate 66 (leaf) was revoked"},
		{c[2], 101, "certificate 65 (sub) was revoked"},
		{c[2], 102, ""}, // the leaf's serial, but not the root's certificate
		{c[1], 101, ""},
		{c[2], 100, ""}, // the root itself is no link
	} {
		if got := Hit(ders, tc.issuer, big.NewInt(tc.serial)); got != tc.want {
			t.Errorf("Hit(issuer %s, serial %d) = %q, want %q", tc.issuer.Subject.CommonName, tc.serial, got, tc.want)
		}
	}
}

// record is an in-memory Reader: revoked certificates by DER, the root
// unknown, as the CA answers for a certificate it did not issue.
type record struct {
	revoked map[string]time.Time
	root    string
	err     error
	asked   []string
}

func (r *record) Revoked(_ context.Context, der []byte) (time.Time, string, error) {
	r.asked = append(r.asked, string(der))
	switch {
	case r.err != nil:
		return time.Time{}, "", r.err
	case string(der) == r.root:
		return time.Time{}, "", fmt.Errorf("no platform CA issued it: %w", httpx.ErrNotFound)
	}
	if at, ok := r.revoked[string(der)]; ok {
		return at, "keyCompromise", nil
	}
	return time.Time{}, "", nil
}

func TestCheck(t *testing.T) {
	ders, _ := chain(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	r := &record{revoked: map[string]time.Time{}, root: string(ders[2])}
	if why, err := Check(ctx, r, ders); why != "" || err != nil || len(r.asked) != 2 {
		t.Fatalf("all good: %q, %v, %d asked (want the leaf and the sub only)", why, err, len(r.asked))
	}
	r.revoked[string(ders[1])] = at
	why, err := Check(ctx, r, ders)
	if err != nil || why != "certificate 65 (sub) was revoked (keyCompromise) at 2026-11-22T08:00:00Z" {
		t.Fatalf("sub revoked: %q, %v", why, err)
	}
	r.err = errors.New("database away")
	if _, err := Check(ctx, r, ders); err == nil || !strings.Contains(err.Error(), "database away") {
		t.Fatalf("unreadable record: %v", err)
	}
}
