// Package revwatch is how a service that signs with a certificate the
// platform CA issued (the TSA's units, the seal maker, the signing API's
// keys) follows its revocation, and that of each CA certificate above it:
// the CA's in-process hook, told of a revocation before it is acknowledged
// (Notifier, Hit), and the CA's record, read for revocations made by other
// processes (Reader, Check). The services declare no interface on the CA
// of their own and never import it (ARCHITECTURE.md §1).
package revwatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/httpx"
)

// Reader is the CA's record of a certificate it issued (ca.Service.Revoked):
// when and why it was revoked, a zero time when good; an error wrapping
// httpx.ErrNotFound when no platform CA issued it (a root, an offline CA).
type Reader interface {
	Revoked(ctx context.Context, der []byte) (time.Time, string, error)
}

// Notifier tells of each revocation committed in this process, before it
// is acknowledged (ca.Service.OnRevoked); issuer is the certificate of the
// CA generation that issued serial.
type Notifier interface {
	OnRevoked(func(issuer *smx509.Certificate, serial *big.Int))
}

// Hit says which certificate of chain the revocation of serial by issuer
// is, "" when none: chain is a certificate and then its issuers, DER, each
// certificate issued by the next (the last, a root, has no issuer here).
func Hit(chain [][]byte, issuer *smx509.Certificate, serial *big.Int) string {
	for i := 0; i+1 < len(chain); i++ {
		if !bytes.Equal(chain[i+1], issuer.Raw) {
			continue
		}
		if c, err := smx509.ParseCertificate(chain[i]); err == nil && c.SerialNumber.Cmp(serial) == 0 {
			return fmt.Sprintf("certificate %x (%s) was revoked", serial, c.Subject.CommonName)
		}
	}
	return ""
}

// Check reads r's record of each certificate of chain but the last (as
// Hit) and describes the first revoked one, "" when none is. A certificate
// no platform CA issued is skipped; an error is a record that could not be
// read.
func Check(ctx context.Context, r Reader, chain [][]byte) (string, error) {
	for i := 0; i+1 < len(chain); i++ {
		at, reason, err := r.Revoked(ctx, chain[i])
		if errors.Is(err, httpx.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		if at.IsZero() {
			continue
		}
		what := "a certificate of its chain"
		if c, err := smx509.ParseCertificate(chain[i]); err == nil {
			what = fmt.Sprintf("certificate %x (%s)", c.SerialNumber, c.Subject.CommonName)
		}
		return fmt.Sprintf("%s was revoked (%s) at %s", what, reason, at.UTC().Format(time.RFC3339)), nil
	}
	return "", nil
}
