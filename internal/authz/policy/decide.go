package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// Principal is who asks: an account with its organisation, roles and
// clearance.
type Principal struct {
	ID        string
	Org       string
	Roles     []Role
	Clearance Level
}

// Cleared reports whether p may see a resource at level l: the filter for
// listings, the same rule as policy platform.clearance.
func (p Principal) Cleared(l Level) bool { return l.Valid() && p.Clearance.Valid() && l <= p.Clearance }

// Resource is what is acted on. Type and ID name it ("account", "a1b2");
// Org is the organisation it belongs to, Owner the account that owns it (the
// requester, for a request), Level its classification. Attrs are extra
// attributes site policies may test as resource.attrs.<name>.
type Resource struct {
	Type  string
	ID    string
	Org   string
	Owner string
	Level Level
	Attrs map[string]string
}

// Request is one authorization question. Context carries facts about the
// request as strings; the platform policies read "requester" (who made the
// request being approved) and "kind" (what a dual-control request is for).
type Request struct {
	Principal Principal
	Action    string
	Resource  Resource
	Context   map[string]string
}

// Decision is the answer, with the ids of the policies that determined it:
// the permits that matched for an allow, the forbids that matched for a
// deny; none when nothing permitted the request.
type Decision struct {
	Allow    bool
	Policies []string
	Reason   string // "permitted by policy X", "denied by policy Y", "no policy permits …"
	Version  string // the policy set that decided (Engine.Version)
}

// Decide answers req. Anything not permitted is denied: an unknown action,
// an invalid request, a policy that cannot be evaluated. It never panics.
func (e *Engine) Decide(req Request) (d Decision) {
	s := e.state.Load()
	if s == nil {
		return Decision{Reason: "policy engine not initialised (use New)"}
	}
	defer func() {
		if r := recover(); r != nil {
			d = Decision{Reason: fmt.Sprintf("internal error deciding %q: %v", req.Action, r), Version: s.version}
		}
	}()
	cat := current.Load()
	a, ok := cat.byName[req.Action]
	if !ok {
		return Decision{Reason: fmt.Sprintf("unknown action %q", req.Action), Version: s.version}
	}
	if msg := req.invalid(); msg != "" {
		return Decision{Reason: "invalid request: " + msg, Version: s.version}
	}
	policies, ok := s.index[req.Action]
	if !ok { // registered after the set was loaded
		policies = filter(s.all, a)
	}
	ents := &requestEntities{
		principal: cachedPrincipal(req.Principal),
		resource:  resourceEntity(req.Resource),
		actions:   cat.entities,
	}
	dec, diag := cedar.Authorize(policies, ents, cedar.Request{
		Principal: ents.principal.UID,
		Action:    a.uid,
		Resource:  ents.resource.UID,
		Context:   cachedContext(req.Context),
	})
	if len(diag.Errors) > 0 {
		// Cedar skips a policy it cannot evaluate. For a permit that denies,
		// as it should; for a forbid it would let the request through, so a
		// forbid that fails denies.
		var failed []string
		var msgs []string
		for _, de := range diag.Errors {
			if s.effect[de.PolicyID] == cedar.Forbid {
				failed = append(failed, string(de.PolicyID))
				msgs = append(msgs, de.String())
			}
		}
		if len(failed) > 0 && dec == cedar.Allow {
			slices.Sort(failed)
			return Decision{Policies: failed, Version: s.version,
				Reason: "denied: " + strings.Join(msgs, "; ")}
		}
	}
	d = Decision{Allow: dec == cedar.Allow, Version: s.version}
	if len(diag.Reasons) == 0 {
		d.Reason = fmt.Sprintf("no policy permits %s on %s/%s", req.Action, req.Resource.Type, req.Resource.ID)
		return d
	}
	d.Policies = make([]string, len(diag.Reasons))
	for i, r := range diag.Reasons {
		d.Policies[i] = string(r.PolicyID)
	}
	slices.Sort(d.Policies)
	verb := "denied by"
	if d.Allow {
		verb = "permitted by"
	}
	if len(d.Policies) == 1 {
		d.Reason = verb + " policy " + d.Policies[0]
	} else {
		d.Reason = verb + " policies " + strings.Join(d.Policies, ", ")
	}
	return d
}

// invalid returns why req cannot be decided, or "".
func (req *Request) invalid() string {
	switch {
	case req.Principal.ID == "":
		return "principal has no id"
	case !req.Principal.Clearance.Valid():
		return fmt.Sprintf("principal clearance %d is not a level", int(req.Principal.Clearance))
	case req.Resource.Type == "":
		return "resource has no type"
	case !req.Resource.Level.Valid():
		return fmt.Sprintf("resource level %d is not a level", int(req.Resource.Level))
	}
	return ""
}

// requestEntities is the entity store of one decision: the principal, the
// resource, and the catalogue's pre-built action entities. Principal and
// resource have different entity types, so their UIDs never collide.
type requestEntities struct {
	principal, resource types.Entity
	actions             map[types.EntityUID]types.Entity
}

// Get returns the entity uid names.
func (r *requestEntities) Get(uid types.EntityUID) (types.Entity, bool) {
	switch uid {
	case r.principal.UID:
		return r.principal, true
	case r.resource.UID:
		return r.resource, true
	}
	e, ok := r.actions[uid]
	return e, ok
}

// Attribute names, interned once.
const (
	attrID        types.String = "id"
	attrOrg       types.String = "org"
	attrRoles     types.String = "roles"
	attrClearance types.String = "clearance"
	attrType      types.String = "type"
	attrOwner     types.String = "owner"
	attrLevel     types.String = "level"
	attrAttrs     types.String = "attrs"
)

var (
	emptyRecord = types.NewRecord(nil)
	emptySet    = types.NewSet()
	// roleSets holds the Cedar value of each single role, the common case.
	roleSets = func() map[Role]types.Set {
		m := make(map[Role]types.Set, len(Roles))
		for _, r := range Roles {
			m[r] = types.NewSet(types.String(r))
		}
		return m
	}()
)

func principalEntity(p Principal) types.Entity {
	var roles types.Set
	switch len(p.Roles) {
	case 0:
		roles = emptySet
	case 1:
		var ok bool
		if roles, ok = roleSets[p.Roles[0]]; !ok {
			roles = types.NewSet(types.String(p.Roles[0]))
		}
	default:
		vs := make([]types.Value, len(p.Roles))
		for i, r := range p.Roles {
			vs[i] = types.String(r)
		}
		roles = types.NewSet(vs...)
	}
	return types.Entity{
		UID: types.NewEntityUID(accountType, types.String(p.ID)),
		Attributes: types.NewRecord(types.RecordMap{
			attrID:        types.String(p.ID),
			attrOrg:       types.String(p.Org),
			attrRoles:     roles,
			attrClearance: types.Long(p.Clearance),
		}),
	}
}

func resourceEntity(r Resource) types.Entity {
	attrs := emptyRecord
	if len(r.Attrs) > 0 {
		m := make(types.RecordMap, len(r.Attrs))
		for k, v := range r.Attrs {
			m[types.String(k)] = types.String(v)
		}
		attrs = types.NewRecord(m)
	}
	return types.Entity{
		UID: types.NewEntityUID(resourceType, types.String(r.Type+"/"+r.ID)),
		Attributes: types.NewRecord(types.RecordMap{
			attrType:  types.String(r.Type),
			attrID:    types.String(r.ID),
			attrOrg:   types.String(r.Org),
			attrOwner: types.String(r.Owner),
			attrLevel: types.Long(r.Level),
			attrAttrs: attrs,
		}),
	}
}

func contextRecord(c map[string]string) types.Record {
	if len(c) == 0 {
		return emptyRecord
	}
	m := make(types.RecordMap, len(c))
	for k, v := range c {
		m[types.String(k)] = types.String(v)
	}
	return types.NewRecord(m)
}
