package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestKeyCompromiseRevokesSameKey: a certificate revoked for keyCompromise
// takes every other unexpired certificate of its key with it, in the same
// transaction (BR §4.9.1.1): revoked with reason keyCompromise, audited as
// such, announced in the outbox, answered "revoked" by OCSP at once, and
// named in the answer's also_revoked. A certificate of another key, or one
// of the key already revoked for another reason, is left as it is. The
// same holds when a reason becomes keyCompromise, and at start for keys
// revoked before their other certificates could be found
// (sweepBlockedKeys).
func TestKeyCompromiseRevokesSameKey(t *testing.T) {
	onBothStores(t, func(t *testing.T, tn *testNode) {
		ctx := t.Context()
		a := tn.svc.lookup("ecdsa-issuing")
		newKey := func() *ecdsa.PrivateKey {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		issue := func(k *ecdsa.PrivateKey, host string) string {
			t.Helper()
			csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{host}}, k)
			if err != nil {
				t.Fatal(err)
			}
			st, out, raw := tn.issue(a.id, IssueRequest{CSR: csrPEM(csr), Profile: "server-tls"}, "")
			if st != http.StatusCreated {
				t.Fatalf("issue %s: %d %s", host, st, raw)
			}
			return out.Serial
		}
		status := func(serial string) (string, int) {
			t.Helper()
			c, err := certBySerial(ctx, tn.db(), a.id, serial)
			if err != nil {
				t.Fatal(err)
			}
			return c.status, c.reason
		}
		ocspStatus := func(serial string) ocsp.Status {
			t.Helper()
			n, _ := new(big.Int).SetString(serial, 16)
			return tn.query(t, a.id, n, nil).Status
		}
		revoke := func(serial, reason string) RevokeResponse {
			t.Helper()
			st, raw := tn.revoke(a.id, "ra", serial, reason)
			var out RevokeResponse
			if st != http.StatusOK || json.Unmarshal(raw, &out) != nil {
				t.Fatalf("revoke %s %s: %d %s", serial, reason, st, raw)
			}
			return out
		}
		swept := func(serial, by string) {
			t.Helper()
			if st, reason := status(serial); st != "revoked" || reason != reasonKeyCompromise {
				t.Errorf("%s: %s reason %d, want revoked for keyCompromise", serial, st, reason)
			}
			if got := ocspStatus(serial); got != ocsp.Revoked {
				t.Errorf("OCSP for %s: %v, want revoked", serial, got)
			}
			if n := tn.count(revokeRecords+" AND object = ? AND details LIKE ?", "cert/"+a.id+"/"+serial, `%"key_compromised_in":"cert/`+a.id+`/`+by+`"%`); n != 1 {
				t.Errorf("%s: %d audit records naming the compromise in %s, want 1", serial, n, by)
			}
			if n := tn.count("SELECT COUNT(*) FROM ca_outbox WHERE event = 'revoked' AND serial = ?", serial); n != 1 {
				t.Errorf("%s: %d outbox events, want 1", serial, n)
			}
		}

		k1, k2 := newKey(), newKey()
		s1, s2, s3 := issue(k1, "a1.example.gov.cn"), issue(k1, "a2.example.gov.cn"), issue(k1, "a3.example.gov.cn")
		other := issue(k2, "b.example.gov.cn")
		if got := ocspStatus(s2); got != ocsp.Good {
			t.Fatalf("OCSP for %s before: %v", s2, got)
		}
		revoke(s3, "superseded")
		out := revoke(s1, "keyCompromise")
		if !slices.Equal(out.AlsoRevoked, []string{a.id + "/" + s2}) {
			t.Errorf("also_revoked %v, want [%s/%s]", out.AlsoRevoked, a.id, s2)
		}
		swept(s2, s1)
		if st, reason := status(s3); st != "revoked" || reason != 4 {
			t.Errorf("%s, revoked as superseded before: %s reason %d", s3, st, reason)
		}
		if st, _ := status(other); st != "good" {
			t.Errorf("the certificate of another key: %s", st)
		}
		if again := revoke(s1, "keyCompromise"); len(again.AlsoRevoked) != 0 {
			t.Errorf("asked again: also_revoked %v, want none", again.AlsoRevoked)
		}

		// A reason that becomes keyCompromise sweeps too.
		k3 := newKey()
		u1, u2 := issue(k3, "c1.example.gov.cn"), issue(k3, "c2.example.gov.cn")
		revoke(u1, "superseded")
		if st, _ := status(u2); st != "good" {
			t.Fatalf("%s after its sibling was superseded: %s", u2, st)
		}
		if out := revoke(u1, "keyCompromise"); !slices.Equal(out.AlsoRevoked, []string{a.id + "/" + u2}) {
			t.Errorf("superseded → keyCompromise: also_revoked %v, want [%s/%s]", out.AlsoRevoked, a.id, u2)
		}
		swept(u2, u1)

		// A key revoked before its other certificates could be found (a
		// row without its hash, as before migration 00011): the start-up
		// sweep revokes them.
		k4 := newKey()
		v1, v2 := issue(k4, "d1.example.gov.cn"), issue(k4, "d2.example.gov.cn")
		if _, err := tn.db().Exec(ctx, "UPDATE ca_certificates SET spki_sha256 = NULL WHERE issuer_id = ? AND serial IN (?, ?)", a.id, v1, v2); err != nil {
			t.Fatal(err)
		}
		if out := revoke(v1, "keyCompromise"); len(out.AlsoRevoked) != 0 {
			t.Fatalf("also_revoked %v without the hashes", out.AlsoRevoked)
		}
		if st, _ := status(v2); st != "good" {
			t.Fatalf("%s: %s before the sweep", v2, st)
		}
		if n, err := tn.svc.fillKeyHashes(ctx); err != nil || n != 2 {
			t.Fatalf("fillKeyHashes: %d, %v; want 2", n, err)
		}
		if n, err := tn.svc.sweepBlockedKeys(ctx); err != nil || n != 1 {
			t.Fatalf("sweepBlockedKeys: %d, %v; want 1", n, err)
		}
		tn.svc.afterSameKey(ctx, []string{a.id + "/" + v2})
		swept(v2, v1)
		if n, err := tn.svc.sweepBlockedKeys(ctx); err != nil || n != 0 {
			t.Errorf("second sweep: %d, %v; want 0", n, err)
		}
		if st, _ := status(other); st != "good" {
			t.Errorf("the certificate of another key after the sweeps: %s", st)
		}
	})
}

// TestSPKIOf: the SubjectPublicKeyInfo read from a certificate's DER
// without parsing it is the one the parser finds, for SM2, ECDSA and RSA
// certificates, with and without a version field; anything else is
// refused.
func TestSPKIOf(t *testing.T) {
	sm2Key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"sm2": sm2Key, "rsa": rsaKey, "ecdsa": ecKey} {
		tmpl := &smx509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		got, err := spkiOf(der)
		if err != nil || !bytes.Equal(got, c.RawSubjectPublicKeyInfo) {
			t.Errorf("%s: spkiOf %x, %v; want %x", name, got, err, c.RawSubjectPublicKeyInfo)
		}
		h, err := keyHash(der)
		if want := sha256.Sum256(c.RawSubjectPublicKeyInfo); err != nil || !bytes.Equal(h, want[:]) {
			t.Errorf("%s: keyHash %x, %v", name, h, err)
		}
	}
	for _, bad := range [][]byte{{0x30, 0x00}, {0x30, 0x03, 0x30, 0x01, 0x00}, []byte("not DER")} {
		if _, err := spkiOf(bad); err == nil {
			t.Errorf("spkiOf(%x) accepted", bad)
		}
	}
	if h, err := keyHash(nil); h != nil || err != nil {
		t.Errorf("keyHash of a row without a certificate: %x, %v", h, err)
	}
}

// TestStartSweepPublishedOnCRL: a certificate the start-up sweep revokes
// (the other certificate of a key revoked for keyCompromise before its
// hash was recorded) is on the CRL the node serves once started, not only
// on the next one due, hours later (ACCEPTANCE.md C-01).
func TestStartSweepPublishedOnCRL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	ctx := t.Context()
	a := tn.svc.lookup("ecdsa-issuing")
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(host string) string {
		t.Helper()
		csr, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{host}}, k)
		if err != nil {
			t.Fatal(err)
		}
		st, out, raw := tn.issue(a.id, IssueRequest{CSR: csrPEM(csr), Profile: "server-tls"}, "")
		if st != http.StatusCreated {
			t.Fatalf("issue: %d %s", st, raw)
		}
		return out.Serial
	}
	v1, v2 := issue("s1.example.gov.cn"), issue("s2.example.gov.cn")
	if _, err := tn.db().Exec(ctx, "UPDATE ca_certificates SET spki_sha256 = NULL WHERE issuer_id = ? AND serial IN (?, ?)", a.id, v1, v2); err != nil {
		t.Fatal(err)
	}
	if st, raw := tn.revoke(a.id, "ra", v1, "keyCompromise"); st != http.StatusOK {
		t.Fatalf("revoke: %d %s", st, raw)
	}
	tn.stop()
	tn2 := startNode(t, dir)
	defer tn2.stop()
	c, err := certBySerial(ctx, tn2.db(), a.id, v2)
	if err != nil || c.status != "revoked" {
		t.Fatalf("%s after the restart: %+v %v", v2, c, err)
	}
	_, rl := tn2.fetchCRL(t, a.id)
	for _, e := range rl.RevokedCertificateEntries {
		if serialHex(e.SerialNumber) == v2 {
			return
		}
	}
	t.Errorf("%s, revoked by the start-up sweep, is not on the served CRL (number %v, %d entries)", v2, rl.Number, len(rl.RevokedCertificateEntries))
}

// TestKeyCompromiseWithinAuthority: a keyCompromise revocation by a
// principal that is not a CA operator revokes the other certificates of
// the key that it could revoke itself, and blocks the key only when every
// unexpired certificate of the key is within its authority. Certificates
// of the key outside it (another account's, another organisation's: a key
// certified twice before issuance refused that, or by a CA operator) are
// left good, listed in not_revoked, and referred to a CA operator by an
// audit record, an ALERT log line and a metric; a CA operator's
// keyCompromise revocation of any certificate of the key (one already
// revoked included) then sweeps them all and blocks the key. An RA alone
// with its key sweeps and blocks as before.
func TestKeyCompromiseWithinAuthority(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := map[bool]string{false: "sqlite", true: "postgres"}[pg]
		t.Run(name, func(t *testing.T) {
			logs := &syncBuffer{}
			tn := startNodeWith(t, filepath.Join(t.TempDir(), "data"), func(o *node.Options) {
				o.LogOutput = logs
				if pg {
					url := storetest.PostgresURL(t)
					o.DB = &url
				}
			})
			testKeyCompromiseWithinAuthority(t, tn, logs)
		})
	}
}

func testKeyCompromiseWithinAuthority(t *testing.T, tn *testNode, logs *syncBuffer) {
	ctx := t.Context()
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	tn.addApplication("app1", authz.BootstrapDemoOrg)
	a := tn.svc.lookup("ecdsa-issuing")
	key := newECKey(t)
	issue := func(role string, k *ecdsa.PrivateKey, host string) string {
		t.Helper()
		st, raw := tn.do("POST", "/api/v1/ca/"+a.id+"/certificates", role, IssueRequest{CSR: csrPEM(hostCSR(t, k, host)), Profile: "server-tls"}, nil)
		var out IssueResponse
		if st != http.StatusCreated || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("%s issues %s: %d %s", role, host, st, raw)
		}
		return out.Serial
	}
	revoke := func(role, serial string) RevokeResponse {
		t.Helper()
		st, raw := tn.revoke(a.id, role, serial, "keyCompromise")
		var out RevokeResponse
		if st != http.StatusOK || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("%s revokes %s: %d %s", role, serial, st, raw)
		}
		return out
	}
	status := func(serial string) string {
		t.Helper()
		c, err := certBySerial(ctx, tn.db(), a.id, serial)
		if err != nil {
			t.Fatal(err)
		}
		if c.status == "revoked" {
			return reasonName(c.reason)
		}
		return c.status
	}
	refs := func(serials ...string) []string {
		out := make([]string, len(serials))
		for i, s := range serials {
			out[i] = a.id + "/" + s
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
	blocked := func() int { return tn.count("SELECT COUNT(*) FROM ca_blocked_keys") }
	referrals := func() int {
		return tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.key.compromise.referred'")
	}

	// The demo organisation's RA certifies the key twice and an
	// application account of the same organisation once; a CA operator (of
	// the platform organisation), who may certify any key, once more.
	v1, v2 := issue("ra", key, "v1.example.gov.cn"), issue("ra", key, "v2.example.gov.cn")
	w := issue("app1", key, "w.example.gov.cn")
	op := issue("operator", key, "op.example.gov.cn")

	// The application owns only w.
	out := revoke("app1", w)
	if out.Reason != "keyCompromise" || len(out.AlsoRevoked) != 0 || !slices.Equal(sorted(out.NotRevoked), refs(v1, v2, op)) {
		t.Errorf("application's keyCompromise: %+v; want no also_revoked and not_revoked %v", out, refs(v1, v2, op))
	}
	for _, s := range []string{v1, v2, op} {
		if got := status(s); got != "good" {
			t.Errorf("%s, outside the application's authority: %s", s, got)
		}
	}
	if status(w) != "keyCompromise" {
		t.Errorf("%s: %s", w, status(w))
	}
	if n := blocked(); n != 0 {
		t.Errorf("%d blocked keys after a revocation whose key other accounts hold certificates of", n)
	}
	if n := referrals(); n != 1 {
		t.Errorf("%d referral audit records, want 1", n)
	}
	if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.key.compromise.referred' AND object = ? AND details LIKE ? AND details LIKE ?",
		"cert/"+a.id+"/"+w, "%"+op+"%", "%"+authz.BootstrapOrg+"%"); n != 1 {
		t.Errorf("the referral does not name the certificate %s and its organisation", op)
	}
	if !strings.Contains(logs.String(), "ALERT: a key certified to other holders was reported compromised") || !strings.Contains(logs.String(), op) {
		t.Errorf("no ALERT log line naming %s", op)
	}
	if v := metricValue(t, tn.svc, "govtrust_ca_key_compromise_referrals_total", map[string]string{"ca": a.id}); v != 1 {
		t.Errorf("referrals metric %v, want 1", v)
	}

	// The demo RA may revoke v1 and v2 (its organisation's), not op.
	out = revoke("ra", v1)
	if !slices.Equal(out.AlsoRevoked, refs(v2)) || !slices.Equal(out.NotRevoked, refs(op)) {
		t.Errorf("RA's keyCompromise: also_revoked %v, not_revoked %v; want %v and %v", out.AlsoRevoked, out.NotRevoked, refs(v2), refs(op))
	}
	if status(v2) != "keyCompromise" || status(op) != "good" || blocked() != 0 {
		t.Errorf("after the RA's revocation: v2 %s, op %s, %d blocked keys; want keyCompromise, good, 0", status(v2), status(op), blocked())
	}
	// Not blocked, but the key is certified to the platform organisation:
	// the RA cannot certify it again.
	if st, raw := tn.do("POST", "/api/v1/ca/"+a.id+"/certificates", "ra", IssueRequest{CSR: csrPEM(hostCSR(t, key, "again.example.gov.cn")), Profile: "server-tls"}, nil); st != http.StatusUnprocessableEntity {
		t.Errorf("RA certifies a key certified to another organisation: %d %s", st, raw)
	}

	// A CA operator's keyCompromise on any certificate of the key, even
	// one already revoked, sweeps the rest and blocks the key.
	out = revoke("operator", w)
	if !slices.Equal(out.AlsoRevoked, refs(op)) || len(out.NotRevoked) != 0 {
		t.Errorf("operator's keyCompromise: also_revoked %v, not_revoked %v; want %v and none", out.AlsoRevoked, out.NotRevoked, refs(op))
	}
	if status(op) != "keyCompromise" || blocked() != 1 {
		t.Errorf("after the operator's revocation: op %s, %d blocked keys; want keyCompromise, 1", status(op), blocked())
	}
	if n := referrals(); n != 2 {
		t.Errorf("%d referral audit records, want 2 (the application's and the RA's)", n)
	}

	// An RA whose key's certificates are all its organisation's sweeps and
	// blocks at once, as does a CA operator across organisations.
	k2, k3 := newECKey(t), newECKey(t)
	x1, x2 := issue("ra", k2, "x1.example.gov.cn"), issue("ra", k2, "x2.example.gov.cn")
	if out := revoke("ra", x1); !slices.Equal(out.AlsoRevoked, refs(x2)) || len(out.NotRevoked) != 0 || blocked() != 2 {
		t.Errorf("RA alone with its key: also_revoked %v, not_revoked %v, %d blocked keys; want %v, none, 2", out.AlsoRevoked, out.NotRevoked, blocked(), refs(x2))
	}
	y1, y2 := issue("ra", k3, "y1.example.gov.cn"), issue("operator", k3, "y2.example.gov.cn")
	if out := revoke("operator", y1); !slices.Equal(out.AlsoRevoked, refs(y2)) || len(out.NotRevoked) != 0 || blocked() != 3 {
		t.Errorf("operator across organisations: also_revoked %v, not_revoked %v, %d blocked keys; want %v, none, 3", out.AlsoRevoked, out.NotRevoked, blocked(), refs(y2))
	}
	if n := referrals(); n != 2 {
		t.Errorf("%d referral audit records, want still 2", n)
	}
}
