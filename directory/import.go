package directory

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/httpx"
)

// Import is the organisation as `govtrust directory import` loads it, from
// YAML (this structure) or CSV (one row per record, a "kind" column saying
// which list it belongs to).
type Import struct {
	Departments  []Department  `yaml:"departments" json:"departments"`
	People       []Person      `yaml:"people" json:"people"`
	Applications []Application `yaml:"applications" json:"applications"`
	Services     []ServiceInfo `yaml:"services" json:"services"`
}

// Department is an organisational unit: ou=<code>,ou=departments,<base>.
type Department struct {
	Code        string `yaml:"code"`
	Name        string `yaml:"name"`
	Parent      string `yaml:"parent"` // the parent department's code
	Telephone   string `yaml:"telephone"`
	Address     string `yaml:"address"`
	Description string `yaml:"description"`
}

// Person is an official: uid=<uid>,ou=<department>,ou=departments,<base>.
type Person struct {
	UID        string `yaml:"uid"`
	Name       string `yaml:"name"`
	Surname    string `yaml:"surname"`
	Department string `yaml:"department"`
	Title      string `yaml:"title"`
	Mail       string `yaml:"mail"`
	Telephone  string `yaml:"telephone"`
	Mobile     string `yaml:"mobile"`
	// IDNumber is the resident ID number: private (serialNumber, never
	// shown to anonymous clients).
	IDNumber string `yaml:"id_number"`
}

// Application is a department's application account:
// cn=<name>,ou=<department>,ou=departments,<base>.
type Application struct {
	Name        string `yaml:"name"`
	Department  string `yaml:"department"`
	Mail        string `yaml:"mail"`
	Description string `yaml:"description"`
}

// ServiceInfo is a registered service endpoint: cn=<name>,ou=services,<base>.
type ServiceInfo struct {
	Name        string `yaml:"name"`
	Department  string `yaml:"department"`
	URL         string `yaml:"url"`
	Description string `yaml:"description"`
}

// ErrImport reports an import file that cannot be loaded; nothing of it is.
var ErrImport = fmt.Errorf("directory: bad import: %w", httpx.ErrBadRequest)

// ParseImport reads YAML or CSV (format "yaml" or "csv"). Text must be
// UTF-8.
func ParseImport(data []byte, format string) (*Import, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrImport)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	var im Import
	switch format {
	case "yaml":
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&im); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %w", ErrImport, err)
		}
	case "csv":
		r := csv.NewReader(bytes.NewReader(data))
		r.FieldsPerRecord = -1
		rows, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImport, err)
		}
		if len(rows) == 0 {
			return &im, nil
		}
		col := map[string]int{}
		for i, h := range rows[0] {
			col[strings.ToLower(strings.TrimSpace(h))] = i
		}
		if _, ok := col["kind"]; !ok {
			return nil, fmt.Errorf("%w: CSV header lacks a kind column", ErrImport)
		}
		for n, row := range rows[1:] {
			get := func(k string) string {
				if i, ok := col[k]; ok && i < len(row) {
					return strings.TrimSpace(row[i])
				}
				return ""
			}
			switch get("kind") {
			case "department":
				im.Departments = append(im.Departments, Department{Code: get("code"), Name: get("name"), Parent: get("parent"),
					Telephone: get("telephone"), Address: get("address"), Description: get("description")})
			case "person":
				im.People = append(im.People, Person{UID: get("uid"), Name: get("name"), Surname: get("surname"), Department: get("department"),
					Title: get("title"), Mail: get("mail"), Telephone: get("telephone"), Mobile: get("mobile"), IDNumber: get("id_number")})
			case "application":
				im.Applications = append(im.Applications, Application{Name: get("name"), Department: get("department"), Mail: get("mail"), Description: get("description")})
			case "service":
				im.Services = append(im.Services, ServiceInfo{Name: get("name"), Department: get("department"), URL: get("url"), Description: get("description")})
			default:
				return nil, fmt.Errorf("%w: row %d: kind %q is not department, person, application or service", ErrImport, n+2, get("kind"))
			}
		}
	default:
		return nil, fmt.Errorf("%w: format %q is not yaml or csv", ErrImport, format)
	}
	return &im, im.validate()
}

func (im *Import) validate() error {
	var errs []error
	codes := map[string]bool{}
	for i, d := range im.Departments {
		if d.Code == "" || d.Name == "" {
			errs = append(errs, fmt.Errorf("departments[%d]: code and name are required", i))
		}
		codes[d.Code] = true
	}
	for i, p := range im.People {
		if p.UID == "" || p.Name == "" || p.Department == "" {
			errs = append(errs, fmt.Errorf("people[%d]: uid, name and department are required", i))
		}
		if err := checkMail(p.Mail); err != nil {
			errs = append(errs, fmt.Errorf("people[%d]: %w", i, err))
		}
	}
	for i, a := range im.Applications {
		if a.Name == "" || a.Department == "" {
			errs = append(errs, fmt.Errorf("applications[%d]: name and department are required", i))
		}
		if err := checkMail(a.Mail); err != nil {
			errs = append(errs, fmt.Errorf("applications[%d]: %w", i, err))
		}
	}
	for i, s := range im.Services {
		if s.Name == "" || s.URL == "" {
			errs = append(errs, fmt.Errorf("services[%d]: name and url are required", i))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrImport, errors.Join(errs...))
	}
	return nil
}

// maxMailLength is the upper bound of the mail attribute (RFC 4524 §2.16).
const maxMailLength = 256

// checkMail accepts an empty mail or one RFC 5322 addr-spec in the
// mail attribute's syntax, IA5String (RFC 4524 §2.16): ASCII only, so an
// address that LDAP servers would refuse (invalidAttributeSyntax) is
// refused here, at import, rather than by every external server.
func checkMail(m string) error {
	if m == "" {
		return nil
	}
	for _, r := range m {
		if r > unicode.MaxASCII {
			return fmt.Errorf("mail %q: not ASCII (the LDAP mail attribute is an IA5String, RFC 4524 §2.16; write the domain in its xn-- form)", m)
		}
	}
	if len(m) > maxMailLength {
		return fmt.Errorf("mail %.40q...: longer than %d characters (RFC 4524 §2.16)", m, maxMailLength)
	}
	if a, err := mail.ParseAddress(m); err != nil || a.Name != "" || a.Address != m {
		return fmt.Errorf("mail %q: not an e-mail address (local-part@domain)", m)
	}
	return nil
}

// ImportResult counts what an import wrote.
type ImportResult struct {
	Departments  int `json:"departments"`
	People       int `json:"people"`
	Applications int `json:"applications"`
	Services     int `json:"services"`
}

// DepartmentDN returns the DN of department code.
func (s *Service) DepartmentDN(code string) string {
	return rdn("ou", code) + ",ou=departments," + s.baseDN
}

// PersonDN returns the DN of person uid of department code.
func (s *Service) PersonDN(code, uid string) string {
	return rdn("uid", uid) + "," + s.DepartmentDN(code)
}

// Load writes im into the directory in one audited transaction (entries
// that exist are replaced; certificates already published to them are
// kept).
func (s *Service) Load(ctx context.Context, actor string, im *Import) (*ImportResult, error) {
	res := &ImportResult{}
	rec := audit.Record{Actor: actor, Action: "directory.import", Object: "ldap/ou=departments," + s.baseDN, Outcome: audit.Success,
		Details: map[string]any{"departments": len(im.Departments), "people": len(im.People), "applications": len(im.Applications), "services": len(im.Services)}}
	err := s.write(ctx, rec, func(b *batch) error {
		*res = ImportResult{}
		put := func(e *Entry) error {
			if old, err := b.get(ctx, e.norm); err != nil {
				return err
			} else if old != nil && len(old.Attrs["userCertificate"]) > 0 {
				e.Attrs["userCertificate"] = old.Attrs["userCertificate"]
				e.Attrs["objectClass"] = append(e.Attrs["objectClass"], []byte("pkiUser"))
			}
			return b.put(ctx, e)
		}
		for _, d := range im.Departments {
			e, err := newEntry(s.DepartmentDN(d.Code), KindDepartment, "top", "organizationalUnit")
			if err != nil {
				return err
			}
			e.setStr("ou", d.Code, d.Name)
			e.setStr("description", d.Name)
			e.setStr("businessCategory", d.Code)
			if d.Parent != "" {
				e.setStr("seeAlso", s.DepartmentDN(d.Parent))
			}
			e.setStr("telephoneNumber", d.Telephone)
			e.setStr("postalAddress", d.Address)
			if err := put(e); err != nil {
				return err
			}
			res.Departments++
		}
		parent := func(code string) error {
			n, _, _ := normalizeDN(s.DepartmentDN(code))
			if e, err := b.get(ctx, n); err != nil || e == nil {
				return errors.Join(err, fmt.Errorf("%w: department %q does not exist", ErrImport, code))
			}
			return nil
		}
		for _, p := range im.People {
			if err := parent(p.Department); err != nil {
				return err
			}
			e, err := newEntry(s.PersonDN(p.Department, p.UID), KindPerson, "top", "person", "organizationalPerson", "inetOrgPerson")
			if err != nil {
				return err
			}
			sn := p.Surname
			if sn == "" {
				sn = p.Name
			}
			e.setStr("cn", p.Name)
			e.setStr("sn", sn)
			e.setStr("displayName", p.Name)
			e.setStr("uid", p.UID)
			e.setStr("departmentNumber", p.Department)
			e.setStr("title", p.Title)
			e.setStr("mail", p.Mail)
			e.setStr("telephoneNumber", p.Telephone)
			e.setStr("mobile", p.Mobile)
			e.setStr("serialNumber", p.IDNumber)
			if err := put(e); err != nil {
				return err
			}
			res.People++
		}
		for _, a := range im.Applications {
			if err := parent(a.Department); err != nil {
				return err
			}
			// applicationProcess does not allow mail (RFC 4519 §3.2) and
			// no auxiliary class of the standard schemas (core, cosine,
			// inetOrgPerson; 389-ds alike) does but extensibleObject
			// (RFC 4512 §4.3), which every LDAP server knows.
			ocs := []string{"top", "applicationProcess"}
			if a.Mail != "" {
				ocs = append(ocs, "extensibleObject")
			}
			e, err := newEntry(rdn("cn", a.Name)+","+s.DepartmentDN(a.Department), KindApplication, ocs...)
			if err != nil {
				return err
			}
			e.setStr("cn", a.Name)
			e.setStr("ou", a.Department)
			e.setStr("mail", a.Mail)
			e.setStr("description", a.Description)
			if err := put(e); err != nil {
				return err
			}
			res.Applications++
		}
		for _, sv := range im.Services {
			e, err := newEntry(rdn("cn", sv.Name)+",ou=services,"+s.baseDN, KindService, "top", "applicationProcess", "labeledURIObject")
			if err != nil {
				return err
			}
			e.setStr("cn", sv.Name)
			e.setStr("ou", sv.Department)
			e.setStr("labeledURI", sv.URL)
			e.setStr("description", sv.Description)
			if err := put(e); err != nil {
				return err
			}
			res.Services++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// APIRoutes implements node.APIRouter: POST /api/v1/directory/import with a
// YAML (application/yaml) or CSV (text/csv) body, and GET
// /api/v1/directory/external, the state of the external servers' queues.
func (s *Service) APIRoutes(mux *authz.Mux) {
	mux.Handle("POST /api/v1/directory/import", authz.Rule{Action: actionImport}, s.handleImport)
	mux.Handle("GET /api/v1/directory/external", authz.Rule{Action: actionReadPrivate}, s.handleExternal)
}

func (s *Service) handleImport(w http.ResponseWriter, r *http.Request) error {
	format := "yaml"
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/csv") {
		format = "csv"
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImport, err)
	}
	im, err := ParseImport(data, format)
	if err != nil {
		return err
	}
	actor := "anonymous"
	if p := authz.PrincipalFrom(r.Context()); p != nil {
		actor = p.Actor()
	}
	res, err := s.Load(r.Context(), actor, im)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, res)
}
