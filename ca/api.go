package ca

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

// moreAPIRoutes registers the API routes beyond issuance and revocation:
// the profiles offered and forced CRL generation.
func (s *Service) moreAPIRoutes(m *authz.Mux) {
	// Profiles are read in the caller's organisation, as the CA list is:
	// every RA may read them, for no organisation's data is in them.
	profRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "ca-profile", ID: "all", Org: s.principalOrg(r)}, nil
	}
	crlRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "crl", ID: r.PathValue("ca")}, nil
	}
	m.Handle("GET /api/v1/ca/profiles", authz.Rule{Action: "ca.profile.read", Resource: profRes}, s.listProfiles)
	m.Handle("POST /api/v1/ca/{ca}/crls", authz.Rule{Action: "ca.crl.generate", Resource: crlRes}, s.forceCRL)
}

// ProfileInfo describes a certificate profile in GET /api/v1/ca/profiles.
type ProfileInfo struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	Description string   `json:"description"`
	Purpose     string   `json:"purpose"`
	KeySource   string   `json:"key_source"`
	KeyTypes    []string `json:"key_types"`
	// Validity is the longest validity, in whole days ("365d") or as a Go
	// duration.
	Validity    string   `json:"validity"`
	KeyUsage    []string `json:"key_usage"`
	ExtKeyUsage []string `json:"ext_key_usage"`
	// CA is set for profiles that make CA certificates; PathLen is their
	// pathLenConstraint (absent: unconstrained).
	CA      bool `json:"ca"`
	PathLen *int `json:"path_len,omitempty"`
	// Internal is set for profiles only the platform's own services
	// obtain; POST /api/v1/ca/{ca}/certificates refuses them.
	Internal bool `json:"internal"`
}

// Profiles describes the built-in profiles, by name.
func Profiles() []ProfileInfo { return profileInfos(profile.Builtin()) }

func profileInfos(ps map[string]*profile.Profile) []ProfileInfo {
	out := make([]ProfileInfo, 0, len(ps))
	for _, p := range ps {
		v, _ := p.Validity.MarshalYAML()
		pi := ProfileInfo{Name: p.Name, Version: p.Version, Description: p.Description, Purpose: string(p.Purpose),
			KeySource: p.KeySource, Validity: fmt.Sprint(v), KeyUsage: nonNil(p.KeyUsage), ExtKeyUsage: nonNil(p.ExtKeyUsage),
			KeyTypes: []string{}, Internal: p.Internal}
		for _, k := range p.KeyTypes {
			pi.KeyTypes = append(pi.KeyTypes, string(k))
		}
		if p.CA != nil {
			pi.CA, pi.PathLen = true, p.CA.PathLen
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Service) listProfiles(w http.ResponseWriter, r *http.Request) error {
	return httpx.WriteJSON(w, http.StatusOK, map[string]any{"profiles": profileInfos(s.profiles)})
}

// CRLInfo describes a stored CRL.
type CRLInfo struct {
	CA         string `json:"ca"`
	Number     int64  `json:"number"`
	ThisUpdate string `json:"this_update"`
	NextUpdate string `json:"next_update"`
	// URL is the CRL's path on the plain HTTP listener.
	URL  string `json:"url"`
	Size int    `json:"size"`
}

func crlInfo(caID string, c *storedCRL) *CRLInfo {
	return &CRLInfo{CA: caID, Number: c.number, ThisUpdate: c.thisUpdate.UTC().Format(time.RFC3339),
		NextUpdate: c.nextUpdate.UTC().Format(time.RFC3339), URL: "/pki/" + caID + ".crl", Size: len(c.der)}
}

// forceCRL handles POST /api/v1/ca/{ca}/crls: a CA operator has a new full
// CRL made now (after revocations made elsewhere, or before a planned
// outage), numbered and stored like the scheduled ones, and then a delta
// (generatePair), so that the served delta is not left numbered below the
// new full CRL with older content. The full CRL's own record is written by
// the system; this one, in the same transaction, names who asked. The
// answer describes the full CRL.
func (s *Service) forceCRL(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	a, err := s.authority(r.PathValue("ca"))
	if err != nil {
		return err
	}
	p := authz.PrincipalFrom(ctx)
	if p == nil {
		return errors.New("crl: no principal in context")
	}
	c, err := s.generatePair(ctx, a, false, func(c *storedCRL) audit.Record {
		info := crlInfo(a.id, c)
		return audit.Record{Actor: p.Actor(), Action: "ca.crl.generate",
			Object: "crl/" + a.id + "/" + strconv.FormatInt(c.number, 10), Outcome: audit.Success, RequestID: httpx.RequestID(ctx),
			Details: map[string]any{"forced": true, "this_update": info.ThisUpdate, "next_update": info.NextUpdate}}
	})
	if err != nil {
		s.setStale(a.id, true)
		if c == nil {
			return err
		}
		// The full CRL is published, with the operator's audit record: it
		// is the answer; its delta is retried at the next tick (stale).
		s.env.Logger.Error("forced CRL published; its delta failed and is retried at the next tick", "ca", a.id, "number", c.number, "error", err)
		return httpx.WriteJSON(w, http.StatusCreated, crlInfo(a.id, c))
	}
	s.setStale(a.id, false)
	return httpx.WriteJSON(w, http.StatusCreated, crlInfo(a.id, c))
}

// Read-only access to a CA database for offline tools (`govtrust ca list,
// show, crl --data DIR`), which must work on a stopped node and a forensic
// copy: they only read.

// Authorities lists the CAs recorded in db, the built-in hierarchies first.
func Authorities(ctx context.Context, db *store.DB, now time.Time) ([]CAInfo, error) {
	var out []CAInfo
	err := db.Read(ctx, func(q store.Querier) error {
		out = nil
		rows, err := q.Query(ctx, "SELECT id, algorithm, parent, cert FROM ca_authorities ORDER BY id")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ci CAInfo
			var der []byte
			if err := rows.Scan(&ci.ID, &ci.Algorithm, &ci.Parent, &der); err != nil {
				return err
			}
			cert, err := smx509.ParseCertificate(der)
			if err != nil {
				return fmt.Errorf("CA %s: certificate: %w", ci.ID, err)
			}
			ci.Subject, ci.NotAfter, ci.Status = cert.Subject.String(), cert.NotAfter.UTC().Format(timeFormat), "active"
			if now.After(cert.NotAfter) {
				ci.Status = "expired"
			}
			out = append(out, ci)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list CAs: %w", err)
	}
	rank := func(id string) int {
		for i, sp := range hierarchies {
			if sp.id == id {
				return i
			}
		}
		return len(hierarchies)
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i].ID) < rank(out[j].ID) })
	return out, nil
}

// Certificate returns certificate serial (hex) of caID as the API shows it:
// caID may name any generation of the lineage that issued it, as in
// GET /api/v1/ca/{ca}/certificates/{serial} (findCert), and CA is the
// generation that did.
func Certificate(ctx context.Context, db *store.DB, caID, serial string) (*CertificateResponse, error) {
	n, err := normalSerial(serial)
	if err != nil {
		return nil, err
	}
	rows, err := readAuthorities(ctx, db)
	if err != nil {
		return nil, err
	}
	// The generation named first, then the others of its lineage, newest
	// first (registry.lineageOf).
	var named *authorityRow
	for _, r := range rows {
		if r.id == caID {
			named = r
		}
	}
	if named == nil {
		return nil, fmt.Errorf("%w: no CA %q", ErrNotFound, caID)
	}
	gens := []string{named.id}
	for i := len(rows) - 1; i >= 0; i-- {
		if r := rows[i]; r.lineage == named.lineage && r != named {
			gens = append(gens, r.id)
		}
	}
	var c *certRow
	var issuer string
	for _, g := range gens {
		c, err = certBySerial(ctx, db, g, n)
		if err == nil {
			issuer = g
			break
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	if c == nil {
		return nil, fmt.Errorf("%w: certificate %s/%s", ErrNotFound, caID, n)
	}
	out := &CertificateResponse{CA: issuer, Serial: c.serial, Certificate: pemCert(c.der), Status: c.status,
		Profile: c.profile, Subject: c.subject, NotBefore: c.notBefore.Format(timeFormat), NotAfter: c.notAfter.Format(timeFormat)}
	if c.status == "revoked" {
		out.RevokedAt, out.Reason = c.revokedAt.Format(time.RFC3339), reasonName(c.reason)
	}
	return out, nil
}

// CurrentCRL returns the newest stored CRL of caID (DER) and the DER
// certificate of the CA that signed it.
func CurrentCRL(ctx context.Context, db *store.DB, caID string) (info *CRLInfo, der, caCert []byte, err error) {
	c, err := latestCRL(ctx, db, caID)
	if err != nil {
		return nil, nil, nil, err
	}
	row, err := loadAuthority(ctx, db, caID)
	if err != nil {
		return nil, nil, nil, err
	}
	return crlInfo(caID, c), c.der, row.cert, nil
}
