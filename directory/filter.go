package directory

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// ErrFilter reports a search filter that does not parse or that the
// directory does not evaluate.
var ErrFilter = errors.New("directory: bad filter")

// maxFilterDepth bounds the nesting of and/or/not, so a hostile filter
// cannot make evaluation recurse without end.
const maxFilterDepth = 32

// filter is a compiled search filter (RFC 4511 §4.5.1.7).
type filter struct {
	op       uint64
	attr     string // canonical attribute name
	value    []byte
	subs     []sub
	children []*filter
}

type sub struct {
	kind  uint64 // ldap.FilterSubstringsInitial, Any, Final
	value []byte
}

// filterCache keeps compiled filters: relying parties send the same few
// filters again and again. Compiled filters are immutable. The cache is
// emptied when it reaches filterCacheMax, so hostile clients cannot grow it.
var filterCache struct {
	sync.Mutex
	m map[string]*filter
}

const filterCacheMax = 4096

// compileFilter parses the string form of a filter (RFC 4515), from the
// cache when it was seen before.
func compileFilter(s string) (*filter, error) {
	filterCache.Lock()
	f, ok := filterCache.m[s]
	filterCache.Unlock()
	if ok {
		return f, nil
	}
	f, err := parseFilter(s)
	if err != nil {
		return nil, err
	}
	filterCache.Lock()
	if filterCache.m == nil || len(filterCache.m) >= filterCacheMax {
		filterCache.m = map[string]*filter{}
	}
	filterCache.m[s] = f
	filterCache.Unlock()
	return f, nil
}

func parseFilter(s string) (*filter, error) {
	if len(s) > 16384 {
		return nil, fmt.Errorf("%w: longer than 16384 bytes", ErrFilter)
	}
	p, err := ldap.CompileFilter(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFilter, err)
	}
	return fromPacket(p, 0)
}

func fromPacket(p *ber.Packet, depth int) (*filter, error) {
	if depth > maxFilterDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrFilter, maxFilterDepth)
	}
	if p.ClassType != ber.ClassContext {
		return nil, fmt.Errorf("%w: not a filter choice", ErrFilter)
	}
	f := &filter{op: uint64(p.Tag)}
	switch f.op {
	case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
		if f.op == ldap.FilterNot && len(p.Children) != 1 {
			return nil, fmt.Errorf("%w: not with %d operands", ErrFilter, len(p.Children))
		}
		for _, c := range p.Children {
			cf, err := fromPacket(c, depth+1)
			if err != nil {
				return nil, err
			}
			f.children = append(f.children, cf)
		}
	case ldap.FilterEqualityMatch, ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual, ldap.FilterApproxMatch:
		if len(p.Children) != 2 {
			return nil, fmt.Errorf("%w: assertion with %d parts", ErrFilter, len(p.Children))
		}
		f.attr = schemaName(p.Children[0].Data.String())
		f.value = p.Children[1].Data.Bytes()
	case ldap.FilterPresent:
		f.attr = schemaName(p.Data.String())
	case ldap.FilterSubstrings:
		if len(p.Children) != 2 {
			return nil, fmt.Errorf("%w: substrings with %d parts", ErrFilter, len(p.Children))
		}
		f.attr = schemaName(p.Children[0].Data.String())
		for _, c := range p.Children[1].Children {
			f.subs = append(f.subs, sub{kind: uint64(c.Tag), value: c.Data.Bytes()})
		}
	default:
		// Extensible match (RFC 4511 §4.5.1.7.7) is not evaluated: the
		// filter is rejected rather than silently mis-answered.
		return nil, fmt.Errorf("%w: filter type %d not supported", ErrFilter, f.op)
	}
	return f, nil
}

// fold is the comparison form of a value: case-insensitive for text
// attributes (caseIgnoreMatch, RFC 4517 §4.2.11, without full Unicode
// preparation), exact for binary ones.
func fold(attr string, v []byte) []byte {
	if binaryAttrs[attr] {
		return v
	}
	return []byte(strings.ToLower(strings.TrimSpace(string(v))))
}

// match reports whether e matches f, seeing only the attributes visible
// allows: an attribute the client may not read is absent to its filters,
// so a filter cannot be used to probe private values.
func (f *filter) match(e *Entry, visible func(string) bool) bool {
	switch f.op {
	case ldap.FilterAnd:
		for _, c := range f.children {
			if !c.match(e, visible) {
				return false
			}
		}
		return true
	case ldap.FilterOr:
		for _, c := range f.children {
			if c.match(e, visible) {
				return true
			}
		}
		return false
	case ldap.FilterNot:
		return !f.children[0].match(e, visible)
	}
	if !visible(f.attr) {
		return false
	}
	vals := e.Attrs[f.attr]
	switch f.op {
	case ldap.FilterPresent:
		return len(vals) > 0 || (f.attr == "objectClass")
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch:
		want := fold(f.attr, f.value)
		for _, v := range vals {
			if bytes.Equal(fold(f.attr, v), want) {
				return true
			}
		}
	case ldap.FilterGreaterOrEqual, ldap.FilterLessOrEqual:
		want := fold(f.attr, f.value)
		for _, v := range vals {
			c := bytes.Compare(fold(f.attr, v), want)
			if (f.op == ldap.FilterGreaterOrEqual && c >= 0) || (f.op == ldap.FilterLessOrEqual && c <= 0) {
				return true
			}
		}
	case ldap.FilterSubstrings:
		for _, v := range vals {
			if f.matchSubstrings(fold(f.attr, v)) {
				return true
			}
		}
	}
	return false
}

func (f *filter) matchSubstrings(v []byte) bool {
	for _, s := range f.subs {
		want := fold(f.attr, s.value)
		switch s.kind {
		case ldap.FilterSubstringsInitial:
			if !bytes.HasPrefix(v, want) {
				return false
			}
			v = v[len(want):]
		case ldap.FilterSubstringsAny:
			i := bytes.Index(v, want)
			if i < 0 {
				return false
			}
			v = v[i+len(want):]
		case ldap.FilterSubstringsFinal:
			if !bytes.HasSuffix(v, want) {
				return false
			}
			v = v[:len(v)-len(want)]
		}
	}
	return true
}

// indexed returns an equality assertion on an indexed attribute that f
// requires (f itself, or a conjunct of an and), for a lookup instead of a
// scan.
func (f *filter) indexed() (attr string, value []byte, ok bool) {
	switch f.op {
	case ldap.FilterEqualityMatch:
		if indexedAttrs[f.attr] {
			return f.attr, fold(f.attr, f.value), true
		}
	case ldap.FilterAnd:
		for _, c := range f.children {
			if a, v, ok := c.indexed(); ok {
				return a, v, true
			}
		}
	}
	return "", nil, false
}
