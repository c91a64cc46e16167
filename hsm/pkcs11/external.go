//go:build cgo

package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm2"
	p11 "github.com/miekg/pkcs11"

	"github.com/govtrust/govtrust/hsm"
)

// ExternalSigner returns a crypto.Signer for a private key that other tools
// made on the token (an official's USB key personalised by its vendor's
// software, or pkcs11-tool), so it has no govtrust metadata object. The key
// is found by CKA_ID (id), or by CKA_LABEL when id is empty, among the
// private-key objects; its public key comes from the certificate the
// caller holds for it (pub), since such tokens often keep no public-key
// object. Only signing is offered: the value has no Decrypt method, and the
// token applies the object's own CKA_SIGN. SM2 keys sign with the
// configured vendor table's mechanism.
func (km *KeyManager) ExternalSigner(ctx context.Context, label string, id []byte, pub crypto.PublicKey) (crypto.Signer, error) {
	alg, err := externalAlgorithm(pub)
	if err != nil {
		return nil, err
	}
	if alg == hsm.SM2 && km.vendor == nil {
		return nil, fmt.Errorf("%w: an SM2 key needs a vendor mechanism table", hsm.ErrUnsupported)
	}
	if len(id) == 0 && label == "" {
		return nil, errors.New("pkcs11: an external key is named by its CKA_ID or its CKA_LABEL")
	}
	err = km.do(ctx, func(h p11.SessionHandle, gen uint64) error {
		if len(id) > 0 {
			_, err := km.object(h, gen, p11.CKO_PRIVATE_KEY, id)
			return err
		}
		objs, err := findObjects(km.mod.ctx, h, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
			p11.NewAttribute(p11.CKA_LABEL, label),
		})
		if err != nil {
			return err
		}
		switch len(objs) {
		case 0:
			return fmt.Errorf("%w: no private key labelled %q", hsm.ErrNotFound, label)
		case 1:
		default:
			return fmt.Errorf("pkcs11: %d private keys labelled %q: name the key by its id", len(objs), label)
		}
		attrs, err := km.mod.ctx.GetAttributeValue(h, objs[0], []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, nil)})
		if err != nil {
			return err
		}
		if len(attrs) != 1 || len(attrs[0].Value) == 0 {
			return fmt.Errorf("pkcs11: the private key labelled %q has no CKA_ID", label)
		}
		id = attrs[0].Value
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: external key %q/%x: %w", label, id, mapErr("find", err))
	}
	if label == "" {
		label = fmt.Sprintf("id %x", id)
	}
	rec := &record{label: label, id: id, meta: metadata{Algorithm: alg, Usage: hsm.UsageSign, Location: hsm.LocationHardware,
		Vendor: km.vendorName()}}
	s := &tokenSigner{tokenKey{km: km, rec: rec, pub: pub}}
	// The certificate names the public key, nothing ties it to the object
	// found: one signature over a random challenge proves the pair.
	if err := proveExternal(s, alg, pub); err != nil {
		return nil, fmt.Errorf("pkcs11: external key %q: %w", label, err)
	}
	return s, nil
}

// proveExternal signs a random challenge with s and verifies it with pub.
func proveExternal(s crypto.Signer, alg hsm.Algorithm, pub crypto.PublicKey) error {
	msg := make([]byte, 32)
	if _, err := rand.Read(msg); err != nil {
		return err
	}
	switch alg {
	case hsm.SM2:
		sig, err := s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
		if err != nil {
			return err
		}
		if !sm2.VerifyASN1WithSM2(pub.(*ecdsa.PublicKey), nil, msg, sig) {
			return errors.New("the key does not match the certificate's public key")
		}
	case hsm.ECDSAP256, hsm.ECDSAP384:
		sum := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, sum[:], crypto.SHA256)
		if err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig) {
			return errors.New("the key does not match the certificate's public key")
		}
	case hsm.RSA2048, hsm.RSA3072:
		sum := sha256.Sum256(msg)
		sig, err := s.Sign(rand.Reader, sum[:], crypto.SHA256)
		if err != nil {
			return err
		}
		if err := rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, sum[:], sig); err != nil {
			return errors.New("the key does not match the certificate's public key")
		}
	}
	return nil
}

// externalAlgorithm is the algorithm of an external key's public key.
func externalAlgorithm(pub crypto.PublicKey) (hsm.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case sm2.P256():
			return hsm.SM2, nil
		case elliptic.P256():
			return hsm.ECDSAP256, nil
		case elliptic.P384():
			return hsm.ECDSAP384, nil
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return hsm.RSA2048, nil
		case 3072:
			return hsm.RSA3072, nil
		}
	}
	return "", fmt.Errorf("%w: external key of type %T", hsm.ErrUnsupported, pub)
}
