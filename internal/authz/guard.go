package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
)

// Rule declares what a route does, for the security middleware.
type Rule struct {
	// Action is the policy action the route performs (policy.Lookup must
	// know it). Empty only for public routes.
	Action string
	// Resource finds the resource the request acts on; nil means the
	// platform itself (type "platform", id "node", level public). The
	// request's context already carries the authenticated principal
	// (PrincipalFrom), not yet the decision.
	Resource func(r *http.Request) (policy.Resource, error)
	// Context, when set, adds facts the policies need (for approvals: the
	// requester and the kind of request), derived from the resource found
	// by Resource so that nothing is looked up twice.
	Context func(r *http.Request, res policy.Resource) map[string]string
	// Public, when not empty, declares the route open to anyone and says
	// why (for example "RFC 5280 CRL distribution point").
	Public string
}

// RouteInfo describes a registered route.
type RouteInfo struct {
	Pattern string `json:"pattern"`
	Action  string `json:"action,omitempty"`
	Public  string `json:"public,omitempty"`
}

// Mux is an httpx.Mux on which every route declares its Rule. Register
// routes only through Handle; Routes lists them for the test that requires a
// declaration on every route.
type Mux struct {
	mux    *httpx.Mux
	svc    *Service
	routes []RouteInfo
}

// NewMux returns a guarded mux using s for authentication, decisions and
// audit.
func (s *Service) NewMux() *Mux { return &Mux{mux: httpx.NewMux(), svc: s} }

// ServeHTTP dispatches to the registered routes.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// OpaqueTail passes through to httpx.Mux.OpaqueTail.
func (m *Mux) OpaqueTail(prefix string, fixed int) { m.mux.OpaqueTail(prefix, fixed) }

// Routes returns the registered routes, sorted by pattern.
func (m *Mux) Routes() []RouteInfo {
	out := append([]RouteInfo(nil), m.routes...)
	sort.Slice(out, func(i, j int) bool { return out[i].Pattern < out[j].Pattern })
	return out
}

// Handle registers h for pattern under rule. An undeclared or unknown action
// is a programming error and panics at registration, before anything serves.
func (m *Mux) Handle(pattern string, rule Rule, h httpx.HandlerFunc) {
	m.HandleHTTP(pattern, rule, h)
}

// HandleHTTP is Handle for a plain http.Handler.
func (m *Mux) HandleHTTP(pattern string, rule Rule, h http.Handler) {
	if err := rule.check(); err != nil {
		panic(fmt.Sprintf("authz: route %q: %v", pattern, err))
	}
	m.routes = append(m.routes, RouteInfo{Pattern: pattern, Action: rule.Action, Public: rule.Public})
	if rule.Public != "" {
		m.mux.Handle(pattern, h)
		return
	}
	m.mux.Handle(pattern, m.svc.guard(rule, h))
}

func (rule Rule) check() error {
	switch {
	case rule.Public != "" && rule.Action != "":
		return errors.New("a route is either public or has an action")
	case rule.Public != "":
		return nil
	case rule.Action == "":
		return errors.New("no action declared (declare Rule.Action, or Rule.Public with the reason)")
	}
	if _, ok := policy.Lookup(rule.Action); !ok {
		return fmt.Errorf("action %q is not in the policy catalogue", rule.Action)
	}
	return nil
}

// platformResource is the resource of routes acting on the platform itself.
var platformResource = policy.Resource{Type: "platform", ID: "node", Level: policy.Public}

// guard authenticates, decides and audits, then calls h.
func (s *Service) guard(rule Rule, h http.Handler) http.Handler {
	return httpx.HandlerFunc(func(w http.ResponseWriter, r *http.Request) (err error) {
		ctx := audit.WithRequestID(r.Context(), httpx.RequestID(r.Context()))
		p, err := s.Authenticate(r.WithContext(ctx))
		if err != nil {
			if errors.Is(err, ErrUnauthenticated) {
				s.deny(ctx, "anonymous", rule.Action, "", "no valid credential", nil)
				w.Header().Set("WWW-Authenticate", `Bearer realm="govtrust"`)
			}
			return err
		}
		// The resource finder sees the principal (for example to place the
		// resource in the caller's organisation) without authenticating again.
		r = r.WithContext(WithPrincipal(ctx, p))
		res := platformResource
		if rule.Resource != nil {
			if res, err = rule.Resource(r); err != nil {
				s.record(ctx, p.Actor(), rule.Action, "", audit.Failure, map[string]any{"error": err.Error(), "stage": "resource"})
				return err
			}
		}
		object := res.Type + "/" + res.ID
		pctx := map[string]string{"via": p.Via}
		if rule.Context != nil {
			for k, v := range rule.Context(r, res) {
				pctx[k] = v
			}
		}
		d := s.engine.Decide(policy.Request{Principal: p.Policy(), Action: rule.Action, Resource: res, Context: pctx})
		if !d.Allow {
			s.deny(ctx, p.Actor(), rule.Action, object, d.Reason, d.Policies)
			return fmt.Errorf("%w: %s", ErrForbidden, d.Reason)
		}
		dec := &audit.Decision{Action: rule.Action, Object: object, Via: p.Via, Policies: d.Policies}
		ctx = audit.WithDecision(WithPrincipal(ctx, p), dec)
		rw := &statusWriter{ResponseWriter: w}
		// Recorded after the handler, also when it panics (the panic goes on
		// to the edge, which answers 500) or fails after its answer started.
		defer func() {
			v := recover()
			status := rw.status
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			herr := httpx.Err(ctx)
			failed := v != nil || status >= 400 || herr != nil
			if failed || !dec.Written() {
				outcome, details := audit.Success, map[string]any{"status": status}
				if failed {
					outcome = audit.Failure
					switch {
					case v != nil:
						details["error"] = "handler panic"
					case herr != nil:
						details["error"] = herr.Error()
					}
				}
				if aerr := s.record(ctx, p.Actor(), rule.Action, object, outcome, details); aerr != nil && err == nil && v == nil {
					err = fmt.Errorf("audit of %s: %w", rule.Action, aerr) // logged by the edge; the answer is out
				}
			}
			if v != nil {
				panic(v)
			}
		}()
		h.ServeHTTP(rw, r.WithContext(ctx))
		return nil
	})
}

// record writes one audit record in a transaction of its own. It is detached
// from the request's cancellation (a client that hangs up after reading its
// answer must not take the record with it) but bounded in time.
func (s *Service) record(ctx context.Context, actor, action, object, outcome string, details map[string]any) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := s.log.Write(ctx, s.db, audit.Record{Actor: actor, Action: action, Object: object, Outcome: outcome,
		RequestID: httpx.RequestID(ctx), Details: details})
	return err
}

// deny audits a refused request; extra adds details (such as a bus subject).
func (s *Service) deny(ctx context.Context, actor, action, object, why string, policies []string, extra ...any) {
	d := map[string]any{"reason": why, "policies": policies}
	for i := 0; i+1 < len(extra); i += 2 {
		d[fmt.Sprint(extra[i])] = extra[i+1]
	}
	_ = s.record(ctx, actor, action, object, audit.Denied, d)
}

// statusWriter records the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Authorize decides an action for a principal outside HTTP (bus handlers,
// CLI), audits a denial (with extra details), and returns ErrForbidden with
// the reason.
func (s *Service) Authorize(ctx context.Context, p *Principal, action string, res policy.Resource, extra ...any) (policy.Decision, error) {
	d := s.engine.Decide(policy.Request{Principal: p.Policy(), Action: action, Resource: res, Context: map[string]string{"via": p.Via}})
	if !d.Allow {
		s.deny(ctx, p.Actor(), action, res.Type+"/"+res.ID, d.Reason, d.Policies, extra...)
		return d, fmt.Errorf("%w: %s", ErrForbidden, d.Reason)
	}
	return d, nil
}
