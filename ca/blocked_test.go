package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestCompromisedKeyRefused revokes certificates for key compromise and
// for another reason, then asks for new certificates for the same keys: the
// compromised key is refused on every issuing CA (a key, not a
// certificate, is what was compromised), naming the revoked certificate,
// and no serial is reserved for it; the other is issued again. On SQLite
// and on PostgreSQL (the check is part of the serial's INSERT).
func TestCompromisedKeyRefused(t *testing.T) {
	onBothStores(t, testCompromisedKeyRefused)
}

func testCompromisedKeyRefused(t *testing.T, tn *testNode) {
	compromised := csrPEM(goCSR(t, "leak.example.gov.cn", "leak.example.gov.cn"))
	superseded := csrPEM(goCSR(t, "moved.example.gov.cn", "moved.example.gov.cn"))
	var leaked string
	for _, c := range []struct{ csr, reason string }{{compromised, "keyCompromise"}, {superseded, "superseded"}} {
		status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: c.csr, Profile: "server-tls"}, "")
		if status != http.StatusCreated {
			t.Fatalf("issue: %d %s", status, raw)
		}
		if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, c.reason); status != http.StatusOK {
			t.Fatalf("revoke %s: %d %s", c.reason, status, raw)
		}
		if c.reason == "keyCompromise" {
			leaked = out.Serial
		}
	}
	serials := tn.count("SELECT COUNT(*) FROM ca_serials")
	status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: compromised, Profile: "server-tls"}, "")
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "compromised") || !strings.Contains(strings.ToLower(string(raw)), "ecdsa-issuing/"+strings.ToLower(leaked)) {
		t.Errorf("compromised key: %d %s; want 422 naming the compromise and certificate ecdsa-issuing/%s", status, raw, leaked)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_serials"); n != serials {
		t.Errorf("serials reserved: %d after the refusal, %d before", n, serials)
	}
	status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: superseded, Profile: "server-tls"}, "")
	if status != http.StatusCreated {
		t.Fatalf("key of a superseded certificate: %d %s; want 201", status, raw)
	}
	// The serial's record holds the TBS that was signed (the INSERT ...
	// SELECT stores the bytes, not a text rendering of them).
	cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	var tbs []byte
	if err := tn.db().QueryRow(t.Context(), "SELECT tbs FROM ca_serials WHERE issuer_id = 'ecdsa-issuing' AND serial = ?", out.Serial).Scan(&tbs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tbs, cert.RawTBSCertificate) {
		t.Errorf("recorded TBS (%d octets) is not the signed one (%d)", len(tbs), len(cert.RawTBSCertificate))
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_blocked_keys"); n != 1 {
		t.Errorf("%d blocked keys, want 1", n)
	}
}

// TestKeyCertifiedToOneOrganisation: a key is certified to one holder. A
// request whose key is in a good unexpired certificate requested for
// another organisation (or by the platform for itself) is refused (422
// problem+json, naming neither the certificate nor the organisation) before
// a serial is reserved; the same organisation's accounts, CA operators and
// the platform's own issuance (IssueFor) are not refused, and a key whose
// other organisation's certificates are all revoked may be certified.
func TestKeyCertifiedToOneOrganisation(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.addAccount("ra-other", "other-dept", policy.Internal, policy.RoleRA)
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	tn.addApplication("app1", authz.BootstrapDemoOrg)
	issue := func(role string, k *ecdsa.PrivateKey, host string) (int, string, []byte) {
		t.Helper()
		st, hdr, raw := tn.doFull("POST", "/api/v1/ca/ecdsa-issuing/certificates", role,
			IssueRequest{CSR: csrPEM(hostCSR(t, k, host)), Profile: "server-tls"}, nil)
		var out IssueResponse
		if st == http.StatusCreated {
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatal(err)
			}
		} else if hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d with %q, want problem+json", role, st, hdr.Get("Content-Type"))
		}
		return st, out.Serial, raw
	}
	refused := func(role string, k *ecdsa.PrivateKey, host string) string {
		t.Helper()
		serials := tn.count("SELECT COUNT(*) FROM ca_serials")
		st, _, raw := issue(role, k, host)
		if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "certified to another organisation") {
			t.Errorf("%s certifies a key of another holder: %d %s; want 422", role, st, raw)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_serials"); n != serials {
			t.Errorf("%d serials reserved for a refused request", n-serials)
		}
		return string(raw)
	}
	issued := func(role string, k *ecdsa.PrivateKey, host string) string {
		t.Helper()
		st, serial, raw := issue(role, k, host)
		if st != http.StatusCreated {
			t.Fatalf("%s: %d %s; want 201", role, st, raw)
		}
		return serial
	}

	k := newECKey(t)
	first := issued("ra", k, "a.example.gov.cn")
	if raw := strings.ToLower(refused("ra-other", k, "b.example.gov.cn")); strings.Contains(raw, strings.ToLower(first)) || strings.Contains(raw, authz.BootstrapDemoOrg) {
		t.Errorf("the refusal names the other organisation or its certificate: %s", raw)
	}
	issued("app1", k, "c.example.gov.cn")     // the same organisation
	issued("operator", k, "d.example.gov.cn") // a CA operator certifies any key
	if _, _, err := tn.svc.IssueFor(t.Context(), "ecdsa-issuing", "server-tls", hostCSR(t, k, "svc.example.gov.cn"), nil, "service/test"); err != nil {
		t.Errorf("IssueFor: %v", err)
	}
	refused("ra-other", k, "b.example.gov.cn")

	// The platform's own certificates hold their keys too.
	svcKey := newECKey(t)
	if _, _, err := tn.svc.IssueFor(t.Context(), "ecdsa-issuing", "server-tls", hostCSR(t, svcKey, "svc2.example.gov.cn"), nil, "service/test"); err != nil {
		t.Fatal(err)
	}
	refused("ra", svcKey, "svc2.example.gov.cn")

	// Once the other organisation's certificates of a key are revoked (not
	// for a compromise), the key may be certified to another.
	k2 := newECKey(t)
	old := issued("ra", k2, "e.example.gov.cn")
	refused("ra-other", k2, "f.example.gov.cn")
	if st, raw := tn.revoke("ecdsa-issuing", "ra", old, "superseded"); st != http.StatusOK {
		t.Fatalf("revoke: %d %s", st, raw)
	}
	issued("ra-other", k2, "f.example.gov.cn")
}

// TestCSRReplayedByAnotherOrganisation: a CSR is not secret. A
// registration officer of another organisation who saw one (and never held
// its key) cannot have the key certified to its organisation (422), so it
// holds no certificate whose keyCompromise revocation would revoke the
// first organisation's certificates and block its key; that organisation
// keeps its certificate and certifies the key again.
func TestCSRReplayedByAnotherOrganisation(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	tn.addAccount("ra-other", "other-dept", policy.Internal, policy.RoleRA)
	csr := csrPEM(goCSR(t, "portal.example.gov.cn", "portal.example.gov.cn"))
	st, victim, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csr, Profile: "server-tls"}, "")
	if st != http.StatusCreated {
		t.Fatalf("issue: %d %s", st, raw)
	}
	before := tn.count("SELECT COUNT(*) FROM ca_certificates")
	st, hdr, raw := tn.doFull("POST", "/api/v1/ca/ecdsa-issuing/certificates", "ra-other", IssueRequest{CSR: csr, Profile: "server-tls"}, nil)
	if st != http.StatusUnprocessableEntity || hdr.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(raw), "certified to another organisation") {
		t.Fatalf("replayed CSR in another organisation: %d %q %s; want 422 problem+json", st, hdr.Get("Content-Type"), raw)
	}
	if strings.Contains(strings.ToLower(string(raw)), strings.ToLower(victim.Serial)) || strings.Contains(string(raw), authz.BootstrapDemoOrg) {
		t.Errorf("the refusal tells the other organisation whose certificate holds the key: %s", raw)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_certificates"); n != before {
		t.Errorf("%d certificates after the refusal, %d before", n, before)
	}
	// It has nothing to revoke for keyCompromise; the victim's
	// certificate is not its to revoke.
	if st, raw := tn.revoke("ecdsa-issuing", "ra-other", victim.Serial, "keyCompromise"); st != http.StatusForbidden {
		t.Fatalf("revoke by the other organisation's RA: %d %s", st, raw)
	}
	c, err := certBySerial(t.Context(), tn.db(), "ecdsa-issuing", victim.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if c.status != "good" {
		t.Errorf("victim certificate: %s", c.status)
	}
	if st, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csr, Profile: "server-tls"}, ""); st != http.StatusCreated {
		t.Errorf("the key's organisation certifies it again: %d %s", st, raw)
	}
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func hostCSR(t *testing.T, k *ecdsa.PrivateKey, host string) []byte {
	t.Helper()
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{host}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestKeyCompromiseOutsideRevoked: a keyCompromise report whose only
// certificates of the key outside the reporter's authority are already
// revoked blocks the key (no one can have it certified again, the
// reporter neither) and refers nothing; and once a CA operator's sweep has
// revoked them all and blocked the key, the reporter asking again refers
// nothing either.
func TestKeyCompromiseOutsideRevoked(t *testing.T) {
	tn := startNode(t, t.TempDir())
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	a := tn.svc.lookup("ecdsa-issuing")
	referrals := func() int {
		return tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.key.compromise.referred'")
	}
	issue := func(key *ecdsa.PrivateKey, role, host string) (int, string) {
		st, raw := tn.do("POST", "/api/v1/ca/"+a.id+"/certificates", role, IssueRequest{CSR: csrPEM(hostCSR(t, key, host)), Profile: "server-tls"}, nil)
		var out IssueResponse
		if st != http.StatusCreated || json.Unmarshal(raw, &out) != nil {
			return st, string(raw)
		}
		return st, out.Serial
	}

	key := newECKey(t)
	if st, op := issue(key, "operator", "op.example.gov.cn"); st != http.StatusCreated {
		t.Fatalf("operator issue: %d %s", st, op)
	} else if st, raw := tn.revoke(a.id, "operator", op, "superseded"); st != http.StatusOK {
		t.Fatalf("supersede: %d %s", st, raw)
	}
	st, v1 := issue(key, "ra", "v1.example.gov.cn")
	if st != http.StatusCreated {
		t.Fatalf("ra issue: %d %s", st, v1)
	}
	before := referrals()
	if st, raw := tn.revoke(a.id, "ra", v1, "keyCompromise"); st != http.StatusOK {
		t.Fatalf("ra keyCompromise: %d %s", st, raw)
	}
	if st, s := issue(key, "ra", "again.example.gov.cn"); st == http.StatusCreated {
		t.Errorf("the key the RA reported compromised was certified again to it (serial %s)", s)
	}
	if n := referrals(); n != before {
		t.Errorf("%d referrals for a key whose only other certificate was already revoked", n-before)
	}

	// The operator's sweep blocked the key; the RA asking again refers nothing.
	key2 := newECKey(t)
	st, v2 := issue(key2, "ra", "v2.example.gov.cn")
	if st != http.StatusCreated {
		t.Fatalf("ra issue: %d %s", st, v2)
	}
	st, op2 := issue(key2, "operator", "op2.example.gov.cn")
	if st != http.StatusCreated {
		t.Fatalf("operator issue: %d %s", st, op2)
	}
	if st, raw := tn.revoke(a.id, "operator", op2, "keyCompromise"); st != http.StatusOK {
		t.Fatalf("operator keyCompromise: %d %s", st, raw)
	}
	before = referrals()
	if st, raw := tn.revoke(a.id, "ra", v2, "keyCompromise"); st != http.StatusOK {
		t.Fatalf("ra asks again: %d %s", st, raw)
	}
	if n := referrals(); n != before {
		t.Errorf("%d referrals after the operator's sweep had revoked every certificate of the key and blocked it", n-before)
	}
}

// hookSigner is a CA key that runs hook once, before the first signature
// it makes after it is put in place.
type hookSigner struct {
	crypto.Signer
	once sync.Once
	hook func()
}

func (h *hookSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h.once.Do(h.hook)
	return h.Signer.Sign(r, digest, opts)
}

// duringSignature has hook run during the next signature of CA a (after
// its serial is reserved, before its certificate is stored).
func duringSignature(t *testing.T, a *authority, hook func()) {
	orig := a.signer
	a.signer = &hookSigner{Signer: orig, hook: hook}
	t.Cleanup(func() { a.signer = orig })
}

// goodCertsOfKey counts the good certificates of the key of k.
func (tn *testNode) goodCertsOfKey(t *testing.T, pub crypto.PublicKey) int {
	t.Helper()
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	return tn.count("SELECT COUNT(*) FROM ca_certificates WHERE spki_sha256 = ? AND status = 'good'", sum[:])
}

// TestCompromiseDuringIssuance: a keyCompromise revocation that commits
// while an issuance for the same key is being signed (its serial reserved
// and the blocked-key check passed, its certificate not yet stored)
// refuses that issuance when it stores (422, the signed certificate
// dropped, its serial left reserved), so that no good certificate of the
// key outlives the revocation's answer. On SQLite and PostgreSQL.
func TestCompromiseDuringIssuance(t *testing.T) {
	onBothStores(t, func(t *testing.T, tn *testNode) {
		a := tn.svc.lookup("ecdsa-issuing")
		k := newECKey(t)
		st, first, raw := tn.issue(a.id, IssueRequest{CSR: csrPEM(hostCSR(t, k, "a1.example.gov.cn")), Profile: "server-tls"}, "")
		if st != http.StatusCreated {
			t.Fatalf("issue: %d %s", st, raw)
		}
		serials := tn.count("SELECT COUNT(*) FROM ca_serials")
		duringSignature(t, a, func() {
			if st, raw := tn.revoke(a.id, "ra", first.Serial, "keyCompromise"); st != http.StatusOK {
				t.Errorf("revoke during the signature: %d %s", st, raw)
			}
		})
		st, _, raw = tn.issue(a.id, IssueRequest{CSR: csrPEM(hostCSR(t, k, "a2.example.gov.cn")), Profile: "server-tls"}, "")
		if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "compromised") ||
			!strings.Contains(strings.ToLower(string(raw)), strings.ToLower(first.Serial)) {
			t.Errorf("issuance signed while its key was revoked for keyCompromise: %d %.200s; want 422 naming the compromise", st, raw)
		}
		if n := tn.goodCertsOfKey(t, &k.PublicKey); n != 0 {
			t.Errorf("%d good certificates of the compromised key", n)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_serials"); n != serials+1 {
			t.Errorf("%d serials reserved, want %d (the dropped certificate's serial stays reserved)", n, serials+1)
		}
		st, _, raw = tn.issue(a.id, IssueRequest{CSR: csrPEM(hostCSR(t, k, "a3.example.gov.cn")), Profile: "server-tls"}, "")
		if st != http.StatusUnprocessableEntity {
			t.Errorf("issuance after the revocation: %d %.200s", st, raw)
		}
		// The other key of the CA is issued as before.
		if st, _, raw := tn.issue(a.id, IssueRequest{CSR: csrPEM(goCSR(t, "b.example.gov.cn", "b.example.gov.cn")), Profile: "server-tls"}, ""); st != http.StatusCreated {
			t.Errorf("issue for another key: %d %s", st, raw)
		}
	})
}

// TestCompromiseWhileIssuanceStores: on PostgreSQL (READ COMMITTED) a
// keyCompromise revocation still open when an issuance of the key stores
// its certificate. The store waits for the revocation (both hold the
// audit chain's head), then sees the blocked key and refuses; without
// that order each would miss the other's uncommitted row and both commit.
func TestCompromiseWhileIssuanceStores(t *testing.T) {
	url := storetest.PostgresURL(t)
	tn := startNodeWith(t, filepath.Join(t.TempDir(), "data"), func(o *node.Options) { o.DB = &url })
	ctx := t.Context()
	a := tn.svc.lookup("ecdsa-issuing")
	k := newECKey(t)
	st, first, raw := tn.issue(a.id, IssueRequest{CSR: csrPEM(hostCSR(t, k, "a1.example.gov.cn")), Profile: "server-tls"}, "")
	if st != http.StatusCreated {
		t.Fatalf("issue: %d %s", st, raw)
	}
	revoked, done := make(chan struct{}), make(chan error, 1)
	waited := false
	duringSignature(t, a, func() {
		go func() {
			done <- tn.db().Tx(ctx, func(tx *store.Tx) error {
				if _, _, err := tn.svc.revokeRowOpts(ctx, tx, a.id, first.Serial, "keyCompromise", "test", nil, time.Now(), true); err != nil {
					return err
				}
				select {
				case <-revoked:
				default:
					close(revoked)
				}
				// Commit once the issuance waits for this transaction
				// (its store for the audit chain's head).
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					var n int
					if err := tn.db().ReadRow(ctx, `SELECT COUNT(*) FROM pg_stat_activity
						WHERE wait_event_type = 'Lock' AND query LIKE '%audit_head%' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
						return err
					}
					if n > 0 {
						waited = true
						break
					}
				}
				return nil
			})
		}()
		select {
		case <-revoked:
		case err := <-done:
			t.Errorf("revoke: %v", err)
		}
	})
	st, _, raw = tn.issue(a.id, IssueRequest{CSR: csrPEM(hostCSR(t, k, "a2.example.gov.cn")), Profile: "server-tls"}, "")
	if err := <-done; err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if !waited {
		t.Error("the issuance's store did not wait for the open revocation")
	}
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "compromised") {
		t.Errorf("issuance stored while a keyCompromise revocation of its key was committing: %d %.200s; want 422", st, raw)
	}
	if n := tn.goodCertsOfKey(t, &k.PublicKey); n != 0 {
		t.Errorf("%d good certificates of the compromised key", n)
	}
}

// TestRefusedStoreInBatch: a certificate refused at its store (its key
// blocked meanwhile) is rolled back alone from the batch transaction it
// shares with other issuances, which commit.
func TestRefusedStoreInBatch(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	ctx := t.Context()
	leaked, other := tn.issueECDSA(t), tn.issueECDSA(t)
	if st, raw := tn.revoke("ecdsa-issuing", "ra", leaked.Serial, "keyCompromise"); st != http.StatusOK {
		t.Fatalf("revoke: %d %s", st, raw)
	}
	// Rows for new serials carrying the two certificates' keys.
	row := func(of *IssueResponse) *certRow {
		c, err := smx509.ParseCertificate(pemDER(t, of.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		sn, err := newSerial()
		if err != nil {
			t.Fatal(err)
		}
		return &certRow{issuer: "ecdsa-issuing", serial: serialHex(sn), subject: c.Subject.String(), profile: "server-tls", status: "good",
			requester: "test", notBefore: c.NotBefore, notAfter: c.NotAfter, created: time.Now(), der: c.Raw}
	}
	b := tn.svc.batcher()
	for attempt := 1; ; attempt++ {
		blocked, fine := row(leaked), row(other)
		// A first batch holds the batcher while the two wait for the next.
		entered, release := make(chan struct{}), make(chan struct{})
		go b.Do(ctx, func(tx *store.Tx) error { close(entered); <-release; return nil })
		<-entered
		batches, _ := b.Stats()
		errs := make(chan error, 2)
		for _, r := range []*certRow{blocked, fine} {
			go func() { errs <- b.Do(ctx, func(tx *store.Tx) error { return tn.svc.record(ctx, tx, "test", r, nil) }) }()
		}
		time.Sleep(200 * time.Millisecond)
		close(release)
		var got []error
		for range 2 {
			got = append(got, <-errs)
		}
		if after, _ := b.Stats(); after-batches != 2 && attempt < 5 {
			continue // the two did not share a batch: again
		}
		policyErrs, ok := 0, 0
		for _, err := range got {
			switch {
			case errors.Is(err, ErrPolicy):
				policyErrs++
			case err == nil:
				ok++
			default:
				t.Errorf("store: %v", err)
			}
		}
		if policyErrs != 1 || ok != 1 {
			t.Errorf("%d refused, %d stored; want one each (%v)", policyErrs, ok, got)
		}
		for _, c := range []struct {
			r    *certRow
			want int
		}{{blocked, 0}, {fine, 1}} {
			if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE serial = ?", c.r.serial); n != c.want {
				t.Errorf("certificate %s: %d rows, want %d", c.r.serial, n, c.want)
			}
			if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE object = ?", "cert/ecdsa-issuing/"+c.r.serial); n != c.want {
				t.Errorf("certificate %s: %d audit records, want %d", c.r.serial, n, c.want)
			}
		}
		return
	}
}
