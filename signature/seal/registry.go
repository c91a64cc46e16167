package seal

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/signature"
	"github.com/govtrust/govtrust/signature/ses"
)

// Kinds of seals and their SES_ESPropertyInfo type numbers (GB/T 38540
// leaves the type to the business; v1 used 1 unit seal, 2 personal seal).
var kinds = map[string]int{"official": 1, "personal": 2, "contract": 3, "finance": 4, "invoice": 5}

// kindText is the text under the star of a generated seal.
var kindText = map[string]string{"official": "", "contract": "合同专用章", "finance": "财务专用章", "invoice": "发票专用章"}

// Holder is an official allowed to use a seal: their account and the
// certificate of their USB key's signing key.
type Holder struct {
	Account     string `json:"account"`
	Certificate string `json:"certificate"` // PEM
}

// ApplyRequest is a seal application by a seal administrator.
type ApplyRequest struct {
	Name string `json:"name"` // the department's name, as on the seal
	Kind string `json:"kind"` // official, contract, finance, invoice, personal
	// Picture is uploaded (PNG, SVG or OFD) or, with Generate, drawn as a
	// round official seal from the configured CJK font.
	Picture     []byte    `json:"picture,omitempty"`
	PictureType string    `json:"picture_type,omitempty"`
	Generate    bool      `json:"generate,omitempty"`
	Text        string    `json:"text,omitempty"` // under the star (default by kind)
	SizeMM      int       `json:"size_mm,omitempty"`
	ValidFrom   time.Time `json:"valid_from"`
	ValidTo     time.Time `json:"valid_to"`
	Holders     []Holder  `json:"holders"`
}

// Validate implements httpx.Validator.
func (r *ApplyRequest) Validate() error {
	switch {
	case strings.TrimSpace(r.Name) == "" || len([]rune(r.Name)) > 60:
		return errors.New("name: 1-60 characters")
	case kinds[r.Kind] == 0:
		return fmt.Errorf("kind: %q is not official, contract, finance, invoice or personal", r.Kind)
	case r.Generate == (len(r.Picture) > 0):
		return errors.New("exactly one of picture and generate")
	case len(r.Picture) > 0 && !slices.Contains([]string{"PNG", "SVG", "OFD"}, r.PictureType):
		return errors.New("picture_type: PNG, SVG or OFD")
	case len(r.Picture) > 4<<20:
		return errors.New("picture: at most 4 MiB")
	case r.SizeMM < 0 || r.SizeMM > 100:
		return errors.New("size_mm: 0 (default 42) to 100")
	case r.ValidFrom.IsZero() || !r.ValidFrom.Before(r.ValidTo):
		return errors.New("valid_from must be before valid_to")
	case len(r.Holders) == 0 || len(r.Holders) > 64:
		return errors.New("holders: 1 to 64 officials")
	}
	return nil
}

// spec is the canonical content of an application: its JSON is the
// dual-control payload, so the approvers approve exactly the seal that
// will be made (picture included).
type spec struct {
	ESID        string    `json:"esid"`
	Org         string    `json:"org"`
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	PictureType string    `json:"picture_type"`
	Picture     []byte    `json:"picture"`
	SizeMM      int       `json:"size_mm"`
	ValidFrom   time.Time `json:"valid_from"`
	ValidTo     time.Time `json:"valid_to"`
	Holders     []holder  `json:"holders"`
}

type holder struct {
	Account string `json:"account"` // account id
	Cert    []byte `json:"cert"`    // DER
}

// Application is a seal application as the API shows it.
type Application struct {
	ID          string    `json:"id"`
	Org         string    `json:"org"`
	Applicant   string    `json:"applicant"`
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	ESID        string    `json:"esid"`
	Approval    string    `json:"approval"`
	PayloadHash string    `json:"payload_hash"` // SM3 of the canonical application, hex
	Status      string    `json:"status"`       // pending, made
	SealID      string    `json:"seal_id,omitempty"`
	Created     time.Time `json:"created_at"`
	ValidFrom   time.Time `json:"valid_from"`
	ValidTo     time.Time `json:"valid_to"`
	Holders     []string  `json:"holders"`
	Picture     []byte    `json:"picture"`
	PictureType string    `json:"picture_type"`

	spec []byte
}

// Apply records a seal application and opens its dual-control request.
func (s *Service) Apply(ctx context.Context, p *authz.Principal, req ApplyRequest) (*Application, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	sp := spec{ESID: newID(8), Org: p.Account.Org, Name: strings.TrimSpace(req.Name), Kind: req.Kind, Picture: req.Picture, PictureType: req.PictureType,
		SizeMM: req.SizeMM, ValidFrom: req.ValidFrom.UTC().Truncate(time.Second), ValidTo: req.ValidTo.UTC().Truncate(time.Second)}
	if sp.SizeMM == 0 {
		sp.SizeMM = 42 // the 42 mm round seal of departments (GA 241-2000)
	}
	if req.Generate {
		text := req.Text
		if text == "" {
			text = kindText[req.Kind]
		}
		png, err := RoundSeal{Name: sp.Name, Text: text}.Render(s.font)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRequest, err)
		}
		sp.Picture, sp.PictureType = png, "PNG"
	}
	for i, h := range req.Holders {
		acc, err := s.env.Authz.Account(ctx, h.Account)
		if err != nil {
			acc, err = s.env.Authz.AccountByName(ctx, h.Account)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: holder %d: account %q: %v", ErrRequest, i, h.Account, err)
		}
		if acc.Org != p.Account.Org || acc.Disabled {
			return nil, fmt.Errorf("%w: holder %s is not an enabled account of %s", ErrPolicy, acc.Name, p.Account.Org)
		}
		b, _ := pem.Decode([]byte(h.Certificate))
		if b == nil {
			return nil, fmt.Errorf("%w: holder %d: certificate is not PEM", ErrRequest, i)
		}
		c, err := smx509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: holder %d: certificate: %v", ErrRequest, i, err)
		}
		// The seal is used with the holder's signing key: an encryption
		// certificate (its key escrowed by the KMC) would sign for them.
		if err := signature.SigningUsage(c); err != nil {
			return nil, fmt.Errorf("%w: holder %d: certificate: %v; bind the official's signing certificate", ErrRequest, i, err)
		}
		sp.Holders = append(sp.Holders, holder{Account: acc.ID, Cert: b.Bytes})
	}
	payload, err := json.Marshal(sp)
	if err != nil {
		return nil, err
	}
	d, err := s.env.Dual.Create(ctx, dual.NewRequest{Kind: MakeKind, Requester: p.Account.ID, Payload: payload, Required: s.cfg.Approvals,
		TTL: s.cfg.ApplicationTTL, ApproverRole: string(policy.RoleSealAdmin), Summary: fmt.Sprintf("make the %s seal %q of %s", sp.Kind, sp.Name, sp.Org)})
	if err != nil {
		return nil, err
	}
	a := &Application{ID: newID(8), Org: sp.Org, Applicant: p.Account.ID, Name: sp.Name, Kind: sp.Kind, ESID: sp.ESID, Approval: d.ID,
		PayloadHash: hex.EncodeToString(d.PayloadHash), Status: "pending", Created: s.env.Clock.Now().UTC(), spec: payload}
	rec := audit.Record{Actor: p.Actor(), Action: "seal.apply", Object: "seal-application/" + a.ID, Outcome: audit.Success,
		Details: map[string]any{"esid": sp.ESID, "name": sp.Name, "kind": sp.Kind, "approval": d.ID, "holders": len(sp.Holders)}}
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO seal_applications (id, org, applicant, name, spec, dual_id, status, seal_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, ?)`, a.ID, a.Org, a.Applicant, a.Name, payload, d.ID, a.Created.Format(timeFormat))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("seal: record application: %w", err)
	}
	return a.fill()
}

func (a *Application) fill() (*Application, error) {
	var sp spec
	if err := json.Unmarshal(a.spec, &sp); err != nil {
		return nil, fmt.Errorf("seal: application %s: %w", a.ID, err)
	}
	a.Kind, a.ESID, a.ValidFrom, a.ValidTo, a.Picture, a.PictureType = sp.Kind, sp.ESID, sp.ValidFrom, sp.ValidTo, sp.Picture, sp.PictureType
	a.Holders = nil
	for _, h := range sp.Holders {
		a.Holders = append(a.Holders, h.Account)
	}
	a.PayloadHash = hex.EncodeToString(dual.Hash(a.spec))
	return a, nil
}

// Application loads an application.
func (s *Service) Application(ctx context.Context, id string) (*Application, error) {
	a := &Application{}
	var created string
	var sealID sql.NullString
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, `SELECT id, org, applicant, name, spec, dual_id, status, seal_id, created_at FROM seal_applications WHERE id = ?`, id).
			Scan(&a.ID, &a.Org, &a.Applicant, &a.Name, &a.spec, &a.Approval, &a.Status, &sealID, &created)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: application %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	a.SealID = sealID.String
	a.Created, _ = time.Parse(timeFormat, created)
	return a.fill()
}

// Approve records p's approval of the application (dual control: p is not
// the applicant; the approval names the SM3 of the exact application).
func (s *Service) Approve(ctx context.Context, p *authz.Principal, id, comment string) (*Application, error) {
	a, err := s.Application(ctx, id)
	if err != nil {
		return nil, err
	}
	if _, err := s.env.Dual.Approve(ctx, a.Approval, p.Account.ID, dual.Hash(a.spec), comment); err != nil {
		return nil, err
	}
	return a, nil
}

// Make makes the approved application's seal: the maker key signs the
// SESeal and the registry records it, in the transaction that spends the
// approval.
func (s *Service) Make(ctx context.Context, p *authz.Principal, id string) (*Record, error) {
	a, err := s.Application(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.Status != "pending" {
		return nil, fmt.Errorf("%w: application %s is %s", ErrConflict, id, a.Status)
	}
	var sp spec
	if err := json.Unmarshal(a.spec, &sp); err != nil {
		return nil, err
	}
	m, err := s.makerFor(ctx, p.Actor())
	if err != nil {
		return nil, err
	}
	now := s.env.Clock.Now().UTC().Truncate(time.Second)
	info := ses.SealInfo{Version: ses.V4, VID: "govtrust", ESID: sp.ESID,
		Property: ses.Property{Type: kinds[sp.Kind], Name: sp.Name, CertListType: ses.CertListCerts, CreateDate: now,
			ValidStart: sp.ValidFrom, ValidEnd: sp.ValidTo},
		Picture: ses.Picture{Type: sp.PictureType, Data: sp.Picture, Width: sp.SizeMM, Height: sp.SizeMM}}
	for _, h := range sp.Holders {
		info.Property.Certs = append(info.Property.Certs, h.Cert)
	}
	made, err := ses.MakeSeal(info, m.cert, m.signer)
	if err != nil {
		return nil, fmt.Errorf("seal: make: %w", err)
	}
	// The CA's hook may have marked the maker while it signed: a seal made
	// then is not recorded.
	if err := m.validAt(now); err != nil {
		return nil, s.withRenewError(err)
	}
	holders := make([]string, 0, len(sp.Holders))
	for _, h := range sp.Holders {
		holders = append(holders, h.Account)
	}
	hj, _ := json.Marshal(holders)
	err = s.env.Dual.Do(ctx, a.Approval, a.spec, func(tx *store.Tx) error {
		ts := now.Format(timeFormat)
		if _, err := tx.Exec(ctx, `INSERT INTO seals (id, org, name, kind, status, status_reason, status_at, valid_start, valid_end, holders, der, application_id, made_by, made_at)
			VALUES (?, ?, ?, ?, 'active', '', ?, ?, ?, ?, ?, ?, ?, ?)`, sp.ESID, sp.Org, sp.Name, sp.Kind, ts,
			sp.ValidFrom.Format(timeFormat), sp.ValidTo.Format(timeFormat), string(hj), made.Raw, a.ID, p.Actor(), ts); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO seal_status_log (seal_id, status, reason, actor, at) VALUES (?, 'active', 'made', ?, ?)`, sp.ESID, p.Actor(), ts); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `UPDATE seal_applications SET status = 'made', seal_id = ? WHERE id = ? AND status = 'pending'`, sp.ESID, a.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: application %s already made", ErrConflict, a.ID)
		}
		_, err = s.env.Audit.Append(ctx, tx, audit.Record{Actor: p.Actor(), Action: "seal.make", Object: "seal/" + sp.ESID, Outcome: audit.Success,
			Details: map[string]any{"application": a.ID, "approval": a.Approval, "name": sp.Name, "sm3": hex.EncodeToString(ses.SM3(made.Raw))}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.Seal(ctx, sp.ESID)
}

// Record is a seal of the registry.
type Record struct {
	ID           string    `json:"id"` // esID
	Org          string    `json:"org"`
	Name         string    `json:"name"`
	Kind         string    `json:"kind"`
	Status       string    `json:"status"`
	StatusReason string    `json:"status_reason,omitempty"`
	StatusAt     time.Time `json:"status_at"`
	ValidStart   time.Time `json:"valid_start"`
	ValidEnd     time.Time `json:"valid_end"`
	Holders      []string  `json:"holders"`
	MadeBy       string    `json:"made_by"`
	MadeAt       time.Time `json:"made_at"`
	DER          []byte    `json:"seal"` // the SESeal

	parsed *ses.Seal
}

const selectSeal = `SELECT id, org, name, kind, status, status_reason, status_at, valid_start, valid_end, holders, der, made_by, made_at FROM seals`

func scanSeal(row interface{ Scan(...any) error }, now time.Time) (*Record, error) {
	r := &Record{}
	var at, vs, ve, holders, made string
	if err := row.Scan(&r.ID, &r.Org, &r.Name, &r.Kind, &r.Status, &r.StatusReason, &at, &vs, &ve, &holders, &r.DER, &r.MadeBy, &made); err != nil {
		return nil, err
	}
	r.StatusAt, _ = time.Parse(timeFormat, at)
	r.ValidStart, _ = time.Parse(timeFormat, vs)
	r.ValidEnd, _ = time.Parse(timeFormat, ve)
	r.MadeAt, _ = time.Parse(timeFormat, made)
	if err := json.Unmarshal([]byte(holders), &r.Holders); err != nil {
		return nil, err
	}
	if r.Status == StatusActive && now.After(r.ValidEnd) {
		r.Status = StatusExpired
	}
	p, err := ses.ParseSeal(r.DER)
	if err != nil {
		return nil, fmt.Errorf("seal %s: stored SESeal: %w", r.ID, err)
	}
	r.parsed = p
	return r, nil
}

// Seal loads a seal of the registry.
func (s *Service) Seal(ctx context.Context, id string) (*Record, error) {
	var r *Record
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		var err error
		r, err = scanSeal(q.QueryRow(ctx, selectSeal+` WHERE id = ?`, id), s.env.Clock.Now())
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: seal %q", ErrNotFound, id)
	}
	return r, err
}

// Seals lists the seals of org.
func (s *Service) Seals(ctx context.Context, org string) ([]*Record, error) {
	var out []*Record
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, selectSeal+` WHERE org = ? ORDER BY made_at`, org)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanSeal(rows, s.env.Clock.Now())
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// SetStatus suspends, revokes or resumes a seal. A revoked seal stays
// revoked.
func (s *Service) SetStatus(ctx context.Context, p *authz.Principal, id, status, reason string) (*Record, error) {
	if status != StatusActive && status != StatusSuspended && status != StatusRevoked {
		return nil, fmt.Errorf("%w: status %q", ErrRequest, status)
	}
	r, err := s.Seal(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Status == StatusRevoked {
		return nil, fmt.Errorf("%w: seal %s is revoked for good", ErrConflict, id)
	}
	now := s.env.Clock.Now().UTC().Format(timeFormat)
	rec := audit.Record{Actor: p.Actor(), Action: "seal.status", Object: "seal/" + id, Outcome: audit.Success,
		Details: map[string]any{"status": status, "reason": reason, "previous": r.Status}}
	_, err = s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE seals SET status = ?, status_reason = ?, status_at = ? WHERE id = ? AND status <> 'revoked'`, status, reason, now, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO seal_status_log (seal_id, status, reason, actor, at) VALUES (?, ?, ?, ?, ?)`, id, status, reason, p.Actor(), now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.Seal(ctx, id)
}

// statusAt returns the registry status of seal id at time t (from its
// status log), or "" when the seal is not in the registry.
func (s *Service) statusAt(ctx context.Context, id string, t time.Time) (status, reason string, err error) {
	err = s.env.DB.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, `SELECT status, reason, at FROM seal_status_log WHERE seal_id = ? ORDER BY at`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st, rs, at string
			if err := rows.Scan(&st, &rs, &at); err != nil {
				return err
			}
			// The log is in time order: the last entry not after t is the
			// status then.
			if when, _ := time.Parse(timeFormat, at); !when.After(t) {
				status, reason = st, rs
			}
		}
		return rows.Err()
	})
	return status, reason, err
}

// Usage is one entry of a seal's usage log.
type Usage struct {
	ID          string    `json:"id"`
	Actor       string    `json:"actor"`
	Signer      string    `json:"signer"` // certificate subject
	Format      string    `json:"format"`
	Document    string    `json:"document"`
	DocHash     string    `json:"document_hash"`
	SignedAt    time.Time `json:"signed_at"`
	Timestamped bool      `json:"timestamped"`
}

// UsageLog returns the seal's usage log, newest last.
func (s *Service) UsageLog(ctx context.Context, id string) ([]Usage, error) {
	var out []Usage
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		rows, err := q.Query(ctx, `SELECT id, actor, signer, format, document, doc_hash, signed_at, timestamped FROM seal_usage WHERE seal_id = ? ORDER BY signed_at`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u Usage
			var at string
			var ts int
			if err := rows.Scan(&u.ID, &u.Actor, &u.Signer, &u.Format, &u.Document, &u.DocHash, &at, &ts); err != nil {
				return err
			}
			u.SignedAt, _ = time.Parse(timeFormat, at)
			u.Timestamped = ts != 0
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, err
}
