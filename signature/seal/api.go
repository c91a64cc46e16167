package seal

import (
	"errors"
	"net/http"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
)

// APIRoutes implements node.APIRouter.
func (s *Service) APIRoutes(m *authz.Mux) {
	// Applications and seals belong to their organisation; an unknown one
	// is nobody's, so the policy refuses it before anyone learns whether it
	// exists.
	appRes := func(r *http.Request) (policy.Resource, error) {
		res := policy.Resource{Type: "seal-application", ID: r.PathValue("id"), Level: policy.Public}
		a, err := s.Application(r.Context(), r.PathValue("id"))
		switch {
		case err == nil:
			res.Org, res.Owner = a.Org, a.Applicant
		case !errors.Is(err, ErrNotFound):
			return res, err
		}
		return res, nil
	}
	appCtx := func(r *http.Request, res policy.Resource) map[string]string {
		return map[string]string{"requester": res.Owner, "kind": MakeKind}
	}
	sealRes := func(r *http.Request) (policy.Resource, error) {
		res := policy.Resource{Type: "seal", ID: r.PathValue("id"), Level: policy.Public}
		rec, err := s.Seal(r.Context(), r.PathValue("id"))
		switch {
		case err == nil:
			res.Org = rec.Org
		case !errors.Is(err, ErrNotFound):
			return res, err
		}
		return res, nil
	}
	ownOrg := func(r *http.Request) (policy.Resource, error) {
		p := authz.PrincipalFrom(r.Context())
		return policy.Resource{Type: "seal", ID: "new", Org: p.Account.Org, Level: policy.Public}, nil
	}
	m.Handle("POST /api/v1/seal-applications", authz.Rule{Action: "seal.apply", Resource: ownOrg}, s.apply)
	m.Handle("GET /api/v1/seal-applications/{id}", authz.Rule{Action: "seal.read", Resource: appRes}, s.getApplication)
	m.Handle("POST /api/v1/seal-applications/{id}/approve", authz.Rule{Action: "seal.approve", Resource: appRes, Context: appCtx}, s.approve)
	m.Handle("POST /api/v1/seal-applications/{id}/make", authz.Rule{Action: "seal.make", Resource: appRes}, s.make)
	m.Handle("GET /api/v1/seals", authz.Rule{Action: "seal.read", Resource: ownOrg}, s.list)
	m.Handle("GET /api/v1/seals/{id}", authz.Rule{Action: "seal.read", Resource: sealRes}, s.get)
	m.Handle("POST /api/v1/seals/{id}/status", authz.Rule{Action: "seal.revoke", Resource: sealRes}, s.setStatus)
	m.Handle("GET /api/v1/seals/{id}/usage", authz.Rule{Action: "seal.usage.read", Resource: sealRes}, s.usage)
	m.Handle("POST /api/v1/seals/{id}/prepare", authz.Rule{Action: "seal.use", Resource: sealRes}, s.prepare)
	m.Handle("POST /api/v1/seal-sessions/{id}/complete", authz.Rule{Action: "seal.use", Resource: ownOrg}, s.complete)
	m.Handle("POST /api/v1/seals/verify", authz.Rule{Action: "signature.verify"}, s.verify)
}

// PublicRoutes implements node.PublicRouter: relying parties ask a seal's
// status by its ID without an account, as they fetch CRLs.
func (s *Service) PublicRoutes(m *authz.Mux) {
	m.Handle("GET /seals/{id}/status", authz.Rule{Public: "seal status query by seal ID for relying parties (like a CRL or OCSP answer)"}, s.status)
}

func (s *Service) apply(w http.ResponseWriter, r *http.Request) error {
	var req ApplyRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	a, err := s.Apply(r.Context(), authz.PrincipalFrom(r.Context()), req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusCreated, a)
}

func (s *Service) getApplication(w http.ResponseWriter, r *http.Request) error {
	a, err := s.Application(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, a)
}

// ApproveRequest is an approval with an optional comment.
type ApproveRequest struct {
	Comment string `json:"comment,omitempty"`
}

func (s *Service) approve(w http.ResponseWriter, r *http.Request) error {
	var req ApproveRequest
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(r, &req); err != nil {
			return err
		}
	}
	a, err := s.Approve(r.Context(), authz.PrincipalFrom(r.Context()), r.PathValue("id"), req.Comment)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, a)
}

func (s *Service) make(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.Make(r.Context(), authz.PrincipalFrom(r.Context()), r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusCreated, rec)
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	list, err := s.Seals(r.Context(), authz.PrincipalFrom(r.Context()).Account.Org)
	if err != nil {
		return err
	}
	if list == nil {
		list = []*Record{}
	}
	return httpx.WriteJSON(w, http.StatusOK, list)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.Seal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, rec)
}

// StatusRequest changes a seal's status.
type StatusRequest struct {
	Status string `json:"status"` // active, suspended, revoked
	Reason string `json:"reason"`
}

func (s *Service) setStatus(w http.ResponseWriter, r *http.Request) error {
	var req StatusRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	rec, err := s.SetStatus(r.Context(), authz.PrincipalFrom(r.Context()), r.PathValue("id"), req.Status, req.Reason)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, rec)
}

func (s *Service) usage(w http.ResponseWriter, r *http.Request) error {
	u, err := s.UsageLog(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if u == nil {
		u = []Usage{}
	}
	return httpx.WriteJSON(w, http.StatusOK, u)
}

// Status is the public answer about a seal.
type Status struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	ValidStart string `json:"valid_start"`
	ValidEnd   string `json:"valid_end"`
	StatusAt   string `json:"status_at"`
}

func (s *Service) status(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.Seal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	const f = "2006-01-02T15:04:05Z07:00"
	return httpx.WriteJSON(w, http.StatusOK, Status{ID: rec.ID, Name: rec.Name, Status: rec.Status,
		ValidStart: rec.ValidStart.Format(f), ValidEnd: rec.ValidEnd.Format(f), StatusAt: rec.StatusAt.Format(f)})
}

func (s *Service) prepare(w http.ResponseWriter, r *http.Request) error {
	var req PrepareRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	p, err := s.Prepare(r.Context(), authz.PrincipalFrom(r.Context()), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, p)
}

func (s *Service) complete(w http.ResponseWriter, r *http.Request) error {
	var req CompleteRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	out, err := s.Complete(r.Context(), authz.PrincipalFrom(r.Context()), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) verify(w http.ResponseWriter, r *http.Request) error {
	var req VerifyRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	rep := s.Verify(r.Context(), req)
	if c := rep.tooLarge(); c != nil {
		// Not a verdict on the document: the server would not inflate it.
		return httpx.Errorf(http.StatusRequestEntityTooLarge, "document: %s", c.Detail)
	}
	return httpx.WriteJSON(w, http.StatusOK, rep)
}
