package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// Dual certificates (GM/T 0015; ARCHITECTURE.md §5; GM-STANDARDS.md §2.2):
// the subscriber's signing key signs the CSR; the key management centre
// generates the encryption key pair, escrows it and returns it enveloped to
// the signing key; the CA issues the signing and the encryption certificate
// together. The CA never sees the encryption private key and the KMC never
// sees the signing private key.

// KMC is the CA's view of the key management centre (GM/T 0014 ApplyKeyReq
// and the binding of the escrow to the issued certificate). cmd/govtrust
// wires the platform's KMC (kms/kmc) in; a remote KMC speaking GM/T 0014
// fits the same interface.
type KMC interface {
	ApplyKey(ctx context.Context, req *KMCRequest) (*KMCKey, error)
	// BindCertificate tells the KMC which certificates were issued for
	// the key, so that it can be recovered by the encryption
	// certificate's serial and kept for the retention after notAfter.
	// Binding again to the same certificates succeeds.
	BindCertificate(ctx context.Context, escrowID, caID, encSerial, signSerial string, notAfter time.Time) error
	// AbandonKey tells the KMC that no certificate was issued for the key
	// (the request failed after ApplyKey): it wipes the escrowed key.
	AbandonKey(ctx context.Context, escrowID, reason string) error
	// RevokeKey tells the KMC, in the CA's transaction tx, that the CA
	// revoked an encryption certificate (GM/T 0014 RevokeKeyReq;
	// GM-STANDARDS.md §2.2): the KMC records it with the revocation, or
	// queues it durably in tx to send after commit. ErrKMCLater says it
	// cannot take it now and nothing was written; the CA then tells it
	// later (kmcNotices).
	RevokeKey(ctx context.Context, tx *store.Tx, rev *KeyRevocation) error
	// EscrowBindings returns, read in q, the escrows bound to the
	// certificates of a pair (nil when the KMC keeps them elsewhere): the
	// CA records at start the pairs it issued before it kept them itself.
	EscrowBindings(ctx context.Context, q store.Querier) ([]EscrowBinding, error)
	// EscrowedKey returns the id of an escrow of public key spki
	// (SubjectPublicKeyInfo DER), or "" when the KMC never generated
	// that key: the CA certifies no escrowed key as a request's own
	// (checkNotEscrowed).
	EscrowedKey(ctx context.Context, spki []byte) (string, error)
}

// KeyRevocation is the CA's notice of an encryption certificate's
// revocation (GM/T 0014 RevokeKeyReq names the certificate by its serial).
type KeyRevocation struct {
	CA, EncSerial string
	// PublicKey is the certificate's SubjectPublicKeyInfo (DER).
	PublicKey []byte
	RevokedAt time.Time
	// Reason is the RFC 5280 CRLReason name.
	Reason string
	Actor  string
}

// EscrowBinding is an escrow the KMC bound to the certificates of a pair.
type EscrowBinding struct {
	EscrowID, CA, EncSerial, SignSerial string
}

// ErrKMCLater: the KMC cannot take a revocation notice now (it has not
// started yet: the CA starts first); nothing was written.
var ErrKMCLater = errors.New("ca: the key management centre takes the notice later")

// KMCRequest asks the KMC for an encryption key pair.
type KMCRequest struct {
	// SigningPublicKey is the subscriber's signing key (SubjectPublicKeyInfo
	// DER, from the CSR whose signature proved possession of it).
	SigningPublicKey []byte
	Subject          string
	Org, Requester   string
	CA               string
	// SKF asks for the SKF ENVELOPEDKEYBLOB form as well.
	SKF bool
}

// KMCKey is the KMC's answer.
type KMCKey struct {
	EscrowID string
	// PublicKey is the encryption public key (SubjectPublicKeyInfo DER).
	PublicKey []byte
	// EnvelopedKey is the encryption private key as an SM2EnvelopedKey
	// (GM/T 0009 §7.4 / GB/T 35276) sealed to SigningPublicKey.
	EnvelopedKey []byte
	SKFBlob      []byte
}

// UseKMC wires the key management centre in; without one, dual requests
// answer 503.
func (s *Service) UseKMC(k KMC) { s.kmc = k }

// DualIssueResponse is the answer of a dual-certificate enrolment: the
// signing certificate (the IssueResponse fields), the encryption
// certificate, and the encryption private key enveloped to the signing key.
type DualIssueResponse struct {
	IssueResponse
	Encryption *IssueResponse `json:"encryption"`
	// EnvelopedKey is the SM2EnvelopedKey (DER, base64).
	EnvelopedKey []byte `json:"enveloped_key"`
	// SKFBlob is the SKF ENVELOPEDKEYBLOB (base64), when asked for.
	SKFBlob []byte `json:"skf_blob,omitempty"`
	// CSRResponse is the GM/T 0092-2020 CSRResponse carrying both
	// certificates and the enveloped key (DER, base64).
	CSRResponse []byte `json:"csr_response"`
}

// encProfileFor returns the encryption profile paired with a signing
// profile: the request's enc_profile, or <name>-enc for <name>-sign.
func (s *Service) encProfileFor(sign *profile.Profile, named string) (*profile.Profile, error) {
	if sign.Purpose != lint.PurposeSign {
		return nil, fmt.Errorf("%w: profile %s is not a signing profile; dual certificates start from one (person-sign, org-sign)", ErrPolicy, sign.Name)
	}
	if named == "" {
		base, ok := strings.CutSuffix(sign.Name, "-sign")
		if !ok {
			return nil, fmt.Errorf("%w: profile %s has no paired encryption profile; name one in enc_profile", ErrRequest, sign.Name)
		}
		named = base + "-enc"
	}
	enc := s.profiles[named]
	if enc == nil {
		return nil, fmt.Errorf("%w: unknown profile %q", ErrRequest, named)
	}
	// Only KMC-generated keys are certified by an encryption profile of a
	// dual pair, and only encryption keys are escrowed (GM/T 0014).
	if enc.KeySource != "kmc" || enc.Purpose != lint.PurposeEnc {
		return nil, fmt.Errorf("%w: profile %s does not certify a KMC-generated encryption key", ErrPolicy, enc.Name)
	}
	if enc.Internal {
		return nil, fmt.Errorf("%w: profile %s is for the platform's own services and is not issued through the API", ErrPolicy, enc.Name)
	}
	return enc, nil
}

// issueDual handles POST /api/v1/ca/{ca}/certificates with "dual": true.
// The signing profile and the CSR have been checked by issue, which also
// refuses an Idempotency-Key: a replay would have to return the enveloped
// key again, which the CA does not keep.
//
// Both profiles are applied before the KMC is asked for a key (the
// encryption profile to a stand-in key), so that a request either refuses
// leaves no escrowed key behind. Once the KMC has escrowed a key, the rest
// runs to its end whatever the client does (context.WithoutCancel, bounded
// by dualFinishTimeout): a failure before the encryption certificate is
// issued abandons the escrow (the KMC wipes its key); once it is issued,
// the escrow is bound to it, and if the KMC cannot record that the
// encryption certificate is revoked, since its key is then delivered to no
// one and could not be recovered.
func (s *Service) issueDual(w http.ResponseWriter, r *http.Request, a *authority, signProf *profile.Profile, csr *smx509.CertificateRequest,
	req *IssueRequest, p *authz.Principal) error {
	ctx := r.Context()
	if s.kmc == nil {
		return fmt.Errorf("ca: no key management centre is wired in: %w", httpx.ErrUnavailable)
	}
	encProf, err := s.encProfileFor(signProf, req.EncProfile)
	if err != nil {
		return err
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != sm2.P256() {
		return fmt.Errorf("%w: dual certificates are SM2 (GM/T 0015): the request's signing key must be SM2", ErrPolicy)
	}
	now := s.env.Clock.Now().UTC()
	parents, err := constrainingParents(a)
	if err != nil {
		return err
	}
	signRes, err := signProf.Apply(profile.Input{CSR: csr, Record: req.Record, Now: now, Issuer: a.cert, Chain: parents, CAID: a.id, Vars: s.vars})
	if err != nil {
		return profileError(err)
	}
	standIn, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("ca: stand-in key: %w", err)
	}
	encIn := profile.Input{CSR: csr, PublicKey: standIn.Public(), Record: req.Record, Now: now, Issuer: a.cert, Chain: parents, CAID: a.id, Vars: s.vars}
	encTry, err := encProf.Apply(encIn)
	if err != nil {
		return profileError(err)
	}
	// Both certificates are bound to the requester's organisation before
	// the KMC makes a key.
	if err := s.checkOrgBinding(ctx, p, signProf, req.Record, signRes.Template); err != nil {
		return err
	}
	if err := s.checkOrgBinding(ctx, p, encProf, req.Record, encTry.Template); err != nil {
		return err
	}
	key, err := s.kmc.ApplyKey(ctx, &KMCRequest{SigningPublicKey: csr.RawSubjectPublicKeyInfo, Subject: signRes.Template.Subject.String(),
		Org: p.Account.Org, Requester: p.Account.ID, CA: a.id, SKF: req.SKF})
	if err != nil {
		return fmt.Errorf("ca: key management centre: %w", err)
	}
	// From here the KMC holds a key for this request: finish whatever the
	// client does, within a bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dualFinishTimeout)
	defer cancel()
	// abandon tells the KMC that no certificate will certify the key.
	abandon := func(cause error) error {
		if err := s.kmc.AbandonKey(ctx, key.EscrowID, cause.Error()); err != nil {
			s.env.Logger.Error("ca: the KMC did not abandon the escrow of a failed dual request; its sweep will",
				"escrow", key.EscrowID, "cause", cause.Error(), "error", err)
		}
		return cause
	}
	encPub, err := smx509.ParsePKIXPublicKey(key.PublicKey)
	if err != nil {
		return abandon(fmt.Errorf("ca: key management centre returned a bad public key: %w", err))
	}
	encIn.PublicKey = encPub
	encRes, err := encProf.Apply(encIn)
	if err != nil {
		return abandon(profileError(err))
	}
	encRes.Notes = append(encRes.Notes, "encryption key generated and escrowed by the KMC (escrow "+key.EscrowID+")")
	// issueOne issues under prof; the encryption certificate (twin is the
	// signing certificate's serial) is stored with the pair's link, in one
	// transaction, so that no encryption certificate exists without it.
	issueOne := func(prof *profile.Profile, res *profile.Result, twin string) (string, []byte, *smx509.Certificate, error) {
		var serial string
		record := func(ctx context.Context, tx *store.Tx, sn string, der []byte, cert *smx509.Certificate) error {
			serial = sn
			now := s.env.Clock.Now().UTC()
			row := &certRow{issuer: a.id, serial: sn, subject: cert.Subject.String(), profile: prof.Name, status: "good",
				requester: p.Account.ID, requesterOrg: p.Account.Org, notBefore: cert.NotBefore, notAfter: cert.NotAfter,
				created: now, der: der}
			if err := s.record(ctx, tx, p.Actor(), row, res.Notes); err != nil {
				return err
			}
			if twin == "" {
				return nil
			}
			return insertPair(ctx, tx, a.id, twin, sn, key.EscrowID, now)
		}
		der, cert, err := s.issueLinted(ctx, a, issuance{res: res, profile: prof.Name, record: record})
		return serial, der, cert, err
	}
	signSerial, signDER, signCert, err := issueOne(signProf, signRes, "")
	if err != nil {
		return abandon(fmt.Errorf("issue on %s: %w", a.id, err))
	}
	encSerial, encDER, encCert, err := issueOne(encProf, encRes, signSerial)
	if err != nil {
		err = fmt.Errorf("issue on %s: signing certificate %s issued, encryption certificate failed: %w", a.id, signSerial, err)
		if encCert != nil && !errors.Is(err, ErrPolicy) {
			// Signed, but whether it was stored is not known: the KMC's
			// sweep binds the escrow to it if it was, else abandons it.
			// (A refusal at the store, ErrPolicy, stored nothing.)
			return err
		}
		return abandon(err)
	}
	if err := s.bindEscrow(ctx, key.EscrowID, a.id, encSerial, signSerial, encCert.NotAfter); err != nil {
		return s.undeliverable(ctx, a, p, key.EscrowID, signSerial, encSerial, err)
	}
	csrResp, err := marshalCSRResponse(signCert, encCert, key.EnvelopedKey)
	if err != nil {
		return err
	}
	out := &DualIssueResponse{IssueResponse: *s.response(a, signSerial, signDER), Encryption: s.response(a, encSerial, encDER),
		EnvelopedKey: key.EnvelopedKey, SKFBlob: key.SKFBlob, CSRResponse: csrResp}
	w.Header().Set("Cache-Control", "no-store")
	return httpx.WriteJSON(w, http.StatusCreated, out)
}

// dualFinishTimeout bounds what a dual request does after the KMC escrowed
// its key (issuance, binding, and the revocation if binding fails).
const dualFinishTimeout = 2 * time.Minute

// Binding the escrow is tried bindAttempts times while the KMC answers
// that it cannot serve now, bindBackoff apart and more.
const (
	bindAttempts = 5
	bindBackoff  = 200 * time.Millisecond
)

// bindEscrow binds the escrow to the issued certificates, trying again
// while the error is transient (transientKMC).
func (s *Service) bindEscrow(ctx context.Context, escrowID, caID, encSerial, signSerial string, notAfter time.Time) error {
	wait := bindBackoff
	for attempt := 1; ; attempt++ {
		err := s.kmc.BindCertificate(ctx, escrowID, caID, encSerial, signSerial, notAfter)
		if err == nil || !transientKMC(err) || attempt == bindAttempts {
			return err
		}
		s.env.Logger.Warn("ca: binding the escrow failed; trying again", "escrow", escrowID, "attempt", attempt, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

// transientKMC reports whether a KMC error may go away by trying again:
// the KMC, its database or its key store cannot serve now.
func transientKMC(err error) bool {
	return errors.Is(err, httpx.ErrUnavailable) || store.IsUnavailable(err) || store.IsRetryable(err) ||
		errors.Is(err, hsm.ErrUnavailable)
}

// undeliverable handles an encryption certificate whose escrow the KMC did
// not record: its key is not delivered (the answer is an error), so the
// certificate is revoked (cessationOfOperation); the signing certificate
// stays valid, its key being the holder's. The KMC's sweep still binds the
// escrow to the revoked certificate later, by its public key, so that
// anything encrypted to it meanwhile stays recoverable.
func (s *Service) undeliverable(ctx context.Context, a *authority, p *authz.Principal, escrowID, signSerial, encSerial string, cause error) error {
	s.env.Logger.Error("ca: the KMC did not record the escrow of an issued encryption certificate; revoking it",
		"ca", a.id, "enc_serial", encSerial, "sign_serial", signSerial, "escrow", escrowID, "error", cause)
	err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		_, _, err := s.revokeRow(ctx, tx, a, encSerial, "cessationOfOperation", p.Actor(),
			map[string]any{"cause": "the key management centre did not record the escrow; the key was not delivered", "escrow": escrowID,
				"sign_serial": signSerial})
		return err
	})
	if err != nil {
		s.env.Logger.Error("ca: revoking the undelivered encryption certificate failed", "ca", a.id, "enc_serial", encSerial, "error", err)
		return fmt.Errorf("ca: signing certificate %s/%s and encryption certificate %s/%s were issued, but the key management centre did not record the escrow and revoking the encryption certificate failed too: revoke %s, whose key was not delivered (escrow %s): %w",
			a.id, signSerial, a.id, encSerial, encSerial, escrowID, httpx.ErrUnavailable)
	}
	s.ocspRevoked(ctx, a, encSerial)
	s.afterRevocation(ctx, a)
	return fmt.Errorf("ca: the key management centre did not record the escrow of encryption certificate %s/%s, so its key was not delivered and the certificate was revoked (cessationOfOperation); signing certificate %s/%s was issued and stays valid; ask again for a new pair: %w",
		a.id, encSerial, a.id, signSerial, httpx.ErrUnavailable)
}

// marshalCSRResponse builds the GM/T 0092-2020 CSRResponse
//
//	SEQUENCE { signCertificate SET OF Certificate,
//	           encryptedPrivateKey [0] EXPLICIT SM2EnvelopedKey OPTIONAL,
//	           encryptCertificate [1] IMPLICIT SET OF Certificate OPTIONAL }
//
// with the tags smx509.MarshalCSRResponse emits (GM-STANDARDS.md §2.4),
// from an envelope made by the KMC (the CA never holds the private key
// smx509.MarshalCSRResponse wants).
func marshalCSRResponse(sign, enc *smx509.Certificate, envelope []byte) ([]byte, error) {
	encSet, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: enc.Raw})
	if err != nil {
		return nil, err
	}
	type csrResponse struct {
		SignCerts    []asn1.RawValue `asn1:"set"`
		EncryptedKey asn1.RawValue
		EncryptCerts asn1.RawValue
	}
	return asn1.Marshal(csrResponse{
		SignCerts:    []asn1.RawValue{{FullBytes: sign.Raw}},
		EncryptedKey: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: envelope},
		EncryptCerts: asn1.RawValue{FullBytes: encSet},
	})
}

// The KMC's view of the certificates the CA issued: to recover a key it
// checks the escrowed key's encryption certificate and the recipient's
// certificate against the CA's records, and it finds the certificate of an
// escrow whose binding was lost by its public key. cmd/govtrust hands these
// methods to the KMC through an interface of the KMC's own.

// IssuedCertificate is a certificate as the CA recorded it.
type IssuedCertificate struct {
	CA, Serial string
	DER        []byte
	// Status is good or revoked.
	Status    string
	Profile   string
	Requester string
	Created   time.Time
	RevokedAt time.Time
	// Reason is the RFC 5280 CRLReason name of a revoked certificate.
	Reason string
}

func issuedOf(c *certRow) *IssuedCertificate {
	out := &IssuedCertificate{CA: c.issuer, Serial: c.serial, DER: c.der, Status: c.status, Profile: c.profile,
		Requester: c.requester, Created: c.created, RevokedAt: c.revokedAt}
	if c.status == "revoked" {
		out.Reason = reasonName(c.reason)
	}
	return out
}

// IssuedCertificate returns certificate serial of CA generation caID, or
// ErrNotFound.
func (s *Service) IssuedCertificate(ctx context.Context, caID, serial string) (*IssuedCertificate, error) {
	n, err := normalSerial(serial)
	if err != nil {
		return nil, err
	}
	c, err := certBySerial(ctx, s.env.DB, caID, n)
	if err != nil {
		return nil, err
	}
	return issuedOf(c), nil
}

// FindIssued returns the CA's record of the certificate der when a platform
// CA issued exactly it: its signature verifies under the certificate of a
// platform CA generation named as its issuer, and that CA recorded these
// bytes under its serial. Anything else (another CA's certificate, a
// self-signed one, a platform serial on other bytes) is ErrNotFound.
func (s *Service) FindIssued(ctx context.Context, der []byte) (*IssuedCertificate, error) {
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrRequest, err)
	}
	if cert.SerialNumber == nil || cert.SerialNumber.Sign() <= 0 {
		return nil, fmt.Errorf("%w: no platform CA issued this certificate (serial %v)", ErrNotFound, cert.SerialNumber)
	}
	serial := serialHex(cert.SerialNumber)
	for _, a := range s.authorities() {
		if !bytes.Equal(a.cert.RawSubject, cert.RawIssuer) || cert.CheckSignatureFrom(a.cert) != nil {
			continue
		}
		c, err := certBySerial(ctx, s.env.DB, a.id, serial)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if bytes.Equal(c.der, der) {
			return issuedOf(c), nil
		}
	}
	return nil, fmt.Errorf("%w: no platform CA issued this certificate (issuer %s, serial %s)", ErrNotFound, cert.Issuer, serial)
}

// CertificatesForKey returns the certificates CA generation caID (every CA
// when caID is "") recorded between from and to that certify the public
// key spki (SubjectPublicKeyInfo DER). They are found by the key's hash
// (ca_certificates.spki_sha256, indexed), not by reading every certificate
// of the window: a row without a certificate (a revocation carried over
// from a CRL, carriedOverRow) has no hash and is not among them. A row of
// the key whose DER cannot be read is an error for this key only.
func (s *Service) CertificatesForKey(ctx context.Context, caID string, spki []byte, from, to time.Time) ([]*IssuedCertificate, error) {
	sum := sha256.Sum256(spki)
	q := "SELECT issuer_id, serial, der FROM ca_certificates WHERE spki_sha256 = ? AND created_at >= ? AND created_at <= ?"
	args := []any{sum[:], from.UTC().Format(timeFormat), to.UTC().Format(timeFormat)}
	if caID != "" {
		q += " AND issuer_id = ?"
		args = append(args, caID)
	}
	type key struct{ issuer, serial string }
	var keys []key
	err := s.env.DB.Read(ctx, func(tx store.Querier) error {
		keys = nil
		rows, err := tx.Query(ctx, q+" ORDER BY created_at, issuer_id, serial", args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k key
			var der []byte
			if err := rows.Scan(&k.issuer, &k.serial, &der); err != nil {
				return err
			}
			if len(der) == 0 {
				continue
			}
			got, err := spkiOf(der)
			if err != nil {
				return fmt.Errorf("certificate %s/%s: %w", k.issuer, k.serial, err)
			}
			if bytes.Equal(got, spki) {
				keys = append(keys, k)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("ca: certificates for a key: %w", err)
	}
	var out []*IssuedCertificate
	for _, k := range keys {
		c, err := certBySerial(ctx, s.env.DB, k.issuer, k.serial)
		if err != nil {
			return nil, err
		}
		out = append(out, issuedOf(c))
	}
	return out, nil
}

// Dual pairs after issuance (ca_dual_pairs, migration 00012).
//
// The signing and the encryption certificate of a pair are one subscriber
// credential, and the encryption private key was delivered enveloped to
// the signing key: whoever has the signing private key can open the
// envelope. So revoking the signing certificate revokes the encryption
// certificate with it, in the same transaction and with the same reason
// (each with its own audit record, naming the signing certificate, and
// outbox event; the answer lists it in also_revoked). Revoking only the
// encryption certificate leaves the signing certificate as it is: the
// subscriber's signing key is not exposed by it, and GM/T 0014 key update
// gives a signing certificate a new encryption certificate.
//
// The KMC is told of every revocation of an encryption certificate of a
// pair (GM/T 0014 RevokeKeyReq, GM-STANDARDS.md §2.2) through
// KMC.RevokeKey, in the revoking transaction: the platform's KMC shares
// the database and records it there, so the revocation and the KMC's
// record of it commit together. When the KMC cannot take it then (it has
// not started yet: revocations the CA makes while starting), the pair is
// marked kmc_pending in that transaction and kmcNotices tells it later.

// insertPair records the pair of signing certificate sign and encryption
// certificate enc of issuer in tx.
func insertPair(ctx context.Context, tx *store.Tx, issuer, sign, enc, escrowID string, now time.Time) error {
	var escrow any
	if escrowID != "" {
		escrow = escrowID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ca_dual_pairs (issuer_id, sign_serial, enc_serial, escrow_id, created_at) VALUES (?, ?, ?, ?, ?)`,
		issuer, sign, enc, escrow, now.UTC().Format(timeFormat)); err != nil {
		return fmt.Errorf("record the dual pair %s/%s and %s: %w", issuer, sign, enc, err)
	}
	return nil
}

// revokePair does, in tx, what the revocation of issuer/serial (committed
// in tx, or asked again) means for the dual pairs it belongs to: the KMC
// is told when it is an encryption certificate (tellKMC), and the
// encryption certificates of a signing certificate are revoked with it
// (revokePartner). It returns the certificates it revoked, as "ca/serial".
func (s *Service) revokePair(ctx context.Context, tx *store.Tx, issuer, serial, actor string, at time.Time) ([]string, error) {
	var sign string
	err := tx.QueryRow(ctx, "SELECT sign_serial FROM ca_dual_pairs WHERE issuer_id = ? AND enc_serial = ?", issuer, serial).Scan(&sign)
	switch {
	case err == nil:
		return nil, s.tellKMC(ctx, tx, issuer, serial, actor)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("dual pair of %s/%s: %w", issuer, serial, err)
	}
	rows, err := tx.Query(ctx, "SELECT enc_serial FROM ca_dual_pairs WHERE issuer_id = ? AND sign_serial = ?", issuer, serial)
	if err != nil {
		return nil, fmt.Errorf("dual pair of %s/%s: %w", issuer, serial, err)
	}
	var encs []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			rows.Close()
			return nil, err
		}
		encs = append(encs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(encs) == 0 {
		return nil, nil
	}
	c, err := scanCert(issuer, tx.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND serial = ?", issuer, serial))
	if err != nil {
		return nil, fmt.Errorf("read certificate %s/%s: %w", issuer, serial, err)
	}
	var out []string
	for _, enc := range encs {
		revoked, err := s.revokePartner(ctx, tx, issuer, serial, enc, reasonName(c.reason), actor, at)
		if err != nil {
			return nil, err
		}
		out = append(out, revoked...)
	}
	return out, nil
}

// revokePartner revokes, in tx, encryption certificate enc of the pair of
// signing certificate sign, revoked for reason. An encryption certificate
// already revoked keeps its revocation, unless reason is keyCompromise and
// its own is not a compromise (it becomes keyCompromise, as revokeRowOne
// allows); an expired one is left alone.
func (s *Service) revokePartner(ctx context.Context, tx *store.Tx, issuer, sign, enc, reason, actor string, at time.Time) ([]string, error) {
	c, err := scanCert(issuer, tx.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND serial = ?", issuer, enc))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate %s/%s: %w", issuer, enc, err)
	}
	code := reasonCodes[reason]
	switch {
	case c.status == "good" && !c.notAfter.After(at):
		return nil, nil
	case c.status == "revoked" && c.reason != code && !(code == reasonKeyCompromise && !compromiseReasons[c.reason]):
		return nil, nil
	case c.status != "good" && c.status != "revoked":
		return nil, nil
	}
	out, newly, err := s.revokeRowOpts(ctx, tx, issuer, enc, reason, actor, map[string]any{"revoked_with": "cert/" + issuer + "/" + sign,
		"cause": "the signing certificate of its dual pair was revoked; the encryption key was delivered enveloped to the signing key"}, at, false)
	if err != nil {
		return nil, fmt.Errorf("revoke %s/%s, the encryption certificate of %s: %w", issuer, enc, sign, err)
	}
	if !newly {
		return out.AlsoRevoked, nil
	}
	return append([]string{issuer + "/" + enc}, out.AlsoRevoked...), nil
}

// tellKMC tells the KMC, in tx, of the revocation (or the new reason) of
// encryption certificate enc of issuer, unless it was told of that reason
// already; when it cannot take it now, the pair is left kmc_pending for
// kmcNotices.
func (s *Service) tellKMC(ctx context.Context, tx *store.Tx, issuer, enc, actor string) error {
	var told sql.NullInt64
	if err := tx.QueryRow(ctx, "SELECT kmc_reason FROM ca_dual_pairs WHERE issuer_id = ? AND enc_serial = ?", issuer, enc).Scan(&told); err != nil {
		return fmt.Errorf("dual pair of %s/%s: %w", issuer, enc, err)
	}
	c, err := scanCert(issuer, tx.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND serial = ?", issuer, enc))
	if err != nil {
		return fmt.Errorf("read certificate %s/%s: %w", issuer, enc, err)
	}
	if c.status != "revoked" || (told.Valid && int(told.Int64) == c.reason) {
		return nil
	}
	later := func(cause error) error {
		s.env.Logger.Warn("ca: the KMC is told of a revoked encryption certificate later", "ca", issuer, "enc_serial", enc, "cause", cause)
		_, err := tx.Exec(ctx, "UPDATE ca_dual_pairs SET kmc_pending = 1 WHERE issuer_id = ? AND enc_serial = ?", issuer, enc)
		return err
	}
	if s.kmc == nil {
		return later(errors.New("no key management centre is wired in"))
	}
	spki, _ := spkiOf(c.der)
	err = s.kmc.RevokeKey(ctx, tx, &KeyRevocation{CA: issuer, EncSerial: enc, PublicKey: spki, RevokedAt: c.revokedAt,
		Reason: reasonName(c.reason), Actor: actor})
	if errors.Is(err, ErrKMCLater) {
		return later(err)
	}
	if err != nil {
		return fmt.Errorf("tell the key management centre of the revocation of %s/%s: %w", issuer, enc, err)
	}
	if _, err := tx.Exec(ctx, "UPDATE ca_dual_pairs SET kmc_pending = 0, kmc_reason = ? WHERE issuer_id = ? AND enc_serial = ?",
		c.reason, issuer, enc); err != nil {
		return fmt.Errorf("dual pair of %s/%s: %w", issuer, enc, err)
	}
	return nil
}

// kmcNotices runs kmcNoticeFirst after the CA started, then every
// kmcNoticeEvery (crlLoop).
const (
	kmcNoticeFirst = 2 * time.Second
	kmcNoticeEvery = time.Minute
)

// kmcNotices tells the KMC of the revocations it could not take when they
// were made (kmc_pending), a transaction each, and returns how many it
// told. It finds nothing to do almost always (kmc_pending is indexed);
// it stops at the first ErrKMCLater.
func (s *Service) kmcNotices(ctx context.Context) (int, error) {
	if s.kmc == nil {
		return 0, nil
	}
	type ref struct{ issuer, enc string }
	var todo []ref
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		todo = todo[:0]
		rows, err := q.Query(ctx, "SELECT issuer_id, enc_serial FROM ca_dual_pairs WHERE kmc_pending = 1 LIMIT 500")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r ref
			if err := rows.Scan(&r.issuer, &r.enc); err != nil {
				return err
			}
			todo = append(todo, r)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("ca: revocations the KMC was not told of: %w", err)
	}
	n := 0
	for _, r := range todo {
		var pending int
		err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
			if err := s.tellKMC(ctx, tx, r.issuer, r.enc, "system"); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT kmc_pending FROM ca_dual_pairs WHERE issuer_id = ? AND enc_serial = ?", r.issuer, r.enc).Scan(&pending)
		})
		if err != nil {
			return n, fmt.Errorf("ca: tell the KMC of the revocation of %s/%s: %w", r.issuer, r.enc, err)
		}
		if pending == 1 {
			return n, nil
		}
		n++
	}
	return n, nil
}

// fillPairs records, at start, the pairs issued before the CA kept them
// (migration 00012), from the KMC's bindings of its escrows; a pair whose
// encryption certificate is revoked is marked for the KMC to be told
// (kmcNotices; the KMC ignores a notice it has had). It returns how many
// it recorded.
func (s *Service) fillPairs(ctx context.Context) (int, error) {
	if s.kmc == nil {
		return 0, nil
	}
	var binds []EscrowBinding
	known := map[[2]string]bool{}
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		clear(known)
		var err error
		if binds, err = s.kmc.EscrowBindings(ctx, q); err != nil || len(binds) == 0 {
			return err
		}
		rows, err := q.Query(ctx, "SELECT issuer_id, enc_serial FROM ca_dual_pairs")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k [2]string
			if err := rows.Scan(&k[0], &k[1]); err != nil {
				return err
			}
			known[k] = true
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("ca: dual pairs from the KMC's escrows: %w", err)
	}
	n := 0
	for _, b := range binds {
		if known[[2]string{b.CA, b.EncSerial}] {
			continue
		}
		var added int64
		err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
			res, err := tx.Exec(ctx, `INSERT INTO ca_dual_pairs (issuer_id, sign_serial, enc_serial, escrow_id, created_at, kmc_pending)
				SELECT e.issuer_id, ?, e.serial, ?, e.created_at, CASE WHEN e.status = 'revoked' THEN 1 ELSE 0 END
				FROM ca_certificates e JOIN ca_certificates g ON g.issuer_id = e.issuer_id AND g.serial = ?
				WHERE e.issuer_id = ? AND e.serial = ?
				ON CONFLICT (issuer_id, enc_serial) DO NOTHING`, b.SignSerial, b.EscrowID, b.SignSerial, b.CA, b.EncSerial)
			if err != nil {
				return err
			}
			added, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return n, fmt.Errorf("ca: dual pair %s/%s from escrow %s: %w", b.CA, b.EncSerial, b.EscrowID, err)
		}
		n += int(added)
	}
	return n, nil
}

// sweepPairs revokes, at start, the good unexpired encryption certificates
// of pairs whose signing certificate is revoked (revoked before revokePair
// existed, or recorded by fillPairs only now), as revoking the signing
// certificate now would, a transaction each, and returns how many.
func (s *Service) sweepPairs(ctx context.Context) (int, error) {
	type ref struct{ issuer, sign string }
	var found []ref
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		found = found[:0]
		rows, err := q.Query(ctx, `SELECT p.issuer_id, p.sign_serial FROM ca_dual_pairs p
			JOIN ca_certificates g ON g.issuer_id = p.issuer_id AND g.serial = p.sign_serial
			JOIN ca_certificates e ON e.issuer_id = p.issuer_id AND e.serial = p.enc_serial
			WHERE g.status = 'revoked' AND e.status = 'good' AND e.not_after > ?`, s.env.Clock.Now().UTC().Format(timeFormat))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r ref
			if err := rows.Scan(&r.issuer, &r.sign); err != nil {
				return err
			}
			found = append(found, r)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("ca: encryption certificates of revoked signing certificates: %w", err)
	}
	n := 0
	for _, r := range found {
		var also []string
		err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
			var err error
			also, err = s.revokePair(ctx, tx, r.issuer, r.sign, "system", s.env.Clock.Now())
			return err
		})
		if err != nil {
			return n, fmt.Errorf("ca: encryption certificate of revoked %s/%s: %w", r.issuer, r.sign, err)
		}
		n += len(also)
		for _, ref := range also {
			// Start's first CRLs are then made anew, not only when due.
			id, _, _ := strings.Cut(ref, "/")
			s.setStale(id, true)
		}
	}
	return n, nil
}
