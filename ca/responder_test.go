package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// startNodeWith is startNode with options changed by set (a database URL, a
// fake clock). The bootstrap tokens are read when the data directory has
// them: a second node on an initialised PostgreSQL database has none.
func startNodeWith(t *testing.T, dir string, set func(*node.Options)) *testNode {
	t.Helper()
	svc := New()
	opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}}
	if set != nil {
		set(&opts)
	}
	n, err := node.Start(context.Background(), opts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, tokens: map[string]string{},
		c: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	for _, role := range []string{"sysadmin", "secadmin", "auditor", "ra"} {
		if tok, err := node.ReadBootstrapToken(dir, role); err == nil {
			tn.tokens[role] = tok
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("token %s: %v", role, err)
		}
	}
	t.Cleanup(func() { tn.stop() })
	return tn
}

// onBothStores runs test against a node on SQLite (the default data
// directory) and one on PostgreSQL (skipped without GTTEST_POSTGRES_URL).
func onBothStores(t *testing.T, test func(t *testing.T, tn *testNode)) {
	t.Run("sqlite", func(t *testing.T) {
		test(t, startNode(t, filepath.Join(t.TempDir(), "data")))
	})
	t.Run("postgres", func(t *testing.T) {
		url := storetest.PostgresURL(t)
		test(t, startNodeWith(t, filepath.Join(t.TempDir(), "data"), func(o *node.Options) { o.DB = &url }))
	})
}

// responderOf is the delegated responder CA id signs with now.
func (tn *testNode) responderOf(t *testing.T, id string) *responder {
	t.Helper()
	st := tn.svc.ocspState()
	if st == nil {
		t.Fatal("OCSP not started")
	}
	r := st.responder(id)
	if r == nil {
		t.Fatalf("%s has no delegated responder", id)
	}
	return r
}

// issueSM2Go issues a person-sign certificate from sm2-issuing for a key
// made in Go (issueSM2 has OpenSSL make it).
func (tn *testNode) issueSM2Go(t *testing.T) (*IssueResponse, *smx509.Certificate) {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	status, out, raw := tn.issue("sm2-issuing", IssueRequest{CSR: csrPEM(der), Profile: "person-sign", Record: personRecord}, "")
	if status != http.StatusCreated {
		t.Fatalf("issue: %d %s", status, raw)
	}
	cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	return out, cert
}

// rawQuery posts a request for serial to ca's responder and returns the
// response DER and its parse against the CA certificate.
func (tn *testNode) rawQuery(t *testing.T, ca string, serial *big.Int, opts *ocsp.RequestOptions) ([]byte, *ocsp.Response) {
	t.Helper()
	issuer := tn.svc.cas[ca].cert
	req, err := ocsp.CreateRequestForSerial(serial, issuer, opts)
	if err != nil {
		t.Fatal(err)
	}
	resp, raw := tn.ocspPost(ca, "application/ocsp-request", req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	r, err := ocsp.ParseResponse(raw, issuer)
	if err != nil {
		t.Fatalf("parse response: %v", err)
	}
	return raw, r
}

// TestOCSPDelegatedResponders: every CA has a delegated responder of its
// algorithm with an ocsp-signer certificate recorded like any issued one;
// responses carry it (RFC 6960 §4.2.2.2); `openssl ocsp` verifies ECDSA
// responses with only the root as trust anchor, finding the responder
// through the included certificate, and SM2 responses pass the detached
// check (ACCEPTANCE.md C-02).
func TestOCSPDelegatedResponders(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()
	for _, sp := range hierarchies {
		t.Run(sp.id, func(t *testing.T) {
			r := tn.responderOf(t, sp.id)
			a := tn.svc.cas[sp.id]
			if err := ocsp.CheckResponder(a.cert, r.cert); err != nil || !ocsp.HasNoCheck(r.cert) {
				t.Fatalf("responder certificate: %v, nocheck %v", err, ocsp.HasNoCheck(r.cert))
			}
			pub, ok := r.cert.PublicKey.(*ecdsa.PublicKey)
			if !ok {
				t.Fatalf("responder key %T", r.cert.PublicKey)
			}
			want := elliptic.P256()
			if sp.alg == hsm.SM2 {
				want = sm2.P256()
			}
			if pub.Curve != want {
				t.Fatalf("responder key on %s, want %s", pub.Curve.Params().Name, want.Params().Name)
			}
			c, err := certBySerial(t.Context(), tn.db(), sp.id, serialHex(r.cert.SerialNumber))
			if err != nil {
				t.Fatalf("responder certificate not in ca_certificates: %v", err)
			}
			if c.profile != "ocsp-signer" || c.requester != "system" || c.status != "good" || !bytes.Equal(c.der, r.cert.Raw) {
				t.Fatalf("recorded as profile %q requester %q status %q", c.profile, c.requester, c.status)
			}
			if n := tn.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ca.certificate.issue' AND object = ?", "cert/"+sp.id+"/"+c.serial); n != 1 {
				t.Errorf("%d audit records for the responder certificate", n)
			}
			if d := r.cert.NotAfter.Sub(r.cert.NotBefore); d < 89*24*time.Hour || d > 91*24*time.Hour {
				t.Errorf("responder validity %v, want the profile's 90 days", d)
			}
		})
	}

	t.Run("openssl verifies the ECDSA responder", func(t *testing.T) {
		out := tn.issueECDSA(t)
		leaf := writeFile(t, dir, "leaf.pem", out.Certificate)
		issuing := writeFile(t, dir, "issuing.pem", out.Chain[0])
		root := writeFile(t, dir, "root.pem", out.Chain[1])
		r := tn.responderOf(t, "ecdsa-issuing")
		// Without and with a nonce: from the cache and signed on demand.
		for _, nonce := range [][]string{{"-no_nonce"}, {}} {
			got := tn.opensslOCSP(t, "ecdsa-issuing", append([]string{"-issuer", issuing, "-cert", leaf, "-CAfile", root, "-verify_other", issuing}, nonce...)...)
			for _, want := range []string{"Response verify OK", leaf + ": good", "Responder Id: ", "OCSP Signing", "OCSP No Check", r.cert.Subject.CommonName} {
				if !strings.Contains(got, want) {
					t.Errorf("%v: no %q in\n%s", nonce, want, got)
				}
			}
		}
		// Checked separately: the included certificate chains to the root.
		respPEM := writeFile(t, dir, "responder.pem", pemCert(r.cert.Raw))
		if got := openssl(t, "verify", "-purpose", "ocsphelper", "-CAfile", root, "-untrusted", issuing, respPEM); !strings.Contains(got, ": OK") {
			t.Errorf("openssl verify of the responder certificate: %s", got)
		}
		text := openssl(t, "x509", "-in", respPEM, "-noout", "-text")
		for _, want := range []string{"OCSP Signing", "OCSP No Check", "Digital Signature"} {
			if !strings.Contains(text, want) {
				t.Errorf("responder certificate has no %q:\n%s", want, text)
			}
		}
	})

	t.Run("SM2 responder, detached check", func(t *testing.T) {
		_, leaf := tn.issueSM2Go(t)
		r := tn.responderOf(t, "sm2-issuing")
		respPEM := writeFile(t, dir, "sm2-responder.pem", pemCert(r.cert.Raw))
		for _, nonce := range [][]byte{nil, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}} {
			_, resp := tn.rawQuery(t, "sm2-issuing", leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce})
			if resp.Status != ocsp.Good || resp.Certificate == nil || !bytes.Equal(resp.Certificate.Raw, r.cert.Raw) || !bytes.Equal(resp.Nonce, nonce) {
				t.Fatalf("nonce %x: status %v, nonce %x, signed by the responder %v", nonce, resp.Status, resp.Nonce, resp.Certificate != nil)
			}
			if out := sm2OpenSSLVerify(t, dir, resp.TBSResponseData, resp.Signature, respPEM); !strings.Contains(out, "Signature Verified Successfully") {
				t.Errorf("SM2 detached check: %s", out)
			}
		}
		issuing := writeFile(t, dir, "sm2-issuing.pem", pemCert(tn.svc.cas["sm2-issuing"].cert.Raw))
		if got := openssl(t, "verify", "-vfyopt", "distid:1234567812345678", "-partial_chain", "-CAfile", issuing, respPEM); !strings.Contains(got, ": OK") {
			t.Errorf("openssl verify of the SM2 responder certificate: %s", got)
		}
	})
}

// TestOCSPPresigned: requests without a nonce get the same pre-signed
// response until it is due, backed by ca_ocsp_responses; nonce requests
// and unknown serials are signed on demand and not stored; GET cache
// headers describe the response served; a revocation is visible at once.
func TestOCSPPresigned(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	out, leaf := tn.issueSM2Go(t)
	stored := func() int {
		return tn.count("SELECT COUNT(*) FROM ca_ocsp_responses WHERE issuer_id = 'sm2-issuing' AND serial = ?", out.Serial)
	}

	hashes := []ocsp.HashAlg{ocsp.SHA1, ocsp.SHA256, ocsp.SM3}
	first := map[ocsp.HashAlg][]byte{}
	for _, h := range hashes {
		raw, r := tn.rawQuery(t, "sm2-issuing", leaf.SerialNumber, &ocsp.RequestOptions{Hash: h})
		if r.Status != ocsp.Good || r.HashAlgorithm != h || r.Nonce != nil {
			t.Fatalf("%v: status %v hash %v", h, r.Status, r.HashAlgorithm)
		}
		first[h] = raw
	}
	if n := stored(); n != len(hashes) {
		t.Fatalf("%d stored responses, want one per CertID hash (%d)", n, len(hashes))
	}
	for _, h := range hashes {
		if raw, _ := tn.rawQuery(t, "sm2-issuing", leaf.SerialNumber, &ocsp.RequestOptions{Hash: h}); !bytes.Equal(raw, first[h]) {
			t.Errorf("%v: second answer differs from the pre-signed one", h)
		}
	}
	// From the table after the memory is dropped (another process's view).
	tn.svc.ocspState().cache.flush("sm2-issuing")
	if raw, _ := tn.rawQuery(t, "sm2-issuing", leaf.SerialNumber, nil); !bytes.Equal(raw, first[ocsp.SHA1]) {
		t.Error("answer after a memory flush is not the stored one")
	}

	t.Run("nonce: signed on demand, echoed, not stored", func(t *testing.T) {
		nonce := bytes.Repeat([]byte{7}, 32)
		raw, r := tn.rawQuery(t, "sm2-issuing", leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce})
		if bytes.Equal(raw, first[ocsp.SHA1]) || !bytes.Equal(r.Nonce, nonce) || r.Status != ocsp.Good {
			t.Fatalf("nonce %x status %v", r.Nonce, r.Status)
		}
		if n := stored(); n != len(hashes) {
			t.Errorf("%d stored responses after a nonce request", n)
		}
	})

	t.Run("unknown serial: never stored", func(t *testing.T) {
		serial := new(big.Int).SetBytes(bytes.Repeat([]byte{0x42}, 17))
		for range 2 {
			if _, r := tn.rawQuery(t, "sm2-issuing", serial, nil); r.Status != ocsp.Unknown {
				t.Fatalf("status %v, want unknown", r.Status)
			}
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responses WHERE serial = ?", serialHex(serial)); n != 0 {
			t.Errorf("%d stored responses for an unknown serial", n)
		}
	})

	t.Run("GET cache headers follow the pre-signed response", func(t *testing.T) {
		req, err := ocsp.CreateRequestForSerial(leaf.SerialNumber, tn.svc.cas["sm2-issuing"].cert, nil)
		if err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		resp, body := tn.ocspGet("sm2-issuing", ocsp.EncodeGETPath(req))
		if !bytes.Equal(body, first[ocsp.SHA1]) {
			t.Fatal("GET did not answer the pre-signed response")
		}
		r, err := ocsp.ParseResponse(body, tn.svc.cas["sm2-issuing"].cert)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`max-age=(\d+)`).FindStringSubmatch(resp.Header.Get("Cache-Control"))
		if m == nil {
			t.Fatalf("Cache-Control %q", resp.Header.Get("Cache-Control"))
		}
		age, _ := strconv.Atoi(m[1])
		lm, err1 := http.ParseTime(resp.Header.Get("Last-Modified"))
		exp, err2 := http.ParseTime(resp.Header.Get("Expires"))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if !lm.Equal(r.ThisUpdate) || !exp.Equal(r.NextUpdate) {
			t.Errorf("Last-Modified %v Expires %v; thisUpdate %v nextUpdate %v", lm, exp, r.ThisUpdate, r.NextUpdate)
		}
		// Computed by the node after sent, however long the answer took.
		if until := r.NextUpdate.Sub(sent); age <= 0 || time.Duration(age)*time.Second > until+time.Second {
			t.Errorf("max-age %d s, nextUpdate %v after the request", age, until)
		}
		if resp.Header.Get("ETag") == "" {
			t.Error("no ETag (RFC 5019 §6.2)")
		}
	})

	t.Run("C-02 revoked at once", func(t *testing.T) {
		if status, raw := tn.revoke("sm2-issuing", "ra", out.Serial, "keyCompromise"); status != http.StatusOK {
			t.Fatalf("revoke: %d %s", status, raw)
		}
		for _, h := range hashes {
			_, r := tn.rawQuery(t, "sm2-issuing", leaf.SerialNumber, &ocsp.RequestOptions{Hash: h})
			if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.ReasonKeyCompromise {
				t.Errorf("%v right after the ack: %v reason %d", h, r.Status, r.RevocationReason)
			}
		}
		// The revoked answers were signed before the ack and replaced the
		// good ones in the table.
		if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responses WHERE issuer_id = 'sm2-issuing' AND serial = ? AND status = 'revoked'", out.Serial); n != len(hashes) {
			t.Errorf("%d stored revoked responses", n)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responses WHERE issuer_id = 'sm2-issuing' AND serial = ? AND status <> 'revoked'", out.Serial); n != 0 {
			t.Errorf("%d stored responses still not revoked", n)
		}
	})
}

// TestOCSPResponderRollover moves the node's fake clock past two thirds of
// the responder certificate's life: the maintenance makes the next
// generation, which signs from then on (cached responses of the old one
// are re-signed), the old key is destroyed after the grace period, and a
// restart keeps the current responder.
func TestOCSPResponderRollover(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	fake := clock.NewFake(time.Now())
	set := func(o *node.Options) { o.Clock = fake }
	tn := startNodeWith(t, dir, set)
	out := tn.issueECDSA(t)
	leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	old := tn.responderOf(t, "ecdsa-issuing")
	_, r := tn.rawQuery(t, "ecdsa-issuing", leaf.SerialNumber, nil)
	if !bytes.Equal(r.Certificate.Raw, old.cert.Raw) {
		t.Fatal("not signed by the first responder")
	}
	st := tn.svc.ocspState()

	// Not due yet: nothing changes.
	fake.Add(59 * 24 * time.Hour)
	tn.svc.maintainOCSP(t.Context(), st)
	if cur := tn.responderOf(t, "ecdsa-issuing"); cur.generation != old.generation {
		t.Fatalf("rolled over at 59 days: generation %d", cur.generation)
	}
	fake.Add(2 * 24 * time.Hour) // 61 of 90 days
	tn.svc.maintainOCSP(t.Context(), st)
	cur := tn.responderOf(t, "ecdsa-issuing")
	if cur.generation != old.generation+1 || bytes.Equal(cur.cert.Raw, old.cert.Raw) {
		t.Fatalf("after 61 days: generation %d, want %d", cur.generation, old.generation+1)
	}
	if !cur.cert.NotBefore.After(old.cert.NotBefore) {
		t.Errorf("new responder valid from %v, old from %v", cur.cert.NotBefore, old.cert.NotBefore)
	}
	for _, nonce := range [][]byte{nil, {9, 9, 9, 9}} {
		_, r := tn.rawQuery(t, "ecdsa-issuing", leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce})
		if r.Status != ocsp.Good || r.Certificate == nil || !bytes.Equal(r.Certificate.Raw, cur.cert.Raw) {
			t.Fatalf("nonce %x: status %v, not signed by the new responder", nonce, r.Status)
		}
	}
	// openssl, with the fake time as the verification time.
	odir := t.TempDir()
	lf := writeFile(t, odir, "leaf.pem", out.Certificate)
	issuing := writeFile(t, odir, "issuing.pem", out.Chain[0])
	root := writeFile(t, odir, "root.pem", out.Chain[1])
	got := tn.opensslOCSP(t, "ecdsa-issuing", "-no_nonce", "-issuer", issuing, "-cert", lf, "-CAfile", root, "-verify_other", issuing,
		"-attime", strconv.FormatInt(fake.Now().Unix(), 10), "-validity_period", strconv.Itoa(int(100*24*time.Hour/time.Second)))
	if !strings.Contains(got, "Response verify OK") || !strings.Contains(got, lf+": good") || !strings.Contains(got, cur.cert.Subject.CommonName) {
		t.Errorf("openssl after rollover:\n%s", got)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = 'ecdsa-issuing' AND profile = 'ocsp-signer'"); n != 2 {
		t.Errorf("%d ocsp-signer certificates recorded, want 2", n)
	}

	// The old key lives on through the grace period, then goes.
	keys := tn.n.Env().Keys
	if _, err := keys.Signer(t.Context(), &hsm.SignerRequest{URI: old.keyURI, Service: keyService}); err != nil {
		t.Fatalf("old key gone too early: %v", err)
	}
	fake.Add(responderKeyGrace + time.Minute)
	tn.svc.maintainOCSP(t.Context(), st)
	if _, err := keys.Signer(t.Context(), &hsm.SignerRequest{URI: old.keyURI, Service: keyService}); !errors.Is(err, hsm.ErrNotFound) {
		t.Errorf("old key after the grace period: %v, want ErrNotFound", err)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responders WHERE issuer_id = 'ecdsa-issuing' AND state = 'retired'"); n != 1 {
		t.Errorf("%d retired responders", n)
	}

	// A restart keeps the current responder of every CA.
	before := map[string][]byte{}
	for _, sp := range hierarchies {
		before[sp.id] = tn.responderOf(t, sp.id).cert.Raw
	}
	rows := tn.count("SELECT COUNT(*) FROM ca_ocsp_responders")
	tn.stop()
	tn = startNodeWith(t, dir, set)
	for _, sp := range hierarchies {
		if !bytes.Equal(tn.responderOf(t, sp.id).cert.Raw, before[sp.id]) {
			t.Errorf("%s: restart changed the responder", sp.id)
		}
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responders"); n != rows {
		t.Errorf("restart made responders: %d rows, was %d", n, rows)
	}
	_, r = tn.rawQuery(t, "ecdsa-issuing", leaf.SerialNumber, nil)
	if r.Status != ocsp.Good || !bytes.Equal(r.Certificate.Raw, cur.cert.Raw) {
		t.Errorf("after restart: %v, signed by the current responder %v", r.Status, r.Certificate != nil && bytes.Equal(r.Certificate.Raw, cur.cert.Raw))
	}
}

// TestOCSPTwoProcessesPostgres runs two CA services on one PostgreSQL
// database: the second loads the first's responders rather than make its
// own; a rollover raced by both makes exactly one responder; and a
// revocation acknowledged by the first is answered "revoked" by the second
// within the 5 s of ACCEPTANCE.md C-02, although the second had the good
// answer in its memory cache.
func TestOCSPTwoProcessesPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	set := func(o *node.Options) { o.DB = &url }
	a := startNodeWith(t, filepath.Join(t.TempDir(), "a"), set)
	b := startNodeWith(t, filepath.Join(t.TempDir(), "b"), set)
	for _, sp := range hierarchies {
		if ra, rb := a.responderOf(t, sp.id), b.responderOf(t, sp.id); !bytes.Equal(ra.cert.Raw, rb.cert.Raw) {
			t.Errorf("%s: the two processes use different responders", sp.id)
		}
	}
	if n := a.count("SELECT COUNT(*) FROM ca_ocsp_responders"); n != len(hierarchies) {
		t.Fatalf("%d responders for %d CAs", n, len(hierarchies))
	}

	t.Run("rollover raced by both processes", func(t *testing.T) {
		ca := a.svc.cas["sm2-issuing"]
		gen := a.responderOf(t, "sm2-issuing").generation + 1
		before := a.count("SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = 'sm2-issuing' AND profile = 'ocsp-signer'")
		var wg sync.WaitGroup
		got := make([]*responder, 2)
		errs := make([]error, 2)
		for i, tn := range []*testNode{a, b} {
			wg.Go(func() { got[i], errs[i] = tn.svc.makeResponder(t.Context(), ca, gen) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if got[0].generation != gen || !bytes.Equal(got[0].cert.Raw, got[1].cert.Raw) {
			t.Fatalf("generations %d and %d, same certificate %v", got[0].generation, got[1].generation, bytes.Equal(got[0].cert.Raw, got[1].cert.Raw))
		}
		if n := a.count("SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = 'sm2-issuing' AND profile = 'ocsp-signer'"); n != before+1 {
			t.Errorf("%d ocsp-signer certificates, want %d", n, before+1)
		}
	})

	t.Run("C-02 revocation in the other process", func(t *testing.T) {
		out, leaf := a.issueSM2Go(t)
		first, r := b.rawQuery(t, "sm2-issuing", leaf.SerialNumber, nil)
		if r.Status != ocsp.Good {
			t.Fatalf("before: %v", r.Status)
		}
		if again, _ := b.rawQuery(t, "sm2-issuing", leaf.SerialNumber, nil); !bytes.Equal(again, first) {
			t.Fatal("the second process does not answer from its cache")
		}
		if status, raw := a.revoke("sm2-issuing", "ra", out.Serial, "superseded"); status != http.StatusOK {
			t.Fatalf("revoke: %d %s", status, raw)
		}
		ack := time.Now()
		for {
			_, r := b.rawQuery(t, "sm2-issuing", leaf.SerialNumber, nil)
			if r.Status == ocsp.Revoked {
				if r.RevocationReason != ocsp.ReasonSuperseded {
					t.Errorf("reason %d", r.RevocationReason)
				}
				t.Logf("revoked in the other process %v after the ack", time.Since(ack).Round(time.Millisecond))
				break
			}
			if time.Since(ack) > 5*time.Second {
				t.Fatalf("still %v 5 s after the revocation was acknowledged", r.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("responder revoked in the other process", func(t *testing.T) {
		a.addAccount("op1", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
		a.addAccount("op2", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
		out := a.issueECDSA(t)
		leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		old := b.responderOf(t, "ecdsa-issuing")
		b.rawQuery(t, "ecdsa-issuing", leaf.SerialNumber, nil) // in b's memory, signed by old
		a.revokeAsOperators(t, "ecdsa-issuing", serialHex(old.cert.SerialNumber), "keyCompromise")
		ack := time.Now()
		for {
			stale := false
			for _, nonce := range [][]byte{nil, {3, 3, 3}} {
				_, r := b.rawQuery(t, "ecdsa-issuing", leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce})
				stale = stale || r.Certificate == nil || bytes.Equal(r.Certificate.Raw, old.cert.Raw)
			}
			if !stale {
				t.Logf("the other process stopped signing with the revoked responder %v after the ack", time.Since(ack).Round(time.Millisecond))
				break
			}
			if time.Since(ack) > 3*ocspPollInterval {
				t.Fatalf("the other process still signs with the revoked responder %v after the ack", time.Since(ack))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ra, rb := a.responderOf(t, "ecdsa-issuing"), b.responderOf(t, "ecdsa-issuing"); !bytes.Equal(ra.cert.Raw, rb.cert.Raw) || ra.generation <= old.generation {
			t.Errorf("responders after the revocation: generations %d and %d (revoked %d)", ra.generation, rb.generation, old.generation)
		}
	})
}

// BenchmarkOCSPAnswer measures the responder's own work per answer, without
// HTTP: from the pre-signed cache (no nonce) and signed on demand by the
// delegated SM2 responder (nonce). Compare with `go test -bench . ./bench/ref`
// (raw SM2 signing) on the same machine.
func BenchmarkOCSPAnswer(b *testing.B) {
	dir := b.TempDir()
	svc := New()
	opts := node.Options{DataDir: filepath.Join(dir, "data"), HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}}
	n, err := node.Start(context.Background(), opts, svc)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	a := svc.cas["sm2-issuing"]
	r := svc.ocspState().responder(a.id)
	// A certificate to ask about: the responder's own, recorded in
	// ca_certificates like any issued one.
	serial := r.cert.SerialNumber
	for _, bc := range []struct {
		name  string
		nonce []byte
	}{{"presigned", nil}, {"on-demand", bytes.Repeat([]byte{1}, 16)}} {
		req, err := ocsp.CreateRequestForSerial(serial, a.cert, &ocsp.RequestOptions{Nonce: bc.nonce})
		if err != nil {
			b.Fatal(err)
		}
		if ans := svc.ocspAnswer(b.Context(), a, req); ans.cache == nil {
			b.Fatalf("%s: no answer", bc.name)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if ans := svc.ocspAnswer(context.Background(), a, req); ans.cache == nil {
						b.Error("no answer")
						return
					}
				}
			})
		})
	}
}

// TestOCSPRefresh: a pre-signed response is served unchanged until half its
// validity has passed, then the scheduled sweep re-signs it (thisUpdate
// moves, nextUpdate stays 24 h ahead); one that is close to its nextUpdate
// is never served, and a re-sign that read "good" before a revocation cannot
// store its answer afterwards.
func TestOCSPRefresh(t *testing.T) {
	fake := clock.NewFake(time.Now())
	tn := startNodeWith(t, filepath.Join(t.TempDir(), "data"), func(o *node.Options) { o.Clock = fake })
	out := tn.issueECDSA(t)
	leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	a := tn.svc.cas["ecdsa-issuing"]
	st := tn.svc.ocspState()
	first, r0 := tn.rawQuery(t, a.id, leaf.SerialNumber, nil)

	fake.Add(11 * time.Hour)
	if raw, _ := tn.rawQuery(t, a.id, leaf.SerialNumber, nil); !bytes.Equal(raw, first) {
		t.Fatal("re-signed before half its validity")
	}
	fake.Add(2 * time.Hour)
	if err := tn.svc.refreshDue(t.Context(), st, a); err != nil {
		t.Fatal(err)
	}
	var this string
	if err := tn.db().QueryRow(t.Context(), "SELECT this_update FROM ca_ocsp_responses WHERE issuer_id = ? AND serial = ?", a.id, out.Serial).Scan(&this); err != nil {
		t.Fatal(err)
	}
	want := fake.Now().UTC().Truncate(time.Second)
	if this != want.Format(timeFormat) {
		t.Errorf("stored thisUpdate %s after the sweep, want %s", this, want.Format(timeFormat))
	}
	raw, r1 := tn.rawQuery(t, a.id, leaf.SerialNumber, nil)
	if bytes.Equal(raw, first) || !r1.ThisUpdate.Equal(want) || r1.NextUpdate.Sub(r1.ThisUpdate) != ocspValidity || !r1.ThisUpdate.After(r0.ThisUpdate) {
		t.Errorf("after the sweep: thisUpdate %v nextUpdate %v (before %v)", r1.ThisUpdate, r1.NextUpdate, r0.ThisUpdate)
	}

	// Never served within ocspMinRemaining of nextUpdate, sweep or not.
	fake.Add(ocspValidity - ocspMinRemaining/2)
	_, r2 := tn.rawQuery(t, a.id, leaf.SerialNumber, nil)
	if !r2.ThisUpdate.Equal(fake.Now().UTC().Truncate(time.Second)) {
		t.Errorf("served a response with thisUpdate %v at %v", r2.ThisUpdate, fake.Now())
	}

	// The guard: a "good" answer is not stored once the certificate is
	// revoked.
	if status, raw := tn.revoke(a.id, "ra", out.Serial, "keyCompromise"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	k := cacheKey{a.id, string(leaf.SerialNumber.Bytes()), ocsp.SHA1}
	stale := newCached(first, r0.ThisUpdate.Add(48*time.Hour), r0.NextUpdate.Add(48*time.Hour), 1)
	if stored, err := storeResponse(t.Context(), tn.db(), k, certState{status: "good"}, stale); err != nil || stored {
		t.Fatalf("good answer stored for a revoked certificate: %v %v", stored, err)
	}
	if _, r := tn.rawQuery(t, a.id, leaf.SerialNumber, nil); r.Status != ocsp.Revoked {
		t.Errorf("after the refused store: %v", r.Status)
	}
}

// TestRespCache: the memory level stays within its bound, and a fill that
// began before an invalidation is not kept.
func TestRespCache(t *testing.T) {
	c := newRespCache(64)
	now := time.Now()
	entry := newCached([]byte{1}, now, now.Add(ocspValidity), 1)
	for i := range 1000 {
		if !c.put(cacheKey{"ca", strconv.Itoa(i), ocsp.SHA1}, entry, c.generation()) {
			t.Fatal("put refused without an invalidation")
		}
		if len(c.m) > 64 {
			t.Fatalf("%d entries, bound 64", len(c.m))
		}
	}
	k := cacheKey{"ca", "serial", ocsp.SM3}
	for _, tc := range []struct {
		name       string
		invalidate func()
	}{
		{"drop", func() { c.drop("ca", "serial") }},
		{"flush", func() { c.flush("ca") }},
		{"drop of another serial", func() { c.drop("other", "x") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fill := c.generation()
			tc.invalidate()
			if c.put(k, entry, fill) || c.get(k) != nil {
				t.Fatal("a fill begun before the invalidation was kept")
			}
		})
	}
	c.put(k, entry, c.generation())
	c.drop("ca", "serial")
	if c.get(k) != nil {
		t.Fatal("drop left the entry")
	}
	if !entry.usable(now, 1) || entry.usable(now, 2) || entry.usable(now.Add(ocspValidity-ocspMinRemaining), 1) || entry.due(now) || !entry.due(now.Add(ocspValidity/2)) {
		t.Fatal("usable/due windows wrong")
	}
}

// TestOCSPResponderOfNewGeneration: a CA generation a rollover makes while
// the node runs gets its own delegated responder within a poll, not only at
// the next maintenance tick; it signs the generation's answers, with and
// without a nonce; the scheduled sweep re-signs its stored responses after
// half their validity; and a restart loads it like the built-in CAs'.
func TestOCSPResponderOfNewGeneration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	fake := clock.NewFake(time.Now())
	set := func(o *node.Options) { o.Clock = fake }
	tn := startNodeWith(t, dir, set)
	rolled, err := tn.svc.Rollover(t.Context(), "test", "ecdsa-issuing", "")
	if err != nil {
		t.Fatal(err)
	}
	g2 := rolled.authority
	st := tn.svc.ocspState()
	deadline := time.Now().Add(5 * ocspPollInterval)
	for st.responder(g2.id) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s has no delegated responder %v after the rollover", g2.id, 5*ocspPollInterval)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := tn.responderOf(t, g2.id)
	if err := ocsp.CheckResponder(g2.cert, r.cert); err != nil || !ocsp.HasNoCheck(r.cert) {
		t.Fatalf("responder of %s: %v", g2.id, err)
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_certificates WHERE issuer_id = ? AND profile = 'ocsp-signer'", g2.id); n != 1 {
		t.Errorf("%d ocsp-signer certificates recorded under %s", n, g2.id)
	}

	out := tn.issueECDSA(t) // issued by the active generation, g2
	leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(leaf.RawIssuer, g2.cert.RawSubject) || leaf.CheckSignatureFrom(g2.cert) != nil {
		t.Fatal("not issued by the new generation")
	}
	var first *ocsp.Response
	for _, nonce := range [][]byte{nil, {1, 2, 3, 4}} {
		_, resp := tn.ask(t, g2.id, leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce}, false)
		if resp.Status != ocsp.Good || resp.Certificate == nil || !bytes.Equal(resp.Certificate.Raw, r.cert.Raw) {
			t.Fatalf("nonce %x: status %v, signed by the delegated responder: %v", nonce, resp.Status, resp.Certificate != nil)
		}
		if nonce == nil {
			first = resp
		}
	}

	// The scheduled sweep covers the new generation.
	fake.Add(ocspValidity/2 + time.Hour)
	tn.svc.maintainOCSP(t.Context(), st)
	var this string
	if err := tn.db().QueryRow(t.Context(), "SELECT this_update FROM ca_ocsp_responses WHERE issuer_id = ? AND serial = ?", g2.id, out.Serial).Scan(&this); err != nil {
		t.Fatal(err)
	}
	if want := fake.Now().UTC().Truncate(time.Second).Format(timeFormat); this != want {
		t.Errorf("stored thisUpdate %s after the sweep, want %s (was %s)", this, want, first.ThisUpdate.UTC().Format(timeFormat))
	}

	tn.stop()
	tn = startNodeWith(t, dir, set)
	if again := tn.responderOf(t, g2.id); !bytes.Equal(again.cert.Raw, r.cert.Raw) {
		t.Error("a restart changed the new generation's responder")
	}
	if _, resp := tn.ask(t, g2.id, leaf.SerialNumber, &ocsp.RequestOptions{Nonce: []byte{5}}, false); resp.Certificate == nil || !bytes.Equal(resp.Certificate.Raw, r.cert.Raw) {
		t.Error("after a restart the new generation's answers are not signed by its responder")
	}
}

// revokeAsOperators revokes serial of CA id as CA operator "op1", with
// "op2" approving when the revocation needs dual control.
func (tn *testNode) revokeAsOperators(t *testing.T, id, serial, reason string) {
	t.Helper()
	status, raw := tn.revoke(id, "op1", serial, reason)
	if status == http.StatusAccepted {
		var p PendingRevocation
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		status, raw = tn.do("POST", "/api/v1/ca/"+id+"/revocations", "op2", map[string]string{"serial": serial, "reason": reason, "approval": p.Approval}, nil)
	}
	if status != http.StatusOK {
		t.Fatalf("revoke %s/%s: %d %s", id, serial, status, raw)
	}
}

// TestOCSPRevokedResponder: once a CA operator revokes the delegated
// responder's own certificate (keyCompromise), nothing is signed with it
// again: the revoking process has a new responder before the API answers,
// and responses with and without a nonce, from memory or the table, are
// signed by it; the responder's certificate is answered revoked. A
// revocation this process did not make (another process's, seen only in the
// database) is noticed by the poll within its interval.
func TestOCSPRevokedResponder(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	tn.addAccount("op1", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	tn.addAccount("op2", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	const id = "ecdsa-issuing"
	out := tn.issueECDSA(t)
	leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	st := tn.svc.ocspState()
	r0 := tn.responderOf(t, id)
	if _, r := tn.ask(t, id, leaf.SerialNumber, nil, false); !bytes.Equal(r.Certificate.Raw, r0.cert.Raw) {
		t.Fatal("not signed by the first responder")
	}
	// signedBy checks every kind of answer about the leaf and about the
	// revoked responder certificate: none by the revoked one.
	signedBy := func(t *testing.T, revoked, want *responder) {
		t.Helper()
		for _, flush := range []bool{false, true} {
			if flush {
				st.cache.flush(id)
			}
			for _, nonce := range [][]byte{nil, {7, 7, 7, 7}} {
				for _, get := range []bool{false, true} {
					_, r := tn.ask(t, id, leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce}, get)
					if r.Status != ocsp.Good || r.Certificate == nil || !bytes.Equal(r.Certificate.Raw, want.cert.Raw) {
						t.Errorf("flush %v nonce %x GET %v: %v, signed by the responder in use: %v, by the revoked one: %v", flush, nonce, get,
							r.Status, r.Certificate != nil && bytes.Equal(r.Certificate.Raw, want.cert.Raw), r.Certificate != nil && bytes.Equal(r.Certificate.Raw, revoked.cert.Raw))
					}
				}
			}
		}
		_, self := tn.ask(t, id, revoked.cert.SerialNumber, nil, false)
		if self.Status != ocsp.Revoked || self.RevocationReason != ocsp.ReasonKeyCompromise || !bytes.Equal(self.Certificate.Raw, want.cert.Raw) {
			t.Errorf("the revoked responder's certificate: %v reason %d", self.Status, self.RevocationReason)
		}
	}

	t.Run("revoked through the API", func(t *testing.T) {
		tn.revokeAsOperators(t, id, serialHex(r0.cert.SerialNumber), "keyCompromise")
		r1 := st.responder(id)
		if r1 == nil || r1.generation <= r0.generation || bytes.Equal(r1.cert.Raw, r0.cert.Raw) {
			t.Fatal("the revoking process still signs with the revoked responder, or with the CA key")
		}
		signedBy(t, r0, r1)
		// The maintenance tick keeps the new one (it is fresh, not due).
		tn.svc.maintainOCSP(t.Context(), st)
		if st.responder(id) != r1 {
			t.Error("maintenance replaced the new responder")
		}
	})

	t.Run("revoked by another process", func(t *testing.T) {
		r1 := tn.responderOf(t, id)
		serial := serialHex(r1.cert.SerialNumber)
		// What another process's revocation leaves in the database; this
		// process's own hook (ocspRevoked) does not run.
		now := time.Now().UTC().Truncate(time.Second)
		err := tn.db().Tx(t.Context(), func(tx *store.Tx) error {
			if _, err := tx.Exec(t.Context(), "UPDATE ca_certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE issuer_id = ? AND serial = ?",
				now.Format(timeFormat), ocsp.ReasonKeyCompromise, id, serial); err != nil {
				return err
			}
			return tn.svc.ocspRevokeTx(t.Context(), tx, id, serial)
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			if r := st.responder(id); r != nil && r.generation > r1.generation {
				t.Logf("new responder %v after the revocation", time.Since(start).Round(time.Millisecond))
				signedBy(t, r1, r)
				break
			}
			if time.Since(start) > 3*ocspPollInterval {
				t.Fatalf("still no new responder %v after the revocation", time.Since(start))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestOCSPRevokedAfterClock: a revocation dated after the answering
// process's clock (its clock is a moment behind the revoking one's) is
// answered "revoked", with revocationTime clamped to thisUpdate and
// thisUpdate this clock's now, never in the future; with and without a
// nonce, by POST and GET.
func TestOCSPRevokedAfterClock(t *testing.T) {
	fake := clock.NewFake(time.Now().Truncate(time.Second).Add(500 * time.Millisecond))
	tn := startNodeWith(t, filepath.Join(t.TempDir(), "data"), func(o *node.Options) { o.Clock = fake })
	const id = "ecdsa-issuing"
	out := tn.issueECDSA(t)
	leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if status, raw := tn.revoke(id, "ra", out.Serial, "keyCompromise"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	c, err := certBySerial(t.Context(), tn.db(), id, out.Serial)
	if err != nil {
		t.Fatal(err)
	}
	// Another process a second behind, or this one's clock stepped back:
	// its memory and the table hold nothing signed before.
	fake.Add(-2 * time.Second)
	st := tn.svc.ocspState()
	for _, nonce := range [][]byte{nil, {1, 2, 3, 4}} {
		for _, get := range []bool{false, true} {
			st.cache.flush(id)
			if _, err := tn.db().Exec(t.Context(), "DELETE FROM ca_ocsp_responses"); err != nil {
				t.Fatal(err)
			}
			_, r := tn.ask(t, id, leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce}, get)
			now := fake.Now().UTC().Truncate(time.Second)
			if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.ReasonKeyCompromise {
				t.Fatalf("nonce %x GET %v: %v reason %d", nonce, get, r.Status, r.RevocationReason)
			}
			if !r.ThisUpdate.Equal(now) || !r.RevokedAt.Equal(r.ThisUpdate) || !r.RevokedAt.Before(c.revokedAt) {
				t.Errorf("nonce %x GET %v: thisUpdate %v revocationTime %v (revoked at %v, clock %v)", nonce, get, r.ThisUpdate, r.RevokedAt, c.revokedAt, now)
			}
		}
	}
	// Once the clock has passed the revocation, the stored date again.
	fake.Add(3 * time.Second)
	st.cache.flush(id)
	if _, err := tn.db().Exec(t.Context(), "DELETE FROM ca_ocsp_responses"); err != nil {
		t.Fatal(err)
	}
	if _, r := tn.ask(t, id, leaf.SerialNumber, nil, false); r.Status != ocsp.Revoked || !r.RevokedAt.Equal(c.revokedAt) {
		t.Errorf("after the clock caught up: %v revoked at %v, want %v", r.Status, r.RevokedAt, c.revokedAt)
	}
}

// TestOCSPReasonChangeNotOverwritten: a re-sign that read "revoked,
// superseded" and signed before the reason became keyCompromise (resign's
// sequence, with the change committed between its read and its store)
// stores nothing: not over the keyCompromise response ocspRevoked stored for
// SHA-1, even with the same thisUpdate, and not for SHA-384, which
// ocspRevoked does not re-sign. After a memory flush (what another process
// sees) every hash answers keyCompromise (RELIABILITY.md §1: the reason must
// survive re-signing).
func TestOCSPReasonChangeNotOverwritten(t *testing.T) {
	onBothStores(t, func(t *testing.T, tn *testNode) {
		ctx := t.Context()
		a := tn.svc.lookup("ecdsa-issuing")
		out := tn.issueECDSA(t)
		if st, raw := tn.revoke(a.id, "ra", out.Serial, "superseded"); st != http.StatusOK {
			t.Fatalf("superseded: %d %s", st, raw)
		}
		serial, _ := new(big.Int).SetString(out.Serial, 16)
		ost := tn.svc.ocspState()
		r := ost.responder(a.id)
		type signed struct {
			k     cacheKey
			state certState
			c     *cached
		}
		var stale []signed
		for _, h := range []ocsp.HashAlg{ocsp.SHA1, ocsp.SHA384} {
			// resign, step 1: read the state and sign.
			tpl, state, err := tn.svc.template(ctx, a, serial, h, nil)
			if err != nil || state.status != "revoked" || tpl.RevocationReason != ocsp.ReasonSuperseded {
				t.Fatalf("template: %v %+v %d", err, state, tpl.RevocationReason)
			}
			der, err := tn.svc.signOCSP(a, r, tpl)
			if err != nil {
				t.Fatal(err)
			}
			stale = append(stale, signed{cacheKey{a.id, string(serial.Bytes()), h}, state, newCached(der, tpl.ThisUpdate, tpl.NextUpdate, r.generation)})
		}
		// Meanwhile the reason becomes keyCompromise: its transaction deletes
		// the stored responses, ocspRevoked stores the SHA-1 keyCompromise one.
		if st, raw := tn.revoke(a.id, "ra", out.Serial, "keyCompromise"); st != http.StatusOK {
			t.Fatalf("keyCompromise: %d %s", st, raw)
		}
		fresh, err := loadResponse(ctx, tn.db(), stale[0].k)
		if err != nil || fresh == nil {
			t.Fatalf("keyCompromise response not stored: %v", err)
		}
		// resign, step 2: store what was signed from the old read, with the
		// thisUpdate of the fresh one (signed in the same second).
		for _, s := range stale {
			c := newCached(s.c.der, fresh.thisUpdate, fresh.nextUpdate, s.c.generation)
			if stored, err := storeResponse(ctx, tn.db(), s.k, s.state, c); err != nil || stored {
				t.Errorf("hash %v: response of the superseded state stored=%v (%v)", s.k.hash, stored, err)
			}
		}
		if got, err := loadResponse(ctx, tn.db(), stale[0].k); err != nil || got == nil || !bytes.Equal(got.der, fresh.der) {
			t.Errorf("SHA-1 row replaced (%v)", err)
		}
		if got, err := loadResponse(ctx, tn.db(), stale[1].k); err != nil || got != nil {
			t.Errorf("SHA-384 row stored from the superseded state (%v)", err)
		}
		ost.cache.flush(a.id)
		for _, h := range []ocsp.HashAlg{ocsp.SHA1, ocsp.SHA384} {
			_, resp := tn.rawQuery(t, a.id, serial, &ocsp.RequestOptions{Hash: h})
			if resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.ReasonKeyCompromise {
				t.Errorf("hash %v after a memory flush: %v reason %d, want keyCompromise", h, resp.Status, resp.RevocationReason)
			}
		}
	})
}

// TestOCSPStoreOlderState: storeResponse stores a response only for the
// certificate's current state, compared in full (status, revocation date,
// reason, revocation_seq), whatever its thisUpdate (a process whose clock
// is ahead), and reports stored=false when the table keeps a later
// response (the WHERE of its ON CONFLICT updated nothing).
func TestOCSPStoreOlderState(t *testing.T) {
	onBothStores(t, func(t *testing.T, tn *testNode) {
		ctx := t.Context()
		a := tn.svc.lookup("ecdsa-issuing")
		out := tn.issueECDSA(t)
		serial, _ := new(big.Int).SetString(out.Serial, 16)
		k := cacheKey{a.id, string(serial.Bytes()), ocsp.SHA256}
		r := tn.svc.ocspState().responder(a.id)
		sign := func(ahead time.Duration) (*cached, certState) {
			t.Helper()
			tpl, state, err := tn.svc.template(ctx, a, serial, k.hash, nil)
			if err != nil {
				t.Fatal(err)
			}
			tpl.ThisUpdate, tpl.ProducedAt, tpl.NextUpdate = tpl.ThisUpdate.Add(ahead), tpl.ProducedAt.Add(ahead), tpl.NextUpdate.Add(ahead)
			der, err := tn.svc.signOCSP(a, r, tpl)
			if err != nil {
				t.Fatal(err)
			}
			return newCached(der, tpl.ThisUpdate, tpl.NextUpdate, r.generation), state
		}
		put := func(c *cached, state certState) bool {
			t.Helper()
			stored, err := storeResponse(ctx, tn.db(), k, state, c)
			if err != nil {
				t.Fatal(err)
			}
			return stored
		}
		good, goodState := sign(time.Hour)
		if st, raw := tn.revoke(a.id, "ra", out.Serial, "cessationOfOperation"); st != http.StatusOK {
			t.Fatalf("revoke: %d %s", st, raw)
		}
		ceased, ceasedState := sign(time.Hour)
		if st, raw := tn.revoke(a.id, "ra", out.Serial, "keyCompromise"); st != http.StatusOK {
			t.Fatalf("keyCompromise: %d %s", st, raw)
		}
		compromised, compromisedState := sign(0)
		if ceasedState.status != compromisedState.status || ceasedState.revokedAt != compromisedState.revokedAt || ceasedState.seq >= compromisedState.seq {
			t.Fatalf("states: %+v then %+v", ceasedState, compromisedState)
		}
		if put(good, goodState) {
			t.Error("a good response stored for a revoked certificate")
		}
		if put(ceased, ceasedState) {
			t.Error("a cessationOfOperation response stored after the change to keyCompromise")
		}
		// The same reason and date under another revocation sequence is
		// another state as well.
		if older := (certState{compromisedState.status, compromisedState.revokedAt, compromisedState.reason, ceasedState.seq}); put(compromised, older) {
			t.Error("stored for a revocation sequence that is not the row's")
		}
		if !put(compromised, compromisedState) {
			t.Fatal("the response of the current state not stored")
		}
		// Of two responses of the current state the later stays, and the
		// earlier is reported not stored.
		later, _ := sign(time.Minute)
		if !put(later, compromisedState) {
			t.Error("a later response of the current state not stored")
		}
		if put(compromised, compromisedState) {
			t.Error("an earlier response reported stored over a later one")
		}
		got, err := loadResponse(ctx, tn.db(), k)
		if err != nil || got == nil || !bytes.Equal(got.der, later.der) {
			t.Fatalf("stored response is not the later one (%v)", err)
		}
		resp, err := ocsp.ParseResponse(got.der, a.cert)
		if err != nil || resp.RevocationReason != ocsp.ReasonKeyCompromise {
			t.Errorf("stored: %v reason %d", err, resp.RevocationReason)
		}
	})
}

// refuseCreate is a key manager that signs with the keys it has but makes
// no new one (a token full, or a key backend whose key generation is
// refused while signing works).
type refuseCreate struct{ hsm.KeyManager }

func (refuseCreate) CreateKey(context.Context, *hsm.CreateKeyRequest) (*hsm.KeyInfo, error) {
	return nil, errors.New("test: key creation refused")
}

// TestOCSPResponderRolloverFails: while the responder's rollover keeps
// failing (CreateKey refused, signing works), it signs as long as its
// certificate outlasts the responses; from its last day on, and once it has
// expired, the CA key signs (RFC 6960 §2.6) instead of answering with a
// response that outlives the responder certificate, or internalError; when
// key creation works again its successor signs and replaces what the CA
// key signed. No response's nextUpdate is after the end of the certificate
// it is verified with.
func TestOCSPResponderRolloverFails(t *testing.T) {
	fake := clock.NewFake(time.Now())
	tn := startNodeWith(t, filepath.Join(t.TempDir(), "data"), func(o *node.Options) { o.Clock = fake })
	const id = "ecdsa-issuing"
	a := tn.svc.lookup(id)
	out := tn.issueECDSA(t)
	leaf, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	st := tn.svc.ocspState()
	old := tn.responderOf(t, id)
	keys := tn.n.Env().Keys
	keys.Router.Mount("soft", "", refuseCreate{keys.Soft})
	// ask queries with and without a nonce, by POST, and returns the
	// certificate the responses were signed with (nil: the CA's key).
	ask := func(when string) *smx509.Certificate {
		t.Helper()
		var signer *smx509.Certificate
		for i, nonce := range [][]byte{nil, {7, 7, 7, 7}} {
			_, r := tn.rawQuery(t, id, leaf.SerialNumber, &ocsp.RequestOptions{Nonce: nonce})
			if r.Status != ocsp.Good {
				t.Fatalf("%s, nonce %x: %v", when, nonce, r.Status)
			}
			end := a.cert.NotAfter
			if r.Certificate != nil {
				end = r.Certificate.NotAfter
			}
			if r.NextUpdate.After(end) || !r.ProducedAt.Before(end) {
				t.Errorf("%s, nonce %x: producedAt %v nextUpdate %v, signer's certificate ends %v", when, nonce, r.ProducedAt, r.NextUpdate, end)
			}
			if i == 0 {
				signer = r.Certificate
			} else if (signer == nil) != (r.Certificate == nil) || signer != nil && !bytes.Equal(signer.Raw, r.Certificate.Raw) {
				t.Errorf("%s: the pre-signed and the nonce responses have different signers", when)
			}
		}
		return signer
	}
	if c := ask("at start"); c == nil || !bytes.Equal(c.Raw, old.cert.Raw) {
		t.Fatal("not signed by the responder at start")
	}

	// Due for rollover, which fails: the responder signs on while its
	// certificate outlasts the responses.
	fake.Set(old.rollAt().Add(time.Hour))
	tn.svc.maintainOCSP(t.Context(), st)
	if cur := tn.responderOf(t, id); cur != old {
		t.Fatalf("responder changed to generation %d with key creation refused", cur.generation)
	}
	if c := ask("after the failed rollover"); c == nil || !bytes.Equal(c.Raw, old.cert.Raw) {
		t.Fatal("not signed by the responder after the failed rollover")
	}

	// Its last day, then past its end: the CA key signs.
	for _, at := range []time.Time{old.cert.NotAfter.Add(-12 * time.Hour), old.cert.NotAfter.Add(time.Hour)} {
		fake.Set(at)
		tn.svc.maintainOCSP(t.Context(), st)
		if c := ask(at.Sub(old.cert.NotAfter).String() + " from the responder's end"); c != nil {
			t.Errorf("%v from the responder's end: signed by %q, want the CA key", at.Sub(old.cert.NotAfter), c.Subject.CommonName)
		}
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responses WHERE issuer_id = ? AND serial = ? AND generation = 0", id, out.Serial); n != 1 {
		t.Errorf("%d stored responses signed by the CA key, want 1", n)
	}

	// Key creation works again: the successor signs, and the next sweep
	// re-signs what the CA key signed.
	keys.Router.Mount("soft", "", keys.Soft)
	tn.svc.maintainOCSP(t.Context(), st)
	cur := tn.responderOf(t, id)
	if cur.generation != old.generation+1 {
		t.Fatalf("generation %d after key creation came back, want %d", cur.generation, old.generation+1)
	}
	if c := ask("with the successor"); c == nil || !bytes.Equal(c.Raw, cur.cert.Raw) {
		t.Error("not signed by the successor")
	}
	if n := tn.count("SELECT COUNT(*) FROM ca_ocsp_responses WHERE issuer_id = ? AND generation <> ?", id, cur.generation); n != 0 {
		t.Errorf("%d stored responses not signed by the successor", n)
	}
}

// TestOCSPSigner: who signs a response valid from thisUpdate to nextUpdate,
// and its nextUpdate: the responder while its certificate covers the
// response, the CA key when it does not and the CA's certificate lasts
// longer; nextUpdate never after the end of the signer's certificate.
func TestOCSPSigner(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	day := 24 * time.Hour
	ca := &authority{cert: &smx509.Certificate{NotBefore: now.Add(-365 * day), NotAfter: now.Add(365 * day)}}
	shortCA := &authority{cert: &smx509.Certificate{NotBefore: now.Add(-365 * day), NotAfter: now.Add(12 * time.Hour)}}
	resp := func(from, to time.Time) *responder {
		return &responder{generation: 7, cert: &smx509.Certificate{NotBefore: from, NotAfter: to}}
	}
	for _, c := range []struct {
		name     string
		a        *authority
		r        *responder
		delegate bool
		next     time.Time
	}{
		{"no responder", ca, nil, false, now.Add(ocspValidity)},
		{"responder covers", ca, resp(now.Add(-day), now.Add(30*day)), true, now.Add(ocspValidity)},
		{"responder ends at nextUpdate", ca, resp(now.Add(-day), now.Add(ocspValidity)), true, now.Add(ocspValidity)},
		{"responder ends before nextUpdate", ca, resp(now.Add(-day), now.Add(12*time.Hour)), false, now.Add(ocspValidity)},
		{"responder expired", ca, resp(now.Add(-90*day), now.Add(-time.Hour)), false, now.Add(ocspValidity)},
		{"responder not yet valid", ca, resp(now.Add(time.Minute), now.Add(90*day)), false, now.Add(ocspValidity)},
		{"responder ends with its CA", shortCA, resp(now.Add(-day), now.Add(12*time.Hour)), true, now.Add(12 * time.Hour)},
		{"CA key, CA ends before nextUpdate", shortCA, nil, false, now.Add(12 * time.Hour)},
	} {
		tpl := ocsp.Template{ThisUpdate: now, NextUpdate: now.Add(ocspValidity)}
		got := ocspSigner(c.a, c.r, &tpl)
		if (got != nil) != c.delegate || got != nil && got != c.r {
			t.Errorf("%s: delegated responder %v, want %v", c.name, got != nil, c.delegate)
		}
		if !tpl.NextUpdate.Equal(c.next) {
			t.Errorf("%s: nextUpdate %v, want %v", c.name, tpl.NextUpdate, c.next)
		}
		if g, want := signerGeneration(c.a, c.r, now), map[bool]int64{true: 7}[c.delegate]; g != want {
			t.Errorf("%s: signer generation %d, want %d", c.name, g, want)
		}
	}
}
