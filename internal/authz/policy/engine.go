package policy

import (
	"bytes"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/emmansun/gmsm/sm3"
)

//go:embed policies/*.cedar
var platformFS embed.FS

// Limits on site policy files.
const (
	maxSiteFiles    = 256
	maxSiteFileSize = 1 << 20
)

// Origins of policies.
const (
	OriginPlatform = "platform" // compiled into the binary
	OriginSite     = "site"     // loaded from the data directory
)

// PolicyInfo describes one policy statement, for an administrator's "policy
// read" view.
type PolicyInfo struct {
	ID     string `json:"id"`     // the @id annotation
	Origin string `json:"origin"` // OriginPlatform or OriginSite
	Source string `json:"source"` // file name, e.g. platform-v1.cedar
	Line   int    `json:"line"`   // line of the statement in Source
	Effect string `json:"effect"` // "permit" or "forbid"
	Doc    string `json:"doc,omitempty"`
	Text   string `json:"text"` // the statement as written
}

// Engine decides requests against the platform policies and the site's.
// It is safe for concurrent use; Reload swaps the site policies atomically.
type Engine struct {
	mu       sync.Mutex // serialises Reload
	platform []compiled
	versions []string // platform file versions, e.g. platform-v1
	platSum  []sourceFile
	state    atomic.Pointer[snapshot]
}

type sourceFile struct {
	name string
	data []byte
}

type compiled struct {
	id     types.PolicyID
	policy *cedar.Policy
	// fast is policy without its action scope, for use only where filter
	// has already found that scope matches the request's action.
	fast *cedar.Policy
	info PolicyInfo
}

// snapshot is an immutable loaded policy set.
type snapshot struct {
	all     []compiled
	effect  map[types.PolicyID]types.Effect
	index   map[string]policyList // per action: the policies whose action scope can match it
	version string
	infos   []PolicyInfo
}

// policyList is a cedar.PolicyIterator over a slice, in a fixed order.
type policyList []compiled

// All yields the policies in order.
func (l policyList) All() iter.Seq2[types.PolicyID, *cedar.Policy] {
	return func(yield func(types.PolicyID, *cedar.Policy) bool) {
		for i := range l {
			if !yield(l[i].id, l[i].policy) {
				return
			}
		}
	}
}

var policyID = regexp.MustCompile(`^[a-z0-9][a-z0-9._:-]{0,127}$`)

// New returns an engine with the platform policies compiled into the binary
// and the *.cedar files at the root of site (nil for none). Site policies add
// to the platform's: Cedar's rules are that any matching forbid wins, so a
// site permit can never override a platform forbid, while a site forbid can
// narrow what the platform permits. Every site statement needs an
// @id("site.…") annotation. Actions the policies name must be registered
// first (see Register).
func New(site fs.FS) (*Engine, error) {
	e := &Engine{}
	names, err := fs.Glob(platformFS, "policies/*.cedar")
	if err != nil {
		return nil, fmt.Errorf("policy: platform policies: %w", err)
	}
	slices.Sort(names)
	ids := map[types.PolicyID]string{}
	for _, n := range names {
		data, err := platformFS.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("policy: platform policies: %w", err)
		}
		base := path.Base(n)
		ps, err := compile(OriginPlatform, base, data, ids)
		if err != nil {
			return nil, err
		}
		e.platform = append(e.platform, ps...)
		e.versions = append(e.versions, strings.TrimSuffix(base, ".cedar"))
		e.platSum = append(e.platSum, sourceFile{base, data})
	}
	if err := e.Reload(site); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload replaces the site policies with the *.cedar files at the root of
// site (nil removes them). When any file is unreadable or invalid the
// policies in force stay as they were and the error names the file.
func (e *Engine) Reload(site fs.FS) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make(map[types.PolicyID]string, len(e.platform))
	for _, p := range e.platform {
		ids[p.id] = p.info.Source
	}
	all := slices.Clone(e.platform)
	files := slices.Clone(e.platSum)
	var siteNames []string
	if site != nil {
		names, err := fs.Glob(site, "*.cedar")
		if err != nil {
			return fmt.Errorf("policy: site policies: %w", err)
		}
		if len(names) > maxSiteFiles {
			return fmt.Errorf("policy: site policies: %d files, at most %d", len(names), maxSiteFiles)
		}
		slices.Sort(names)
		for _, n := range names {
			data, err := readLimited(site, n)
			if err != nil {
				return fmt.Errorf("policy: site policy %s: %w", n, err)
			}
			ps, err := compile(OriginSite, n, data, ids)
			if err != nil {
				return err
			}
			all = append(all, ps...)
			files = append(files, sourceFile{"site/" + n, data})
			siteNames = append(siteNames, n)
		}
	}
	s := &snapshot{all: all, effect: make(map[types.PolicyID]types.Effect, len(all))}
	for _, p := range all {
		s.effect[p.id] = p.policy.Effect()
		s.infos = append(s.infos, p.info)
	}
	cat := current.Load()
	s.index = make(map[string]policyList, len(cat.byName))
	for name, a := range cat.byName {
		s.index[name] = filter(all, a)
	}
	s.version = version(e.versions, siteNames, files)
	e.state.Store(s)
	return nil
}

func readLimited(fsys fs.FS, name string) ([]byte, error) {
	info, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if info.Size() > maxSiteFileSize {
		return nil, fmt.Errorf("%d bytes, at most %d", info.Size(), maxSiteFileSize)
	}
	return fs.ReadFile(fsys, name)
}

// version names the loaded set: the platform file versions, the site files,
// and the SM3 hash of every file's name and bytes, in load order.
func version(platform, site []string, files []sourceFile) string {
	h := sm3.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.data))
		h.Write(f.data)
	}
	v := strings.Join(platform, "+")
	if len(site) > 0 {
		v += " site:" + strings.Join(site, ",")
	}
	return v + " sm3:" + hex.EncodeToString(h.Sum(nil))
}

// compile parses one file and checks every statement: an @id of the right
// origin, unique across the set (ids records those seen, with their file),
// and only registered actions named.
func compile(origin, name string, data []byte, ids map[types.PolicyID]string) ([]compiled, error) {
	list, err := cedar.NewPolicyListFromBytes(name, data)
	if err != nil {
		return nil, fmt.Errorf("policy: %s policy %s: %w", origin, name, err)
	}
	cat := current.Load()
	out := make([]compiled, 0, len(list))
	for i, p := range list {
		pos := p.Position()
		where := fmt.Sprintf("%s policy %s:%d", origin, name, pos.Line)
		id := string(p.Annotations()["id"])
		switch {
		case id == "":
			return nil, fmt.Errorf("policy: %s: no @id(\"…\") annotation", where)
		case !policyID.MatchString(id):
			return nil, fmt.Errorf("policy: %s: @id %q is not lowercase [a-z0-9._:-]", where, id)
		case origin == OriginPlatform && !strings.HasPrefix(id, "platform."):
			return nil, fmt.Errorf("policy: %s: @id %q must start with \"platform.\"", where, id)
		case origin == OriginSite && !strings.HasPrefix(id, "site."):
			return nil, fmt.Errorf("policy: %s: @id %q must start with \"site.\"", where, id)
		}
		if prev, dup := ids[types.PolicyID(id)]; dup {
			return nil, fmt.Errorf("policy: %s: @id %q already used in %s", where, id, prev)
		}
		if err := checkActions(p, cat); err != nil {
			return nil, fmt.Errorf("policy: %s (%s): %w", where, id, err)
		}
		ids[types.PolicyID(id)] = name
		end := len(data)
		if i+1 < len(list) {
			end = list[i+1].Position().Offset
		}
		text, doc := extract(data, pos.Offset, end)
		effect := "forbid"
		if p.Effect() == cedar.Permit {
			effect = "permit"
		}
		// The scope is tested once per action by filter, not per decision.
		noScope := *(*xast.Policy)(p.AST())
		noScope.Action = xast.ScopeTypeAll{}
		fast := cedar.NewPolicyFromAST((*ast.Policy)(&noScope))
		out = append(out, compiled{id: types.PolicyID(id), policy: p, fast: fast, info: PolicyInfo{
			ID: id, Origin: origin, Source: name, Line: pos.Line, Effect: effect, Doc: doc, Text: text,
		}})
	}
	return out, nil
}

// checkActions refuses a policy that names an action that is not in the
// catalogue or a group that does not exist: a typing mistake there would
// otherwise silently grant or forbid nothing.
func checkActions(p *cedar.Policy, cat *catalogue) error {
	ap := (*xast.Policy)(p.AST())
	var uids []types.EntityUID
	switch s := ap.Action.(type) {
	case xast.ScopeTypeEq:
		uids = append(uids, s.Entity)
	case xast.ScopeTypeIn:
		uids = append(uids, s.Entity)
	case xast.ScopeTypeInSet:
		uids = append(uids, s.Entities...)
	}
	for _, c := range ap.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			if v, ok := n.(xast.NodeValue); ok {
				if uid, ok := v.Value.(types.EntityUID); ok && uid.Type == actionType {
					uids = append(uids, uid)
				}
			}
			return true
		})
	}
	for _, u := range uids {
		if u.Type != actionType {
			return fmt.Errorf("action %s is not of type %s", u, actionType)
		}
		if !cat.known(u) {
			return fmt.Errorf("unknown action or group %s", u)
		}
	}
	return nil
}

// filter returns the policies whose action scope can match a, in their
// scope-less form. This is exact: a policy's scope is a conjunct of its
// condition, and the action hierarchy is fixed (an action's parents are its
// class and service groups, which have no parents), so the scope's value for
// a is known here once and for all.
func filter(all []compiled, a *entry) policyList {
	in := func(u types.EntityUID) bool { return u == a.uid || a.entity.Parents.Contains(u) }
	var out policyList
	for _, p := range all {
		var match bool
		switch s := (*xast.Policy)(p.policy.AST()).Action.(type) {
		case xast.ScopeTypeEq:
			match = s.Entity == a.uid
		case xast.ScopeTypeIn:
			match = in(s.Entity)
		case xast.ScopeTypeInSet:
			match = slices.ContainsFunc(s.Entities, in)
		default:
			match = true
		}
		if match {
			p.policy = p.fast
			out = append(out, p)
		}
	}
	return out
}

// extract returns the statement text in data[start:end] without the comments
// and blank lines that trail it (they introduce the next statement), and the
// comment block directly above start as its documentation.
func extract(data []byte, start, end int) (text, doc string) {
	if start < 0 || start > end || end > len(data) {
		return "", ""
	}
	lines := strings.Split(string(data[start:end]), "\n")
	for len(lines) > 1 {
		l := strings.TrimSpace(lines[len(lines)-1])
		if l != "" && !strings.HasPrefix(l, "//") {
			break
		}
		lines = lines[:len(lines)-1]
	}
	text = strings.TrimSpace(strings.Join(lines, "\n"))
	above := bytes.Split(data[:start], []byte("\n"))
	if len(above) > 0 {
		above = above[:len(above)-1] // the part of start's line before it
	}
	var block []string
	for i := len(above) - 1; i >= 0; i-- {
		l := strings.TrimSpace(string(above[i]))
		c, ok := strings.CutPrefix(l, "//")
		if !ok {
			break
		}
		block = append(block, strings.TrimSpace(c))
	}
	slices.Reverse(block)
	return text, strings.Join(block, "\n")
}

// Version names the policy set in force: the platform policy versions, the
// site files, and the SM3 hash over all of them, e.g.
// "platform-v1 site:local.cedar sm3:9c1f…".
func (e *Engine) Version() string { return e.state.Load().version }

// Policies describes every policy in force: the platform's in file order,
// then the site's by file name.
func (e *Engine) Policies() []PolicyInfo { return slices.Clone(e.state.Load().infos) }
