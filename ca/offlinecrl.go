package ca

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/store"
)

// CRLs of offline CAs on a node. An offline root signs its CRL in a CRL
// ceremony on its own machine (SignOfflineCRL); the node that serves the
// root's CRL URL imports it (ImportOfflineCRL, `govtrust ca import-crl`)
// after checking it: it must verify with the certificate of an offline CA
// the node knows (one of the chains stored with the CAs imported under it,
// ca import --chain), keep the platform's CRL profile (crl.LintOffline),
// be current, and have a number above the last one imported for that CA
// (RFC 5280 §5.2.3). It is then served at /pki/{id}.crl, {id} being the
// last segment of the CRL's issuingDistributionPoint (the URL the CA's
// certificates name), with the offline CA's certificate at /pki/{id}.crt,
// and published to the directory like the node's own CRLs. A CA of the node
// whose certificate the CRL lists is marked revoked in the same
// transaction, as a revocation on the node marks a sub-CA (markRevokedCAs):
// it issues nothing more (the running node's registry poll sees it within
// 5 s) and goes on signing the CRLs and OCSP responses of what it issued.
// The node has no key of the offline CA, so it signs no OCSP responses for
// the offline CA's certificates: relying parties check those on the CRL.

// kindOffline keys the served copies of imported CRLs (servedCRLs).
const kindOffline = "offline"

// offlineSkew is how far in the future an imported CRL's thisUpdate may be
// (the root's clock and the node's differ).
const offlineSkew = 5 * time.Minute

// OfflineCRLImport says what ImportOfflineCRL did.
type OfflineCRLImport struct {
	// CA is the id the CRL is served under, URL its path.
	CA  string `json:"ca"`
	URL string `json:"url"`
	// Number is the CRL number; Issuer the offline CA's subject and
	// IssuerSHA256 its certificate's fingerprint.
	Number       string `json:"number"`
	Issuer       string `json:"issuer"`
	IssuerSHA256 string `json:"issuer_sha256"`
	ThisUpdate   string `json:"this_update"`
	NextUpdate   string `json:"next_update"`
	Entries      int    `json:"entries"`
	// RevokedCAs are the CAs of this node the CRL revokes now.
	RevokedCAs []string `json:"revoked_cas"`
	// Already is set when this very CRL was imported before (nothing
	// changed).
	Already bool `json:"already"`
}

// ImportOfflineCRL imports der, a full CRL of an offline CA, into the node's
// database db (see the comment above). id names the CA; it may be empty
// when the CRL's issuingDistributionPoint names it, and must agree with it
// otherwise. The CRL, the revocation of the node's CAs it lists, the outbox
// event for the directory and the audit record commit together. Importing
// the CRL imported last again changes nothing.
func ImportOfflineCRL(ctx context.Context, db *store.DB, log *audit.Log, der []byte, id string, now time.Time) (*OfflineCRLImport, error) {
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not a CRL: %w", ErrRequest, err)
	}
	sc, err := crl.ParseScope(rl)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	switch {
	case sc.DeltaBase != nil:
		return nil, fmt.Errorf("%w: a delta CRL; an offline CA publishes full CRLs", ErrRequest)
	case sc.IDP != nil && sc.IDP.OnlyUser:
		return nil, fmt.Errorf("%w: the CRL covers only end-entity certificates (onlyContainsUserCerts), not the CA certificates an offline CA revokes", ErrRequest)
	}
	named := idpName(sc.IDP)
	switch {
	case id == "" && named == "":
		return nil, fmt.Errorf("%w: the CRL names no distribution point ending in /{ca}.crl: give the CA id (--id)", ErrRequest)
	case id == "":
		id = named
	case named != "" && id != named:
		return nil, fmt.Errorf("%w: the CRL's distribution point %v names %s, not %s", ErrRequest, sc.IDP.FullName, named, id)
	}
	if !ceremony.ValidID(id) {
		return nil, fmt.Errorf("%w: CA id %q: want lowercase letters, digits and '-'", ErrRequest, id)
	}
	rows, err := readAuthorities(ctx, db)
	if err != nil {
		return nil, err
	}
	issuer, err := offlineIssuer(rows, der, rl, id)
	if err != nil {
		return nil, err
	}
	rl, err = crl.Verify(der, issuer)
	if err == nil {
		err = crl.LintOffline(rl, issuer)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the CRL of %s: %w", ErrPolicy, id, err)
	}
	switch {
	case !rl.Number.IsInt64():
		return nil, fmt.Errorf("%w: CRL number %v above 2^63-1 is not supported", ErrPolicy, rl.Number)
	case rl.ThisUpdate.After(now.Add(offlineSkew)):
		return nil, fmt.Errorf("%w: the CRL of %s is not yet valid: thisUpdate %s is after now (%s)", ErrPolicy, id,
			rl.ThisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case !now.Before(rl.NextUpdate):
		return nil, fmt.Errorf("%w: the CRL of %s expired at %s (nextUpdate); sign a new one in a CRL ceremony", ErrPolicy, id,
			rl.NextUpdate.UTC().Format(time.RFC3339))
	}
	number := rl.Number.Int64()
	listed := map[string]bool{}
	for _, e := range rl.RevokedCertificateEntries {
		listed[serialHex(e.SerialNumber)] = true
	}
	out := &OfflineCRLImport{CA: id, URL: "/pki/" + id + ".crl", Number: rl.Number.String(), Issuer: issuer.Subject.String(),
		IssuerSHA256: ceremony.Fingerprint(issuer.Raw), ThisUpdate: rl.ThisUpdate.UTC().Format(time.RFC3339),
		NextUpdate: rl.NextUpdate.UTC().Format(time.RFC3339), Entries: len(rl.RevokedCertificateEntries), RevokedCAs: []string{}}
	rec := audit.Record{Actor: audit.ActorFrom(ctx), Action: "ca.crl.import", Object: "crl/" + id + "/" + out.Number, Outcome: audit.Success,
		Details: map[string]any{"issuer": out.Issuer, "issuer_sha256": out.IssuerSHA256, "this_update": out.ThisUpdate,
			"next_update": out.NextUpdate, "entries": out.Entries, "sha256": ceremony.Fingerprint(der)}}
	errSame := errors.New("imported already")
	_, err = log.Do(ctx, db, rec, func(tx *store.Tx) error {
		out.RevokedCAs = out.RevokedCAs[:0]
		if err := checkDeltaTwins(ctx, tx, id); err != nil {
			return err
		}
		// Nor the name a rollover of a CA of the node would give a
		// generation: the offline CA would stop that lineage's rollovers.
		if err := checkRolloverName(ctx, tx, id, false); err != nil {
			return err
		}
		var lastNumber int64
		var lastIssuer, lastDER []byte
		err := tx.QueryRow(ctx, "SELECT number, issuer, der FROM ca_offline_crls WHERE ca_id = ? ORDER BY number DESC LIMIT 1", id).
			Scan(&lastNumber, &lastIssuer, &lastDER)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("last CRL of %s: %w", id, err)
		case bytes.Equal(lastDER, der):
			return errSame
		case !bytes.Equal(lastIssuer, issuer.Raw):
			return fmt.Errorf("%w: the CRLs of %s are signed by the certificate with SHA-256 %s, not this one's issuer (SHA-256 %s)",
				ErrConflict, id, ceremony.Fingerprint(lastIssuer), out.IssuerSHA256)
		case number <= lastNumber:
			return fmt.Errorf("%w: CRL number %d of %s is not above %d, the number of the CRL imported last (RFC 5280 §5.2.3): %w",
				ErrConflict, number, id, lastNumber, crl.ErrNumberRegression)
		}
		var other string
		err = tx.QueryRow(ctx, "SELECT ca_id FROM ca_offline_crls WHERE issuer = ? AND ca_id <> ? LIMIT 1", issuer.Raw, id).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("%w: the CRLs of this issuer are served as %s, not %s", ErrConflict, other, id)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("CRLs of the issuer: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ca_offline_crls (ca_id, number, issuer, this_update, next_update, der, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, id, number, issuer.Raw, rl.ThisUpdate.UTC().Format(timeFormat), rl.NextUpdate.UTC().Format(timeFormat),
			der, now.UTC().Format(timeFormat)); err != nil {
			return fmt.Errorf("store the CRL of %s: %w", id, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM ca_offline_crls WHERE ca_id = ? AND number < (SELECT MIN(number) FROM
			(SELECT number FROM ca_offline_crls WHERE ca_id = ? ORDER BY number DESC LIMIT ?) AS kept)`, id, id, crlKeep); err != nil {
			return fmt.Errorf("prune the CRLs of %s: %w", id, err)
		}
		// The CAs of this node the CRL revokes (re-read in the
		// transaction).
		cas, err := loadAuthorities(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range cas {
			if r.status == statusRevoked || len(r.chain) == 0 {
				continue
			}
			chain, err := smx509.ParseCertificates(r.chain)
			if err != nil || len(chain) == 0 || !bytes.Equal(chain[0].Raw, issuer.Raw) {
				continue
			}
			cert, err := smx509.ParseCertificate(r.cert)
			if err != nil {
				return fmt.Errorf("CA %s: certificate: %w", r.id, err)
			}
			if !listed[serialHex(cert.SerialNumber)] {
				continue
			}
			if _, err := tx.Exec(ctx, "UPDATE ca_authorities SET status = ? WHERE id = ?", statusRevoked, r.id); err != nil {
				return fmt.Errorf("mark CA %s revoked: %w", r.id, err)
			}
			out.RevokedCAs = append(out.RevokedCAs, r.id)
		}
		rec.Details["revoked_cas"] = out.RevokedCAs
		insertCRLOutbox(tx, id, kindFull, number, now)
		return nil
	})
	if errors.Is(err, errSame) {
		out.Already = true
		return out, nil
	}
	if err != nil {
		if store.IsUniqueViolation(err) {
			return nil, fmt.Errorf("%w: CRL %d of %s was imported meanwhile: %w", ErrConflict, number, id, err)
		}
		return nil, fmt.Errorf("import the CRL of %s: %w", id, err)
	}
	return out, nil
}

// idpName is the CA id an issuingDistributionPoint names: X for a URI
// whose path ends in /X.crl (the first such URI).
func idpName(idp *crl.IssuingDistributionPoint) string {
	if idp == nil {
		return ""
	}
	for _, u := range idp.FullName {
		p, err := url.Parse(u)
		if err != nil || p.Scheme != "http" && p.Scheme != "https" {
			continue
		}
		if name, ok := strings.CutSuffix(path.Base(p.Path), ".crl"); ok && name != "" {
			return name
		}
	}
	return ""
}

// offlineIssuer returns the certificate of the offline CA that signed the
// CRL der: a certificate of a chain stored with an imported CA (rows). A
// CRL of a CA of the node itself, or one named after it, is refused: the
// node makes those.
func offlineIssuer(rows []*authorityRow, der []byte, rl *smx509.RevocationList, id string) (*smx509.Certificate, error) {
	for _, r := range rows {
		if r.id == id {
			return nil, fmt.Errorf("%w: %s is a CA of this node, which makes its own CRLs", ErrConflict, id)
		}
		c, err := smx509.ParseCertificate(r.cert)
		if err == nil && bytes.Equal(c.RawSubject, rl.RawIssuer) {
			if _, err := crl.Verify(der, c); err == nil {
				return nil, fmt.Errorf("%w: the CRL is signed by CA %s of this node, which makes its own CRLs", ErrPolicy, r.id)
			}
		}
	}
	for _, r := range rows {
		if len(r.chain) == 0 {
			continue
		}
		chain, err := smx509.ParseCertificates(r.chain)
		if err != nil {
			continue
		}
		for _, c := range chain {
			if !bytes.Equal(c.RawSubject, rl.RawIssuer) {
				continue
			}
			if _, err := crl.Verify(der, c); err == nil {
				return c, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: the CRL of %s (number %v) does not verify with the certificate of any offline CA this node knows (the chains given to ca import)",
		ErrPolicy, rl.Issuer, rl.Number)
}

// serveCRLFile serves /pki/{name}.crl: a CRL of a CA of the node, or else
// the imported CRL of an offline CA of that name.
func (s *Service) serveCRLFile(w http.ResponseWriter, r *http.Request, name string) error {
	_, _, err := s.crlTarget(name)
	if !errors.Is(err, ErrNotFound) {
		return s.serveCRL(w, r, name)
	}
	if oerr := s.serveOfflineCRL(w, r, name); !errors.Is(oerr, errNoOffline) {
		return oerr
	}
	return err
}

// errNoOffline: no CRL of an offline CA of that name was imported.
var errNoOffline = fmt.Errorf("%w: no such CA", ErrNotFound)

// serveOfflineCRL serves the newest imported CRL of offline CA id as
// serveCRL serves the node's own: from one copy in memory shared by every
// request (a request reads only the newest number), with the same
// validators, conditional answers and max-age.
func (s *Service) serveOfflineCRL(w http.ResponseWriter, r *http.Request, id string) error {
	c, err := s.servedOfflineCRL(r.Context(), id)
	if err != nil {
		return err
	}
	return s.writeCRL(w, r, c)
}

func (s *Service) servedOfflineCRL(ctx context.Context, id string) (*servedCRL, error) {
	sl := crlStateOf(s).served.slot(id, kindOffline)
	var newest sql.NullInt64
	if err := s.env.DB.ReadRow(ctx, "SELECT MAX(number) FROM ca_offline_crls WHERE ca_id = ?", id).Scan(&newest); err != nil {
		return nil, fmt.Errorf("read CRL number of %s: %w", id, err)
	}
	if !newest.Valid {
		return nil, errNoOffline
	}
	if c := sl.fresh(newest.Int64); c != nil {
		return c, nil
	}
	var this, next string
	var der []byte
	if err := s.env.DB.ReadRow(ctx, "SELECT this_update, next_update, der FROM ca_offline_crls WHERE ca_id = ? AND number = ?", id, newest.Int64).
		Scan(&this, &next, &der); err != nil {
		return nil, fmt.Errorf("read CRL %d of %s: %w", newest.Int64, id, err)
	}
	c := &servedCRL{number: newest.Int64, der: der, etag: `"` + kindOffline + "-" + strconv.FormatInt(newest.Int64, 10) + `"`}
	var err error
	if c.thisUpdate, err = time.Parse(timeFormat, this); err == nil {
		c.nextUpdate, err = time.Parse(timeFormat, next)
	}
	if err != nil {
		return nil, fmt.Errorf("CRL %d of %s: bad time: %w", newest.Int64, id, err)
	}
	c.lastModified = c.thisUpdate.UTC().Format(http.TimeFormat)
	// As newServedCRL: the date tells this CRL from the earlier ones unless
	// one of them has a thisUpdate in the same second or later.
	var clash int
	if err := s.env.DB.ReadRow(ctx, "SELECT COUNT(*) FROM ca_offline_crls WHERE ca_id = ? AND number < ? AND this_update >= ?",
		id, c.number, c.thisUpdate.UTC().Truncate(time.Second).Format("2006-01-02T15:04:05")).Scan(&clash); err != nil {
		return nil, fmt.Errorf("read CRL dates of %s: %w", id, err)
	}
	c.strongDate = clash == 0
	return sl.offer(c), nil
}

// serveOfflineCert serves /pki/{id}.crt for an offline CA whose CRL the
// node imported: its certificate, which the certificates it signed name in
// their AIA caIssuers.
func (s *Service) serveOfflineCert(w http.ResponseWriter, r *http.Request, id string) error {
	var der []byte
	err := s.env.DB.ReadRow(r.Context(), "SELECT issuer FROM ca_offline_crls WHERE ca_id = ? ORDER BY number DESC LIMIT 1", id).Scan(&der)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: no CA %q", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("read the certificate of %s: %w", id, err)
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err = w.Write(der)
	return err
}

// offlineAuthorityRecord is the directory's view of offline CA id (its
// certificate and newest imported CRL), or ErrNotFound.
func offlineAuthorityRecord(ctx context.Context, q store.Querier, id string) (*AuthorityRecord, error) {
	a := &AuthorityRecord{ID: id, Lineage: id, Status: "offline", Generation: 1}
	err := q.QueryRow(ctx, "SELECT issuer, der, number FROM ca_offline_crls WHERE ca_id = ? ORDER BY number DESC LIMIT 1", id).
		Scan(&a.Cert, &a.CRL, &a.CRLNumber)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: CA %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("read the CRL of offline CA %s: %w", id, err)
	}
	return a, nil
}
