package signature

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/revwatch"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/tsa"
)

// TestService runs the signing and verification API end to end on one
// node (CA, TSA, this service; SQLite; software keystore).
func TestService(t *testing.T) {
	tn := startNode(t)
	appID, appTok := tn.account("billing-app", authz.KindApplication, "application")
	_, otherTok := tn.account("other-app", authz.KindApplication, "application")
	_, opTok := tn.account("ca-op", authz.KindPerson, policy.Role("ca-operator"))
	smKey := tn.newKey(appID, "sm2")
	ecKey := tn.newKey(appID, "ecdsa-p256")
	content := []byte("政务服务事项审批结果 2026\n")

	t.Run("key is the owner's alone", func(t *testing.T) {
		st := tn.call("POST", "/api/v1/signature/keys/"+smKey.ID+"/sign", otherTok, SignRequest{Data: content}, nil)
		if st != http.StatusForbidden {
			t.Fatalf("another application signs: %d", st)
		}
		if st := tn.call("POST", "/api/v1/signature/keys/"+smKey.ID+"/sign", tn.bootstrapToken("secadmin"), SignRequest{Data: content}, nil); st != http.StatusForbidden {
			t.Fatalf("the security administrator who made the key signs with it: %d", st)
		}
		if st := tn.call("GET", "/api/v1/signature/keys/"+smKey.ID, appTok, nil, &Key{}); st != 200 {
			t.Fatalf("owner reads the key: %d", st)
		}
		// The key is a signing key of the service "signature": the key
		// manager refuses it to other services and to decryption.
		k, err := tn.svc.key(context.Background(), smKey.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tn.n.Env().Keys.Signer(context.Background(), &hsm.SignerRequest{URI: k.keyURI, Service: "tsa"}); err == nil {
			t.Fatal("the TSA can use an application key")
		}
	})

	t.Run("internal profiles refused for application keys", func(t *testing.T) {
		// A key of the signing API is the application's: a profile the
		// platform keeps for its own services (an OCSP responder, a TSA
		// unit, the seal maker, its listeners) would let the application
		// sign what relying parties trust the platform for.
		for _, prof := range []string{"ocsp-signer", "tsa", "seal-maker", "node-tls"} {
			_, err := tn.svc.CreateKey(context.Background(), NewKey{Name: "app " + prof, Owner: appID, Algorithm: hsmAlg("ecdsa-p256"), Profile: prof}, "test")
			if !errors.Is(err, httpx.ErrPolicy) || !strings.Contains(err.Error(), "platform's own services") {
				t.Errorf("key with profile %s: %v, want refused by policy as an internal profile", prof, err)
			}
			st := tn.call("POST", "/api/v1/signature/keys", tn.bootstrapToken("secadmin"),
				NewKey{Name: "app " + prof, Owner: appID, Algorithm: hsmAlg("ecdsa-p256"), Profile: prof}, nil)
			if st != http.StatusUnprocessableEntity {
				t.Errorf("POST key with profile %s: %d, want 422", prof, st)
			}
		}
		var k Key
		if st := tn.call("POST", "/api/v1/signature/keys", tn.bootstrapToken("secadmin"),
			NewKey{Name: "app code signer", Owner: appID, Algorithm: hsmAlg("ecdsa-p256"), Profile: "code-sign"}, &k); st != 201 {
			t.Errorf("key with profile code-sign: %d", st)
		}
	})

	cases := []struct {
		name string
		key  *Key
		req  SignRequest
		vreq func(sig []byte) VerifyRequest
	}{
		{"sm2 cms attached timestamped", smKey, SignRequest{Data: content, Timestamp: true},
			func(sig []byte) VerifyRequest { return VerifyRequest{Signature: sig} }},
		{"sm2 cms gmt0010 detached sm2-with-sm3", smKey, SignRequest{Data: content, Detached: true, Family: "gmt0010", SM2OID: "1.2.156.10197.1.501"},
			func(sig []byte) VerifyRequest { return VerifyRequest{Signature: sig, Data: content} }},
		{"sm2 cms hash-only", smKey, SignRequest{Digest: cms.SM3.Sum(content), Hash: "sm3", Timestamp: true},
			func(sig []byte) VerifyRequest { return VerifyRequest{Signature: sig, Digest: cms.SM3.Sum(content)} }},
		{"ecdsa cms detached timestamped", ecKey, SignRequest{Data: content, Detached: true, Timestamp: true},
			func(sig []byte) VerifyRequest { return VerifyRequest{Signature: sig, Data: content} }},
		{"ecdsa cms hash-only", ecKey, SignRequest{Digest: cms.SHA256.Sum(content), Hash: "sha256"},
			func(sig []byte) VerifyRequest {
				return VerifyRequest{Signature: sig, Digest: cms.SHA256.Sum(content), Hash: "sha256"}
			}},
		{"sm2 raw", smKey, SignRequest{Mode: "raw", Data: content},
			func(sig []byte) VerifyRequest {
				return VerifyRequest{Signature: sig, Certificate: smKey.Certificate, Data: content}
			}},
		{"ecdsa raw digest", ecKey, SignRequest{Mode: "raw", Digest: cms.SHA256.Sum(content), Hash: "sha256"},
			func(sig []byte) VerifyRequest {
				return VerifyRequest{Signature: sig, Certificate: ecKey.Certificate, Digest: cms.SHA256.Sum(content), Hash: "sha256"}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sig := tn.sign(tc.key.ID, appTok, tc.req)
			rep := tn.verify(otherTok, tc.vreq(sig))
			mustValid(t, rep)
			s := rep.Signers[0]
			if tc.req.Timestamp && s.SigningTimeEvidence.Source != "signature-time-stamp" {
				t.Errorf("signing time evidence %q", s.SigningTimeEvidence.Source)
			}
			if len(s.Chain) != 3 || len(s.Revocation) != 2 || s.Revocation[0].Source != "ocsp" || s.Revocation[0].Status != "good" {
				t.Errorf("chain %d, revocation %+v", len(s.Chain), s.Revocation)
			}
			// Altered content is refused with its own reason.
			alt := tc.vreq(sig)
			switch {
			case alt.Data != nil:
				alt.Data = append([]byte("x"), alt.Data...)
			case alt.Digest != nil:
				alt.Digest = cms.SHA256.Sum([]byte("other"))
			default:
				alt.Signature = flipContent(t, sig, content)
			}
			want := "content-altered"
			if tc.req.Mode == "raw" {
				want = "signature-invalid"
			}
			if r := tn.verify(otherTok, alt); r.Valid || !hasReason(r, want) {
				t.Fatalf("altered content: valid=%v %v", r.Valid, failed(r))
			}
		})
	}

	t.Run("wrong SM2 user ID", func(t *testing.T) {
		sig := tn.sign(smKey.ID, appTok, SignRequest{Data: content})
		r := tn.verify(otherTok, VerifyRequest{Signature: sig, UID: "ALICE123@YAHOO.COM"})
		if r.Valid || !hasReason(r, string(cms.ReasonSM2UserID)) {
			t.Fatalf("%v", failed(r))
		}
	})

	t.Run("wrong signer certificate", func(t *testing.T) {
		// The SM2 signature presented as the ECDSA key's: raw verification
		// with another certificate.
		sig := tn.sign(smKey.ID, appTok, SignRequest{Mode: "raw", Data: content})
		r := tn.verify(otherTok, VerifyRequest{Signature: sig, Certificate: ecKey.Certificate, Data: content})
		if r.Valid || !hasReason(r, string(cms.ReasonSignatureInvalid)) {
			t.Fatalf("%v", failed(r))
		}
	})

	t.Run("bad timestamp", func(t *testing.T) {
		a := tn.sign(smKey.ID, appTok, SignRequest{Data: content, Timestamp: true})
		b := tn.sign(smKey.ID, appTok, SignRequest{Data: []byte("other"), Timestamp: true})
		sa, _ := cms.Parse(a, nil)
		sb, _ := cms.Parse(b, nil)
		// a's signature with b's time-stamp token: valid token, wrong imprint.
		for i := range sa.Signers[0].UnsignedAttrs {
			if sa.Signers[0].UnsignedAttrs[i].Type.Equal(cms.OIDAttrSignatureTimeStamp) {
				sa.Signers[0].UnsignedAttrs[i].Values = sb.Signers[0].SignatureTimeStamps()
			}
		}
		der, err := sa.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r := tn.verify(otherTok, VerifyRequest{Signature: der})
		if r.Valid || !hasReason(r, ReasonBadTimestamp) {
			t.Fatalf("%v", failed(r))
		}
	})

	t.Run("untrusted chain", func(t *testing.T) {
		// A self-made signer: fine signature, no chain to the platform.
		der := selfSignedCMS(t, content)
		r := tn.verify(otherTok, VerifyRequest{Signature: der})
		if r.Valid || !hasReason(r, ReasonUntrusted) {
			t.Fatalf("%v", failed(r))
		}
		if r.Signers[0].Checks[0].Name != CheckSignature || !r.Signers[0].Checks[0].Pass {
			t.Fatal("the signature itself should verify")
		}
	})

	t.Run("long-term validation offline", func(t *testing.T) {
		sig := tn.sign(smKey.ID, appTok, SignRequest{Data: content, Detached: true, LTV: true})
		v := tn.svc.Verifier()
		v.Fetch = nil // offline: only what the message carries
		r := v.Verify(context.Background(), &Input{Signature: sig, Content: content})
		mustValid(t, r)
		for _, ev := range r.Signers[0].Revocation {
			if ev.Source != "embedded-ocsp" {
				t.Errorf("revocation evidence from %s", ev.Source)
			}
		}
		found := false
		for _, c := range r.Signers[0].Checks {
			found = found || c.Name == CheckArchive && c.Pass
		}
		if !found {
			t.Fatalf("no archive time-stamp check:\n%s", r.Summary)
		}
		// Without LTV data, offline verification cannot say.
		plain := tn.sign(smKey.ID, appTok, SignRequest{Data: content, Detached: true, Timestamp: true})
		if r := v.Verify(context.Background(), &Input{Signature: plain, Content: content}); r.Valid || !hasReason(r, ReasonRevocationUnk) {
			t.Fatalf("offline without LTV: %v", failed(r))
		}
	})

	// Last: revoke the SM2 key's certificate. A signature time-stamped
	// before the revocation stays valid; one without a time-stamp does not.
	t.Run("revoked after signing", func(t *testing.T) {
		stamped := tn.sign(smKey.ID, appTok, SignRequest{Data: content, Timestamp: true})
		unstamped := tn.sign(smKey.ID, appTok, SignRequest{Data: content})
		time.Sleep(1100 * time.Millisecond) // revocation times have one-second precision
		cert := pemCert(t, smKey.Certificate)
		if st := tn.call("POST", "/api/v1/ca/sm2-issuing/revocations", opTok,
			map[string]string{"serial": cert.SerialNumber.Text(16), "reason": "keyCompromise"}, nil); st >= 300 {
			t.Fatalf("revoke: %d", st)
		}
		r := tn.verify(otherTok, VerifyRequest{Signature: stamped})
		mustValid(t, r)
		if ev := r.Signers[0].Revocation[0]; ev.Status != "revoked" {
			t.Fatalf("evidence %+v", ev)
		}
		if r := tn.verify(otherTok, VerifyRequest{Signature: unstamped}); r.Valid || !hasReason(r, ReasonRevoked) {
			t.Fatalf("unstamped after revocation: %v", failed(r))
		}
	})
}

// refused asserts that signing with key k is refused with a 422
// problem+json whose detail contains want.
func (tn *testNode) refused(k *Key, tok, want string) {
	tn.t.Helper()
	st, p := tn.problem("POST", "/api/v1/signature/keys/"+k.ID+"/sign", tok, SignRequest{Data: []byte("after")})
	if st != http.StatusUnprocessableEntity || p == nil || !strings.Contains(p.Detail, want) {
		tn.t.Fatalf("sign with key %s: %d %+v; want 422 saying %q", k.ID, st, p, want)
	}
}

// TestSignRefusesRevokedKey: once the CA revoked a key's certificate the
// signing API makes no signature with it (a relying party would reject
// it): a key in use is stopped by the CA's in-process hook, one revoked
// before its first use by the check of the CA's record; both answer 422.
func TestSignRefusesRevokedKey(t *testing.T) {
	tn := startNode(t)
	appID, appTok := tn.account("billing-app", authz.KindApplication, "application")
	_, opTok := tn.account("ca-op", authz.KindPerson, policy.Role("ca-operator"))
	used := tn.newKey(appID, "sm2")
	unused := tn.newKey(appID, "ecdsa-p256")
	other := tn.newKey(appID, "sm2")
	tn.sign(used.ID, appTok, SignRequest{Data: []byte("before")})
	tn.sign(other.ID, appTok, SignRequest{Data: []byte("before")})

	tn.revoke(used, "sm2-issuing", "keyCompromise", opTok)
	tn.refused(used, appTok, "revoked")
	tn.revoke(unused, "ecdsa-issuing", "cessationOfOperation", opTok)
	tn.refused(unused, appTok, "revoked")
	tn.sign(other.ID, appTok, SignRequest{Data: []byte("after")})
}

// hookless hides the CA's in-process revocation hook, as a signing service
// in another process than the revoking CA has none.
type hookless struct {
	Issuer
	revwatch.Reader
}

// TestSignRevokedElsewhere: a revocation the service is not told of (made
// by another process) is found in the CA's record within revRecheck.
func TestSignRevokedElsewhere(t *testing.T) {
	tn := startNodeWith(t, nil, func(c *ca.Service, ts *tsa.Service) *Service {
		s := New(hookless{c, c}, c, ts)
		s.revRecheck = 300 * time.Millisecond
		return s
	})
	appID, appTok := tn.account("billing-app", authz.KindApplication, "application")
	_, opTok := tn.account("ca-op", authz.KindPerson, policy.Role("ca-operator"))
	k := tn.newKey(appID, "sm2")
	tn.sign(k.ID, appTok, SignRequest{Data: []byte("before")})
	tn.revoke(k, "sm2-issuing", "superseded", opTok)
	time.Sleep(400 * time.Millisecond)
	tn.refused(k, appTok, "revoked")
}

// TestSignRefusesExpiredKey: a key whose certificate has ended signs no
// more (422), nor before its certificate begins.
func TestSignRefusesExpiredKey(t *testing.T) {
	clk := clock.NewFake(time.Now())
	tn := startNodeWith(t, clk, func(c *ca.Service, ts *tsa.Service) *Service { return New(c, c, ts) })
	appID, appTok := tn.account("billing-app", authz.KindApplication, "application")
	k := tn.newKey(appID, "sm2")
	tn.sign(k.ID, appTok, SignRequest{Data: []byte("while valid")})
	cert := pemCert(t, k.Certificate)
	clk.Set(cert.NotAfter.Add(time.Minute))
	tn.refused(k, tn.token(appID), "expired")
	clk.Set(cert.NotBefore.Add(-time.Minute))
	tn.refused(k, tn.token(appID), "not yet valid")
}

// TestPlatformCRLsAsEvidence: the platform CA's own CRLs, embedded in a
// signature made through the API and verified offline: the full CRLs
// (critical issuingDistributionPoint naming the certificates' distribution
// point) prove the signer and its CA good, the delta CRLs at
// /pki/{ca}-delta.crl, which anyone can fetch and embed, prove nothing;
// once the certificate is revoked, the next full CRL proves it revoked.
func TestPlatformCRLsAsEvidence(t *testing.T) {
	tn := startNode(t)
	appID, appTok := tn.account("billing-app", authz.KindApplication, "application")
	_, opTok := tn.account("ca-op", authz.KindPerson, policy.Role("ca-operator"))
	k := tn.newKey(appID, "sm2")
	sig := tn.sign(k.ID, appTok, SignRequest{Data: []byte("embedded CRLs")})
	leaf, issuing, root := pemCert(t, k.Certificate), pemCert(t, k.Chain[0]), pemCert(t, k.Chain[len(k.Chain)-1])
	fetch := func(c *smx509.Certificate, suffix string) []byte {
		t.Helper()
		for _, u := range c.CRLDistributionPoints {
			if strings.HasPrefix(u, "http") {
				der, err := (&HTTPFetcher{}).CRL(context.Background(), strings.TrimSuffix(u, ".crl")+suffix)
				if err != nil {
					t.Fatal(err)
				}
				return der
			}
		}
		t.Fatalf("%s names no HTTP CRL distribution point", c.Subject)
		return nil
	}
	verify := func(crls ...[]byte) *Report {
		t.Helper()
		sd, err := cms.Parse(sig, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range crls {
			sd.AddCRL(c)
		}
		der, err := sd.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		v := &Verifier{Roots: []*smx509.Certificate{root}, Intermediates: []*smx509.Certificate{issuing}}
		return v.Verify(context.Background(), &Input{Signature: der})
	}
	leafFull, leafDelta := fetch(leaf, ".crl"), fetch(leaf, "-delta.crl")
	rootFull, rootDelta := fetch(issuing, ".crl"), fetch(issuing, "-delta.crl")

	r := verify(leafFull, rootFull)
	mustValid(t, r)
	for _, ev := range r.Signers[0].Revocation {
		if ev.Status != "good" || ev.Source != "embedded-crl" {
			t.Errorf("%s: %s from %s, want good from the embedded CRL", ev.Subject, ev.Status, ev.Source)
		}
	}
	for name, crls := range map[string][][]byte{
		"the issuing CA's delta for the signer": {leafDelta, rootFull},
		"the root's delta for the issuing CA":   {leafFull, rootDelta},
	} {
		if r := verify(crls...); r.Valid || !hasReason(r, ReasonRevocationUnk) {
			t.Errorf("%s: valid=%v %v, want %s\n%s", name, r.Valid, failed(r), ReasonRevocationUnk, r.Summary)
		}
	}

	tn.revoke(k, "sm2-issuing", "keyCompromise", opTok)
	if st := tn.call("POST", "/api/v1/ca/sm2-issuing/crls", opTok, nil, nil); st != http.StatusCreated {
		t.Fatalf("new full CRL: %d", st)
	}
	if r := verify(fetch(leaf, ".crl"), rootFull); r.Valid || !hasReason(r, ReasonRevoked) {
		t.Errorf("the full CRL after the revocation: valid=%v %v, want %s\n%s", r.Valid, failed(r), ReasonRevoked, r.Summary)
	}
}
