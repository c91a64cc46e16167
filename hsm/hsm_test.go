package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

func TestParseURI(t *testing.T) {
	good := map[string]string{
		"soft:ca/root-2026":                          "soft:ca/root-2026",
		"pkcs11:token=ca;object=root-2026":           "pkcs11:object=root-2026;token=ca",
		"pkcs11:object=a%20b;token=%E5%8D%B0;id=%01": "pkcs11:id=%01;object=a%20b;token=%E5%8D%B0",
	}
	for in, want := range good {
		u, err := ParseURI(in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", in, err)
			continue
		}
		if got := u.String(); got != want {
			t.Errorf("ParseURI(%q).String() = %q, want %q", in, got, want)
		}
		if again, err := ParseURI(u.String()); err != nil || again.String() != want {
			t.Errorf("round trip of %q: %v %v", in, again, err)
		}
	}
	if u, _ := ParseURI("pkcs11:token=%E5%8D%B0;object=x"); u.Get("token") != "印" {
		t.Errorf("token = %q, want 印", u.Get("token"))
	}
	for _, bad := range []string{"", "soft", ":x", "soft:", "SOFT:x", "soft:a b", "pkcs11:token=a;token=b",
		"pkcs11:token=a?pin-value=1234", "pkcs11:=x", "pkcs11:object=%zz"} {
		if _, err := ParseURI(bad); !errors.Is(err, ErrBadURI) {
			t.Errorf("ParseURI(%q) = %v, want ErrBadURI", bad, err)
		}
	}
}

// SM2Digest must compute what gmsm signs, for every form of options, so that
// tokens signing e directly produce signatures gmsm verifies.
func TestSM2DigestMatchesGmsm(t *testing.T) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("电子印章 document")
	uid := []byte("ALICE123@YAHOO.COM")
	for name, tc := range map[string]struct {
		opts crypto.SignerOpts
		uid  []byte
	}{
		"default":    {sm2.DefaultSM2SignerOpts, DefaultSM2UID},
		"custom uid": {sm2.NewSM2SignerOption(true, uid), uid},
		"empty uid":  {sm2.NewSM2SignerOption(true, nil), DefaultSM2UID},
	} {
		e, err := SM2Digest(&key.PublicKey, msg, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := sm2.CalculateSM2Hash(&key.PublicKey, msg, tc.uid)
		if string(e) != string(want) {
			t.Fatalf("%s: e differs from gmsm's", name)
		}
		// A signature over e (digest mode) verifies as a message signature.
		sig, err := sm2.SignASN1(rand.Reader, key, e, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sm2.VerifyASN1WithSM2(&key.PublicKey, tc.uid, msg, sig) {
			t.Fatalf("%s: signature over SM2Digest does not verify", name)
		}
	}
	// Without GM options msg is the digest itself, and must be 32 bytes.
	d := make([]byte, 32)
	if e, err := SM2Digest(&key.PublicKey, d, crypto.Hash(0)); err != nil || &e[0] != &d[0] {
		t.Fatalf("digest mode: %v", err)
	}
	if _, err := SM2Digest(&key.PublicKey, d, sm2.NewSM2SignerOption(false, nil)); err != nil {
		t.Fatalf("forceGMSign=false: %v", err)
	}
	if _, err := SM2Digest(&key.PublicKey, msg, nil); err == nil {
		t.Fatal("a non-32-byte digest was accepted")
	}
}

// memKM is an in-memory KeyManager for the router's logic (a fake of this
// package's own interface, not of any backend).
type memKM struct {
	name    string
	mu      sync.Mutex
	keys    map[string]*KeyInfo
	checkFn func() error
}

func newMem(name string) *memKM { return &memKM{name: name, keys: map[string]*KeyInfo{}} }

func (m *memKM) CreateKey(_ context.Context, req *CreateKeyRequest) (*KeyInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[req.URI]; ok {
		return nil, ErrExists
	}
	k := &KeyInfo{URI: req.URI, Algorithm: req.Algorithm, Usage: req.Usage, Service: req.Service, Backend: m.name}
	m.keys[req.URI] = k
	return k, nil
}
func (m *memKM) PublicKey(context.Context, *PublicKeyRequest) (crypto.PublicKey, error) {
	return nil, ErrUnsupported
}
func (m *memKM) Signer(_ context.Context, req *SignerRequest) (crypto.Signer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[req.URI]
	if !ok {
		return nil, ErrNotFound
	}
	if err := CheckAccess(k, req.Service, UsageSign); err != nil {
		return nil, err
	}
	return nil, ErrUnsupported
}
func (m *memKM) ListKeys(context.Context, *ListKeysRequest) ([]*KeyInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*KeyInfo
	for _, k := range m.keys {
		out = append(out, k)
	}
	return out, nil
}
func (m *memKM) DeleteKey(_ context.Context, req *DeleteKeyRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keys[req.URI]; !ok {
		return ErrNotFound
	}
	delete(m.keys, req.URI)
	return nil
}
func (m *memKM) Close() error { return nil }
func (m *memKM) Check(context.Context) error {
	if m.checkFn != nil {
		return m.checkFn()
	}
	return nil
}

func TestRouter(t *testing.T) {
	ctx := context.Background()
	soft, anyToken, caToken := newMem("soft"), newMem("p11"), newMem("p11-ca")
	r := NewRouter()
	r.Mount("soft", "", soft)
	r.Mount("pkcs11", "", anyToken)
	r.Mount("pkcs11", "ca", caToken)
	var records []string
	failAudit := false
	r.Audit = func(_ context.Context, action, object, outcome string, _ map[string]any) error {
		if failAudit {
			return errors.New("audit store unwritable")
		}
		records = append(records, action+" "+object+" "+outcome)
		return nil
	}
	for uri, want := range map[string]*memKM{"soft:a": soft, "pkcs11:token=ca;object=k": caToken, "pkcs11:token=tsa;object=k": anyToken} {
		if _, err := r.CreateKey(ctx, &CreateKeyRequest{URI: uri, Algorithm: SM2, Usage: UsageSign, Service: "ca"}); err != nil {
			t.Fatal(err)
		}
		if len(want.keys) != 1 {
			t.Errorf("%s went to the wrong backend", uri)
		}
	}
	if _, err := r.CreateKey(ctx, &CreateKeyRequest{URI: "vault:x"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unmounted scheme: %v", err)
	}
	if _, err := r.Signer(ctx, &SignerRequest{URI: "soft:a", Service: "tsa"}); !errors.Is(err, ErrKeySeparation) {
		t.Errorf("key separation through the router: %v", err)
	}
	all, err := r.ListKeys(ctx, &ListKeysRequest{})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListKeys = %d, %v", len(all), err)
	}
	if len(records) != 3 || !strings.HasPrefix(records[0], ActionKeyCreate) {
		t.Fatalf("audit records %q", records)
	}

	// An unwritable audit log undoes a creation and refuses a deletion.
	failAudit = true
	if _, err := r.CreateKey(ctx, &CreateKeyRequest{URI: "soft:b", Algorithm: SM2, Usage: UsageSign, Service: "ca"}); err == nil {
		t.Fatal("key created without an audit record")
	}
	if _, ok := soft.keys["soft:b"]; ok {
		t.Fatal("unaudited key left behind")
	}
	if err := r.DeleteKey(ctx, &DeleteKeyRequest{URI: "soft:a", Service: "ca"}); err == nil {
		t.Fatal("key deleted without an audit record")
	}
	if _, ok := soft.keys["soft:a"]; !ok {
		t.Fatal("key deleted although its deletion could not be audited")
	}
	failAudit = false
	if err := r.DeleteKey(ctx, &DeleteKeyRequest{URI: "soft:a", Service: "ca"}); err != nil {
		t.Fatal(err)
	}
	if last := records[len(records)-1]; last != ActionKeyDelete+" soft:a success" {
		t.Fatalf("last record %q", last)
	}

	caToken.checkFn = func() error { return ErrPIN }
	if err := r.Check(ctx); !errors.Is(err, ErrPIN) {
		t.Fatalf("Check = %v, want the token's ErrPIN", err)
	}
}

func TestSM2UserID(t *testing.T) {
	uid := []byte("ALICE123@YAHOO.COM")
	for name, tc := range map[string]struct {
		opts crypto.SignerOpts
		want []byte
	}{
		"default":             {sm2.DefaultSM2SignerOpts, DefaultSM2UID},
		"custom, message":     {sm2.NewSM2SignerOption(true, uid), uid},
		"custom, digest form": {sm2.NewSM2SignerOption(false, uid), uid},
		"no options":          {nil, DefaultSM2UID},
		"hash options":        {crypto.SHA256, DefaultSM2UID},
	} {
		if got := SM2UserID(tc.opts); string(got) != string(tc.want) {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}
