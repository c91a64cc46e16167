package main_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/miekg/pkcs11"
	tjsm2 "github.com/tjfoc/gmsm/sm2"
)

func TestInfo(t *testing.T) {
	p := load(t, t.TempDir())
	info, err := p.GetInfo()
	must(t, err)
	if info.CryptokiVersion.Major != 2 || info.CryptokiVersion.Minor != 40 || info.ManufacturerID != "govtrust" {
		t.Errorf("C_GetInfo = %+v", info)
	}
	slots, err := p.GetSlotList(true)
	must(t, err)
	if len(slots) != 1 || slots[0] != 0 {
		t.Fatalf("slots = %v, want [0]", slots)
	}
	si, err := p.GetSlotInfo(0)
	must(t, err)
	if si.Flags&pkcs11.CKF_TOKEN_PRESENT == 0 || si.Flags&pkcs11.CKF_HW_SLOT != 0 {
		t.Errorf("slot flags %#x: want token present and no hardware slot", si.Flags)
	}
	ti, err := p.GetTokenInfo(0)
	must(t, err)
	if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
		t.Errorf("fresh directory reports an initialised token: %#x", ti.Flags)
	}
	// Sessions need an initialised token.
	_, err = p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION)
	wantRV(t, "C_OpenSession on an uninitialised token", err, pkcs11.CKR_TOKEN_NOT_RECOGNIZED)
	_, err = p.GetSlotInfo(7)
	wantRV(t, "C_GetSlotInfo(7)", err, pkcs11.CKR_SLOT_ID_INVALID)

	mechs, err := p.GetMechanismList(0)
	must(t, err)
	got := map[uint]bool{}
	for _, m := range mechs {
		got[m.Mechanism] = true
	}
	for _, m := range []uint{ckmSM2KeyPairGen, ckmSM2Sign, ckmSM3SM2, ckmSM2Encrypt, pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKM_ECDSA} {
		if !got[m] {
			t.Errorf("mechanism %#x missing from %v", m, mechs)
		}
	}
	mi, err := p.GetMechanismInfo(0, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)})
	must(t, err)
	if mi.Flags != pkcs11.CKF_SIGN || mi.MinKeySize != 256 {
		t.Errorf("SM3-SM2 mechanism info %+v", mi)
	}
	_, err = p.GetMechanismInfo(0, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)})
	wantRV(t, "C_GetMechanismInfo(RSA)", err, pkcs11.CKR_MECHANISM_INVALID)
}

func TestTokenAndPINs(t *testing.T) {
	p, _ := newToken(t)
	ti, err := p.GetTokenInfo(0)
	must(t, err)
	want := uint(pkcs11.CKF_TOKEN_INITIALIZED | pkcs11.CKF_USER_PIN_INITIALIZED | pkcs11.CKF_LOGIN_REQUIRED | pkcs11.CKF_RNG)
	if ti.Label != label || ti.Flags != want || len(ti.SerialNumber) != 16 {
		t.Fatalf("token info label=%q flags=%#x serial=%q", ti.Label, ti.Flags, ti.SerialNumber)
	}

	s := openSession(t, p, true)
	wantRV(t, "login with wrong PIN", p.Login(s, pkcs11.CKU_USER, "000000"), pkcs11.CKR_PIN_INCORRECT)
	ti, _ = p.GetTokenInfo(0)
	if ti.Flags&pkcs11.CKF_USER_PIN_COUNT_LOW == 0 {
		t.Errorf("after a wrong PIN the token flags %#x lack CKF_USER_PIN_COUNT_LOW", ti.Flags)
	}
	must(t, p.Login(s, pkcs11.CKU_USER, userPIN))
	wantRV(t, "second login", p.Login(s, pkcs11.CKU_USER, userPIN), pkcs11.CKR_USER_ALREADY_LOGGED_IN)
	wantRV(t, "SO login while user logged in", p.Login(s, pkcs11.CKU_SO, soPIN), pkcs11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
	si, err := p.GetSessionInfo(s)
	must(t, err)
	if si.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		t.Errorf("session state %d, want CKS_RW_USER_FUNCTIONS", si.State)
	}
	ti, _ = p.GetTokenInfo(0)
	if ti.Flags&pkcs11.CKF_USER_PIN_COUNT_LOW != 0 {
		t.Errorf("a good PIN did not reset the failure count: flags %#x", ti.Flags)
	}

	// The user changes the PIN; the old one stops working.
	must(t, p.SetPIN(s, userPIN, "654321"))
	must(t, p.Logout(s))
	wantRV(t, "old PIN after C_SetPIN", p.Login(s, pkcs11.CKU_USER, userPIN), pkcs11.CKR_PIN_INCORRECT)
	must(t, p.Login(s, pkcs11.CKU_USER, "654321"))
	must(t, p.Logout(s))

	// Ten wrong PINs lock the user PIN, even the right one is refused ...
	for i := 0; i < 9; i++ {
		wantRV(t, "wrong PIN", p.Login(s, pkcs11.CKU_USER, "000000"), pkcs11.CKR_PIN_INCORRECT)
	}
	ti, _ = p.GetTokenInfo(0)
	if ti.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY == 0 {
		t.Errorf("after 9 failures flags %#x lack CKF_USER_PIN_FINAL_TRY", ti.Flags)
	}
	wantRV(t, "tenth wrong PIN", p.Login(s, pkcs11.CKU_USER, "000000"), pkcs11.CKR_PIN_INCORRECT)
	wantRV(t, "right PIN when locked", p.Login(s, pkcs11.CKU_USER, "654321"), pkcs11.CKR_PIN_LOCKED)
	ti, _ = p.GetTokenInfo(0)
	if ti.Flags&pkcs11.CKF_USER_PIN_LOCKED == 0 {
		t.Errorf("flags %#x lack CKF_USER_PIN_LOCKED", ti.Flags)
	}

	// ... until the SO resets it, keeping the keys usable.
	wantRV(t, "C_InitPIN without SO", p.InitPIN(s, "111111"), pkcs11.CKR_USER_NOT_LOGGED_IN)
	must(t, p.Login(s, pkcs11.CKU_SO, soPIN))
	must(t, p.InitPIN(s, userPIN))
	must(t, p.Logout(s))
	must(t, p.Login(s, pkcs11.CKU_USER, userPIN))

	// Re-initialisation needs no open session and the SO PIN.
	wantRV(t, "C_InitToken with a session open", p.InitToken(0, soPIN, "x"), pkcs11.CKR_SESSION_EXISTS)
	must(t, p.CloseSession(s))
	wantRV(t, "C_InitToken with a wrong SO PIN", p.InitToken(0, "00000000", "x"), pkcs11.CKR_PIN_INCORRECT)
	must(t, p.InitToken(0, soPIN, "relabelled"))
	ti, _ = p.GetTokenInfo(0)
	if ti.Label != "relabelled" || ti.Flags&pkcs11.CKF_USER_PIN_INITIALIZED != 0 {
		t.Errorf("after re-init: label %q flags %#x", ti.Label, ti.Flags)
	}
	s = openSession(t, p, true)
	wantRV(t, "user login after re-init", p.Login(s, pkcs11.CKU_USER, userPIN), pkcs11.CKR_USER_PIN_NOT_INITIALIZED)
	ro := openSession(t, p, false)
	wantRV(t, "SO login with a R/O session", p.Login(s, pkcs11.CKU_SO, soPIN), pkcs11.CKR_SESSION_READ_ONLY_EXISTS)
	must(t, p.CloseSession(ro))
	wantRV(t, "short PIN", func() error {
		must(t, p.Login(s, pkcs11.CKU_SO, soPIN))
		return p.InitPIN(s, "12")
	}(), pkcs11.CKR_PIN_LEN_RANGE)
}

// sm2Verify checks a raw r||s SM2 signature over msg with the default ID in
// two independent implementations, gmsm and tjfoc/gmsm.
func sm2Verify(t *testing.T, point, msg, sig []byte) {
	t.Helper()
	pub, err := sm2.NewPublicKey(point)
	must(t, err)
	r, s, der := splitRS(t, sig)
	if !sm2.VerifyASN1WithSM2(pub, nil, msg, der) {
		t.Errorf("gmsm rejects the signature")
	}
	tjPub := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(bigInt).SetBytes(point[1:33]), Y: new(bigInt).SetBytes(point[33:])}
	if !tjsm2.Sm2Verify(tjPub, msg, nil, r, s) {
		t.Errorf("tjfoc/gmsm rejects the signature")
	}
}

func TestSM2(t *testing.T) {
	p, _ := newToken(t)
	s := userSession(t, p)
	pub, priv := keyPair(t, p, s, true, "seal-2026")

	if kt := attr(t, p, s, priv, pkcs11.CKA_KEY_TYPE); !bytes.Equal(kt, ulong(ckkSM2)) {
		t.Errorf("CKA_KEY_TYPE %x, want CKK_SM2 (TASS 0x80000004)", kt)
	}
	sm2Params := []byte{0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d} // OID 1.2.156.10197.1.301
	if ep := attr(t, p, s, pub, pkcs11.CKA_EC_PARAMS); !bytes.Equal(ep, sm2Params) {
		t.Errorf("CKA_EC_PARAMS %x, want %x", ep, sm2Params)
	}
	point := ecPoint(t, p, s, pub)
	if !bytes.Equal(point, ecPoint(t, p, s, priv)) {
		t.Errorf("the private key's CKA_EC_POINT differs from the public key's")
	}
	sm2Pub, err := sm2.NewPublicKey(point)
	must(t, err)
	msg := []byte("国务院办公厅关于印发电子印章管理办法的通知")

	t.Run("SM3-with-SM2 over the message", func(t *testing.T) {
		must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)}, priv))
		sig, err := p.Sign(s, msg)
		must(t, err)
		sm2Verify(t, point, msg, sig)
	})
	t.Run("SM3-with-SM2 in parts", func(t *testing.T) {
		must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)}, priv))
		must(t, p.SignUpdate(s, msg[:10]))
		must(t, p.SignUpdate(s, msg[10:]))
		sig, err := p.SignFinal(s)
		must(t, err)
		sm2Verify(t, point, msg, sig)
	})
	t.Run("raw SM2 over e", func(t *testing.T) {
		e, err := sm2.CalculateSM2Hash(sm2Pub, msg, nil)
		must(t, err)
		must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2Sign, nil)}, priv))
		sig, err := p.Sign(s, e)
		must(t, err)
		sm2Verify(t, point, msg, sig)
		_, _, der := splitRS(t, sig)
		if !sm2.VerifyASN1(sm2Pub, e, der) {
			t.Errorf("gmsm VerifyASN1 over e rejects the signature")
		}
	})
	t.Run("raw SM2 needs 32 bytes", func(t *testing.T) {
		must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2Sign, nil)}, priv))
		_, err := p.Sign(s, make([]byte, 31))
		wantRV(t, "C_Sign(31 bytes)", err, pkcs11.CKR_DATA_LEN_RANGE)
		_, err = p.Sign(s, make([]byte, 32))
		wantRV(t, "C_Sign after the failed C_Sign", err, pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	})
	t.Run("wrong mechanism for the key", func(t *testing.T) {
		err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv)
		wantRV(t, "ECDSA with an SM2 key", err, pkcs11.CKR_KEY_TYPE_INCONSISTENT)
		err = p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, []byte("ALICE"))}, priv)
		wantRV(t, "SM3-SM2 with a parameter", err, pkcs11.CKR_MECHANISM_PARAM_INVALID)
	})

	t.Run("decrypt", func(t *testing.T) {
		secret := []byte("0123456789abcdef session key")
		gmsmCT, err := sm2.Encrypt(rand.Reader, sm2Pub, secret, sm2.ASN1EncrypterOpts)
		must(t, err)
		tjPub := &tjsm2.PublicKey{Curve: tjsm2.P256Sm2(), X: new(bigInt).SetBytes(point[1:33]), Y: new(bigInt).SetBytes(point[33:])}
		tjCT, err := tjsm2.EncryptAsn1(tjPub, secret, rand.Reader)
		must(t, err)
		for name, ct := range map[string][]byte{"gmsm": gmsmCT, "tjfoc": tjCT} {
			must(t, p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2Encrypt, nil)}, priv))
			pt, err := p.Decrypt(s, ct)
			must(t, err)
			if !bytes.Equal(pt, secret) {
				t.Errorf("%s ciphertext decrypts to %q", name, pt)
			}
		}
		tampered := bytes.Clone(gmsmCT)
		tampered[len(tampered)-1] ^= 1
		plain, err := sm2.Encrypt(rand.Reader, sm2Pub, secret, nil) // C1C3C2, not ASN.1
		must(t, err)
		for name, ct := range map[string][]byte{"tampered": tampered, "plain C1C3C2": plain} {
			must(t, p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2Encrypt, nil)}, priv))
			_, err = p.Decrypt(s, ct)
			wantRV(t, name, err, pkcs11.CKR_ENCRYPTED_DATA_INVALID)
		}
	})

	t.Run("usage is enforced", func(t *testing.T) {
		_, signOnly := keyPair(t, p, s, true, "sign-only", pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false))
		err := p.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2Encrypt, nil)}, signOnly)
		wantRV(t, "decrypt with a sign-only key", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	})
}

type bigInt = big.Int

func ulong(v uint) []byte {
	return pkcs11.NewAttribute(pkcs11.CKA_CLASS, v).Value
}

func TestECDSAP256(t *testing.T) {
	p, _ := newToken(t)
	s := userSession(t, p)
	pub, priv := keyPair(t, p, s, false, "tls-p256")
	if kt := attr(t, p, s, priv, pkcs11.CKA_KEY_TYPE); !bytes.Equal(kt, ulong(pkcs11.CKK_EC)) {
		t.Errorf("CKA_KEY_TYPE %x, want CKK_EC", kt)
	}
	ecPub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), ecPoint(t, p, s, pub))
	must(t, err)
	msg := []byte("ECDSA P-256 relying parties")
	digest := sha256.Sum256(msg)

	must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv))
	sig, err := p.Sign(s, digest[:])
	must(t, err)
	_, _, der := splitRS(t, sig)
	if !ecdsa.VerifyASN1(ecPub, digest[:], der) {
		t.Errorf("crypto/ecdsa rejects the CKM_ECDSA signature")
	}
	must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA_SHA256, nil)}, priv))
	sig, err = p.Sign(s, msg)
	must(t, err)
	_, _, der = splitRS(t, sig)
	if !ecdsa.VerifyASN1(ecPub, digest[:], der) {
		t.Errorf("crypto/ecdsa rejects the CKM_ECDSA_SHA256 signature")
	}

	// Only P-256 is offered.
	_, _, err = p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, mustDER(t, asn1.ObjectIdentifier{1, 3, 132, 0, 34}))}, nil)
	wantRV(t, "P-384 key generation", err, pkcs11.CKR_CURVE_NOT_SUPPORTED)
}

func TestKeyPolicyAndAttributes(t *testing.T) {
	p, _ := newToken(t)
	s := userSession(t, p)
	_, priv := keyPair(t, p, s, true, "ca-root")

	// The private value never leaves the token (Base §4.9, §5.7 case 1).
	_, err := p.GetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	wantRV(t, "CKA_VALUE of a private key", err, pkcs11.CKR_ATTRIBUTE_SENSITIVE)
	for _, tc := range []struct {
		typ  uint
		want bool
	}{
		{pkcs11.CKA_SENSITIVE, true}, {pkcs11.CKA_EXTRACTABLE, false}, {pkcs11.CKA_ALWAYS_SENSITIVE, true},
		{pkcs11.CKA_NEVER_EXTRACTABLE, true}, {pkcs11.CKA_LOCAL, true}, {pkcs11.CKA_PRIVATE, true},
		{pkcs11.CKA_SIGN, true}, {pkcs11.CKA_TOKEN, true},
	} {
		if v := attr(t, p, s, priv, tc.typ); !bytes.Equal(v, []byte{b2i(tc.want)}) {
			t.Errorf("attribute %#x = %x, want %v", tc.typ, v, tc.want)
		}
	}
	_, err = p.GetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil)})
	wantRV(t, "CKA_MODULUS of an SM2 key", err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)

	// Policy on templates.
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2KeyPairGen, nil)}
	for name, tc := range map[string]struct {
		priv []*pkcs11.Attribute
		rv   uint
	}{
		"extractable":    {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID},
		"not sensitive":  {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)}, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID},
		"not private":    {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false)}, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID},
		"value supplied": {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32))}, pkcs11.CKR_ATTRIBUTE_READ_ONLY},
		"EC key type":    {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC)}, pkcs11.CKR_TEMPLATE_INCONSISTENT},
		"unknown type":   {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048)}, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID},
	} {
		_, _, err := p.GenerateKeyPair(s, mech, nil, tc.priv)
		wantRV(t, name, err, tc.rv)
	}

	// Label and ID can be changed and stick; usage cannot.
	must(t, p.SetAttributeValue(s, priv, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "ca-root-2026"),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{0xca, 0x01}),
	}))
	if got := string(attr(t, p, s, priv, pkcs11.CKA_LABEL)); got != "ca-root-2026" {
		t.Errorf("label after C_SetAttributeValue: %q", got)
	}
	err = p.SetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false)})
	wantRV(t, "changing CKA_DECRYPT", err, pkcs11.CKR_ATTRIBUTE_READ_ONLY)
	err = p.SetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)})
	wantRV(t, "clearing CKA_SENSITIVE", err, pkcs11.CKR_ATTRIBUTE_READ_ONLY)
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func TestAccessControl(t *testing.T) {
	p, _ := newToken(t)
	s := userSession(t, p)
	_, priv := keyPair(t, p, s, true, "approval")
	must(t, p.Logout(s))

	err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)}, priv)
	wantRV(t, "C_SignInit without login", err, pkcs11.CKR_USER_NOT_LOGGED_IN)
	_, err = p.GetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil)})
	wantRV(t, "reading a private object without login", err, pkcs11.CKR_USER_NOT_LOGGED_IN)
	_, _, err = p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2KeyPairGen, nil)}, nil, nil)
	wantRV(t, "C_GenerateKeyPair without login", err, pkcs11.CKR_USER_NOT_LOGGED_IN)
	wantRV(t, "C_DestroyObject without login", p.DestroyObject(s, priv), pkcs11.CKR_USER_NOT_LOGGED_IN)

	// A R/O session cannot create token objects, even when logged in.
	ro := openSession(t, p, false)
	must(t, p.Login(ro, pkcs11.CKU_USER, userPIN))
	_, err = p.CreateObject(ro, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
	})
	wantRV(t, "token object in a R/O session", err, pkcs11.CKR_SESSION_READ_ONLY)
	// A key started before logout cannot be finished after it.
	must(t, p.SignInit(ro, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)}, priv))
	must(t, p.Logout(ro))
	_, err = p.Sign(ro, []byte("x"))
	wantRV(t, "C_Sign after logout", err, pkcs11.CKR_OPERATION_NOT_INITIALIZED)
}

func TestObjectsFindAndPersist(t *testing.T) {
	p, dir := newToken(t)
	s := userSession(t, p)
	sm2Pub, sm2Priv := keyPair(t, p, s, true, "seal-key")
	keyPair(t, p, s, false, "tls-key")
	point := ecPoint(t, p, s, sm2Pub)
	id := attr(t, p, s, sm2Priv, pkcs11.CKA_ID)

	// Data objects: the hsm/pkcs11 backend keeps key metadata in them.
	meta := []byte(`{"service":"seal","usage":"sign","marker":"private-metadata-7f3a"}`)
	public := []byte("public-note-8e2b")
	dataPriv, err := p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "govtrust-meta"),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, "govtrust"),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, meta),
	})
	must(t, err)
	_, err = p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "public-note"),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, public),
	})
	must(t, err)
	// A session object disappears with its session.
	s2 := openSession(t, p, false)
	_, err = p.CreateObject(s2, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "scratch"),
	})
	must(t, err)
	if n := len(find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_LABEL, "scratch"))); n != 1 {
		t.Errorf("session object visible %d times from another session of the application, want 1", n)
	}
	must(t, p.CloseSession(s2))
	if n := len(find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_LABEL, "scratch"))); n != 0 {
		t.Errorf("session object survived its session")
	}

	// Private values are sealed on disk; public ones are not (the second
	// check shows the search would have found them).
	for _, form := range [][]byte{meta, []byte(base64.StdEncoding.EncodeToString(meta))} {
		if filesContain(t, dir, form) {
			t.Errorf("private data object value found in clear in %s", dir)
		}
	}
	if !filesContain(t, dir, []byte(base64.StdEncoding.EncodeToString(public))) {
		t.Errorf("public data object value not found in %s; the sealing check above proves nothing", dir)
	}

	count := func(s pkcs11.SessionHandle, tmpl ...*pkcs11.Attribute) int {
		return len(find(t, p, s, tmpl...))
	}
	for name, tc := range map[string]struct {
		tmpl []*pkcs11.Attribute
		want int
	}{
		"everything":     {nil, 6},
		"private keys":   {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}, 2},
		"SM2 keys":       {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkSM2)}, 2},
		"label":          {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "tls-key")}, 2},
		"label and type": {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "seal-key"), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)}, 1},
		"data by value":  {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, meta)}, 1},
		"unknown type":   {[]*pkcs11.Attribute{pkcs11.NewAttribute(0x7fff0001, []byte{1})}, 0},
		"no such label":  {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "nope")}, 0},
		// Guessing a private key by CKA_VALUE must never match.
		"sensitive value": {[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32))}, 0},
	} {
		if got := count(s, tc.tmpl...); got != tc.want {
			t.Errorf("find %s: %d objects, want %d", name, got, tc.want)
		}
	}
	must(t, p.Logout(s))
	if got := count(s); got != 3 {
		t.Errorf("without login %d objects are visible, want the 3 public ones", got)
	}

	// Everything survives C_Finalize / C_Initialize (and a fresh dlopen).
	must(t, p.Finalize())
	p.Destroy()
	p = load(t, dir)
	s = userSession(t, p)
	hs := find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	if len(hs) != 1 {
		t.Fatalf("after re-initialisation found %d SM2 private keys by ID", len(hs))
	}
	msg := []byte("signed after a restart")
	must(t, p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)}, hs[0]))
	sig, err := p.Sign(s, msg)
	must(t, err)
	sm2Verify(t, point, msg, sig)
	hs = find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_LABEL, "govtrust-meta"))
	if len(hs) != 1 || !bytes.Equal(attr(t, p, s, hs[0], pkcs11.CKA_VALUE), meta) {
		t.Fatalf("data object did not persist")
	}
	// Data objects are modifiable; the new value is sealed too.
	meta2 := []byte("metadata-v2-c41d")
	must(t, p.SetAttributeValue(s, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, meta2)}))
	if !bytes.Equal(attr(t, p, s, hs[0], pkcs11.CKA_VALUE), meta2) || filesContain(t, dir, []byte(base64.StdEncoding.EncodeToString(meta2))) {
		t.Errorf("updated data object value wrong or stored in clear")
	}
	must(t, p.DestroyObject(s, hs[0]))
	if len(find(t, p, s, pkcs11.NewAttribute(pkcs11.CKA_LABEL, "govtrust-meta"))) != 0 {
		t.Errorf("destroyed object still found")
	}
	_ = dataPriv
}

func TestConcurrentSigning(t *testing.T) {
	p, _ := newToken(t)
	s := userSession(t, p)
	pub, priv := keyPair(t, p, s, true, "busy")
	point := ecPoint(t, p, s, pub)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess, err := p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION)
			if err != nil {
				errs <- err
				return
			}
			defer p.CloseSession(sess)
			pubKey, _ := sm2.NewPublicKey(point)
			for i := range 25 {
				msg := []byte(fmt.Sprintf("goroutine %d message %d", g, i))
				if err := p.SignInit(sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)}, priv); err != nil {
					errs <- err
					return
				}
				sig, err := p.Sign(sess, msg)
				if err != nil {
					errs <- err
					return
				}
				r, sv := new(bigInt).SetBytes(sig[:32]), new(bigInt).SetBytes(sig[32:])
				der, _ := asn1.Marshal(struct{ R, S *bigInt }{r, sv})
				if !sm2.VerifyASN1WithSM2(pubKey, nil, msg, der) {
					errs <- fmt.Errorf("bad signature from goroutine %d", g)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDigestAndRandom(t *testing.T) {
	p, _ := newToken(t)
	s := openSession(t, p, false)
	msg := []byte(strings.Repeat("abc", 1000))
	want := map[uint][]byte{}
	h := sha256.Sum256(msg)
	want[pkcs11.CKM_SHA256] = h[:]
	sm := sm3.Sum(msg)
	want[ckmSM3] = sm[:]
	for mech, w := range want {
		must(t, p.DigestInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}))
		got, err := p.Digest(s, msg)
		must(t, err)
		if !bytes.Equal(got, w) {
			t.Errorf("digest %#x = %x, want %x", mech, got, w)
		}
		must(t, p.DigestInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}))
		must(t, p.DigestUpdate(s, msg[:7]))
		must(t, p.DigestUpdate(s, msg[7:]))
		got, err = p.DigestFinal(s)
		must(t, err)
		if !bytes.Equal(got, w) {
			t.Errorf("multi-part digest %#x = %x, want %x", mech, got, w)
		}
	}
	a, err := p.GenerateRandom(s, 32)
	must(t, err)
	b, err := p.GenerateRandom(s, 32)
	must(t, err)
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Errorf("C_GenerateRandom returned %x then %x", a, b)
	}
	wantRV(t, "C_SeedRandom", p.SeedRandom(s, []byte("seed")), pkcs11.CKR_RANDOM_SEED_NOT_SUPPORTED)
}

// TestUnsupported also pins the function list layout: each call below goes
// through a different slot of CK_FUNCTION_LIST as miekg's OASIS header lays
// it out, and only the slots this module leaves unimplemented answer
// CKR_FUNCTION_NOT_SUPPORTED.
func TestUnsupported(t *testing.T) {
	p, _ := newToken(t)
	s := userSession(t, p)
	pub, priv := keyPair(t, p, s, true, "k")
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM2Encrypt, nil)}
	for name, err := range map[string]error{
		"C_EncryptInit":       p.EncryptInit(s, mech, pub),
		"C_VerifyInit":        p.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmSM3SM2, nil)}, pub),
		"C_DigestKey":         p.DigestKey(s, priv),
		"C_CopyObject":        func() error { _, err := p.CopyObject(s, pub, nil); return err }(),
		"C_GenerateKey":       func() error { _, err := p.GenerateKey(s, mech, nil); return err }(),
		"C_WrapKey":           func() error { _, err := p.WrapKey(s, mech, pub, priv); return err }(),
		"C_GetObjectSize":     func() error { _, err := p.GetObjectSize(s, pub); return err }(),
		"C_GetOperationState": func() error { _, err := p.GetOperationState(s); return err }(),
	} {
		wantRV(t, name, err, pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
	}
	// Keys cannot be imported: they would be neither local nor always sensitive.
	_, err := p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkSM2),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, make([]byte, 32)),
	})
	wantRV(t, "importing a private key", err, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID)
}
