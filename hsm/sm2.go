package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"reflect"

	"github.com/emmansun/gmsm/sm2"
)

// DefaultSM2UID is the default SM2 user ID of GM/T 0009 §10.
var DefaultSM2UID = []byte("1234567812345678")

// SM2Digest returns the value e that an SM2 signature over msg signs, following
// gmsm's signer contract. With sm2.DefaultSM2SignerOpts, or an
// *sm2.SM2SignerOption made with forceGMSign=true, msg is the message and
// e = SM3(Z || msg) with Z computed from pub and the user ID (GB/T 32918.2 §6.1).
// With other options msg already is e and must be 32 bytes.
//
// Backends whose tokens sign e with a raw SM2 mechanism use this to keep Z and
// e in Go, where they are tested against gmsm.
func SM2Digest(pub *ecdsa.PublicKey, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	uid, gm := sm2Options(opts)
	if !gm {
		if len(msg) != 32 {
			return nil, fmt.Errorf("hsm: SM2 digest must be 32 bytes, got %d", len(msg))
		}
		return msg, nil
	}
	return sm2.CalculateSM2Hash(pub, msg, uid)
}

// sm2Options extracts (uid, forceGMSign) from signer options. gmsm keeps the
// fields of SM2SignerOption unexported; the reflection below reads them (it
// never writes) and is pinned by a test against gmsm v0.44.1.
func sm2Options(opts crypto.SignerOpts) ([]byte, bool) {
	o, ok := opts.(*sm2.SM2SignerOption)
	if !ok || o == nil {
		return nil, false
	}
	if o == sm2.DefaultSM2SignerOpts {
		return DefaultSM2UID, true
	}
	v := reflect.ValueOf(o).Elem()
	f, u := v.FieldByName("forceGMSign"), v.FieldByName("uid")
	if !f.IsValid() || !u.IsValid() || f.Kind() != reflect.Bool || u.Kind() != reflect.Slice {
		// gmsm changed its struct; fail towards the default rather than signing
		// the wrong value silently.
		return DefaultSM2UID, true
	}
	if !f.Bool() {
		return nil, false
	}
	uid := append([]byte(nil), u.Bytes()...)
	if len(uid) == 0 {
		uid = DefaultSM2UID
	}
	return uid, true
}

// SM2UserID returns the user ID that opts names, whether or not it asks for
// the message form: the ID of an *sm2.SM2SignerOption, or DefaultSM2UID. It
// is what crypto.MessageSigner implementations sign with (gmsm's own
// SignMessage reads the ID the same way).
func SM2UserID(opts crypto.SignerOpts) []byte {
	o, ok := opts.(*sm2.SM2SignerOption)
	if !ok || o == nil || o == sm2.DefaultSM2SignerOpts {
		return DefaultSM2UID
	}
	u := reflect.ValueOf(o).Elem().FieldByName("uid")
	if !u.IsValid() || u.Kind() != reflect.Slice || u.Len() == 0 {
		return DefaultSM2UID
	}
	return append([]byte(nil), u.Bytes()...)
}
