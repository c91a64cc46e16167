package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/spf13/cobra"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/fsx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// A backup is a directory: the database (a consistent SQLite copy), the
// data directory's configuration and public trust files, and a manifest.
// Bearer-token files are not copied: they are secrets of their holders, and
// the database keeps only their hashes, so the tokens go on working against
// the restored node.
const (
	backupManifest = "backup.json"
	backupDB       = "govtrust.db"
)

// backupFiles are the data directory's files and directories a backup
// carries besides the database, where they exist.
var backupFiles = []string{
	"govtrust.yaml",
	"policies",
	"trust",
	filepath.Join("bootstrap", "audit-checkpoint.pem"),
	filepath.Join("bootstrap", "tls-ca.pem"),
}

// manifest is backup.json.
type manifest struct {
	Format        int       `json:"format"`
	TakenAt       time.Time `json:"taken_at"`
	Node          string    `json:"node"`
	DatabaseSM3   string    `json:"database_sm3"`
	DatabaseBytes int64     `json:"database_bytes"`
	AuditRecords  int64     `json:"audit_records"`
	AuditHeadSeq  int64     `json:"audit_head_seq"`
	AuditHeadHash string    `json:"audit_head_hash"`
	Files         []string  `json:"files"`
}

func newBackupCmd() *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Copy a data directory's database (consistent, while the node runs) and configuration into a new backup directory",
		Long: `Write a backup of a node's data directory to a new directory: a consistent copy of
the SQLite database taken while the node keeps running (VACUUM INTO: one snapshot, no
writer blocked), the configuration and public trust files, and backup.json (time, SM3 of
the database, audit head). The copy is checked before the command succeeds:
PRAGMA integrity_check and the audit hash chain (and the signed checkpoints).
PostgreSQL is backed up with pg_basebackup or pg_dump instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("give --out DIR, a directory that does not exist yet")
			}
			m, err := backup(cmd.Context(), dataDir, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup of %s taken at %s into %s: database %d bytes, SM3 %s, %d audit records (head seq %d)\n",
				dataDir, m.TakenAt.Format(time.RFC3339), out, m.DatabaseBytes, m.DatabaseSM3, m.AuditRecords, m.AuditHeadSeq)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "./govtrust-data", "data directory of the node")
	cmd.Flags().StringVar(&out, "out", "", "backup directory to create (must not exist)")
	return cmd
}

func backup(ctx context.Context, dataDir, out string) (*manifest, error) {
	cfg, err := offlineConfig(dataDir, "")
	if err != nil {
		return nil, err
	}
	if cfg.Database.URL != "" {
		return nil, fmt.Errorf("database.url is %s: govtrust backup copies the data directory's own SQLite database; back up PostgreSQL with pg_basebackup or pg_dump, and a database elsewhere with its own tools", describeDB(cfg.Database.URL))
	}
	db, _, err := inspectDB(ctx, dataDir, "")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := os.Mkdir(out, 0o700); err != nil {
		return nil, fmt.Errorf("backup directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(out)
		}
	}()
	m := &manifest{Format: 1, TakenAt: time.Now().UTC(), Node: cfg.Node.Name}
	dbPath := filepath.Join(out, backupDB)
	if err := db.Backup(ctx, dbPath); err != nil {
		return nil, err
	}
	for _, f := range backupFiles {
		copied, err := copyTree(filepath.Join(dataDir, f), filepath.Join(out, f))
		if err != nil {
			return nil, err
		}
		if copied {
			m.Files = append(m.Files, filepath.ToSlash(f))
		}
	}
	if m.DatabaseSM3, m.DatabaseBytes, err = fileSM3(dbPath); err != nil {
		return nil, err
	}
	rep, err := checkBackupAudit(ctx, out, dbPath)
	if err != nil {
		return nil, err
	}
	m.AuditRecords, m.AuditHeadSeq, m.AuditHeadHash = rep.Records, rep.HeadSeq, rep.HeadHash
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeSynced(filepath.Join(out, backupManifest), bytes.NewReader(append(b, '\n'))); err != nil {
		return nil, err
	}
	if err := fsx.SyncPath(out); err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// checkBackupAudit verifies the audit hash chain of the database at dbPath
// and, when the backup holds the checkpoint key, its signed checkpoints.
func checkBackupAudit(ctx context.Context, dir, dbPath string) (*audit.Report, error) {
	db, err := store.OpenSnapshot(ctx, dbPath)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rep, err := audit.Verify(ctx, db)
	if err != nil {
		return nil, err
	}
	if !rep.OK() {
		return nil, fmt.Errorf("the audit chain in %s does not verify: %d problems, first: %v", dbPath, len(rep.Problems), rep.Problems[0])
	}
	pem, err := os.ReadFile(filepath.Join(dir, "bootstrap", "audit-checkpoint.pem"))
	if errors.Is(err, fs.ErrNotExist) {
		return rep, nil
	}
	if err != nil {
		return nil, err
	}
	k, err := audit.ParsePublicKeyPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	cps, err := audit.VerifyCheckpoints(ctx, db, []crypto.PublicKey{k}...)
	if err != nil {
		return nil, err
	}
	if !cps.OK() {
		return nil, fmt.Errorf("the audit checkpoints in %s do not verify: %d problems", dbPath, len(cps.Problems))
	}
	return rep, nil
}

func newRestoreCmd() *cobra.Command {
	var from, dataDir, dbURL, takenAt string
	var crlFiles []string
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Put a backup in place as a new data directory",
		Long: `Restore a backup made by govtrust backup into a data directory that has no database
yet, then start the node on it. The backup is checked first: the SM3 of its database
against backup.json, PRAGMA integrity_check, the audit hash chain and checkpoints.
The restore is recorded in the restored database (node_meta restored_at and a
node.restore audit record); at its first start the CA publishes new CRLs for every
CA at once, numbered above any published after the backup was taken.

--crl FILE (repeatable) carries over the revocations of CRLs the CA published before
the loss (from its distribution point, the directory, a relying party's cache): each
CRL must verify with a CA certificate of the backup, and each entry for a certificate
the backup holds as good is revoked again with its date and reason; an entry for a
certificate issued after the backup is kept as a revocation without a certificate, so
the CA's CRLs list it again and OCSP answers revoked.

A PostgreSQL database is restored with PostgreSQL's tools (pg_restore, or
pg_basebackup and recovery); then --db URL [--taken-at TIME] checks its audit chain
and records the restore in it the same way, before any node starts on it.

What happened after the backup was taken is not in it: certificates issued since are
unknown to the restored node (OCSP answers "unknown", never "good"), and revocations
since must be made again. Serials stay unique (64 random bits and more under a
unique constraint), and so do TSA token serials (time and random bits).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dbURL != "" {
				if from != "" {
					return errors.New("give --from (a govtrust backup, SQLite) or --db (a PostgreSQL database restored by its own tools), not both")
				}
				var at time.Time
				if takenAt != "" {
					var err error
					if at, err = time.Parse(time.RFC3339, takenAt); err != nil {
						return fmt.Errorf("--taken-at: %w", err)
					}
				}
				crls, err := readCRLFiles(crlFiles)
				if err != nil {
					return err
				}
				if err := markRestoredDB(cmd.Context(), cmd.OutOrStdout(), dataDir, dbURL, at, crls); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "start the node on it: govtrust up --db URL")
				return nil
			}
			if from == "" {
				return errors.New("give --from BACKUP, a directory written by govtrust backup, or --db URL of a PostgreSQL database restored by its own tools")
			}
			crls, err := readCRLFiles(crlFiles)
			if err != nil {
				return err
			}
			start := time.Now()
			m, err := restore(cmd.Context(), cmd.OutOrStdout(), from, dataDir, crls)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored the backup taken at %s (%d audit records, head seq %d) into %s in %s; start the node on it: govtrust up --data %s\n",
				m.TakenAt.Format(time.RFC3339), m.AuditRecords, m.AuditHeadSeq, dataDir, time.Since(start).Round(time.Millisecond), dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "backup directory written by govtrust backup")
	cmd.Flags().StringVar(&dataDir, "data", "./govtrust-data", "data directory to restore into (no database in it yet); with --db, the data directory whose configuration to read")
	cmd.Flags().StringVar(&dbURL, "db", "", "PostgreSQL database already restored by pg_restore or pg_basebackup: record the restore in it")
	cmd.Flags().StringVar(&takenAt, "taken-at", "", "with --db: when the backup was taken (RFC 3339), for the record")
	cmd.Flags().StringArrayVar(&crlFiles, "crl", nil, "a CRL (DER or PEM) the CA published before the loss: carry its revocations over (repeatable)")
	return cmd
}

// readCRLFiles reads CRL files, DER or PEM, before anything is restored.
func readCRLFiles(files []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--crl: %w", err)
		}
		if p, _ := pem.Decode(b); p != nil {
			if p.Type != "X509 CRL" {
				return nil, fmt.Errorf("--crl %s: PEM block %q, want X509 CRL", f, p.Type)
			}
			b = p.Bytes
		}
		out[f] = b
	}
	return out, nil
}

// carryOver applies the revocations of crls (by file name) to the restored
// database and reports each.
func carryOver(ctx context.Context, w io.Writer, db *store.DB, log *audit.Log, crls map[string][]byte) error {
	for _, f := range slices.Sorted(maps.Keys(crls)) {
		r, err := ca.CarryOverCRL(ctx, db, log, clock.New(), crls[f])
		if err != nil {
			return fmt.Errorf("--crl %s: %w", f, err)
		}
		fmt.Fprintf(w, "CRL %s of %s, number %v: %d revoked again, %d already revoked, %d kept without a certificate (issued after the backup), %d skipped\n",
			f, r.CA, r.Number, len(r.Revoked), r.Already, len(r.WithoutCertificate), len(r.Skipped))
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "  skipped %s\n", s)
		}
	}
	return nil
}

// markRestoredDB records a restore in a PostgreSQL database that
// PostgreSQL's own tools restored, and carries the CRLs over: its audit
// chain must verify first, and every CRL with one of its CAs.
func markRestoredDB(ctx context.Context, w io.Writer, dataDir, dbURL string, takenAt time.Time, crls map[string][]byte) error {
	if !store.IsPostgresURL(dbURL) {
		return errors.New("--db takes a PostgreSQL URL; a SQLite backup is restored with --from")
	}
	db, cfg, err := offlineDB(ctx, dataDir, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := audit.Verify(ctx, db)
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("the restored database's audit chain does not verify: %d problems, first: %v", len(rep.Problems), rep.Problems[0])
	}
	if err := checkCRLs(ctx, db, crls); err != nil {
		return err
	}
	log := audit.New(cfg.Node.Name, clock.New())
	if err := node.MarkRestored(ctx, db, log, cfg.Node.Name, time.Now(), node.Restore{
		TakenAt: takenAt, Source: "PostgreSQL, restored by its own tools", AuditHeadSeq: rep.HeadSeq,
	}); err != nil {
		return err
	}
	fmt.Fprintf(w, "recorded the restore in the database (audit chain of %d records verified, head seq %d)\n", rep.Records, rep.HeadSeq)
	return carryOver(ctx, w, db, log, crls)
}

// checkCRLs requires every CRL to verify with a CA certificate in db.
func checkCRLs(ctx context.Context, db *store.DB, crls map[string][]byte) error {
	for _, f := range slices.Sorted(maps.Keys(crls)) {
		if _, err := ca.CRLIssuer(ctx, db, crls[f]); err != nil {
			return fmt.Errorf("--crl %s: %w", f, err)
		}
	}
	return nil
}

func restore(ctx context.Context, w io.Writer, from, dataDir string, crls map[string][]byte) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(from, backupManifest))
	if err != nil {
		return nil, fmt.Errorf("not a govtrust backup: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", backupManifest, err)
	}
	if m.Format != 1 {
		return nil, fmt.Errorf("%s: format %d, this govtrust reads format 1", backupManifest, m.Format)
	}
	src := filepath.Join(from, backupDB)
	sum, _, err := fileSM3(src)
	if err != nil {
		return nil, err
	}
	if sum != m.DatabaseSM3 {
		return nil, fmt.Errorf("%s: SM3 %s, the manifest says %s: the backup was changed or damaged", src, sum, m.DatabaseSM3)
	}
	if err := store.CheckSQLiteFile(ctx, src); err != nil {
		return nil, err
	}
	if _, err := checkBackupAudit(ctx, from, src); err != nil {
		return nil, err
	}
	if err := func() error {
		snap, err := store.OpenSnapshot(ctx, src)
		if err != nil {
			return err
		}
		defer snap.Close()
		return checkCRLs(ctx, snap, crls)
	}(); err != nil {
		return nil, err
	}
	// The manifest is not signed: it may name only the files a backup
	// carries, never a path of its own choosing.
	for _, f := range m.Files {
		if !slices.Contains(backupFiles, filepath.FromSlash(f)) {
			return nil, fmt.Errorf("%s names %q, which is not a file govtrust backs up", backupManifest, f)
		}
	}
	if cfg, err := offlineConfig(from, ""); err != nil {
		return nil, fmt.Errorf("the backup's configuration: %w", err)
	} else if cfg.Database.URL != "" {
		return nil, fmt.Errorf("the backup's configuration names database.url %s; govtrust restore puts the database in the data directory", describeDB(cfg.Database.URL))
	}
	dst := filepath.Join(dataDir, backupDB)
	for _, p := range []string{dst, dst + "-wal"} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s exists: restore into a data directory without a database (move the old one away first)", p)
		}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if _, err := copyTree(filepath.Join(from, filepath.FromSlash(f)), filepath.Join(dataDir, filepath.FromSlash(f))); err != nil {
			return nil, err
		}
	}
	// The database goes in last, under a temporary name first, so that a
	// restore cut short leaves no database a node would start on.
	tmp := dst + ".restore"
	if _, err := copyTree(src, tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, err
	}
	if err := fsx.SyncPath(dataDir); err != nil {
		return nil, err
	}
	db, cfg, err := offlineDB(ctx, dataDir, "")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	log := audit.New(cfg.Node.Name, clock.New())
	if err := node.MarkRestored(ctx, db, log, cfg.Node.Name, time.Now(), node.Restore{
		TakenAt: m.TakenAt, Source: from, DatabaseSM3: m.DatabaseSM3, AuditHeadSeq: m.AuditHeadSeq,
	}); err != nil {
		return nil, err
	}
	return &m, carryOver(ctx, w, db, log, crls)
}

// describeDB names a database URL without what may follow a host.
func describeDB(u string) string {
	if store.IsPostgresURL(u) {
		return "PostgreSQL"
	}
	return fmt.Sprintf("%q", u)
}

// copyTree copies a file, or a directory and what is in it, from src to dst
// with owner-only modes and synced contents. A missing src copies nothing
// and reports false.
func copyTree(src, dst string) (bool, error) {
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return false, err
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			return false, fmt.Errorf("%s: not a regular file", src)
		}
		return true, copyFile(src, dst)
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type().IsRegular():
			return copyFile(p, target)
		default:
			return fmt.Errorf("%s: not a regular file", p)
		}
	})
	return true, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeSynced(dst, in)
}

// writeSynced writes what r holds to a new file at path (owner-only) and
// syncs it.
func writeSynced(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fileSM3 returns the hex SM3 and the size of a file.
func fileSM3(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sm3.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
