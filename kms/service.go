package kms

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// keyService owns the KEK in the key manager (key separation: the CA, TSA
// or KMC code paths cannot unwrap application keys).
const keyService = "kms"

// Errors; each wraps the httpx sentinel that gives its HTTP status.
var (
	ErrNotFound  = fmt.Errorf("kms: not found: %w", httpx.ErrNotFound)
	ErrConflict  = fmt.Errorf("kms: conflict: %w", httpx.ErrConflict)
	ErrRequest   = fmt.Errorf("kms: invalid request: %w", httpx.ErrBadRequest)
	ErrPolicy    = fmt.Errorf("kms: refused: %w", httpx.ErrPolicy)
	ErrDisabled  = fmt.Errorf("kms: key is disabled: %w", httpx.ErrPolicy)
	ErrRetired   = fmt.Errorf("kms: key version is below the key's minimum decryption version: %w", httpx.ErrPolicy)
	ErrDestroyed = fmt.Errorf("kms: key version was destroyed; what it alone encrypted is unrecoverable: %w", httpx.ErrPolicy)
)

// Key statuses.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Audit actions.
const (
	ActionCreate  = "kms.key.create"
	ActionRotate  = "kms.rotate"
	ActionUpdate  = "kms.key.update"
	ActionDestroy = "kms.key.destroy"
	// DestroyKind is the dual-control kind of a version destruction.
	DestroyKind = "kms.version.destroy"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Service is the application key service.
type Service struct {
	env   *node.Env
	cfg   config.KMSConfig
	cache sync.Map // cacheKey -> cipher.AEAD
	stop  context.CancelFunc
	done  chan struct{}
}

var (
	_ node.Service   = (*Service)(nil)
	_ node.Migrator  = (*Service)(nil)
	_ node.APIRouter = (*Service)(nil)
)

// New returns the key service.
func New() *Service { return &Service{} }

// Name implements node.Service.
func (s *Service) Name() string { return "kms" }

// Migrations implements node.Migrator.
func (s *Service) Migrations() []store.Migrations {
	return []store.Migrations{store.EmbeddedMigrations("kms", migrations, "migrations")}
}

// Start makes sure the KEK exists and starts the rotation schedule.
func (s *Service) Start(ctx context.Context, env *node.Env) error {
	s.env = env
	s.cfg = config.Defaults().KMS
	if env.Config != nil {
		s.cfg = env.Config.KMS
	}
	ctx = audit.WithActor(ctx, "system")
	if err := ensureWrapKey(ctx, env.Keys.Router, s.cfg.KEK, keyService); err != nil {
		return fmt.Errorf("kms: key-encryption key %s: %w", s.cfg.KEK, err)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop, s.done = cancel, make(chan struct{})
	go s.loop(loopCtx)
	return nil
}

// ensureWrapKey creates the wrap key uri for service when it does not exist:
// SM4 in the software keystore, AES-256 on PKCS#11 tokens (which have no SM4
// mechanism in the OASIS lists, GM-STANDARDS.md §8).
func ensureWrapKey(ctx context.Context, keys *hsm.Router, uri, service string) error {
	_, err := keys.Wrap(ctx, &hsm.WrapRequest{URI: uri, Service: service, Data: []byte{0}})
	if !errors.Is(err, hsm.ErrNotFound) {
		return err
	}
	alg := hsm.SM4
	if strings.HasPrefix(uri, "pkcs11:") {
		alg = hsm.AES256
	}
	_, err = keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: alg, Usage: hsm.UsageWrap, Service: service})
	return err
}

// Ready implements node.Service: the KEK wraps.
func (s *Service) Ready(ctx context.Context) error {
	if s.env == nil {
		return errors.New("kms: not started")
	}
	if _, err := s.env.Keys.Wrap(ctx, &hsm.WrapRequest{URI: s.cfg.KEK, Service: keyService, Data: []byte{0}}); err != nil {
		return fmt.Errorf("kms: key-encryption key %s: %w", s.cfg.KEK, err)
	}
	return nil
}

// Stop implements node.Service.
func (s *Service) Stop(ctx context.Context) error {
	if s.stop != nil {
		s.stop()
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.cache.Clear()
	return nil
}

// loop rotates the keys whose rotation period has passed.
func (s *Service) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.RotationCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.RotateDue(ctx); err != nil {
			s.env.Logger.Error("kms: scheduled rotation failed", "error", err)
		}
	}
}

// RotateDue rotates every enabled key whose rotation period has passed
// since its last rotation. Two nodes doing it at once rotate a key once: the
// version bump is conditional (Rotate).
func (s *Service) RotateDue(ctx context.Context) error {
	ctx = audit.WithActor(ctx, "system")
	var due []string
	now := s.env.Clock.Now()
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		due = due[:0]
		rows, err := q.Query(ctx, `SELECT name, rotation_period, rotated_at FROM kms_keys
			WHERE rotation_period > 0 AND status = 'enabled'`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name, rotated string
			var period int64
			if err := rows.Scan(&name, &period, &rotated); err != nil {
				return err
			}
			if t, err := parseTime(rotated); err == nil && !now.Before(t.Add(time.Duration(period)*time.Second)) {
				due = append(due, name)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("kms: due keys: %w", err)
	}
	var errs []error
	for _, name := range due {
		if _, err := s.Rotate(ctx, name); err != nil && !errors.Is(err, ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

const timeFormat = time.RFC3339Nano

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) (time.Time, error) { return time.Parse(timeFormat, s) }

// Key describes an application key (never its material).
type Key struct {
	Name                 string    `json:"name"`
	Algorithm            Algorithm `json:"algorithm"`
	Owner                string    `json:"owner"`
	Org                  string    `json:"org"`
	Description          string    `json:"description,omitempty"`
	Status               string    `json:"status"`
	LatestVersion        int       `json:"latest_version"`
	MinDecryptionVersion int       `json:"min_decryption_version"`
	RotationPeriod       string    `json:"rotation_period,omitempty"`
	Created              time.Time `json:"created"`
	Rotated              time.Time `json:"rotated"`
	Versions             []Version `json:"versions,omitempty"`
	period               time.Duration
}

// Version describes one key version.
type Version struct {
	Version   int        `json:"version"`
	Created   time.Time  `json:"created"`
	Destroyed *time.Time `json:"destroyed,omitempty"`
}

const keyColumns = `name, algorithm, owner, org, description, status, latest, min_decrypt, rotation_period, created_at, rotated_at`

func scanKey(sc interface{ Scan(...any) error }) (*Key, error) {
	var k Key
	var period int64
	var created, rotated string
	if err := sc.Scan(&k.Name, &k.Algorithm, &k.Owner, &k.Org, &k.Description, &k.Status, &k.LatestVersion,
		&k.MinDecryptionVersion, &period, &created, &rotated); err != nil {
		return nil, err
	}
	k.period = time.Duration(period) * time.Second
	if period > 0 {
		k.RotationPeriod = k.period.String()
	}
	var err1, err2 error
	k.Created, err1 = parseTime(created)
	k.Rotated, err2 = parseTime(rotated)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.Name, err)
	}
	return &k, nil
}

// Get returns a key with its versions, read in one snapshot on the reader
// pool.
func (s *Service) Get(ctx context.Context, name string) (*Key, error) {
	var k *Key
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		var err error
		k, err = scanKey(q.QueryRow(ctx, `SELECT `+keyColumns+` FROM kms_keys WHERE name = ?`, name))
		if err != nil {
			return err
		}
		rows, err := q.Query(ctx, `SELECT version, created_at, destroyed_at FROM kms_key_versions WHERE name = ? ORDER BY version`, name)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v Version
			var created string
			var destroyed sql.NullString
			if err := rows.Scan(&v.Version, &created, &destroyed); err != nil {
				return err
			}
			v.Created, _ = parseTime(created)
			if destroyed.Valid {
				t, _ := parseTime(destroyed.String)
				v.Destroyed = &t
			}
			k.Versions = append(k.Versions, v)
		}
		return rows.Err()
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: key %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("kms: key %s: %w", name, err)
	}
	return k, nil
}

// List returns every key, without versions.
func (s *Service) List(ctx context.Context) ([]*Key, error) {
	out := []*Key{}
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		out = out[:0]
		rows, err := q.Query(ctx, `SELECT `+keyColumns+` FROM kms_keys ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, err := scanKey(rows)
			if err != nil {
				return err
			}
			out = append(out, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("kms: list: %w", err)
	}
	return out, nil
}

// CreateKeyRequest asks for a new application key.
type CreateKeyRequest struct {
	Name        string    `json:"name"`
	Algorithm   Algorithm `json:"algorithm,omitempty"` // default sm4-gcm
	Owner       string    `json:"owner"`               // the account that uses the key (an application)
	Org         string    `json:"org,omitempty"`
	Description string    `json:"description,omitempty"`
	// RotationPeriod is a Go duration ("720h"); empty rotates by hand only.
	RotationPeriod string `json:"rotation_period,omitempty"`
}

// Validate implements httpx.Validator.
func (r *CreateKeyRequest) Validate() error {
	if r.Algorithm == "" {
		r.Algorithm = SM4GCM
	}
	switch {
	case !nameRE.MatchString(r.Name):
		return errors.New("name must match [a-z0-9][a-z0-9._-]{0,63}")
	case !r.Algorithm.Valid():
		return fmt.Errorf("algorithm %q is not sm4-gcm or aes-256-gcm", r.Algorithm)
	case r.Owner == "" || len(r.Owner) > 256:
		return errors.New("owner (the account that uses the key) is required")
	case len(r.Description) > 1024 || len(r.Org) > 256:
		return errors.New("description or org too long")
	}
	if _, err := parsePeriod(r.RotationPeriod); err != nil {
		return err
	}
	return nil
}

func parsePeriod(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Minute {
		return 0, fmt.Errorf("rotation_period %q must be a duration of at least 1m, such as 720h", s)
	}
	return d, nil
}

// versionAAD binds a wrapped version to its key, version and algorithm, so
// a wrapped blob moved to another row does not unwrap.
func versionAAD(name string, version int, alg Algorithm) []byte {
	return fmt.Appendf(nil, "govtrust/kms/v1|%s|%d|%s", name, version, alg)
}

// newMaterial draws a version's key and returns it wrapped under the KEK.
func (s *Service) newMaterial(ctx context.Context, name string, version int, alg Algorithm) ([]byte, error) {
	key := make([]byte, alg.keyLen())
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("kms: key material: %w", err)
	}
	w, err := s.env.Keys.Wrap(ctx, &hsm.WrapRequest{URI: s.cfg.KEK, Service: keyService, Data: key, AAD: versionAAD(name, version, alg)})
	if err != nil {
		return nil, fmt.Errorf("kms: wrap key %s version %d: %w", name, version, err)
	}
	return w, nil
}

// CreateKey creates an application key with its first version.
func (s *Service) CreateKey(ctx context.Context, req *CreateKeyRequest) (*Key, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	period, _ := parsePeriod(req.RotationPeriod)
	wrapped, err := s.newMaterial(ctx, req.Name, 1, req.Algorithm)
	if err != nil {
		return nil, err
	}
	now := fmtTime(s.env.Clock.Now())
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO kms_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?, 'enabled', 1, 1, ?, ?, ?)`,
			req.Name, string(req.Algorithm), req.Owner, req.Org, req.Description, int64(period/time.Second), now, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kms_key_versions (name, version, wrapped, kek, created_at) VALUES (?, 1, ?, ?, ?)`,
			req.Name, wrapped, s.cfg.KEK, now); err != nil {
			return err
		}
		_, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionCreate, Object: "kms-key/" + req.Name,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"algorithm": string(req.Algorithm), "owner": req.Owner, "org": req.Org, "kek": s.cfg.KEK, "rotation_period": req.RotationPeriod}})
		return err
	})
	if store.IsUniqueViolation(err) {
		return nil, fmt.Errorf("%w: key %q exists", ErrConflict, req.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("kms: create key %s: %w", req.Name, err)
	}
	return s.Get(ctx, req.Name)
}

// Rotate adds a version to a key; the new version encrypts from now on.
func (s *Service) Rotate(ctx context.Context, name string) (*Key, error) {
	k, err := s.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	next := k.LatestVersion + 1
	wrapped, err := s.newMaterial(ctx, name, next, k.Algorithm)
	if err != nil {
		return nil, err
	}
	now := fmtTime(s.env.Clock.Now())
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		// Conditional on the version read: of two concurrent rotations one
		// wins, the other reports a conflict and stores nothing.
		res, err := tx.Exec(ctx, `UPDATE kms_keys SET latest = ?, rotated_at = ? WHERE name = ? AND latest = ?`, next, now, name, k.LatestVersion)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errors.Join(err, fmt.Errorf("%w: key %s was rotated concurrently", ErrConflict, name))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kms_key_versions (name, version, wrapped, kek, created_at) VALUES (?, ?, ?, ?, ?)`,
			name, next, wrapped, s.cfg.KEK, now); err != nil {
			return err
		}
		_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionRotate, Object: "kms-key/" + name,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx), Details: map[string]any{"version": next}})
		return err
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("kms: rotate %s: %w", name, err)
	}
	return s.Get(ctx, name)
}

// UpdateKeyRequest changes a key's settings; nil fields stay.
type UpdateKeyRequest struct {
	Status               *string `json:"status,omitempty"`
	MinDecryptionVersion *int    `json:"min_decryption_version,omitempty"`
	RotationPeriod       *string `json:"rotation_period,omitempty"`
}

// Validate implements httpx.Validator.
func (r *UpdateKeyRequest) Validate() error {
	if r.Status != nil && *r.Status != StatusEnabled && *r.Status != StatusDisabled {
		return fmt.Errorf("status %q is not enabled or disabled", *r.Status)
	}
	if r.RotationPeriod != nil {
		if _, err := parsePeriod(*r.RotationPeriod); err != nil {
			return err
		}
	}
	return nil
}

// Update changes a key's status, minimum decryption version or rotation
// period.
func (s *Service) Update(ctx context.Context, name string, req *UpdateKeyRequest) (*Key, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	k, err := s.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	details := map[string]any{}
	status, minDec, period := k.Status, k.MinDecryptionVersion, k.period
	if req.Status != nil {
		status, details["status"] = *req.Status, *req.Status
	}
	if req.MinDecryptionVersion != nil {
		minDec, details["min_decryption_version"] = *req.MinDecryptionVersion, *req.MinDecryptionVersion
		if minDec < 1 || minDec > k.LatestVersion {
			return nil, fmt.Errorf("%w: min_decryption_version %d must be between 1 and the latest version %d", ErrRequest, minDec, k.LatestVersion)
		}
	}
	if req.RotationPeriod != nil {
		period, _ = parsePeriod(*req.RotationPeriod)
		details["rotation_period"] = *req.RotationPeriod
	}
	err = s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE kms_keys SET status = ?, min_decrypt = ?, rotation_period = ? WHERE name = ?`,
			status, minDec, int64(period/time.Second), name); err != nil {
			return err
		}
		_, err := s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionUpdate, Object: "kms-key/" + name,
			Outcome: audit.Success, RequestID: httpx.RequestID(ctx), Details: details})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kms: update %s: %w", name, err)
	}
	return s.Get(ctx, name)
}

// aead returns the cipher of a key version (version 0: the latest) after
// checking the key's status and the version's: enabled, not destroyed, and
// for decryption not below the minimum decryption version. Each call reads
// the key's row, so a disable, a retirement or a destruction on another node
// takes effect at once; the unwrapped cipher is cached by the exact wrapped
// bytes it came from.
func (s *Service) aead(ctx context.Context, name string, version int, decrypt bool) (cipher.AEAD, Header, error) {
	q := `SELECT k.algorithm, k.status, k.latest, k.min_decrypt, v.version, v.wrapped
		FROM kms_keys k JOIN kms_key_versions v ON v.name = k.name AND v.version = k.latest WHERE k.name = ?`
	args := []any{name}
	if version != 0 {
		q = `SELECT k.algorithm, k.status, k.latest, k.min_decrypt, v.version, v.wrapped
		FROM kms_keys k JOIN kms_key_versions v ON v.name = k.name AND v.version = ? WHERE k.name = ?`
		args = []any{version, name}
	}
	var h Header
	var status string
	var latest, minDec int
	var wrapped []byte
	err := s.env.DB.ReadRow(ctx, q, args...).Scan(&h.Algorithm, &status, &latest, &minDec, &h.Version, &wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		if decrypt {
			// An unknown key or version in a ciphertext header is a
			// tampered or foreign ciphertext.
			return nil, h, ErrAuth
		}
		return nil, h, fmt.Errorf("%w: key %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, h, fmt.Errorf("kms: key %s: %w", name, err)
	}
	h.Name = name
	switch {
	case status != StatusEnabled:
		return nil, h, fmt.Errorf("%w: %s", ErrDisabled, name)
	case wrapped == nil:
		return nil, h, fmt.Errorf("%w: %s version %d", ErrDestroyed, name, h.Version)
	case decrypt && h.Version < minDec:
		return nil, h, fmt.Errorf("%w: %s version %d < %d", ErrRetired, name, h.Version, minDec)
	}
	ck := name + "\x00" + string(wrapped)
	if a, ok := s.cache.Load(ck); ok {
		return a.(cipher.AEAD), h, nil
	}
	key, err := s.env.Keys.Unwrap(ctx, &hsm.WrapRequest{URI: s.cfg.KEK, Service: keyService, Data: wrapped, AAD: versionAAD(name, h.Version, h.Algorithm)})
	if err != nil {
		return nil, h, fmt.Errorf("kms: unwrap %s version %d: %w", name, h.Version, err)
	}
	a, err := newAEAD(h.Algorithm, key)
	clear(key)
	if err != nil {
		return nil, h, err
	}
	s.cache.Store(ck, a)
	return a, h, nil
}

// Encrypt encrypts plain under the key's latest version, binding assoc.
func (s *Service) Encrypt(ctx context.Context, name string, plain, assoc []byte) ([]byte, Header, error) {
	a, h, err := s.aead(ctx, name, 0, false)
	if err != nil {
		return nil, h, err
	}
	ct, err := seal(a, h, plain, assoc)
	return ct, h, err
}

// Decrypt decrypts a ciphertext of key name with assoc. A ciphertext of
// another key, or any altered byte, is ErrAuth and gives no plaintext.
func (s *Service) Decrypt(ctx context.Context, name string, ct, assoc []byte) ([]byte, Header, error) {
	h, hlen, err := ParseHeader(ct)
	if err != nil {
		return nil, h, err
	}
	if h.Name != name {
		return nil, h, ErrAuth
	}
	a, kh, err := s.aead(ctx, name, h.Version, true)
	if err != nil {
		return nil, h, err
	}
	if kh.Algorithm != h.Algorithm {
		return nil, h, ErrAuth
	}
	plain, err := open(a, ct, hlen, assoc)
	return plain, h, err
}

// DataKey returns a fresh data key of bits (128 or 256) in clear and
// encrypted under the key's latest version (generate-data-key).
func (s *Service) DataKey(ctx context.Context, name string, bits int, assoc []byte) (plain, ct []byte, h Header, err error) {
	if bits != 128 && bits != 256 {
		return nil, nil, h, fmt.Errorf("%w: bits must be 128 or 256", ErrRequest)
	}
	plain = make([]byte, bits/8)
	if _, err := rand.Read(plain); err != nil {
		return nil, nil, h, fmt.Errorf("kms: data key: %w", err)
	}
	ct, h, err = s.Encrypt(ctx, name, plain, assoc)
	if err != nil {
		clear(plain)
		return nil, nil, h, err
	}
	return plain, ct, h, nil
}

// Rewrap re-encrypts a ciphertext under the key's latest version; the
// plaintext stays inside the service.
func (s *Service) Rewrap(ctx context.Context, name string, ct, assoc []byte) ([]byte, Header, error) {
	plain, _, err := s.Decrypt(ctx, name, ct, assoc)
	if err != nil {
		return nil, Header{}, err
	}
	defer clear(plain)
	return s.Encrypt(ctx, name, plain, assoc)
}

// DestroyPayload is the canonical request approvers approve for destroying
// a key version.
func DestroyPayload(name string, version int) []byte {
	return fmt.Appendf(nil, `{"kind":%q,"key":%q,"version":%d}`, DestroyKind, name, version)
}

// destroy erases a version's wrapped material in tx (crypto-shredding).
func (s *Service) destroy(ctx context.Context, tx *store.Tx, name string, version int, details map[string]any) error {
	res, err := tx.Exec(ctx, `UPDATE kms_key_versions SET wrapped = NULL, destroyed_at = ? WHERE name = ? AND version = ? AND wrapped IS NOT NULL`,
		fmtTime(s.env.Clock.Now()), name, version)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errors.Join(err, fmt.Errorf("%w: %s version %d is already destroyed", ErrConflict, name, version))
	}
	details["version"] = version
	_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: audit.ActorFrom(ctx), Action: ActionDestroy, Object: "kms-key/" + name,
		Outcome: audit.Success, RequestID: httpx.RequestID(ctx), Details: details})
	return err
}

// forget drops the cached ciphers of a key (after a destruction).
func (s *Service) forget(name string) {
	s.cache.Range(func(k, _ any) bool {
		if strings.HasPrefix(k.(string), name+"\x00") {
			s.cache.Delete(k)
		}
		return true
	})
}
