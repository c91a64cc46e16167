package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/store"
)

// ActionCheckpoint is the action of the record appended to the chain with
// every checkpoint. Its details carry the covered "seq" and "head_hash".
const ActionCheckpoint = "audit.checkpoint"

// DefaultCheckpointInterval is the period Run uses when given none.
const DefaultCheckpointInterval = 5 * time.Minute

// defaultFinalTimeout bounds the shutdown checkpoint. It stays well inside
// the 5 s a node has to exit after SIGTERM.
const defaultFinalTimeout = 3 * time.Second

// Errors of checkpointing and checkpoint verification.
var (
	ErrUnsupportedKey = errors.New("audit: checkpoint key must be SM2 or ECDSA P-256")
	ErrNoTrustedKey   = errors.New("audit: no trusted checkpoint key")
)

// Checkpoint is a signed statement that the audit chain's record at Seq has
// hash HeadHash. The signature covers Seq, HeadHash, Time, Node and KeyURI
// (see checkpointMessage); Algorithm and KeyFingerprint are for display.
type Checkpoint struct {
	ID             int64         `json:"id"`
	Seq            int64         `json:"seq"`
	HeadHash       []byte        `json:"-"`
	Time           time.Time     `json:"-"`
	Node           string        `json:"node"`
	KeyURI         string        `json:"key_uri"`
	Algorithm      hsm.Algorithm `json:"algorithm"`
	KeyFingerprint string        `json:"key_fingerprint"` // hex SM3 of the SubjectPublicKeyInfo
	Signature      []byte        `json:"signature"`       // ASN.1 DER, base64 in JSON

	// time is the stored (and signed) time string, kept so verification
	// checks exactly the bytes that were signed.
	time string
}

// MarshalJSON writes the head hash in hex and the time in RFC 3339.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	type plain Checkpoint
	t := c.time
	if t == "" {
		t = c.Time.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(struct {
		plain
		HeadHash string `json:"head_hash"`
		Time     string `json:"time"`
	}{plain(c), hex.EncodeToString(c.HeadHash), t})
}

// checkpointMessage is the byte string a checkpoint signs: a version tag,
// then each field as a uvarint length and its bytes, like canonical. The
// time is the exact stored string.
func checkpointMessage(seq int64, headHash []byte, tm, node, keyURI string) []byte {
	var b bytes.Buffer
	b.WriteString("govtrust-audit-checkpoint-v1")
	for _, f := range []string{strconv.FormatInt(seq, 10), hex.EncodeToString(headHash), tm, node, keyURI} {
		b.Write(binary.AppendUvarint(nil, uint64(len(f))))
		b.WriteString(f)
	}
	return b.Bytes()
}

// keyAlgorithm names the algorithm of a checkpoint public key: SM2 (GB/T
// 32918.2, the default) or ECDSA P-256.
func keyAlgorithm(pub crypto.PublicKey) (hsm.Algorithm, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	switch {
	case !ok:
		return "", ErrUnsupportedKey
	case sm2.IsSM2PublicKey(k):
		return hsm.SM2, nil
	case k.Curve == elliptic.P256():
		return hsm.ECDSAP256, nil
	}
	return "", ErrUnsupportedKey
}

// verifySignature checks sig over msg under pub. The algorithm comes from the
// trusted key, never from the stored row.
func verifySignature(pub crypto.PublicKey, msg, sig []byte) bool {
	alg, err := keyAlgorithm(pub)
	if err != nil {
		return false
	}
	k := pub.(*ecdsa.PublicKey)
	if alg == hsm.SM2 {
		// e = SM3(Z || msg) with the default user ID (GB/T 32918.2 §6.1,
		// GM/T 0009 §10), matching sm2.DefaultSM2SignerOpts.
		return sm2.VerifyASN1WithSM2(k, nil, msg, sig)
	}
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(k, d[:], sig)
}

// KeyFingerprint returns the hex SM3 hash of pub's SubjectPublicKeyInfo DER,
// the fingerprint stored with each checkpoint and shown to auditors.
func KeyFingerprint(pub crypto.PublicKey) (string, error) {
	der, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("audit: key fingerprint: %w", err)
	}
	sum := sm3.Sum(der)
	return hex.EncodeToString(sum[:]), nil
}

// MarshalPublicKeyPEM encodes a checkpoint public key as a PEM "PUBLIC KEY"
// block (SubjectPublicKeyInfo), the form ParsePublicKeyPEM reads.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if _, err := keyAlgorithm(pub); err != nil {
		return nil, err
	}
	der, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("audit: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM reads the first PEM "PUBLIC KEY" block of b as an SM2 or
// ECDSA P-256 public key.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, errors.New("audit: no PEM PUBLIC KEY block")
		}
		if blk.Type != "PUBLIC KEY" {
			continue
		}
		pub, err := smx509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: parse public key: %w", err)
		}
		if _, err := keyAlgorithm(pub); err != nil {
			return nil, err
		}
		return pub, nil
	}
}

// Checkpointer signs the audit chain head with the platform's audit key.
// Its methods are safe for concurrent use.
type Checkpointer struct {
	// Logger receives the errors of Run (nil: slog.Default()).
	Logger *slog.Logger
	// FinalTimeout bounds the checkpoint Run writes when its context ends
	// (zero: 3 s).
	FinalTimeout time.Duration

	db          *store.DB
	log         *Log
	signer      crypto.Signer
	keyURI      string
	clock       clock.Clock
	alg         hsm.Algorithm
	fingerprint string
	mu          sync.Mutex // one checkpoint at a time
}

// NewCheckpointer returns a Checkpointer that signs with signer (an SM2 or
// ECDSA P-256 key, normally from hsm.KeyManager.Signer for a key of service
// "audit" and usage sign) and names the key keyURI in its checkpoints. Its
// "audit.checkpoint" records are appended through log. A nil clk is the
// system clock.
func NewCheckpointer(db *store.DB, log *Log, signer crypto.Signer, keyURI string, clk clock.Clock) (*Checkpointer, error) {
	if db == nil || log == nil || signer == nil || keyURI == "" {
		return nil, errors.New("audit: checkpointer needs a database, a log, a signer and a key URI")
	}
	alg, err := keyAlgorithm(signer.Public())
	if err != nil {
		return nil, err
	}
	fp, err := KeyFingerprint(signer.Public())
	if err != nil {
		return nil, err
	}
	if clk == nil {
		clk = clock.New()
	}
	return &Checkpointer{db: db, log: log, signer: signer, keyURI: keyURI, clock: clk, alg: alg, fingerprint: fp}, nil
}

// errAlreadyCheckpointed rolls back a checkpoint whose head another writer
// checkpointed with the same key in the meantime.
var errAlreadyCheckpointed = errors.New("audit: head already checkpointed")

// Checkpoint signs the current chain head and stores the checkpoint together
// with an "audit.checkpoint" record, in one transaction. That record itself
// advances the head by one; the next checkpoint covers it. When nothing but
// checkpoint records was appended since this key's last checkpoint, it
// returns that checkpoint and writes nothing, so an idle node does not
// checkpoint its own checkpoints forever.
func (c *Checkpointer) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	var head int64
	var headHash []byte
	var last *Checkpoint
	var fresh int64
	err := c.db.Read(ctx, func(q store.Querier) error {
		last, fresh = nil, 0
		if err := q.QueryRow(ctx, "SELECT seq, hash FROM audit_head WHERE id = 1").Scan(&head, &headHash); err != nil {
			return fmt.Errorf("audit: checkpoint: read head: %w", err)
		}
		var err error
		if last, err = checkpointAt(ctx, q, c.keyURI, -1); err != nil {
			return err
		}
		if last == nil || last.Seq > head {
			return nil
		}
		if err := q.QueryRow(ctx, "SELECT COUNT(*) FROM audit_log WHERE seq > ? AND action <> ?", last.Seq, ActionCheckpoint).Scan(&fresh); err != nil {
			return fmt.Errorf("audit: checkpoint: count new records: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if last != nil && last.Seq <= head && fresh == 0 {
		return last, nil
	}

	now := c.clock.Now().UTC()
	cp := &Checkpoint{Seq: head, HeadHash: headHash, Time: now, Node: c.log.node, KeyURI: c.keyURI,
		Algorithm: c.alg, KeyFingerprint: c.fingerprint, time: now.Format(time.RFC3339Nano)}
	// Sign outside any transaction: an HSM may take its time, and on SQLite a
	// write transaction holds the only writer connection.
	if cp.Signature, err = c.sign(checkpointMessage(cp.Seq, cp.HeadHash, cp.time, cp.Node, cp.KeyURI)); err != nil {
		return nil, err
	}

	err = c.db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := c.log.Append(ctx, tx, Record{Actor: "system", Action: ActionCheckpoint, Object: c.keyURI, Outcome: Success,
			Details: map[string]any{"seq": cp.Seq, "head_hash": hex.EncodeToString(cp.HeadHash)}}); err != nil {
			return err
		}
		// Append holds the head (SELECT ... FOR UPDATE on PostgreSQL, the
		// single writer on SQLite), so a checkpoint of this head committed by
		// a concurrent writer with the same key is visible here.
		var n int
		if err := tx.QueryRow(ctx, "SELECT COUNT(*) FROM audit_checkpoints WHERE key_uri = ? AND seq = ?", cp.KeyURI, cp.Seq).Scan(&n); err != nil {
			return fmt.Errorf("audit: checkpoint: %w", err)
		}
		if n > 0 {
			return errAlreadyCheckpointed
		}
		if err := tx.QueryRow(ctx, `INSERT INTO audit_checkpoints
			(seq, head_hash, time, node, key_uri, algorithm, key_fingerprint, signature)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			cp.Seq, cp.HeadHash, cp.time, cp.Node, cp.KeyURI, string(cp.Algorithm), cp.KeyFingerprint, cp.Signature).Scan(&cp.ID); err != nil {
			return fmt.Errorf("audit: store checkpoint at seq %d: %w", cp.Seq, err)
		}
		return nil
	})
	if errors.Is(err, errAlreadyCheckpointed) {
		var other *Checkpoint
		err = c.db.Read(ctx, func(q store.Querier) error {
			var err error
			other, err = checkpointAt(ctx, q, c.keyURI, cp.Seq)
			return err
		})
		if err == nil && other == nil {
			err = fmt.Errorf("audit: checkpoint at seq %d vanished", cp.Seq)
		}
		return other, err
	}
	if err != nil {
		return nil, err
	}
	return cp, nil
}

// sign signs msg and checks the signature under the signer's own public key
// before it is stored, so a faulty token cannot leave checkpoints that will
// never verify.
func (c *Checkpointer) sign(msg []byte) ([]byte, error) {
	var sig []byte
	var err error
	if c.alg == hsm.SM2 {
		// gmsm's signer contract (package hsm): with DefaultSM2SignerOpts the
		// signer takes the message and computes Z and e itself.
		sig, err = c.signer.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
	} else {
		d := sha256.Sum256(msg)
		sig, err = c.signer.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint with %s: %w", c.keyURI, err)
	}
	if !verifySignature(c.signer.Public(), msg, sig) {
		return nil, fmt.Errorf("audit: checkpoint signature by %s does not verify under its own public key", c.keyURI)
	}
	return sig, nil
}

// Run writes a checkpoint every interval (DefaultCheckpointInterval when
// every <= 0) until ctx is done, then a final one bounded by FinalTimeout,
// and returns. Errors are logged, not returned: a missed checkpoint leaves a
// longer unprotected tail but breaks nothing. Cancel ctx after the node's
// last audit record (node.stop) and wait for Run to return before closing the
// database, so the final checkpoint covers the whole run.
func (c *Checkpointer) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultCheckpointInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d := c.FinalTimeout
			if d <= 0 {
				d = defaultFinalTimeout
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
			defer cancel()
			if _, err := c.Checkpoint(fctx); err != nil {
				c.logger().Error("final audit checkpoint failed", "key", c.keyURI, "error", err)
			}
			return
		case <-t.C:
			if _, err := c.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				c.logger().Error("audit checkpoint failed", "key", c.keyURI, "error", err)
			}
		}
	}
}

func (c *Checkpointer) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

const selectCheckpoints = `SELECT id, seq, head_hash, time, node, key_uri, algorithm, key_fingerprint, signature
	FROM audit_checkpoints`

func scanCheckpoint(s interface{ Scan(...any) error }, extra ...any) (*Checkpoint, error) {
	var c Checkpoint
	var alg string
	dest := append([]any{&c.ID, &c.Seq, &c.HeadHash, &c.time, &c.Node, &c.KeyURI, &alg, &c.KeyFingerprint, &c.Signature}, extra...)
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	c.Algorithm = hsm.Algorithm(alg)
	c.Time, _ = time.Parse(time.RFC3339Nano, c.time) // display only; the signature covers the string
	return &c, nil
}

// checkpointAt reads keyURI's checkpoint at seq, or its newest one when seq
// is negative. It returns nil when there is none.
func checkpointAt(ctx context.Context, q store.Querier, keyURI string, seq int64) (*Checkpoint, error) {
	var row *sql.Row
	if seq < 0 {
		row = q.QueryRow(ctx, selectCheckpoints+" WHERE key_uri = ? ORDER BY seq DESC LIMIT 1", keyURI)
	} else {
		row = q.QueryRow(ctx, selectCheckpoints+" WHERE key_uri = ? AND seq = ?", keyURI, seq)
	}
	c, err := scanCheckpoint(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoint: %w", err)
	}
	return c, nil
}

// CheckpointProblem is one checkpoint that does not vouch for the chain.
type CheckpointProblem struct {
	Seq  int64  `json:"seq"`  // the chain sequence number the checkpoint covers
	ID   int64  `json:"id"`   // the checkpoint's row id (0 when the row is missing)
	Kind string `json:"kind"` // signature, rewritten, missing, deleted
	Text string `json:"text"`
}

func (p CheckpointProblem) String() string {
	return fmt.Sprintf("checkpoint at seq %d: %s", p.Seq, p.Text)
}

// CheckpointReport is the result of VerifyCheckpoints.
type CheckpointReport struct {
	Checkpoints int64 `json:"checkpoints"` // checkpoint rows examined
	Valid       int64 `json:"valid"`       // rows whose signature and chain hash both check
	// NewestSeq and NewestTime describe the newest valid checkpoint (zero
	// when there is none); Unprotected counts the records after it, up to
	// LastSeq, which no checkpoint vouches for yet.
	NewestSeq   int64               `json:"newest_seq"`
	NewestTime  time.Time           `json:"newest_time,omitzero"`
	LastSeq     int64               `json:"last_seq"`
	Unprotected int64               `json:"unprotected"`
	TrustedKeys []string            `json:"trusted_keys"` // fingerprints of the keys checked against
	Problems    []CheckpointProblem `json:"problems"`
}

// OK reports whether every checkpoint verified.
func (r *CheckpointReport) OK() bool { return len(r.Problems) == 0 }

// VerifyCheckpoints checks every stored checkpoint against the chain. A
// checkpoint is valid when its signature verifies under one of the trusted
// public keys (SM2 or ECDSA P-256) and the chain's record at its sequence
// number exists and has exactly its head hash. The trusted keys must come
// from outside the database (a PEM file the node wrote at first run, kept by
// the auditor): whoever can rewrite the database could also replace a key
// stored there. It also names a checkpoint whose row is gone while its
// "audit.checkpoint" record remains in the chain.
//
// VerifyCheckpoints does not walk the hash chain; run Verify as well. A
// rewrite after the newest checkpoint, or one that also removes every
// checkpoint and its record, is beyond what in-database checkpoints can show:
// compare NewestSeq with a checkpoint kept elsewhere.
func VerifyCheckpoints(ctx context.Context, db *store.DB, trusted ...crypto.PublicKey) (*CheckpointReport, error) {
	if len(trusted) == 0 {
		return nil, ErrNoTrustedKey
	}
	rep := &CheckpointReport{}
	for _, k := range trusted {
		if _, err := keyAlgorithm(k); err != nil {
			return nil, err
		}
		fp, err := KeyFingerprint(k)
		if err != nil {
			return nil, err
		}
		rep.TrustedKeys = append(rep.TrustedKeys, fp)
	}
	zero := make([]byte, 32)
	err := db.Read(ctx, func(q store.Querier) error {
		*rep = CheckpointReport{TrustedKeys: rep.TrustedKeys}
		if err := q.QueryRow(ctx, "SELECT COALESCE(MAX(seq), 0) FROM audit_log").Scan(&rep.LastSeq); err != nil {
			return fmt.Errorf("audit: verify checkpoints: %w", err)
		}
		rows, err := q.Query(ctx, `SELECT c.id, c.seq, c.head_hash, c.time, c.node, c.key_uri, c.algorithm,
			c.key_fingerprint, c.signature, l.hash
			FROM audit_checkpoints c LEFT JOIN audit_log l ON l.seq = c.seq ORDER BY c.seq, c.id`)
		if err != nil {
			return fmt.Errorf("audit: verify checkpoints: %w", err)
		}
		defer rows.Close()
		stored := map[string]bool{} // key URI + seq of every row, for the cross-check below
		for rows.Next() {
			var chainHash []byte
			c, err := scanCheckpoint(rows, &chainHash)
			if err != nil {
				return fmt.Errorf("audit: verify checkpoints: scan: %w", err)
			}
			rep.Checkpoints++
			stored[c.KeyURI+"\x00"+strconv.FormatInt(c.Seq, 10)] = true
			ok := true
			problem := func(kind, text string) {
				rep.Problems = append(rep.Problems, CheckpointProblem{Seq: c.Seq, ID: c.ID, Kind: kind, Text: text})
				ok = false
			}
			msg := checkpointMessage(c.Seq, c.HeadHash, c.time, c.Node, c.KeyURI)
			signed := false
			for _, k := range trusted {
				if verifySignature(k, msg, c.Signature) {
					signed = true
					break
				}
			}
			if !signed {
				problem("signature", "signature invalid")
			}
			switch {
			case c.Seq == 0:
				// A checkpoint of the empty chain: the head hash is the
				// chain's initial value.
				if !bytes.Equal(c.HeadHash, zero) {
					problem("rewritten", "chain hash differs (the chain was rewritten)")
				}
			case chainHash == nil:
				problem("missing", "record missing")
			case !bytes.Equal(chainHash, c.HeadHash):
				problem("rewritten", "chain hash differs (the chain was rewritten)")
			}
			if ok {
				rep.Valid++
				if c.Seq >= rep.NewestSeq {
					rep.NewestSeq, rep.NewestTime = c.Seq, c.Time
				}
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("audit: verify checkpoints: %w", err)
		}
		rows.Close()

		// Every checkpoint was stored with its record in one transaction, so
		// a record without its row means the row was deleted.
		recs, err := q.Query(ctx, "SELECT seq, object, details FROM audit_log WHERE action = ? ORDER BY seq", ActionCheckpoint)
		if err != nil {
			return fmt.Errorf("audit: verify checkpoints: %w", err)
		}
		defer recs.Close()
		for recs.Next() {
			var seq int64
			var object, details string
			if err := recs.Scan(&seq, &object, &details); err != nil {
				return fmt.Errorf("audit: verify checkpoints: scan: %w", err)
			}
			var d struct {
				Seq *int64 `json:"seq"`
			}
			if err := json.Unmarshal([]byte(details), &d); err != nil || d.Seq == nil {
				continue // an edited record: Verify names it
			}
			if !stored[object+"\x00"+strconv.FormatInt(*d.Seq, 10)] {
				rep.Problems = append(rep.Problems, CheckpointProblem{Seq: *d.Seq, Kind: "deleted",
					Text: fmt.Sprintf("checkpoint row missing (deleted?); its audit.checkpoint record is seq %d", seq)})
			}
		}
		return recs.Err()
	})
	if err != nil {
		return nil, err
	}
	if rep.LastSeq > rep.NewestSeq {
		rep.Unprotected = rep.LastSeq - rep.NewestSeq
	}
	return rep, nil
}

// ExportCheckpoints writes the checkpoints covering sequence numbers above
// `after` as JSON lines, in chain order: id, seq, head_hash (hex), time,
// node, key_uri, algorithm, key_fingerprint and signature (base64 DER).
func ExportCheckpoints(ctx context.Context, db *store.DB, after int64, w io.Writer) (int64, error) {
	var n int64
	err := db.Read(ctx, func(q store.Querier) error {
		if n > 0 {
			// A retried read would send the lines already sent again.
			return fmt.Errorf("audit: export checkpoints: read failed after %d lines were written; resume with after", n)
		}
		rows, err := q.Query(ctx, selectCheckpoints+" WHERE seq > ? ORDER BY seq, id", after)
		if err != nil {
			return fmt.Errorf("audit: export checkpoints: %w", err)
		}
		defer rows.Close()
		enc := json.NewEncoder(w)
		for rows.Next() {
			c, err := scanCheckpoint(rows)
			if err != nil {
				return fmt.Errorf("audit: export checkpoints: %w", err)
			}
			if err := enc.Encode(c); err != nil {
				return fmt.Errorf("audit: export checkpoints: %w", err)
			}
			n++
		}
		return rows.Err()
	})
	return n, err
}
