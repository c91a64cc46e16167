package directory

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
)

// indexedAttrs have an equality index: the lookups relying parties make
// (a certificate by serial, a person by uid or mail, an entry by cn).
var indexedAttrs = map[string]bool{"uid": true, "mail": true, "cn": true}

// tree is the in-memory copy of dir_entries every search reads. Entries are
// immutable once in the tree: a change replaces the *Entry, so a search
// holding the read lock only briefly can use what it found afterwards.
type tree struct {
	mu       sync.RWMutex
	entries  map[string]*Entry
	children map[string][]string // parent norm -> child norms, sorted
	index    map[string]map[string][]string
	version  int64
}

func newTree() *tree {
	t := &tree{}
	t.reset(nil, 0)
	return t
}

// reset replaces the whole content.
func (t *tree) reset(es []*Entry, version int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = make(map[string]*Entry, len(es))
	t.children = map[string][]string{}
	t.index = map[string]map[string][]string{}
	for a := range indexedAttrs {
		t.index[a] = map[string][]string{}
	}
	for _, e := range es {
		t.putLocked(e)
	}
	t.version = version
}

func (t *tree) get(norm string) *Entry {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.entries[norm]
}

// applyNext applies the batch that took the directory from version-1 to
// version: it puts the entries of upserts and removes deletes (norms). It
// changes nothing and returns false, with the tree's version, when the tree
// is not at version-1.
func (t *tree) applyNext(upserts []*Entry, deletes []string, version int64) (have int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.version != version-1 {
		return t.version, false
	}
	for _, n := range deletes {
		t.deleteLocked(n)
	}
	for _, e := range upserts {
		t.putLocked(e)
	}
	t.version = version
	return version, true
}

func (t *tree) putLocked(e *Entry) {
	if old, ok := t.entries[e.norm]; ok {
		t.unindexLocked(old)
	} else {
		kids := t.children[e.parent]
		i, _ := slices.BinarySearch(kids, e.norm)
		t.children[e.parent] = slices.Insert(kids, i, e.norm)
	}
	t.entries[e.norm] = e
	for a := range indexedAttrs {
		for _, v := range e.Attrs[a] {
			k := string(fold(a, v))
			t.index[a][k] = append(t.index[a][k], e.norm)
		}
	}
}

func (t *tree) deleteLocked(norm string) {
	e, ok := t.entries[norm]
	if !ok {
		return
	}
	t.unindexLocked(e)
	delete(t.entries, norm)
	kids := t.children[e.parent]
	if i, found := slices.BinarySearch(kids, norm); found {
		t.children[e.parent] = slices.Delete(kids, i, i+1)
	}
}

func (t *tree) unindexLocked(e *Entry) {
	for a := range indexedAttrs {
		for _, v := range e.Attrs[a] {
			k := string(fold(a, v))
			l := slices.DeleteFunc(t.index[a][k], func(n string) bool { return n == e.norm })
			if len(l) == 0 {
				delete(t.index[a], k)
			} else {
				t.index[a][k] = l
			}
		}
	}
}

// Search scopes (RFC 4511 §4.5.1.2).
const (
	scopeBase = 0
	scopeOne  = 1
	scopeSub  = 2
)

// errNoSuchObject: the search base does not exist.
var errNoSuchObject = errors.New("directory: no such object")

// search returns the entries under base (norm) in scope that match f, in a
// stable order, checking ctx between entries so that a time limit can end
// it (its error is returned with what was found so far). It stops at max
// entries: a caller that needs to know whether there were more asks for
// one more than it will send.
func (t *tree) search(ctx context.Context, base string, scope int, f *filter, visible func(string) bool, max int) ([]*Entry, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	root, ok := t.entries[base]
	if !ok && base != "" {
		return nil, errNoSuchObject
	}
	var out []*Entry
	if max <= 0 {
		return nil, nil
	}
	if scope == scopeBase {
		if root != nil && f.match(root, visible) {
			out = append(out, root)
		}
		return out, nil
	}
	inScope := func(n string) bool {
		e := t.entries[n]
		switch scope {
		case scopeOne:
			return e.parent == base
		default:
			return underBase(n, base)
		}
	}
	if attr, v, ok := f.indexed(); ok && visible(attr) {
		cands := slices.Clone(t.index[attr][string(v)])
		slices.Sort(cands)
		for _, n := range cands {
			if len(out) == max {
				break
			}
			if e := t.entries[n]; inScope(n) && f.match(e, visible) {
				out = append(out, e)
			}
		}
		return out, nil
	}
	var walk func(n string, depth int) error
	steps := 0
	walk = func(n string, depth int) error {
		for _, c := range t.children[n] {
			if len(out) == max {
				return nil
			}
			steps++
			if steps%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if e := t.entries[c]; f.match(e, visible) {
				out = append(out, e)
			}
			if scope == scopeSub {
				if err := walk(c, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if scope == scopeSub && root != nil && f.match(root, visible) {
		out = append(out, root)
	}
	err := walk(base, 0)
	return out, err
}

// findBy returns the norms of entries whose attr equals value (indexed
// attributes only).
func (t *tree) findBy(attr, value string) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.index[attr][strings.ToLower(strings.TrimSpace(value))])
}
