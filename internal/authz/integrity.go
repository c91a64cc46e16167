package authz

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/emmansun/gmsm/sm3"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// DefaultIntegrityKEK is the key of the key manager that wraps the integrity
// key, created on first use (SM4, usage wrap, service authz).
const DefaultIntegrityKEK = "soft:authz/integrity-kek"

// ErrTampered is returned when a security row does not carry a valid MAC.
// Over HTTP it is a 503: the data cannot be trusted until an administrator
// restores it, which the audit log's authz.integrity records point to.
var ErrTampered = fmt.Errorf("authz: security data failed its integrity check: %w", httpx.ErrUnavailable)

// KeyManager is what authz needs of the key manager: create the wrapping key
// once and wrap and unwrap the integrity key with it.
type KeyManager interface {
	hsm.KeyManager
	hsm.KeyWrapper
}

// Integrity computes and checks the MACs of security rows.
type Integrity struct {
	key []byte
}

// OpenIntegrity loads the integrity key, creating it (and its wrapping key
// kekURI in keys) on first use.
func OpenIntegrity(ctx context.Context, db *store.DB, keys KeyManager, kekURI string) (*Integrity, error) {
	if kekURI == "" {
		kekURI = DefaultIntegrityKEK
	}
	const service = "authz"
	aad := []byte("govtrust authz integrity key v1")
	var wrapped []byte
	err := db.QueryRow(ctx, "SELECT value FROM authz_meta WHERE name = 'integrity_key'").Scan(&wrapped)
	if err == nil {
		key, err := keys.Unwrap(ctx, &hsm.WrapRequest{URI: kekURI, Service: service, Data: wrapped, AAD: aad})
		if err != nil {
			return nil, fmt.Errorf("authz: unwrap integrity key with %s: %w", kekURI, err)
		}
		return &Integrity{key: key}, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("authz: read integrity key: %w", err)
	}
	if _, err := keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: kekURI, Algorithm: hsm.SM4, Usage: hsm.UsageWrap, Service: service}); err != nil && !errors.Is(err, hsm.ErrExists) {
		return nil, fmt.Errorf("authz: create integrity wrapping key %s: %w", kekURI, err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	wrapped, err = keys.Wrap(ctx, &hsm.WrapRequest{URI: kekURI, Service: service, Data: key, AAD: aad})
	if err != nil {
		return nil, fmt.Errorf("authz: wrap integrity key: %w", err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO authz_meta (name, value) VALUES ('integrity_key', ?)", wrapped); err != nil {
		if store.IsUniqueViolation(err) { // another node won the race: use its key
			return OpenIntegrity(ctx, db, keys, kekURI)
		}
		return nil, fmt.Errorf("authz: store integrity key: %w", err)
	}
	return &Integrity{key: key}, nil
}

// NewIntegrityForTest returns an Integrity with a fixed key, for unit tests of
// code that only needs MACs computed consistently.
func NewIntegrityForTest(key []byte) *Integrity { return &Integrity{key: append([]byte(nil), key...)} }

// MAC returns hex HMAC-SM3 over a table name and the row's fields, each
// length-prefixed so that no two rows share an encoding.
func (in *Integrity) MAC(table string, fields ...string) string {
	m := hmac.New(sm3.New, in.key)
	var n [binary.MaxVarintLen64]byte
	for _, f := range append([]string{"govtrust-authz-v1", table}, fields...) {
		m.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		m.Write([]byte(f))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// Check compares a stored MAC with the one the fields should have.
func (in *Integrity) Check(stored, table string, fields ...string) error {
	want := in.MAC(table, fields...)
	if !hmac.Equal([]byte(stored), []byte(want)) {
		return fmt.Errorf("%w: %s row", ErrTampered, table)
	}
	return nil
}
