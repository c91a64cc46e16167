package lint

import (
	"testing"

	"github.com/emmansun/gmsm/smx509"
)

// FuzzCheck lints arbitrary DER: the lints read untrusted structure
// themselves and must never panic on it.
func FuzzCheck(f *testing.F) {
	pki(f)
	f.Add(sm2LeafDER)
	f.Add(ecLeafDER)
	f.Add(sm2CA.cert.Raw)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		fs := Check(der, sm2CA.cert, Expect{Purpose: PurposeTLSServer, IdentityExtensions: nil})
		if len(fs) == 0 {
			if _, err := smx509.ParseCertificate(der); err != nil {
				t.Fatalf("no finding on a certificate smx509 refuses: %v", err)
			}
		}
		Check(der, nil, Expect{})
		PublicKey(der)
	})
}
