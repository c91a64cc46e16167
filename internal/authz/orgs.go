package authz

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/gbcode"
	"github.com/govtrust/govtrust/internal/store"
)

// Org is an organisation of the registry: the id that accounts carry
// (Account.Org), the legal name its certificates carry as subject O, and its
// registered codes, the GM/T 0015 identity values its organisation
// certificates may carry. The CA binds what the organisation's registration
// officers and application accounts request to these values, as EJBCA's
// end-entity profiles fix an RA's organisation values: the registry, not the
// request, says who the organisation is.
type Org struct {
	ID        string `json:"id"`
	LegalName string `json:"legal_name"`
	// USCC is the unified social credit code (统一社会信用代码, GB 32100).
	USCC string `json:"uscc,omitempty"`
	// OrgCode is the organisation code (组织机构代码, GB 11714).
	OrgCode string `json:"org_code,omitempty"`
	// Tax is the taxpayer identification number (纳税人识别号).
	Tax       string    `json:"tax,omitempty"`
	UpdatedBy string    `json:"updated_by"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Code returns the registered value for a GM/T 0015 identity kind as the
// CA's registration record names it ("uscc", "org-code", "tax"), and whether
// the kind is an organisation's at all.
func (o *Org) Code(kind string) (string, bool) {
	switch kind {
	case "uscc":
		return o.USCC, true
	case "org-code":
		return o.OrgCode, true
	case "tax":
		return o.Tax, true
	}
	return "", false
}

// OrgCodeKinds are the record keys of the organisation identity values
// (Org.Code).
var OrgCodeKinds = []string{"uscc", "org-code", "tax"}

// Validate checks an organisation before it is stored: a legal name, and
// codes in their standard forms (the checks of ca/lint.ValidateIdentity,
// which this lower layer may not import: ARCHITECTURE.md §1).
func (o *Org) Validate() error {
	switch {
	case !validName(o.ID):
		return errors.New("id: 1-128 printable characters (the org of the accounts)")
	case strings.TrimSpace(o.LegalName) == "" || !validName(o.LegalName) || strings.TrimSpace(o.LegalName) != o.LegalName:
		return errors.New("legal_name: 1-128 printable characters without leading or trailing spaces (what certificates carry as O)")
	}
	if o.USCC != "" {
		if err := gbcode.CheckUSCC(o.USCC); err != nil {
			return err
		}
	}
	if o.OrgCode != "" {
		if err := gbcode.CheckOrgCode("org_code", o.OrgCode); err != nil {
			return err
		}
	}
	if o.Tax != "" {
		if n := len(o.Tax); n < 15 || n > 20 || !upperAlnum(o.Tax) {
			return fmt.Errorf("tax: %q is not 15 to 20 digits or capital letters", o.Tax)
		}
	}
	return nil
}

// OrgRequest is the body of PUT /api/v1/orgs/{id}: an organisation's
// values as a whole (a code left out is no longer registered).
type OrgRequest struct {
	LegalName string `json:"legal_name"`
	USCC      string `json:"uscc"`
	OrgCode   string `json:"org_code"`
	Tax       string `json:"tax"`
}

func orgMAC(in *Integrity, o *Org, at string) string {
	return in.MAC("authz_orgs", o.ID, o.LegalName, o.USCC, o.OrgCode, o.Tax, o.UpdatedBy, at)
}

// SetOrg registers an organisation or replaces its values. The change is
// audited (authz action org.registry.set) with the values before and after.
func (s *Service) SetOrg(ctx context.Context, o Org) (*Org, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	o.UpdatedBy = audit.ActorFrom(ctx)
	o.UpdatedAt = s.clock.Now().UTC()
	at := o.UpdatedAt.Format(time.RFC3339Nano)
	details := map[string]any{"legal_name": o.LegalName, "uscc": o.USCC, "org_code": o.OrgCode, "tax": o.Tax}
	rec := audit.Record{Actor: o.UpdatedBy, Action: "org.registry.set", Object: "org/" + o.ID, Outcome: audit.Success, Details: details}
	_, err := s.log.Do(ctx, s.db, rec, func(tx *store.Tx) error {
		delete(details, "previous") // a retried transaction reads again
		old, err := s.org(ctx, tx, o.ID)
		switch {
		case err == nil:
			details["previous"] = map[string]any{"legal_name": old.LegalName, "uscc": old.USCC, "org_code": old.OrgCode, "tax": old.Tax}
		case !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrTampered):
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO authz_orgs (id, legal_name, uscc, org_code, tax, updated_by, updated_at, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET legal_name = excluded.legal_name, uscc = excluded.uscc, org_code = excluded.org_code,
			tax = excluded.tax, updated_by = excluded.updated_by, updated_at = excluded.updated_at, mac = excluded.mac`,
			o.ID, o.LegalName, o.USCC, o.OrgCode, o.Tax, o.UpdatedBy, at, orgMAC(s.mac, &o, at))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// Org returns a registered organisation; an unregistered id is ErrNotFound,
// a row that fails its integrity check an error wrapping ErrTampered (and
// audited as authz.integrity).
func (s *Service) Org(ctx context.Context, id string) (*Org, error) {
	var o *Org
	err := s.db.Read(ctx, func(q store.Querier) error {
		var err error
		o, err = s.org(ctx, q, id)
		return err
	})
	if errors.Is(err, ErrTampered) {
		s.alert(ctx, "org/"+id, err)
	}
	return o, err
}

// errNotRegistered is the ErrNotFound of an organisation the registry
// does not have.
func errNotRegistered(id string) error {
	return fmt.Errorf("%w: organisation %q is not registered", ErrNotFound, id)
}

func (s *Service) org(ctx context.Context, q store.Querier, id string) (*Org, error) {
	var o Org
	var at, mac string
	err := q.QueryRow(ctx, "SELECT id, legal_name, uscc, org_code, tax, updated_by, updated_at, mac FROM authz_orgs WHERE id = ?", id).
		Scan(&o.ID, &o.LegalName, &o.USCC, &o.OrgCode, &o.Tax, &o.UpdatedBy, &at, &mac)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotRegistered(id)
	}
	if err != nil {
		return nil, err
	}
	if err := s.mac.Check(mac, "authz_orgs", o.ID, o.LegalName, o.USCC, o.OrgCode, o.Tax, o.UpdatedBy, at); err != nil {
		return nil, fmt.Errorf("organisation %s: %w", id, err)
	}
	o.UpdatedAt, _ = time.Parse(time.RFC3339Nano, at)
	return &o, nil
}

// Orgs lists the registered organisations by id. A row that fails its
// integrity check is an error naming it: the list is what the CA binds
// certificates to.
func (s *Service) Orgs(ctx context.Context) ([]*Org, error) {
	var out []*Org
	err := s.db.Read(ctx, func(q store.Querier) error {
		out = out[:0]
		ids, err := readIDs(ctx, q, "SELECT id FROM authz_orgs ORDER BY id")
		if err != nil {
			return err
		}
		for _, id := range ids {
			o, err := s.org(ctx, q, id)
			if err != nil {
				return err
			}
			out = append(out, o)
		}
		return nil
	})
	return out, err
}

func upperAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return s != ""
}
