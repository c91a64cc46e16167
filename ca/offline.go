package ca

import (
	"bytes"
	"context"
	"crypto"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// Offline roots. A root made by a root ceremony (`govtrust ca init-root`)
// lives on its own machine, in a data directory no node runs. That data
// directory records it as a CA (ca_authorities, origin originCeremony, no
// parent) and records every certificate it signs in later ceremonies
// (ca_certificates, RecordCACertificate), as the database of an EJBCA
// offline CA does, so that a CRL ceremony there (SignOfflineCRL) can revoke
// them and sign the root's CRL with the numbers, retention and revocation
// sequence of the online CAs' CRLs. The node that serves the root's CRL URL
// imports each such CRL (ImportOfflineCRL, offlinecrl.go).

// originCeremony is the origin of a root recorded by its ceremony.
const originCeremony = "ceremony"

// OfflineRoot is a root made by a root ceremony, to be recorded in the data
// directory of its machine.
type OfflineRoot struct {
	ID, KeyURI string
	Cert       *smx509.Certificate
	// CeremonySM3 is the hex SM3 of the root ceremony file.
	CeremonySM3 string
	Now         time.Time
}

// RecordOfflineRoot records root as a CA of db, in the transaction that
// appends rec (the ceremony's own audit record). It refuses a certificate
// that is not a self-signed CA certificate, an id another CA of db has (or
// whose CRL files would clash with one, CheckCAID), and a key another CA of
// db holds, by URI or by public key.
func RecordOfflineRoot(ctx context.Context, db *store.DB, log *audit.Log, root OfflineRoot, rec audit.Record) error {
	c := root.Cert
	switch {
	case !ceremony.ValidID(root.ID):
		return fmt.Errorf("%w: CA id %q: want lowercase letters, digits and '-'", ErrRequest, root.ID)
	case !c.IsCA || !bytes.Equal(c.RawIssuer, c.RawSubject) || c.CheckSignatureFrom(c) != nil:
		return fmt.Errorf("%w: the certificate of %s is not a self-signed CA certificate", ErrPolicy, root.ID)
	}
	alg, err := ceremony.Algorithm(c.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: root %s: %w", ErrPolicy, root.ID, err)
	}
	_, err = log.Do(ctx, db, rec, func(tx *store.Tx) error {
		rows, err := loadAuthorities(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			switch {
			case r.id == root.ID:
				return fmt.Errorf("%w: CA %s is recorded in this data directory already", ErrConflict, root.ID)
			case r.keyURI == root.KeyURI, certifiesKey(r.cert, c.PublicKey):
				return fmt.Errorf("%w: the key of %s is the key of CA %s", ErrConflict, root.ID, r.id)
			}
		}
		if err := checkDeltaTwins(ctx, tx, root.ID); err != nil {
			return err
		}
		if err := checkRolloverName(ctx, tx, root.ID, false); err != nil {
			return err
		}
		return insertAuthority(ctx, tx, authorityRow{id: root.ID, algorithm: string(alg), keyURI: root.KeyURI, cert: c.Raw,
			created: root.Now, origin: originCeremony, ceremonySM3: root.CeremonySM3})
	})
	if err != nil {
		return fmt.Errorf("record root %s: %w", root.ID, err)
	}
	return nil
}

// OfflineCRLRequest is a CRL ceremony (ceremony.CRLFile) on the data
// directory of an offline root.
type OfflineCRLRequest struct {
	// CA is the root's id; Issuer its certificate as the ceremony file
	// gives it, KeyURI and Signer its key.
	CA     string
	Issuer *smx509.Certificate
	KeyURI string
	Signer crypto.Signer
	// URL is the CRL's issuingDistributionPoint: the CRL distribution
	// point of the certificates the root signs.
	URL string
	// Validity is nextUpdate - thisUpdate, at most crl.MaxOfflineValidity.
	Validity time.Duration
	// Revoke are the certificates revoked in this ceremony.
	Revoke []OfflineRevocation
	// Record is the ceremony's audit record: it commits with the CRL, its
	// details completed with the CRL's number, dates and entries.
	Record audit.Record
}

// OfflineRevocation is a certificate a CRL ceremony revokes, with an RFC
// 5280 reason name (ceremony.CARevocationReasons).
type OfflineRevocation struct {
	Cert   *smx509.Certificate
	Reason string
}

// OfflineCRL is the CRL a CRL ceremony signed.
type OfflineCRL struct {
	CA                     string
	Number                 int64
	ThisUpdate, NextUpdate time.Time
	DER                    []byte
	// Entries counts the CRL's entries; Revoked are the serials revoked by
	// this ceremony, Already those it lists that were revoked before with
	// the same reason.
	Entries          int
	Revoked, Already []string
	// Recorded is set when the root was recorded by this ceremony (a root
	// made before root ceremonies recorded their root).
	Recorded bool
}

// SignOfflineCRL carries out a CRL ceremony of an offline root on its data
// directory db: it revokes the certificates of req.Revoke, which the root
// must have signed, in one transaction (recording those an earlier
// ceremony did not), then signs the root's full CRL, which lists every
// certificate the data directory holds revoked under the root (as long as
// RFC 5280 §3.3 asks), and stores it with its audit record.
//
// The CRL has the profile of the online roots' CRLs (their ARLs): a critical
// issuingDistributionPoint naming req.URL and no onlyContainsCACerts
// (see scopeOf), the root's subjectKeyIdentifier as its
// authorityKeyIdentifier, a number above every earlier CRL of the root
// (crl.NextNumber, crl.CheckNumber); no freshestCRL, since an offline root
// makes no delta CRLs. Its nextUpdate is req.Validity later, up to
// crl.MaxOfflineValidity. The CRL is checked with crl.Verify and
// crl.LintOffline before it is stored.
func SignOfflineCRL(ctx context.Context, db *store.DB, log *audit.Log, clk clock.Clock, req OfflineCRLRequest) (*OfflineCRL, error) {
	if req.Validity <= 0 || req.Validity > crl.MaxOfflineValidity {
		return nil, fmt.Errorf("%w: CRL validity %v: want up to %v", ErrRequest, req.Validity, crl.MaxOfflineValidity)
	}
	root := req.Issuer
	if !samePublicKey(req.Signer.Public(), root.PublicKey) {
		return nil, fmt.Errorf("%w: key %s is not the key of the certificate of %s", ErrPolicy, req.KeyURI, req.CA)
	}
	out := &OfflineCRL{CA: req.CA, Revoked: []string{}, Already: []string{}}
	row, err := loadAuthority(ctx, db, req.CA)
	switch {
	case errors.Is(err, ErrNotFound):
		// A root made before root ceremonies recorded their root.
		rec := audit.Record{Actor: audit.ActorFrom(ctx), Action: "ca.authority.record", Object: "ca/" + req.CA, Outcome: audit.Success,
			Details: map[string]any{"fingerprint": ceremony.Fingerprint(root.Raw), "key_uri": req.KeyURI, "by": "crl ceremony"}}
		if err := RecordOfflineRoot(ctx, db, log, OfflineRoot{ID: req.CA, KeyURI: req.KeyURI, Cert: root, Now: clk.Now()}, rec); err != nil {
			return nil, err
		}
		out.Recorded = true
	case err != nil:
		return nil, err
	case row.parent != "" || row.origin != originCeremony:
		return nil, fmt.Errorf("%w: CA %s of this data directory is not an offline root made by a root ceremony; the CA service makes its CRLs", ErrPolicy, req.CA)
	case !bytes.Equal(row.cert, root.Raw):
		return nil, fmt.Errorf("%w: issuer.certificate (SHA-256 %s) is not the certificate recorded for %s (SHA-256 %s)", ErrPolicy,
			ceremony.Fingerprint(root.Raw), req.CA, ceremony.Fingerprint(row.cert))
	case row.keyURI != req.KeyURI:
		return nil, fmt.Errorf("%w: issuer.key_uri %s is not the key recorded for %s (%s)", ErrPolicy, req.KeyURI, req.CA, row.keyURI)
	}
	for _, r := range req.Revoke {
		if err := checkOfflineRevocation(req, r); err != nil {
			return nil, err
		}
	}

	s := New()
	s.env = &node.Env{DB: db, Audit: log, Clock: clk, Logger: slog.New(slog.DiscardHandler)}
	actor := audit.ActorFrom(ctx)
	if len(req.Revoke) > 0 {
		// Every revocation of the ceremony, or none.
		var revoked, already []string
		err := db.Tx(ctx, func(tx *store.Tx) error {
			revoked, already = revoked[:0], already[:0]
			now := clk.Now().UTC()
			for _, r := range req.Revoke {
				serial := serialHex(r.Cert.SerialNumber)
				if _, err := recordCACert(ctx, tx, req.CA, r.Cert, "sub-ca", now); err != nil {
					return err
				}
				extra := map[string]any{"ceremony_sm3": req.Record.Details["ceremony_sm3"], "offline": true}
				_, newly, err := s.revokeRowAt(ctx, tx, req.CA, serial, r.Reason, actor, extra, now)
				if err != nil {
					return fmt.Errorf("revoke %s (%s): %w", serial, r.Cert.Subject, err)
				}
				if newly {
					revoked = append(revoked, serial)
				} else {
					already = append(already, serial)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out.Revoked, out.Already = revoked, already
	}
	if err := s.signOfflineCRL(ctx, req, out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkOfflineRevocation refuses to revoke, in a CRL ceremony of req.CA, a
// certificate the root did not sign, one that is not a CA certificate (the
// root's ceremonies sign no others), and one whose CRL distribution points
// do not name req.URL: relying parties would not take the root's CRL as
// covering it (RFC 5280 §6.3.3 (b)(2)), so its revocation would go unseen.
func checkOfflineRevocation(req OfflineCRLRequest, r OfflineRevocation) error {
	c := r.Cert
	what := fmt.Sprintf("certificate %s (serial %s)", c.Subject, serialHex(c.SerialNumber))
	switch {
	case !bytes.Equal(c.RawIssuer, req.Issuer.RawSubject) || c.CheckSignatureFrom(req.Issuer) != nil:
		return fmt.Errorf("%w: %s was not signed by %s", ErrPolicy, what, req.CA)
	case !c.IsCA:
		return fmt.Errorf("%w: %s is not a CA certificate; a CRL ceremony revokes the CA certificates the root signed", ErrPolicy, what)
	case !slices.Contains(ceremony.CARevocationReasons, r.Reason):
		return fmt.Errorf("%w: %s: reason %q: want one of %v", ErrRequest, what, r.Reason, ceremony.CARevocationReasons)
	case len(c.CRLDistributionPoints) > 0 && !slices.Contains(c.CRLDistributionPoints, req.URL):
		return fmt.Errorf("%w: %s names the CRL distribution points %v, not %s: relying parties would not find its revocation on this CRL",
			ErrPolicy, what, c.CRLDistributionPoints, req.URL)
	}
	return nil
}

// signOfflineCRL builds, checks and stores the root's CRL for req, as
// generateOnce does for an online CA: the entries and the number are read
// in one snapshot, the counter moves guarded by its old value in the
// transaction that stores the CRL, and every CRL of the ceremony is a
// regularly scheduled one (delta_base), the retention rule's reference.
func (s *Service) signOfflineCRL(ctx context.Context, req OfflineCRLRequest, out *OfflineCRL) error {
	var r buildResult
	var buf bytes.Buffer
	var clamp clamped
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		buf.Reset()
		var err error
		if r, err = s.beginCRL(ctx, q, req.CA); err != nil {
			return err
		}
		f := entryFilter{}
		prev, err := baseIn(ctx, q, req.CA)
		switch {
		case err == nil:
			f.prevThis, f.prevSeq = prev.thisUpdate, prev.seq.Int64
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("previous CRL: %w", err)
		}
		count, err := countRevoked(ctx, q, req.CA, f)
		if err != nil {
			return err
		}
		out.Entries = int(count)
		t := crl.Template{Issuer: req.Issuer, Number: big.NewInt(r.number), ThisUpdate: r.thisUpdate,
			NextUpdate: r.thisUpdate.Add(req.Validity), Offline: true, IDP: &crl.IssuingDistributionPoint{FullName: []string{req.URL}}}
		return crl.Build(ctx, &buf, t, revokedEntries(ctx, q, req.CA, f, r.thisUpdate, &clamp), count, req.Signer)
	})
	if err != nil {
		return fmt.Errorf("build the CRL of %s: %w", req.CA, err)
	}
	der := bytes.Clone(buf.Bytes())
	rl, err := crl.Verify(der, req.Issuer)
	if err == nil {
		err = crl.LintOffline(rl, req.Issuer)
	}
	if err != nil {
		return fmt.Errorf("the CRL of %s as signed: %w", req.CA, err)
	}
	out.Number, out.ThisUpdate, out.NextUpdate, out.DER = r.number, r.thisUpdate, r.thisUpdate.Add(req.Validity), der
	details := map[string]any{"kind": kindFull, "this_update": out.ThisUpdate.Format(time.RFC3339), "next_update": out.NextUpdate.Format(time.RFC3339),
		"size": len(der), "revocation_seq": r.seq, "offline": true}
	gen := audit.Record{Actor: audit.ActorFrom(ctx), Action: "ca.crl.generate", Object: "crl/" + req.CA + "/" + strconv.FormatInt(r.number, 10),
		Outcome: audit.Success, Details: details}
	cer := req.Record
	cer.Details = map[string]any{}
	for k, v := range req.Record.Details {
		cer.Details[k] = v
	}
	cer.Details["crl_number"], cer.Details["this_update"], cer.Details["next_update"] = r.number, details["this_update"], details["next_update"]
	cer.Details["entries"], cer.Details["revoked"], cer.Details["already_revoked"] = out.Entries, out.Revoked, out.Already
	cer.Details["crl_sha256"] = ceremony.Fingerprint(der)
	return s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		if moved, err := advanceCRLNumber(ctx, tx, req.CA, r, r.number); err != nil {
			return err
		} else if !moved {
			return fmt.Errorf("%w: another process made a CRL of %s meanwhile; run the ceremony again", ErrConflict, req.CA)
		}
		if err := checkNumber(ctx, tx, req.CA, r.number); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ca_crls (issuer_id, number, kind, this_update, next_update, der, created_at, base_number, revocation_seq, delta_base)
			VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, 1)`, req.CA, r.number, kindFull, out.ThisUpdate.Format(timeFormat), out.NextUpdate.Format(timeFormat),
			der, s.env.Clock.Now().UTC().Format(timeFormat), r.seq); err != nil {
			return fmt.Errorf("store CRL: %w", err)
		}
		if err := pruneCRLs(ctx, tx, req.CA, kindFull); err != nil {
			return err
		}
		if _, err := s.env.Audit.Append(ctx, tx, gen); err != nil {
			return err
		}
		_, err = s.env.Audit.Append(ctx, tx, cer)
		return err
	})
}
