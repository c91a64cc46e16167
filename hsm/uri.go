package hsm

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// URI is a parsed key URI. Two forms exist:
//
//	soft:ca/root-2026                          opaque name in the software keystore
//	pkcs11:token=ca;object=root-2026;id=%01    RFC 7512 path attributes
//
// PINs are never part of a key URI: they come from configuration by reference.
type URI struct {
	Scheme string
	// Opaque is the name for opaque URIs (soft:NAME).
	Opaque string
	// Attrs holds RFC 7512 path attributes, percent-decoded.
	Attrs map[string]string
}

// ParseURI parses and validates a key URI.
func ParseURI(s string) (*URI, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" || rest == "" {
		return nil, fmt.Errorf("%w: %q", ErrBadURI, s)
	}
	for _, c := range scheme {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return nil, fmt.Errorf("%w: scheme %q", ErrBadURI, scheme)
		}
	}
	u := &URI{Scheme: scheme}
	if !strings.Contains(rest, "=") {
		if strings.ContainsAny(rest, " ;?#%") {
			return nil, fmt.Errorf("%w: name %q has forbidden characters", ErrBadURI, rest)
		}
		u.Opaque = rest
		return u, nil
	}
	// RFC 7512 §2.3: path attributes separated by ';'; query attributes after
	// '?' (pin-source, module-path) are refused: PINs come from configuration.
	if strings.ContainsAny(rest, "?#") {
		return nil, fmt.Errorf("%w: query attributes are not accepted in key URIs", ErrBadURI)
	}
	u.Attrs = map[string]string{}
	for _, part := range strings.Split(rest, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: attribute %q", ErrBadURI, part)
		}
		dv, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: attribute %q: %v", ErrBadURI, k, err)
		}
		if _, dup := u.Attrs[k]; dup {
			return nil, fmt.Errorf("%w: duplicate attribute %q", ErrBadURI, k)
		}
		u.Attrs[k] = dv
	}
	return u, nil
}

// Get returns an attribute value or "".
func (u *URI) Get(k string) string { return u.Attrs[k] }

// String formats the URI canonically (attributes sorted, values escaped).
func (u *URI) String() string {
	if u.Attrs == nil {
		return u.Scheme + ":" + u.Opaque
	}
	keys := make([]string, 0, len(u.Attrs))
	for k := range u.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteByte(':')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(escapeAttr(u.Attrs[k]))
	}
	return b.String()
}

// escapeAttr percent-encodes everything outside RFC 7512's pchar set minus ';'.
func escapeAttr(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("-._~:[]@!$'()*+,&", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
