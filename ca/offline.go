package ca

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// Offline roots. A root made by a root ceremony (`govtrust ca init-root`)
// lives on its own machine, in a data directory no node runs. That data
// directory records it as a CA (ca_authorities, origin originCeremony, no
// parent) and records every certificate it signs in later ceremonies
// (ca_certificates, RecordCACertificate), as the database of an EJBCA
// offline CA does, so that the root's revocations and CRLs can be made
// there.

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
