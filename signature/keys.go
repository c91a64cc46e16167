package signature

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/store"
)

func joinDER(chain [][]byte) []byte { return bytes.Join(chain, nil) }

// splitDER splits concatenated DER certificates.
func splitDER(b []byte) ([][]byte, error) {
	s := cryptobyte.String(b)
	var out [][]byte
	for !s.Empty() {
		var c cryptobyte.String
		if !s.ReadASN1Element(&c, cbasn1.SEQUENCE) {
			return nil, errors.New("signature: malformed stored chain")
		}
		out = append(out, []byte(c))
	}
	return out, nil
}

func toPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func (k *Key) setCerts(der []byte, chain [][]byte) error {
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("signature: key certificate: %w", err)
	}
	k.cert, k.Certificate, k.Chain, k.chain = c, toPEM(der), nil, nil
	for _, d := range chain {
		cc, err := smx509.ParseCertificate(d)
		if err != nil {
			return fmt.Errorf("signature: chain certificate: %w", err)
		}
		k.chain = append(k.chain, cc)
		k.Chain = append(k.Chain, toPEM(d))
	}
	return nil
}

// insertKey records a key; the key and its certificate exist already.
func insertKey(ctx context.Context, tx *store.Tx, k *Key, der []byte, chain [][]byte, actor string) error {
	_, err := tx.Exec(ctx, `INSERT INTO signature_keys (id, name, owner, org, algorithm, key_uri, cert, chain, created_by, created_at, disabled)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`, k.ID, k.Name, k.Owner, k.Org, k.Algorithm, k.keyURI, der, joinDER(chain), actor, k.Created.Format(time.RFC3339Nano))
	return err
}

// key loads a key record.
func (s *Service) key(ctx context.Context, id string) (*Key, error) {
	var k Key
	var der, chain []byte
	var created string
	var disabled int
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, `SELECT id, name, owner, org, algorithm, key_uri, cert, chain, created_at, disabled FROM signature_keys WHERE id = ?`, id).
			Scan(&k.ID, &k.Name, &k.Owner, &k.Org, &k.Algorithm, &k.keyURI, &der, &chain, &created, &disabled)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: key %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	k.Disabled = disabled != 0
	k.Created, _ = time.Parse(time.RFC3339Nano, created)
	parts, err := splitDER(chain)
	if err != nil {
		return nil, err
	}
	if err := k.setCerts(der, parts); err != nil {
		return nil, err
	}
	return &k, nil
}

// held returns the key with its signer, resolved once and kept (hot
// paths hold a crypto.Signer, ARCHITECTURE.md §1).
func (s *Service) held(ctx context.Context, id string) (*heldKey, error) {
	s.mu.Lock()
	h := s.signers[id]
	s.mu.Unlock()
	if h != nil {
		return h, nil
	}
	k, err := s.key(ctx, id)
	if err != nil {
		return nil, err
	}
	signer, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: k.keyURI, Service: keyService})
	if err != nil {
		return nil, fmt.Errorf("signature: key %s: %w", k.ID, err)
	}
	h = &heldKey{key: k, signer: signer}
	s.mu.Lock()
	s.signers[id] = h
	s.mu.Unlock()
	return h, nil
}
