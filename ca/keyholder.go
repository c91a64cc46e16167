package ca

import (
	"context"
	"crypto"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/store"
)

// KeyHolder is a CA of a database that holds a key.
type KeyHolder struct {
	// ID is the CA generation, Lineage the CA id clients issue from.
	ID, Lineage string
}

// FindKeyHolder returns the CA recorded in db (ca_authorities, every
// generation) whose key URI is uri or whose certificate certifies pub, or
// nil. An empty uri or a nil pub is not compared. Ceremonies use it so that
// a new CA is never given the key of an existing one: a second certificate
// for a CA's key under another name is a second CA no CRL of the first
// covers.
func FindKeyHolder(ctx context.Context, db *store.DB, uri string, pub crypto.PublicKey) (*KeyHolder, error) {
	rows, err := readAuthorities(ctx, db)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		if uri != "" && r.keyURI == uri {
			return &KeyHolder{ID: r.id, Lineage: r.lineage}, nil
		}
		if pub == nil {
			continue
		}
		if c, err := smx509.ParseCertificate(r.cert); err == nil && samePublicKey(pub, c.PublicKey) {
			return &KeyHolder{ID: r.id, Lineage: r.lineage}, nil
		}
	}
	return nil, nil
}
