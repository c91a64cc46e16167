package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/store"
)

// Issuance signs the linted TBSCertificate itself (signTBS) rather than
// handing the template to smx509.CreateCertificate a second time:
//
//   - what is signed is, octet for octet, what was linted and recorded, by
//     construction rather than by a comparison after the fact (Boulder's
//     tbsCertIsDeterministic check is kept all the same, see issueLinted);
//   - CreateCertificate marshals the template again and verifies its own
//     signature, which together cost a quarter of the CPU of an issuance.
//
// The signature is verified for signers outside this process (PKCS#11
// tokens, where a fault or a swapped key object is possible) on every
// certificate, and for in-process software keys on the first certificate
// each CA signs after start, which catches a key that does not match the CA
// certificate; after that a software signature is as good as the code that
// made it, and the code is the same as the verifier's.

// splitCertificate returns the TBSCertificate and signatureAlgorithm
// elements (full TLVs) of a DER certificate.
func splitCertificate(der []byte) (tbs, sigAlg []byte, err error) {
	in := cryptobyte.String(der)
	var cert cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, nil, errors.New("certificate: not one DER SEQUENCE")
	}
	var t, a cryptobyte.String
	if !cert.ReadASN1Element(&t, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&a, cbasn1.SEQUENCE) {
		return nil, nil, errors.New("certificate: malformed")
	}
	return t, a, nil
}

// signTBS signs the DER TBSCertificate of a linted certificate with the
// CA's key and returns the certificate: SEQUENCE { tbs, the linted
// certificate's signatureAlgorithm, BIT STRING signature } (RFC 5280
// §4.1.1). The signature algorithm inside the TBS was chosen for the CA's
// key type when the linted certificate was made (lint.Precheck signs with a
// throw-away key of the same type), so the outer one is the same.
func (a *authority) signTBS(linted *lint.Linted) ([]byte, error) {
	tbs, sigAlg, err := splitCertificate(linted.DER)
	if err != nil {
		return nil, fmt.Errorf("linted %w", err)
	}
	var sig []byte
	switch a.alg {
	case hsm.SM2:
		// The signer computes Z (default user ID) and e = SM3(Z || M), as
		// gmsm's signers do for sm2.DefaultSM2SignerOpts (GM/T 0009 §8).
		sig, err = a.signer.Sign(rand.Reader, tbs, sm2.DefaultSM2SignerOpts)
	case hsm.ECDSAP256:
		sum := sha256.Sum256(tbs)
		sig, err = a.signer.Sign(rand.Reader, sum[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("CA %s: no certificate signing for %s keys", a.id, a.alg)
	}
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("assemble certificate: %w", err)
	}
	if a.mustVerify() {
		cert, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse signed certificate: %w", err)
		}
		if err := cert.CheckSignatureFrom(a.cert); err != nil {
			return nil, fmt.Errorf("CA %s made a signature its certificate does not verify (key %s): %w", a.id, a.keyURI, err)
		}
		verified.Store(a, true)
	}
	return der, nil
}

// verified holds the software-keyed authorities whose signature has been
// verified once since start (see the comment at the top of this file).
var verified sync.Map // *authority -> true

// mustVerify reports whether the CA's next signature is to be verified:
// always for keys outside this process, once for software keys.
func (a *authority) mustVerify() bool {
	if strings.HasPrefix(a.keyURI, "soft:") {
		_, done := verified.Load(a)
		return !done
	}
	return true
}

// issuance is one certificate on its way through issueLinted.
type issuance struct {
	res     *profile.Result
	profile string
	// record stores the signed certificate, its audit record and outbox
	// event; it runs in a batch transaction.
	record func(ctx context.Context, tx *store.Tx, serial string, der []byte, cert *smx509.Certificate) error
}

// issueLinted makes a certificate from a profile result: a fresh serial,
// the pre-issuance lint, the serial and linted TBS recorded (a collision
// draws a new serial; a key revoked for compromise is refused in the same
// transaction), the signature, Boulder's TBS check, and the store
// (in.record) before it returns. Both writes go through the CA's batchers,
// so concurrent issuances share their commits.
func (s *Service) issueLinted(ctx context.Context, a *authority, in issuance) ([]byte, *smx509.Certificate, error) {
	for attempt := 1; ; attempt++ {
		serial, err := newSerial()
		if err != nil {
			return nil, nil, err
		}
		in.res.Template.SerialNumber = serial
		linted, err := lint.Precheck(in.res.Template, a.cert, in.res.PublicKey, in.res.Expect)
		if err != nil {
			return nil, nil, err
		}
		if errs := lint.Errors(linted.Findings); len(errs) > 0 {
			// The profile decides every field but those a request supplies
			// (names, keys, record values), so a lint error is the request's
			// to fix as often as the profile's: 422 with the findings, and an
			// error log for the operator in case the profile is at fault.
			s.env.Logger.Error("pre-issuance lint refused a certificate", "ca", a.id, "profile", in.profile, "findings", fmt.Sprint(errs))
			return nil, nil, fmt.Errorf("%w: pre-issuance lint refused the certificate: %v", ErrPolicy, errs)
		}
		hexSerial := serialHex(serial)
		tbs, _, err := splitCertificate(linted.DER)
		if err != nil {
			return nil, nil, fmt.Errorf("linted %w", err)
		}
		spki, err := smx509.MarshalPKIXPublicKey(in.res.PublicKey)
		if err != nil {
			return nil, nil, fmt.Errorf("public key: %w", err)
		}
		now := s.env.Clock.Now().UTC()
		err = s.reserveBatcher().Do(ctx, func(tx *store.Tx) error {
			return reserveSerial(ctx, tx, a.id, hexSerial, in.profile, tbs, now, spki)
		})
		if store.IsUniqueViolation(err) && attempt < maxSerialAttempts {
			s.env.Logger.Warn("serial collision, drawing a new serial", "ca", a.id, "serial", hexSerial)
			continue
		}
		if errors.Is(err, ErrPolicy) {
			return nil, nil, err
		}
		if err != nil {
			return nil, nil, fmt.Errorf("record serial %s: %w", hexSerial, err)
		}
		der, err := a.signTBS(linted)
		if err != nil {
			return nil, nil, err
		}
		if err := linted.SameTBS(der); err != nil {
			return nil, nil, err
		}
		cert, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("parse signed certificate: %w", err)
		}
		if err := s.batcher().Do(ctx, func(tx *store.Tx) error { return in.record(ctx, tx, hexSerial, der, cert) }); err != nil {
			return nil, cert, err
		}
		return der, cert, nil
	}
}

// batchHolder holds the Service's group-commit batchers, made on first use
// and closed when the service stops: b stores issued certificates and, on
// SQLite, also reserves serials; reserve reserves serials on PostgreSQL.
//
// On PostgreSQL a batch spends most of its time waiting for round trips
// and the commit's WAL flush, with the node's CPU partly idle, and the two
// writes of an issuance touch different rows (the reservation neither the
// audit head nor the outbox), so the reservations of some issuances commit
// while the certificates of others do. SQLite has one writer: a second
// batcher would only halve the batches and double the fsyncs.
type batchHolder struct {
	once       sync.Once
	b, reserve *store.Batcher
}

func (s *Service) makeBatchers() {
	s.batch.once.Do(func() {
		s.batch.b = s.env.DB.NewBatcher(0)
		s.batch.reserve = s.batch.b
		if s.env.DB.Driver() == store.Postgres {
			s.batch.reserve = s.env.DB.NewBatcher(0)
		}
	})
}

// batcher is the batcher that stores issued certificates.
func (s *Service) batcher() *store.Batcher {
	s.makeBatchers()
	return s.batch.b
}

// reserveBatcher is the batcher that reserves serials (issueLinted).
func (s *Service) reserveBatcher() *store.Batcher {
	s.makeBatchers()
	return s.batch.reserve
}

// closeBatcher stops the batchers after the batches in progress; none is
// made after it.
func (s *Service) closeBatcher() {
	s.batch.once.Do(func() {})
	if s.batch.b != nil {
		s.batch.b.Close()
	}
	if s.batch.reserve != nil && s.batch.reserve != s.batch.b {
		s.batch.reserve.Close()
	}
}
