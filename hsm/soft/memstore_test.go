package soft

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/govtrust/govtrust/hsm"
)

// memStore is an in-memory Store for the unit tests of the keystore logic.
// It copies records in and out so tests cannot alias stored bytes, and can
// be tampered with like a database row.
type memStore struct {
	mu     sync.Mutex
	master *MasterRecord
	keys   map[string]*KeyRecord
}

func newMemStore() *memStore { return &memStore{keys: map[string]*KeyRecord{}} }

func cloneMaster(r *MasterRecord) *MasterRecord {
	c := *r
	c.Check, c.Sealed, c.ShareSet, c.DevKey = bytes.Clone(r.Check), bytes.Clone(r.Sealed), bytes.Clone(r.ShareSet), bytes.Clone(r.DevKey)
	c.KDF.Salt = bytes.Clone(r.KDF.Salt)
	return &c
}

func cloneKey(r *KeyRecord) *KeyRecord {
	c := *r
	c.Public, c.Nonce, c.Sealed = bytes.Clone(r.Public), bytes.Clone(r.Nonce), bytes.Clone(r.Sealed)
	return &c
}

func (m *memStore) GetMaster(context.Context) (*MasterRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.master == nil {
		return nil, ErrNotInitialized
	}
	return cloneMaster(m.master), nil
}

func (m *memStore) PutMaster(_ context.Context, r *MasterRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.master != nil {
		return ErrInitialized
	}
	m.master = cloneMaster(r)
	return nil
}

func (m *memStore) PutKey(_ context.Context, r *KeyRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[r.URI]; ok {
		return hsm.ErrExists
	}
	m.keys[r.URI] = cloneKey(r)
	return nil
}

func (m *memStore) GetKey(_ context.Context, uri string) (*KeyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.keys[uri]
	if !ok {
		return nil, hsm.ErrNotFound
	}
	return cloneKey(r), nil
}

func (m *memStore) ListKeys(_ context.Context, service string) ([]*KeyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*KeyRecord
	for _, r := range m.keys {
		if service == "" || r.Service == service {
			out = append(out, cloneKey(r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URI < out[j].URI })
	return out, nil
}

func (m *memStore) DeleteKey(_ context.Context, uri string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[uri]; !ok {
		return hsm.ErrNotFound
	}
	delete(m.keys, uri)
	return nil
}

func (m *memStore) CountKeys(context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys), nil
}

// tamper edits a stored key row in place.
func (m *memStore) tamper(uri string, f func(r *KeyRecord)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m.keys[uri])
}

// uris lists the stored URIs.
func (m *memStore) uris() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.keys))
	for u := range m.keys {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}
