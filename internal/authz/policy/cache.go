package policy

import (
	"strings"
	"sync"

	"github.com/cedar-policy/cedar-go/types"
)

// Building a Cedar record costs more than evaluating most policies (it
// sorts and hashes its keys and copies its map), and a busy principal asks
// many times with the same identity and the same context. Entities are pure
// functions of their fields and immutable, so they are cached by those
// fields; the caches are bounded and simply emptied when full.
const maxCached = 4096

type boundedCache[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]V
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[K]V)
	}
	c.m[k] = v
	c.mu.Unlock()
}

type principalKey struct {
	id, org   string
	clearance Level
	roles     string // the roles in request order, joined by NUL (valid roles hold no NUL)
}

type contextKey struct{ k, v string }

var (
	principals boundedCache[principalKey, types.Entity]
	contexts   boundedCache[contextKey, types.Record]
)

func cachedPrincipal(p Principal) types.Entity {
	k := principalKey{id: p.ID, org: p.Org, clearance: p.Clearance}
	for _, r := range p.Roles {
		if !r.Valid() { // unusual: not worth a cache entry, and the key must be unambiguous
			return principalEntity(p)
		}
	}
	switch len(p.Roles) {
	case 0:
	case 1:
		k.roles = string(p.Roles[0])
	default:
		var b strings.Builder
		for i, r := range p.Roles {
			if i > 0 {
				b.WriteByte(0)
			}
			b.WriteString(string(r))
		}
		k.roles = b.String()
	}
	if e, ok := principals.get(k); ok {
		return e
	}
	e := principalEntity(p)
	principals.put(k, e)
	return e
}

func cachedContext(c map[string]string) types.Record {
	if len(c) != 1 {
		return contextRecord(c)
	}
	var k contextKey
	for key, v := range c {
		k = contextKey{key, v}
	}
	if r, ok := contexts.get(k); ok {
		return r
	}
	r := contextRecord(c)
	contexts.put(k, r)
	return r
}
