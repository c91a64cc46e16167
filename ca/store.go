package ca

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// Times are stored as RFC 3339 text in UTC on both backends, like the
// audit log.
const timeFormat = time.RFC3339Nano

// authorityRow is a row of ca_authorities.
type authorityRow struct {
	id, algorithm, keyURI, parent string
	cert                          []byte
	created                       time.Time
	// lineage is the CA id clients issue from; generation counts its
	// rollovers from 1; status is active or retired; origin is builtin,
	// imported or rollover.
	lineage, status, origin string
	generation              int
	// chain is the concatenated DER of an external issuer's certificates
	// (nil when the parent is a platform CA); ceremonySM3 the hex SM3 of
	// the ceremony file, if any.
	chain       []byte
	ceremonySM3 string
}

const authorityColumns = "id, algorithm, key_uri, cert, parent, created_at, lineage, generation, status, origin, chain, ceremony_sm3"

func scanAuthority(sc interface{ Scan(...any) error }) (*authorityRow, error) {
	r := &authorityRow{}
	var created string
	if err := sc.Scan(&r.id, &r.algorithm, &r.keyURI, &r.cert, &r.parent, &created, &r.lineage, &r.generation, &r.status, &r.origin, &r.chain, &r.ceremonySM3); err != nil {
		return nil, err
	}
	var err error
	if r.created, err = time.Parse(timeFormat, created); err != nil {
		return nil, fmt.Errorf("load CA %s: created_at: %w", r.id, err)
	}
	if r.lineage == "" {
		r.lineage = r.id
	}
	return r, nil
}

func loadAuthority(ctx context.Context, db *store.DB, id string) (*authorityRow, error) {
	var r *authorityRow
	err := db.Read(ctx, func(q store.Querier) error {
		var err error
		r, err = scanAuthority(q.QueryRow(ctx, "SELECT "+authorityColumns+" FROM ca_authorities WHERE id = ?", id))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: CA %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", id, err)
	}
	return r, nil
}

// loadAuthorities returns every CA row, oldest first.
// readAuthorities is loadAuthorities in a read transaction of db.
func readAuthorities(ctx context.Context, db *store.DB) ([]*authorityRow, error) {
	var rows []*authorityRow
	err := db.Read(ctx, func(q store.Querier) error {
		var err error
		rows, err = loadAuthorities(ctx, q)
		return err
	})
	return rows, err
}

func loadAuthorities(ctx context.Context, q store.Querier) ([]*authorityRow, error) {
	rows, err := q.Query(ctx, "SELECT "+authorityColumns+" FROM ca_authorities ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("load CAs: %w", err)
	}
	defer rows.Close()
	var out []*authorityRow
	for rows.Next() {
		r, err := scanAuthority(rows)
		if err != nil {
			return nil, fmt.Errorf("load CAs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load CAs: %w", err)
	}
	return out, nil
}

func insertAuthority(ctx context.Context, tx *store.Tx, r authorityRow) error {
	if r.lineage == "" {
		r.lineage = r.id
	}
	if r.generation == 0 {
		r.generation = 1
	}
	if r.status == "" {
		r.status = statusActive
	}
	if r.origin == "" {
		r.origin = "builtin"
	}
	var chain any
	if len(r.chain) > 0 {
		chain = r.chain
	}
	_, err := tx.Exec(ctx, `INSERT INTO ca_authorities (`+authorityColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.id, r.algorithm, r.keyURI, r.cert, r.parent, r.created.UTC().Format(timeFormat),
		r.lineage, r.generation, r.status, r.origin, chain, r.ceremonySM3)
	if err != nil {
		return fmt.Errorf("insert CA %s: %w", r.id, err)
	}
	cert, err := smx509.ParseCertificate(r.cert)
	if err != nil {
		return fmt.Errorf("insert CA %s: certificate: %w", r.id, err)
	}
	// The directory publishes the CA (pkiCA entry) from this event.
	insertOutbox(tx, "ca_added", r.id, serialHex(cert.SerialNumber), r.created)
	return nil
}

// recordCACert records a CA certificate a platform CA signed in
// ca_certificates (profile sub-ca or cross-ca, requester "system"), so that
// CRLs, OCSP and serial uniqueness treat it like any certificate. It is
// idempotent: it reports whether a row was added.
func recordCACert(ctx context.Context, tx *store.Tx, issuer string, cert *smx509.Certificate, prof string, now time.Time) (bool, error) {
	kh := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	res, err := tx.Exec(ctx, `INSERT INTO ca_certificates
		(issuer_id, serial, subject, profile, not_before, not_after, der, status, requester, requester_org, created_at, spki_sha256)
		VALUES (?, ?, ?, ?, ?, ?, ?, 'good', 'system', '', ?, ?) ON CONFLICT DO NOTHING`,
		issuer, serialHex(cert.SerialNumber), cert.Subject.String(), prof, cert.NotBefore.UTC().Format(timeFormat),
		cert.NotAfter.UTC().Format(timeFormat), cert.Raw, now.UTC().Format(timeFormat), kh[:])
	if err != nil {
		return false, fmt.Errorf("record CA certificate %s/%x: %w", issuer, cert.SerialNumber.Bytes(), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record CA certificate: %w", err)
	}
	return n == 1, nil
}

// certRow is a row of ca_certificates.
type certRow struct {
	issuer, serial, subject, profile, status, requester string
	// requesterOrg is the organisation of the requesting account at
	// issuance; authorization on the certificate is decided in it.
	requesterOrg                 string
	notBefore, notAfter, created time.Time
	der                          []byte
	// revokedAt and reason are set when status is "revoked"; reason is a
	// CRLReason code (RFC 5280 §5.3.1).
	revokedAt time.Time
	reason    int
	// idempotencyKey is empty when the request had none (stored as NULL).
	idempotencyKey string
	requestHash    []byte
}

// insertCert stores r in tx as it is (the OCSP responders' certificates,
// which a revoked CA still makes; issued certificates go through
// insertIssued).
func insertCert(ctx context.Context, tx *store.Tx, r *certRow) error {
	_, err := tx.Exec(ctx, `INSERT INTO ca_certificates (`+insertCertColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, insertCertArgs(r)...)
	return err
}

const insertCertColumns = `issuer_id, serial, subject, profile, not_before, not_after, der, status, requester, requester_org,
	idempotency_key, request_hash, created_at, spki_sha256`

// insertCertArgs are the values of insertCertColumns for r; the last one
// is the key's hash.
func insertCertArgs(r *certRow) []any {
	var key, hash any
	if r.idempotencyKey != "" {
		key, hash = r.idempotencyKey, r.requestHash
	}
	kh, err := keyHash(r.der)
	if err != nil || kh == nil {
		// Not a certificate whose key can be read (issuance parses what it
		// signed before it gets here; only tests store other bytes): an
		// empty hash, as fillKeyHashes gives such a row, matches no key.
		kh = []byte{}
	}
	return []any{r.issuer, r.serial, r.subject, r.profile, r.notBefore.UTC().Format(timeFormat), r.notAfter.UTC().Format(timeFormat),
		r.der, r.status, r.requester, r.requesterOrg, key, hash, r.created.UTC().Format(timeFormat), kh}
}

// insertIssued stores r, a certificate the CA has just signed, in tx
// unless its key was blocked for compromise or its issuer's certificate
// revoked since the serial was reserved (reserveSerial checked both, in
// an earlier transaction, before the signature): zero rows, and an
// ErrPolicy that says which; the signed certificate is then dropped and
// its serial stays reserved, as after a failed signature. Without this a
// keyCompromise revocation that committed during the signature, whose
// sweep of the key's certificates (keysweep.go) could not see this one,
// would leave a good certificate for a key it reported blocked. The checks
// are part of the insert, no statement of their own.
//
// The insert is made once tx holds the audit chain's head (audit.Hold),
// which blockKey takes before it blocks a key and sweeps its certificates:
// on PostgreSQL (READ COMMITTED) its row lock orders the two transactions,
// so that the insert, made after the wait, sees a block committed
// meanwhile, and a block made after it sees the certificate; otherwise
// each could miss the other's uncommitted row and both commit. The head
// is what the certificate's audit record takes anyway, once per
// transaction (a batch of issuances shares it), so it costs no statement.
func insertIssued(ctx context.Context, tx *store.Tx, r *certRow) error {
	if err := audit.Hold(ctx, tx); err != nil {
		return err
	}
	args := insertCertArgs(r)
	kh := args[len(args)-1]
	res, err := tx.Exec(ctx, `INSERT INTO ca_certificates (`+insertCertColumns+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM ca_blocked_keys WHERE spki_sha256 = ?)
		AND NOT EXISTS (SELECT 1 FROM ca_authorities WHERE id = ? AND status = ?)`,
		append(args, kh, r.issuer, statusRevoked)...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store certificate %s/%s: %w", r.issuer, r.serial, err)
	} else if n == 1 {
		return nil
	}
	return refusal(ctx, tx, "store certificate "+r.issuer+"/"+r.serial, r.issuer, kh.([]byte))
}

// insertCRLOutbox announces a published CRL (kind full or delta) in tx.
func insertCRLOutbox(tx *store.Tx, issuer, kind string, number int64, now time.Time) {
	queueOutbox(tx, outboxRow{event: "crl_published", issuer: issuer, crlKind: kind, crlNumber: number, created: now})
}

// insertOutbox announces event for the certificate issuer/serial in tx.
func insertOutbox(tx *store.Tx, event, issuer, serial string, now time.Time) {
	queueOutbox(tx, outboxRow{event: event, issuer: issuer, serial: serial, created: now})
}

// outboxRow is an event waiting in a transaction; crlKind is empty for
// events that are not crl_published.
type outboxRow struct {
	event, issuer, serial, crlKind string
	crlNumber                      int64
	created                        time.Time
}

type outboxKey struct{}

// outboxRows is a transaction's queue of events.
type outboxRows struct{ rows []outboxRow }

// queueOutbox adds r to the events of tx, which are written together, in
// the order queued, just before COMMIT (store.Tx.BeforeCommit): a batch
// transaction of n issuances writes its n events in one statement, not n
// (on PostgreSQL, n-1 round trips fewer). They commit with the change
// they announce or not at all, as before; an error writing them fails the
// transaction.
func queueOutbox(tx *store.Tx, r outboxRow) {
	q, ok := tx.Value(outboxKey{}).(*outboxRows)
	if !ok {
		q = &outboxRows{}
		tx.SetValue(outboxKey{}, q)
		tx.BeforeCommit(func(ctx context.Context) error { return writeOutbox(ctx, tx, q.rows) })
	}
	q.rows = append(q.rows, r)
}

// maxOutboxChunk is the most rows one INSERT of writeOutbox takes; rows are
// written in chunks of powers of two, largest first, so that seven
// statements (each prepared once per connection) cover every count.
const maxOutboxChunk = 64

// outboxInsert[n] is the INSERT of n rows, n a power of two.
var outboxInsert = func() (q [maxOutboxChunk + 1]string) {
	for n := 1; n <= maxOutboxChunk; n *= 2 {
		q[n] = "INSERT INTO ca_outbox (event, issuer_id, serial, crl_kind, crl_number, created_at) VALUES " + store.ValuesRows(n, 6)
	}
	return q
}()

func writeOutbox(ctx context.Context, tx *store.Tx, rows []outboxRow) error {
	args := make([]any, 0, 6*min(len(rows), maxOutboxChunk))
	for len(rows) > 0 {
		n := store.ChunkRows(len(rows), maxOutboxChunk)
		args = args[:0]
		for _, r := range rows[:n] {
			var kind, number any // NULL but for crl_published
			if r.crlKind != "" {
				kind, number = r.crlKind, r.crlNumber
			}
			args = append(args, r.event, r.issuer, r.serial, kind, number, r.created.UTC().Format(timeFormat))
		}
		if _, err := tx.Exec(ctx, outboxInsert[n], args...); err != nil {
			return fmt.Errorf("outbox: %d events from %s %s/%s: %w", len(rows), rows[0].event, rows[0].issuer, rows[0].serial, err)
		}
		rows = rows[n:]
	}
	return nil
}

const certColumns = `serial, subject, profile, not_before, not_after, der, status, requester, requester_org,
	COALESCE(idempotency_key, ''), request_hash, created_at, COALESCE(revoked_at, ''), COALESCE(revocation_reason, -1)`

// scanCert reads a row of certColumns, then into extra the columns the
// query selects after them.
func scanCert(issuer string, row *sql.Row, extra ...any) (*certRow, error) {
	r := &certRow{issuer: issuer}
	var nb, na, created, revoked string
	if err := row.Scan(append([]any{&r.serial, &r.subject, &r.profile, &nb, &na, &r.der, &r.status, &r.requester, &r.requesterOrg,
		&r.idempotencyKey, &r.requestHash, &created, &revoked, &r.reason}, extra...)...); err != nil {
		return nil, err
	}
	var err error
	if r.notBefore, err = time.Parse(timeFormat, nb); err == nil {
		if r.notAfter, err = time.Parse(timeFormat, na); err == nil {
			if r.created, err = time.Parse(timeFormat, created); err == nil && revoked != "" {
				r.revokedAt, err = time.Parse(timeFormat, revoked)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("certificate %s/%s: bad time: %w", issuer, r.serial, err)
	}
	return r, nil
}

// certBySerial returns the certificate issuer/serial, or ErrNotFound.
func certBySerial(ctx context.Context, db *store.DB, issuer, serial string) (*certRow, error) {
	return readCert(ctx, db, issuer, "serial = ?", serial)
}

// certByIdempotencyKey returns the certificate a generation of lineage
// issued for requester's request with key (the first, should a rollover
// have raced two such requests), or ErrNotFound. A key is the requester's
// own: another account's use of it is not found.
func certByIdempotencyKey(ctx context.Context, db *store.DB, lineage, requester, key string) (*certRow, error) {
	var r *certRow
	err := db.Read(ctx, func(q store.Querier) error {
		var issuer string
		var err error
		r, err = scanCert("", q.QueryRow(ctx, "SELECT "+certColumns+`, issuer_id FROM ca_certificates
			WHERE issuer_id IN (SELECT id FROM ca_authorities WHERE lineage = ?) AND requester = ? AND idempotency_key = ?
			ORDER BY created_at, issuer_id LIMIT 1`, lineage, requester, key), &issuer)
		if r != nil {
			r.issuer = issuer
		}
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: certificate of %s for Idempotency-Key %q", ErrNotFound, lineage, key)
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate of %s for Idempotency-Key %q: %w", lineage, key, err)
	}
	return r, nil
}

func readCert(ctx context.Context, db *store.DB, issuer, where, arg string) (*certRow, error) {
	var r *certRow
	err := db.Read(ctx, func(q store.Querier) error {
		var err error
		r, err = scanCert(issuer, q.QueryRow(ctx, "SELECT "+certColumns+" FROM ca_certificates WHERE issuer_id = ? AND "+where, issuer, arg))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: certificate %s/%s", ErrNotFound, issuer, arg)
	}
	if err != nil {
		return nil, fmt.Errorf("read certificate %s/%s: %w", issuer, arg, err)
	}
	return r, nil
}
