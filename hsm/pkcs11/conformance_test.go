//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"testing"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/hsmtest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// wrongPIN is a PIN no test token has.
const wrongPIN = "97531"

// conformance describes a token for the conformance suite.
func conformance(name string, cfg Config, algs, decAlgs []hsm.Algorithm, sm2Location hsm.Location) hsmtest.Backend {
	return hsmtest.Backend{
		Name: name,
		Open: func(t testing.TB) hsm.KeyManager {
			km, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return km
		},
		URI:               func(object string) string { return "pkcs11:token=" + cfg.Token + ";object=" + object },
		Algorithms:        algs,
		DecryptAlgorithms: decAlgs,
		WrongPIN: func(t testing.TB) error {
			bad := cfg
			bad.PIN = wrongPIN
			km, err := New(context.Background(), bad)
			if err == nil {
				km.Close()
			}
			return err
		},
		Location:    hsm.LocationHardware,
		SM2Location: sm2Location,
	}
}

// TestConformanceSoftHSM runs the key-manager conformance suite on a fresh
// SoftHSM2 token: ECDSA and RSA keys on the token, SM2 keys wrapped by it.
func TestConformanceSoftHSM(t *testing.T) {
	tk := newToken(t, "conformance")
	b := conformance("softhsm2", tk.config(),
		[]hsm.Algorithm{hsm.SM2, hsm.ECDSAP256, hsm.ECDSAP384, hsm.RSA2048},
		[]hsm.Algorithm{hsm.SM2, hsm.RSA2048},
		hsm.LocationWrapped)
	// SoftHSM2 2.6 implements OAEP with SHA-1 and an empty label only
	// (MechParamCheckRSAPKCSOAEP).
	b.OAEP = hsmtest.OAEP{Hash: crypto.SHA1, NoLabel: true}
	hsmtest.Run(t, b)
}

// TestConformanceSM2Token runs the conformance suite on the govtrust-p11
// software token (cmd/govtrust-p11), which signs and decrypts with SM2
// through the "tass" vendor mechanisms: from the SPI's side its SM2 keys are
// inside the module, like an HSM's. It needs GTTEST_P11_MODULE, the path
// of libgovtrust-p11.so (make test builds it; make p11 by hand).
func TestConformanceSM2Token(t *testing.T) {
	module := testenv.Env(t, "GTTEST_P11_MODULE", "SM2 PKCS#11 module libgovtrust-p11.so (make p11)")
	const label, soPIN = "conformance", "87654321"
	// The module reads its token directory from the environment at every
	// C_Initialize (with getenv(3), so t.Setenv reaches it).
	t.Setenv("GOVTRUST_P11_CONF", "")
	t.Setenv("GOVTRUST_P11_DIR", t.TempDir())
	initSoftToken(t, module, label, soPIN, testPIN) // native_test.go
	hsmtest.Run(t, conformance("govtrust-p11",
		Config{Module: module, Token: label, PIN: testPIN, Vendor: "tass"},
		[]hsm.Algorithm{hsm.SM2, hsm.ECDSAP256},
		[]hsm.Algorithm{hsm.SM2},
		hsm.LocationHardware))
}
