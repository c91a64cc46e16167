package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go/types"
)

// Class groups actions by what they do to the platform. Policies grant and
// forbid by class (action in Govtrust::Action::"class:write"), so a new
// action of a known class is covered by the class rules at once — above all
// by the auditor's read-only forbid.
type Class string

// Action classes.
const (
	ClassRead    Class = "read"    // reads, changes nothing, and is not the audit log
	ClassWrite   Class = "write"   // changes business state (certificates, seals, requests)
	ClassAdmin   Class = "admin"   // changes platform or security configuration (accounts, roles, tokens, policies, node)
	ClassAudit   Class = "audit"   // reads audit log records: the auditor's alone
	ClassApprove Class = "approve" // approves someone else's request (maker–checker)
	ClassKey     Class = "key"     // creates, destroys, recovers or uses key material on someone's behalf
)

// Classes lists every class.
var Classes = []Class{ClassRead, ClassWrite, ClassAdmin, ClassAudit, ClassApprove, ClassKey}

// Valid reports whether c is one of the classes.
func (c Class) Valid() bool { return slices.Contains(Classes, c) }

// Action is an action the platform checks. Its name is
// "<service>.<object>.<verb>" in lowercase; the first segment is its service
// group (Govtrust::Action::"service:<service>").
type Action struct {
	Name        string `json:"name"`
	Class       Class  `json:"class"`
	Description string `json:"description"`
}

// Service returns the first segment of the action's name.
func (a Action) Service() string {
	s, _, _ := strings.Cut(a.Name, ".")
	return s
}

// ErrDuplicateAction is returned by Register for a name already declared.
var ErrDuplicateAction = errors.New("policy: action already registered")

// Cedar entity types of the model.
const (
	actionType   types.EntityType = "Govtrust::Action"
	accountType  types.EntityType = "Govtrust::Account"
	resourceType types.EntityType = "Govtrust::Resource"
)

func classUID(c Class) types.EntityUID {
	return types.NewEntityUID(actionType, types.String("class:"+string(c)))
}

func serviceUID(s string) types.EntityUID {
	return types.NewEntityUID(actionType, types.String("service:"+s))
}

// entry is a catalogued action with its pre-built Cedar entity, so that the
// hot path never builds action entities.
type entry struct {
	Action
	uid    types.EntityUID
	entity types.Entity
}

// catalogue is an immutable snapshot: Register copies and swaps it, Decide
// reads it without locks.
type catalogue struct {
	byName   map[string]*entry
	entities map[types.EntityUID]types.Entity // actions and their groups
	services map[string]bool
}

var (
	registerMu sync.Mutex
	current    atomic.Pointer[catalogue]
)

var actionName = regexp.MustCompile(`^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$`)

// Register declares an action. Services register theirs before the engine is
// built (New checks that the policies name only declared actions); a name
// already registered is an error wrapping ErrDuplicateAction.
func Register(a Action) error {
	switch {
	case !actionName.MatchString(a.Name):
		return fmt.Errorf("policy: action name %q is not <service>.<verb> in lowercase", a.Name)
	case !a.Class.Valid():
		return fmt.Errorf("policy: action %s: unknown class %q", a.Name, a.Class)
	case strings.TrimSpace(a.Description) == "":
		return fmt.Errorf("policy: action %s: no description", a.Name)
	}
	registerMu.Lock()
	defer registerMu.Unlock()
	old := current.Load()
	if old == nil {
		old = &catalogue{}
	}
	if _, dup := old.byName[a.Name]; dup {
		return fmt.Errorf("%w: %s", ErrDuplicateAction, a.Name)
	}
	next := &catalogue{
		byName:   make(map[string]*entry, len(old.byName)+1),
		entities: make(map[types.EntityUID]types.Entity, len(old.entities)+3),
		services: make(map[string]bool, len(old.services)+1),
	}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	for k, v := range old.entities {
		next.entities[k] = v
	}
	for k := range old.services {
		next.services[k] = true
	}
	e := &entry{Action: a, uid: types.NewEntityUID(actionType, types.String(a.Name))}
	e.entity = types.Entity{UID: e.uid, Parents: types.NewEntityUIDSet(classUID(a.Class), serviceUID(a.Service()))}
	next.byName[a.Name] = e
	next.entities[e.uid] = e.entity
	for _, g := range []types.EntityUID{classUID(a.Class), serviceUID(a.Service())} {
		if _, ok := next.entities[g]; !ok {
			next.entities[g] = types.Entity{UID: g}
		}
	}
	next.services[a.Service()] = true
	current.Store(next)
	return nil
}

// Lookup returns the action of that name.
func Lookup(name string) (Action, bool) {
	if c := current.Load(); c != nil {
		if e, ok := c.byName[name]; ok {
			return e.Action, true
		}
	}
	return Action{}, false
}

// All returns every registered action, sorted by name.
func All() []Action {
	c := current.Load()
	if c == nil {
		return nil
	}
	out := make([]Action, 0, len(c.byName))
	for _, e := range c.byName {
		out = append(out, e.Action)
	}
	slices.SortFunc(out, func(a, b Action) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// known reports whether uid names a registered action or one of the groups
// policies may use: class:<class> for every class, service:<s> for a service
// with at least one action.
func (c *catalogue) known(uid types.EntityUID) bool {
	if uid.Type != actionType {
		return false
	}
	id := string(uid.ID)
	if cl, ok := strings.CutPrefix(id, "class:"); ok {
		return Class(cl).Valid()
	}
	if s, ok := strings.CutPrefix(id, "service:"); ok {
		return c.services[s]
	}
	_, ok := c.byName[id]
	return ok
}

// seed is the platform's catalogue: the actions that exist or are imminent.
var seed = []Action{
	{"metrics.read", ClassRead, "Read the Prometheus metrics"},
	{"node.config.read", ClassRead, "Read the node's configuration"},
	{"node.config.update", ClassAdmin, "Change the node's configuration"},

	{"audit.read", ClassAudit, "Read audit log records"},
	{"audit.export", ClassAudit, "Export the audit log"},
	{"audit.checkpoint.read", ClassRead, "Read the audit log's signed checkpoints (tree heads, no record contents)"},

	{"authz.token.create", ClassAdmin, "Create an API token"},
	{"authz.token.list", ClassRead, "List API tokens (never their secrets)"},
	{"authz.token.revoke", ClassAdmin, "Revoke an API token"},
	{"authz.account.create", ClassAdmin, "Create an account"},
	{"authz.account.disable", ClassAdmin, "Disable an account"},
	{"authz.account.list", ClassRead, "List accounts and their roles"},
	{"authz.cert.bind", ClassAdmin, "Bind a client certificate to an account"},
	{"authz.role.grant", ClassAdmin, "Grant a role to an account"},
	{"authz.role.revoke", ClassAdmin, "Revoke a role from an account"},
	{"authz.policy.read", ClassRead, "Read the authorization policies in force"},
	{"authz.policy.reload", ClassAdmin, "Reload the site's authorization policies"},

	{"org.registry.set", ClassAdmin, "Register an organisation's legal name and codes, which its certificates must carry"},
	{"org.registry.list", ClassRead, "List the registered organisations with their legal names and codes"},

	{"hsm.key.create", ClassKey, "Create a key in the key manager"},
	{"hsm.key.delete", ClassKey, "Destroy a key in the key manager"},
	{"hsm.key.list", ClassRead, "List the key manager's keys (public parts only)"},

	{"dual.request", ClassWrite, "Ask for a dual-control operation"},
	{"dual.read", ClassRead, "Read a dual-control request (what is to be approved)"},
	{"dual.approve", ClassApprove, "Approve someone else's dual-control request"},
	{"dual.reject", ClassWrite, "Veto a dual-control request, or withdraw one's own"},

	{"ca.certificate.issue", ClassWrite, "Issue a certificate"},
	{"ca.certificate.revoke", ClassWrite, "Revoke a certificate"},
	{"ca.certificate.read", ClassRead, "Read a certificate and its status"},
	{"ca.crl.generate", ClassWrite, "Generate a CRL now"},
	{"ca.authority.rollover", ClassKey, "Roll a CA over to a new key and certificate"},
	{"ca.profile.read", ClassRead, "Read the certificate profiles offered"},
	{"ca.authority.revoke", ClassWrite, "Revoke a CA certificate (under dual control)"},
	{"ca.authority.cross", ClassWrite, "Publish a cross-certificate another CA issued to a CA"},

	{"tsa.timestamp", ClassWrite, "Obtain an RFC 3161 time-stamp token"},

	{"directory.entry.read", ClassRead, "Read every attribute of directory entries over LDAP (telephone and ID numbers too)"},
	{"directory.entry.write", ClassWrite, "Add, change or delete directory entries over LDAP (not the CA's entries)"},
	{"directory.import", ClassWrite, "Import departments, people, applications and services into the directory"},

	{"kms.encrypt", ClassKey, "Encrypt with an application key"},
	{"kms.decrypt", ClassKey, "Decrypt with an application key"},
	{"kms.rotate", ClassKey, "Rotate an application key"},
	{"kms.key.recover", ClassKey, "Recover an escrowed encryption key (after dual-control approval)"},
	{"kms.key.create", ClassKey, "Create an application key"},
	{"kms.key.read", ClassRead, "Read application keys' settings and versions (never their material)"},
	{"kms.key.update", ClassKey, "Enable, disable or retire versions of an application key, or set its rotation period"},
	{"kms.key.destroy", ClassKey, "Destroy an application key version (under dual control)"},
	{"kms.rewrap", ClassKey, "Re-encrypt a ciphertext under an application key's newest version"},

	{"seal.apply", ClassWrite, "Apply for an electronic seal"},
	{"seal.approve", ClassApprove, "Approve a seal application"},
	{"seal.make", ClassWrite, "Make and register an approved seal"},
	{"seal.use", ClassWrite, "Seal a document"},
	{"seal.read", ClassRead, "Read the organisation's seals and applications"},
	{"seal.revoke", ClassWrite, "Suspend, resume or revoke a seal"},
	{"seal.usage.read", ClassRead, "Read a seal's usage log"},

	{"signature.sign", ClassKey, "Sign with a key held for the caller"},
	{"signature.verify", ClassRead, "Verify a signature"},
	{"signature.key.create", ClassKey, "Create a signing key for an application account and have its certificate issued"},
	{"signature.key.read", ClassRead, "Read a signing key's certificate (never the private key)"},
}

func init() {
	for _, a := range seed {
		if err := Register(a); err != nil {
			panic(err) // a static table: a mistake here is a programming error
		}
	}
}
