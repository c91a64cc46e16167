package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ceremony"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
)

// TestRolloverRefusals: a rollover's ordinary mistakes are the client's
// (a key_uri that names a key already, a stale registry's generation id, a
// key backend the node does not have, a key name the backend refuses), and a rollover whose client goes
// away once its key is made leaves no key that would block the next one.
func TestRolloverRefusals(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	ctx := t.Context()
	// Another process on a database this one has not re-read made -g2 (and
	// its key) first.
	if _, err := tn.n.Env().Keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: "soft:ca/ecdsa-issuing-g2", Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: keyService}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, uri string
		want      int
		why       string
	}{
		{"another root's key", "soft:ca/ecdsa-root", http.StatusConflict, "exists"},
		{"another issuing CA's key", "soft:ca/sm2-issuing", http.StatusConflict, "exists"},
		{"stale registry", "", http.StatusConflict, "exists"},
		{"no such backend", "pkcs11:token=nowhere;object=k", http.StatusBadRequest, "no key backend"},
		// Names the software keystore refuses.
		{"upper-case key name", "soft:UPPER", http.StatusBadRequest, "key_uri soft:UPPER"},
		{"key name climbing out", "soft:../../etc", http.StatusBadRequest, "key_uri soft:../../etc"},
		{"key name like an option", "soft:-x", http.StatusBadRequest, "key_uri soft:-x"},
	} {
		body := map[string]any{}
		if c.uri != "" {
			body["key_uri"] = c.uri
		}
		status, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/rollover", "operator", body, nil)
		if status != c.want || !strings.Contains(string(raw), c.why) {
			t.Errorf("%s: HTTP %d, want %d with %q: %s", c.name, status, c.want, c.why, raw)
		}
	}
	for _, id := range []string{"ecdsa-root", "sm2-issuing"} {
		if a := tn.svc.lookup(id); a == nil || a.status != statusActive {
			t.Fatalf("%s changed: %+v", id, a)
		}
		if _, err := tn.n.Env().Keys.Signer(ctx, &hsm.SignerRequest{URI: "soft:ca/" + id, Service: keyService}); err != nil {
			t.Fatalf("key of %s: %v", id, err)
		}
	}
	if cur, err := tn.svc.current("ecdsa-issuing"); err != nil || cur.id != "ecdsa-issuing" {
		t.Fatalf("current generation %v, %v", cur, err)
	}

	// The client goes away once the new key exists: the rollover fails and
	// its key is deleted all the same.
	for i := range 20 {
		uri := fmt.Sprintf("soft:ca/gone-%d", i)
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			defer cancel()
			for rctx.Err() == nil {
				if _, err := tn.n.Env().Keys.PublicKey(ctx, &hsm.PublicKeyRequest{URI: uri}); err == nil {
					return
				}
			}
		}()
		_, err := tn.svc.Rollover(rctx, "test", "ecdsa-issuing", uri)
		cancel()
		if err == nil {
			continue // done before the cancellation
		}
		if _, err := tn.n.Env().Keys.PublicKey(ctx, &hsm.PublicKeyRequest{URI: uri}); !errors.Is(err, hsm.ErrNotFound) {
			t.Fatalf("after a rollover its client left (%v), key %s: %v", rctx.Err(), uri, err)
		}
		return
	}
	t.Skip("every rollover completed before its client went away")
}

// TestRolloverKeepsIdentity: a rollover changes a CA's key, not the CA.
// Two sub-CAs of ecdsa-root are made offline and imported: one by the sub
// ceremony (ST and L in its subject, a specific policy, 365 days), one by
// another tool (two O, two OU, a policy with a CPS qualifier, no
// pathLenConstraint, nameConstraints, policyConstraints, inhibitAnyPolicy,
// extKeyUsage, 500 days). The generation a rollover makes of each has the
// same subject bytes, policies, path length, constraints and validity
// length as the first, and issues. The built-in lineages keep the sub-ca
// profile's shape (TestLineageAfterRollover, TestRolloverUnderLoad).
func TestRolloverKeepsIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	ctx := audit.WithActor(t.Context(), "test")
	keys := tn.n.Env().Keys
	root := tn.svc.lookup("ecdsa-root")
	signer := func(uri string) crypto.Signer {
		t.Helper()
		if _, err := keys.CreateKey(ctx, &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.ECDSAP256, Usage: hsm.UsageSign, Service: keyService}); err != nil {
			t.Fatal(err)
		}
		s, err := keys.Signer(ctx, &hsm.SignerRequest{URI: uri, Service: keyService})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	imported := map[string]*smx509.Certificate{}
	importCA := func(id string, der []byte) {
		t.Helper()
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Import(ctx, tn.db(), tn.n.Env().Audit, keys, ImportRequest{ID: id, Cert: c, Chain: []*smx509.Certificate{root.cert},
			KeyURI: "soft:ca/" + id, Now: time.Now()}); err != nil {
			t.Fatalf("import %s: %v", id, err)
		}
		imported[id] = c
	}

	// By the sub ceremony.
	f, err := ceremony.Parse([]byte("kind: sub\nca: dept-sub\nsubject:\n  C: CN\n  ST: 广东省\n  L: 深圳市\n  O: 某某局\n  CN: Dept Sub CA\nalgorithm: ecdsa-p256\nkey:\n  uri: soft:ca/dept-sub\n" +
		"validity:\n  days: 365\npath_length: 0\ncertificate_policies: [\"1.2.156.112559.1.1\"]\nissuer:\n  certificate: root.pem\n  key_uri: soft:ca/ecdsa-root\n" +
		"request_sha256: \"" + strings.Repeat("00", 32) + "\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ceremony.CSR(f, signer("soft:ca/dept-sub"))
	if err != nil {
		t.Fatal(err)
	}
	f.RequestSHA256 = ceremony.Fingerprint(csr)
	der, err := ceremony.SignCSR(f, csr, root.cert, root.signer, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	importCA("dept-sub", der)

	// By another tool.
	type qualifier struct {
		ID  asn1.ObjectIdentifier
		CPS string `asn1:"ia5"`
	}
	type policyInformation struct {
		ID         asn1.ObjectIdentifier
		Qualifiers []qualifier `asn1:"optional"`
	}
	policies, err := asn1.Marshal([]policyInformation{{ID: asn1.ObjectIdentifier{1, 2, 156, 112559, 1, 2},
		Qualifiers: []qualifier{{ID: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 2, 1}, CPS: "http://pki.example.gov.cn/cps"}}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &smx509.Certificate{SerialNumber: serial,
		Subject: pkix.Name{Country: []string{"CN"}, Province: []string{"广东省"}, Organization: []string{"某某市人民政府", "某某局"},
			OrganizationalUnit: []string{"信息中心", "证书科"}, CommonName: "Other Tool Sub CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(-time.Hour).Add(500 * 24 * time.Hour), BasicConstraintsValid: true, IsCA: true, MaxPathLen: -1,
		KeyUsage:                    smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign | smx509.KeyUsageDigitalSignature,
		ExtKeyUsage:                 []smx509.ExtKeyUsage{smx509.ExtKeyUsageServerAuth, smx509.ExtKeyUsageClientAuth},
		PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{"example.gov.cn"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 32}, Value: policies},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 36}, Critical: true, Value: []byte{0x30, 0x03, 0x80, 0x01, 0x01}},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 54}, Critical: true, Value: []byte{0x02, 0x01, 0x02}}}}
	other := signer("soft:ca/other-sub")
	if der, err = smx509.CreateCertificate(rand.Reader, tmpl, root.cert, other.Public(), root.signer); err != nil {
		t.Fatal(err)
	}
	importCA("other-sub", der)

	tn.stop()
	tn = startNode(t, dir)
	ext := func(c *smx509.Certificate, id asn1.ObjectIdentifier) []byte {
		for _, e := range c.Extensions {
			if e.Id.Equal(id) {
				return e.Value
			}
		}
		return nil
	}
	for id, prev := range imported {
		r, err := tn.svc.Rollover(ctx, "test", id, "")
		if err != nil {
			t.Fatalf("rollover %s: %v", id, err)
		}
		next := r.cert
		if !bytes.Equal(next.RawSubject, prev.RawSubject) {
			t.Errorf("%s: subject %q, generation 1 %q", id, next.Subject, prev.Subject)
		}
		if p := (asn1.ObjectIdentifier{2, 5, 29, 32}); !bytes.Equal(ext(next, p), ext(prev, p)) {
			t.Errorf("%s: certificatePolicies %v, generation 1 %v", id, next.PolicyIdentifiers, prev.PolicyIdentifiers)
		}
		if !reflect.DeepEqual(ceremony.Constraints(next), ceremony.Constraints(prev)) {
			t.Errorf("%s: constraints %v, generation 1 %v", id, ceremony.Constraints(next), ceremony.Constraints(prev))
		}
		n1, ok1 := ceremony.PathLen(prev)
		n2, ok2 := ceremony.PathLen(next)
		if n1 != n2 || ok1 != ok2 {
			t.Errorf("%s: pathLenConstraint %d (%v), generation 1 %d (%v)", id, n2, ok2, n1, ok1)
		}
		if l1, l2 := prev.NotAfter.Sub(prev.NotBefore), next.NotAfter.Sub(next.NotBefore); l1 != l2 {
			t.Errorf("%s: valid for %s, generation 1 for %s", id, l2, l1)
		}
		status, resp, raw := tn.issue(id, IssueRequest{CSR: csrPEM(goCSR(t, "app.example.gov.cn", "app.example.gov.cn")), Profile: "server-tls"}, "")
		if status != http.StatusCreated || resp.CA != r.id {
			t.Errorf("%s: issue after the rollover: %d %s", id, status, raw)
		}
	}
}

// TestCarryIdentityValidity: a new generation is valid as long as the one
// it replaces, from the profile's notBefore, but never past its parent's
// notAfter; a parent that has expired leaves no room for one.
func TestCarryIdentityValidity(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	prev := &smx509.Certificate{NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(9, 0, 0), BasicConstraintsValid: true, IsCA: true}
	for _, c := range []struct {
		name           string
		parentNotAfter time.Time
		want           time.Time
	}{
		{"parent outlives it", now.AddDate(20, 0, 0), now.Add(prev.NotAfter.Sub(prev.NotBefore))},
		{"clamped to the parent", now.AddDate(2, 0, 0), now.AddDate(2, 0, 0)},
		{"parent expired", now, time.Time{}},
	} {
		res := &profile.Result{Template: &smx509.Certificate{NotBefore: now, NotAfter: now.AddDate(10, 0, 0)}}
		err := carryIdentity(res, prev, &smx509.Certificate{NotAfter: c.parentNotAfter}, now)
		switch {
		case c.want.IsZero():
			if !errors.Is(err, ErrPolicy) {
				t.Errorf("%s: %v, want a policy refusal", c.name, err)
			}
		case err != nil || !res.Template.NotAfter.Equal(c.want):
			t.Errorf("%s: notAfter %s (%v), want %s", c.name, res.Template.NotAfter, err, c.want)
		}
	}
}
