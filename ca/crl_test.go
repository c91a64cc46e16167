package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/ca/crl"
	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// fetchCRL gets /pki/{ca}.crl over plain HTTP and verifies it against the
// CA certificate with ca/crl.Verify and crl.Lint.
func (tn *testNode) fetchCRL(t *testing.T, ca string) ([]byte, *smx509.RevocationList) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+tn.n.Addresses().HTTP+"/pki/"+ca+".crl", nil)
	ca = strings.TrimSuffix(ca, "-delta")
	if err != nil {
		t.Fatal(err)
	}
	sent := tn.n.Env().Clock.Now()
	resp, der := tn.send(req)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("%s.crl: HTTP %d, type %q: %s", ca, resp.StatusCode, resp.Header.Get("Content-Type"), der)
	}
	issuer := tn.svc.cas[ca].cert
	rl, err := crl.Verify(der, issuer)
	if err != nil {
		t.Fatalf("%s.crl: %v", ca, err)
	}
	if err := crl.Lint(rl, issuer); err != nil {
		t.Errorf("%s.crl lint: %v", ca, err)
	}
	m := regexp.MustCompile(`max-age=(\d+)`).FindStringSubmatch(resp.Header.Get("Cache-Control"))
	if m == nil {
		t.Fatalf("Cache-Control %q has no max-age", resp.Header.Get("Cache-Control"))
	}
	// The node computed max-age, in whole seconds, on its clock at some
	// moment after sent.
	if age, _ := strconv.Atoi(m[1]); age <= 0 || time.Duration(age)*time.Second > rl.NextUpdate.Sub(sent) {
		t.Errorf("max-age %d s, nextUpdate %v", age, rl.NextUpdate)
	}
	return der, rl
}

// TestCRL covers ACCEPTANCE.md C-01 and C-03 for the CA's full CRLs: every
// CA (roots too) has one from the start; each revocation publishes a new
// CRL, with a strictly greater number, listing the serial once with its
// revocation date and reason (omitted for unspecified); OpenSSL reads it.
func TestCRL(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()

	for _, sp := range hierarchies {
		_, rl := tn.fetchCRL(t, sp.id)
		if len(rl.RevokedCertificateEntries) != 0 || rl.Number.Sign() <= 0 {
			t.Errorf("%s: first CRL number %v with %d entries", sp.id, rl.Number, len(rl.RevokedCertificateEntries))
		}
		if d := rl.NextUpdate.Sub(rl.ThisUpdate); d != defaultCRLSchedule.full {
			t.Errorf("%s: validity %v, want %v", sp.id, d, defaultCRLSchedule.full)
		}
		_, delta := tn.fetchCRL(t, sp.id+"-delta")
		if d := delta.NextUpdate.Sub(delta.ThisUpdate); d != defaultCRLSchedule.delta || delta.Number.Cmp(rl.Number) <= 0 {
			t.Errorf("%s: delta number %v (full %v), validity %v", sp.id, delta.Number, rl.Number, d)
		}
	}

	for _, ca := range []string{"ecdsa-issuing", "sm2-issuing"} {
		t.Run(ca, func(t *testing.T) {
			_, before := tn.fetchCRL(t, ca)
			generations := func(kind string) float64 {
				return metricValue(t, tn.svc, "govtrust_ca_crl_generations_total", map[string]string{"ca": ca, "kind": kind, "result": "ok"})
			}
			fullBefore, deltaBefore := generations(kindFull), generations(kindDelta)
			var serials []string
			want := map[string]int{}
			// C-01 asks for every reason; SM2 keys come from OpenSSL and
			// cost more, so the SM2 CA gets two.
			reasons := []string{"keyCompromise", "unspecified"}
			if ca == "ecdsa-issuing" {
				reasons = append(reasons, "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn")
			}
			for _, reason := range reasons {
				var serial string
				if ca == "ecdsa-issuing" {
					serial = tn.issueECDSA(t).Serial
				} else {
					serial = tn.issueSM2(t, dir).Serial
				}
				if status, raw := tn.revoke(ca, "ra", serial, reason); status != http.StatusOK {
					t.Fatalf("revoke: %d %s", status, raw)
				}
				serials = append(serials, serial)
				want[serial] = reasonCodes[reason]
			}
			der, rl := tn.fetchCRL(t, ca)
			// Each revocation makes a full CRL and a delta, which share
			// one increasing number sequence (RFC 5280 §5.2.3).
			full, delta := generations(kindFull)-fullBefore, generations(kindDelta)-deltaBefore
			if rl.Number.Cmp(before.Number) <= 0 || full != float64(len(reasons)) || delta != float64(len(reasons)) {
				t.Errorf("CRL number %v after %d revocations, was %v; %v full CRLs and %v deltas made", rl.Number, len(reasons), before.Number, full, delta)
			}
			if len(rl.RevokedCertificateEntries) != len(serials) {
				t.Fatalf("%d entries, want %d", len(rl.RevokedCertificateEntries), len(serials))
			}
			for _, e := range rl.RevokedCertificateEntries {
				serial := serialHex(e.SerialNumber)
				code, ok := want[serial]
				if !ok {
					t.Errorf("unexpected entry %s", serial)
					continue
				}
				delete(want, serial)
				c, err := certBySerial(t.Context(), tn.db(), ca, serial)
				if err != nil {
					t.Fatal(err)
				}
				if !e.RevocationTime.Equal(c.revokedAt) || e.ReasonCode != code {
					t.Errorf("entry %s: %v reason %d; want %v reason %d", serial, e.RevocationTime, e.ReasonCode, c.revokedAt, code)
				}
			}
			p := writeFile(t, dir, ca+".crl", string(der))
			text := openssl(t, "crl", "-inform", "DER", "-in", p, "-noout", "-text")
			for _, s := range serials {
				if !strings.Contains(text, "Serial Number: "+strings.ToUpper(s)) {
					t.Errorf("openssl crl -text lacks serial %s:\n%s", s, text)
				}
			}
			if strings.Count(text, "Key Compromise") != 1 || !strings.Contains(text, "X509v3 CRL Number") {
				t.Errorf("openssl crl -text: want one Key Compromise reason and a CRL number:\n%s", text)
			}
			if ca == "sm2-issuing" {
				issuing := writeFile(t, dir, "sm2-issuing.pem", pemCert(tn.svc.cas[ca].cert.Raw))
				if out := sm2OpenSSLVerify(t, dir, rl.RawTBSRevocationList, rl.Signature, issuing); !strings.Contains(out, "Signature Verified Successfully") {
					t.Errorf("SM2 detached check: %s", out)
				}
			}
			if ca == "ecdsa-issuing" {
				issuing := writeFile(t, dir, "ec-issuing.pem", pemCert(tn.svc.cas[ca].cert.Raw))
				if out := openssl(t, "crl", "-inform", "DER", "-in", p, "-noout", "-CAfile", issuing); !strings.Contains(out, "verify OK") {
					t.Errorf("openssl crl verify: %s", out)
				}
			}
		})
	}
}

// issueSM2 issues a person-sign certificate from sm2-issuing for a key made
// by OpenSSL.
func (tn *testNode) issueSM2(t *testing.T, dir string) *IssueResponse {
	t.Helper()
	key := filepath.Join(dir, "sm2.key")
	openssl(t, "genpkey", "-algorithm", "SM2", "-out", key)
	csr := filepath.Join(dir, "sm2.csr")
	openssl(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678", "-utf8", "-subj", "/CN=张三/O=测试局", "-out", csr)
	status, out, raw := tn.issue("sm2-issuing", IssueRequest{CSR: readFile(t, csr), Profile: "person-sign", Record: personRecord}, "")
	if status != http.StatusCreated {
		t.Fatalf("issue: %d %s", status, raw)
	}
	return out
}

// sm2OpenSSLVerify is the detached SM2 check of ACCEPTANCE.md C-02/C-03
// (INTEROP.md §2): OpenSSL 3.0's crl and ocsp commands verify SM2 with an
// empty user ID, so the signed bytes and the signature, cut out by Go, are
// verified by `openssl pkeyutl` with SM3 and the default user ID.
func sm2OpenSSLVerify(t *testing.T, dir string, tbs, sig []byte, issuerFile string) string {
	t.Helper()
	tbsFile := writeFile(t, dir, "tbs.der", string(tbs))
	sigFile := writeFile(t, dir, "sig.der", string(sig))
	return openssl(t, "pkeyutl", "-verify", "-certin", "-inkey", issuerFile, "-rawin", "-digest", "sm3",
		"-pkeyopt", "distid:1234567812345678", "-in", tbsFile, "-sigfile", sigFile)
}

// TestRevocationSurvivesRestart: after a restart the revocation is in OCSP
// and on the CRL, and the CRL numbers go on above the last one.
func TestRevocationSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	out := tn.issueECDSA(t)
	if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, "superseded"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	_, before := tn.fetchCRL(t, "ecdsa-issuing-delta")
	tn.stop()

	tn = startNode(t, dir)
	cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	if r := tn.query(t, "ecdsa-issuing", cert.SerialNumber, nil); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.ReasonSuperseded {
		t.Errorf("OCSP after restart: %v reason %d", r.Status, r.RevocationReason)
	}
	next, err := tn.svc.generateCRL(t.Context(), tn.svc.cas["ecdsa-issuing"])
	if err != nil {
		t.Fatal(err)
	}
	if next.number <= before.Number.Int64() {
		t.Errorf("CRL number %d after restart, last (a delta) was %v", next.number, before.Number)
	}
	_, rl := tn.fetchCRL(t, "ecdsa-issuing")
	if len(rl.RevokedCertificateEntries) != 1 || serialHex(rl.RevokedCertificateEntries[0].SerialNumber) != out.Serial {
		t.Errorf("CRL after restart lists %d entries, want the revoked serial", len(rl.RevokedCertificateEntries))
	}
}

// syncBuffer collects a node's logs for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// crlNodeOptions are what the CRL tests change in a node.
type crlNodeOptions struct {
	clock    clock.Clock
	schedule *crlSchedule
	ticks    <-chan time.Time
	ticked   chan<- error
	logs     io.Writer
}

// startCRLNode is startNode with a clock, a CRL schedule, a tick channel
// and a log sink.
func startCRLNode(t *testing.T, dir string, o crlNodeOptions) *testNode {
	t.Helper()
	svc := New()
	st := crlStateOf(svc)
	if o.schedule != nil {
		st.schedule = *o.schedule
	}
	st.ticks, st.ticked = o.ticks, o.ticked
	if o.logs == nil {
		o.logs = io.Discard
	}
	opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: o.logs, Environ: []string{}, Clock: o.clock}
	n, err := node.Start(context.Background(), opts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, tokens: map[string]string{},
		c: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	for _, role := range []string{"sysadmin", "secadmin", "auditor", "ra"} {
		tok, err := node.ReadBootstrapToken(dir, role)
		if err != nil {
			t.Fatalf("token %s: %v", role, err)
		}
		tn.tokens[role] = tok
	}
	t.Cleanup(func() { tn.stop() })
	return tn
}

// opensslOut runs openssl and returns its output and error (verify exits
// non-zero on a revoked certificate).
func opensslOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testenv.LookPath(t, "openssl"), args...).CombinedOutput()
	return string(out), err
}

func pemCRL(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

func listed(rl *smx509.RevocationList, serial string) bool {
	for _, e := range rl.RevokedCertificateEntries {
		if serialHex(e.SerialNumber) == serial {
			return true
		}
	}
	return false
}

func rawExtension(exts []pkix.Extension, id asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range exts {
		if e.Id.Equal(id) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

var (
	oidCRLDP    = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidIDP      = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidDeltaCRL = asn1.ObjectIdentifier{2, 5, 29, 27}
)

// TestDeltaCRL: after a revocation the CA serves a delta CRL at
// /pki/{ca}-delta.crl, named by the full CRL's freshestCRL (RFC 5280
// §5.2.6), with a critical deltaCRLIndicator naming a full CRL no newer
// than the served one (§5.2.4), a number above it (one sequence, §5.2.3),
// the same IDP, and the new serial. OpenSSL, given the full CRL from
// before the revocation and the delta, reports the certificate revoked
// (ECDSA); the SM2 delta's signature passes the detached OpenSSL check.
func TestDeltaCRL(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()
	for _, ca := range []string{"ecdsa-issuing", "sm2-issuing"} {
		t.Run(ca, func(t *testing.T) {
			fullDER, full := tn.fetchCRL(t, ca)
			var out *IssueResponse
			if ca == "ecdsa-issuing" {
				out = tn.issueECDSA(t)
			} else {
				out = tn.issueSM2(t, dir)
			}
			if status, raw := tn.revoke(ca, "ra", out.Serial, "keyCompromise"); status != http.StatusOK {
				t.Fatalf("revoke: %d %s", status, raw)
			}
			deltaDER, delta := tn.fetchCRL(t, ca+"-delta")
			fsc, err := crl.ParseScope(full)
			if err != nil {
				t.Fatal(err)
			}
			dsc, err := crl.ParseScope(delta)
			if err != nil {
				t.Fatal(err)
			}
			wantDelta := tn.svc.dpURL(deltaDPTemplate, ca)
			if fsc.DeltaBase != nil || len(fsc.FreshestCRL) != 1 || fsc.FreshestCRL[0] != wantDelta {
				t.Errorf("full CRL: delta base %v, freshestCRL %q; want none and %q", fsc.DeltaBase, fsc.FreshestCRL, wantDelta)
			}
			if ext, ok := rawExtension(delta.Extensions, oidDeltaCRL); !ok || !ext.Critical {
				t.Errorf("delta CRL: deltaCRLIndicator present %v, critical %v", ok, ext.Critical)
			}
			if dsc.DeltaBase == nil || dsc.DeltaBase.Cmp(full.Number) > 0 || delta.Number.Cmp(full.Number) <= 0 || dsc.FreshestCRL != nil {
				t.Errorf("delta CRL %v on base %v, full CRL %v, freshestCRL %q", delta.Number, dsc.DeltaBase, full.Number, dsc.FreshestCRL)
			}
			fidp, _ := rawExtension(full.Extensions, oidIDP)
			didp, _ := rawExtension(delta.Extensions, oidIDP)
			if len(fidp.Value) == 0 || !bytes.Equal(fidp.Value, didp.Value) || !didp.Critical {
				t.Errorf("IDP of the full CRL %x and of the delta %x (critical %v) must be equal", fidp.Value, didp.Value, didp.Critical)
			}
			if listed(full, out.Serial) || !listed(delta, out.Serial) {
				t.Errorf("serial %s: on the old full CRL %v, on the delta %v; want false, true", out.Serial, listed(full, out.Serial), listed(delta, out.Serial))
			}
			// The freshestCRL URL serves this delta (the test node's base
			// URL has port 0, so only the path is fetched).
			u, err := url.Parse(wantDelta)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("GET", "http://"+tn.n.Addresses().HTTP+u.Path, nil)
			if resp, body := tn.send(req); resp.StatusCode != http.StatusOK || !bytes.Equal(body, deltaDER) {
				t.Errorf("GET %s: %d, same bytes %v", u.Path, resp.StatusCode, bytes.Equal(body, deltaDER))
			}

			issuing := writeFile(t, dir, ca+".pem", pemCert(tn.svc.cas[ca].cert.Raw))
			if ca == "sm2-issuing" {
				if out := sm2OpenSSLVerify(t, dir, delta.RawTBSRevocationList, delta.Signature, issuing); !strings.Contains(out, "Signature Verified Successfully") {
					t.Errorf("SM2 detached check of the delta CRL: %s", out)
				}
				return
			}
			root := writeFile(t, dir, "root.pem", pemCert(tn.svc.cas["ecdsa-root"].cert.Raw))
			leaf := writeFile(t, dir, "leaf.pem", out.Certificate)
			fullPEM := writeFile(t, dir, "full.pem", pemCRL(fullDER))
			deltaPEM := writeFile(t, dir, "delta.pem", pemCRL(deltaDER))
			base := []string{"verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", fullPEM}
			if out, err := opensslOut(t, append(base, leaf)...); err != nil || !strings.Contains(out, "OK") {
				t.Errorf("full CRL alone: want OK, got %v:\n%s", err, out)
			}
			// -extended_crl: without it OpenSSL 3.0 takes a delta newer
			// than the full CRL for a complete one.
			withDelta := append(base, "-use_deltas", "-extended_crl", "-CRLfile", deltaPEM, leaf)
			res, err := opensslOut(t, withDelta...)
			t.Logf("openssl %s:\n%s", strings.Join(withDelta, " "), res)
			if err == nil || !strings.Contains(res, "certificate revoked") {
				t.Errorf("full + delta CRL: want certificate revoked, got %v:\n%s", err, res)
			}
		})
	}
}

// dpName returns the DER of the distributionPoint field ([0]) of the first
// DistributionPoint in a CRLDistributionPoints value, or of an
// IssuingDistributionPoint value.
func dpName(t *testing.T, v []byte, crldp bool) []byte {
	t.Helper()
	s := cryptobyte.String(v)
	var seq, dp, name cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) {
		t.Fatalf("malformed extension %x", v)
	}
	if crldp {
		if !seq.ReadASN1(&dp, cbasn1.SEQUENCE) {
			t.Fatalf("malformed DistributionPoint %x", v)
		}
		seq = dp
	}
	if !seq.ReadASN1Element(&name, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		t.Fatalf("no distributionPoint in %x", v)
	}
	return name
}

// TestIDPMatchesCRLDP covers the last clause of ACCEPTANCE.md A-10: the
// distributionPoint of an issued certificate's CRLDP is byte-identical to
// the issuingDistributionPoint of the CRL at that point, for an ECDSA
// server-tls certificate (HTTP only), an SM2 person-sign certificate (HTTP
// and LDAP) and the issuing CA certificates against their roots' CRLs.
func TestIDPMatchesCRLDP(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()
	ec := tn.issueECDSA(t)
	sm := tn.issueSM2(t, dir)
	cases := []struct {
		name, ca string
		cert     []byte
	}{
		{"ecdsa server-tls", "ecdsa-issuing", pemDER(t, ec.Certificate)},
		{"sm2 person-sign", "sm2-issuing", pemDER(t, sm.Certificate)},
		{"ecdsa issuing CA", "ecdsa-root", tn.svc.cas["ecdsa-issuing"].cert.Raw},
		{"sm2 issuing CA", "sm2-root", tn.svc.cas["sm2-issuing"].cert.Raw},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cert, err := smx509.ParseCertificate(c.cert)
			if err != nil {
				t.Fatal(err)
			}
			_, rl := tn.fetchCRL(t, c.ca)
			dp, ok := rawExtension(cert.Extensions, oidCRLDP)
			if !ok {
				t.Fatal("certificate has no CRLDP")
			}
			idp, ok := rawExtension(rl.Extensions, oidIDP)
			if !ok || !idp.Critical {
				t.Fatalf("CRL IDP present %v, critical %v", ok, idp.Critical)
			}
			if a, b := dpName(t, dp.Value, true), dpName(t, idp.Value, false); !bytes.Equal(a, b) {
				t.Errorf("CRLDP distributionPoint %x\n   IDP distributionPoint %x", a, b)
			}
			sc, err := crl.ParseScope(rl)
			if err != nil || sc.IDP.OnlyCA || sc.IDP.OnlyUser {
				t.Errorf("IDP scope %+v, %v: no only-flags expected", sc, err)
			}
		})
	}
}

// TestCRLDPTemplate: every built-in profile with CRL distribution points
// names crlDPTemplate first, the URI the CRLs' IDP carries.
func TestCRLDPTemplate(t *testing.T) {
	for name, p := range profile.Builtin() {
		if len(p.CRLDP) > 0 && p.CRLDP[0] != crlDPTemplate {
			t.Errorf("profile %s: first CRLDP %q, the CRLs' IDP names %q", name, p.CRLDP[0], crlDPTemplate)
		}
	}
}

// crlStoreFixture is a CA "r" on db with good certificates, for store-level
// CRL tests on both backends.
func crlStoreFixture(t *testing.T, db *store.DB, clk *clock.Fake, serials ...string) (*Service, *authority) {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := selfSign(spec{id: "r", cn: "test root"}, key, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	s := New()
	s.env = &node.Env{DB: db, Audit: audit.New("test", clk), Clock: clk, Logger: slog.New(slog.DiscardHandler)}
	s.vars = map[string]string{"base": "http://pki.example.gov.cn"}
	a := &authority{id: "r", cert: cert, signer: key}
	s.cas["r"] = a
	reg := newRegistry()
	reg.add(a)
	s.reg.Store(reg)
	now := clk.Now()
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		if err := insertAuthority(ctx, tx, authorityRow{id: "r", algorithm: "ecdsa-p256", keyURI: "soft:ca/r", cert: der, created: now}); err != nil {
			return err
		}
		for _, serial := range serials {
			c := &certRow{issuer: "r", serial: serial, subject: "CN=x", profile: "p", status: "good", requester: "a",
				notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour), created: now, der: []byte{1}}
			if err := insertCert(ctx, tx, c); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s, a
}

// revokeRow revokes issuer r's certificate serial as the revoke handler
// does (the trigger gives the revocation its sequence).
func revokeRow(ctx context.Context, db *store.DB, now time.Time, serial string) error {
	return db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE ca_certificates SET status = 'revoked', revoked_at = ?, revocation_reason = 1 WHERE issuer_id = 'r' AND serial = ? AND status = 'good'",
			now.UTC().Format(timeFormat), serial)
		return err
	})
}

// serialsOf verifies a stored CRL and returns its serials.
func serialsOf(t *testing.T, c *storedCRL, a *authority) string {
	t.Helper()
	rl, err := crl.Verify(c.der, a.cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.Lint(rl, a.cert); err != nil {
		t.Error(err)
	}
	var s []string
	for _, e := range rl.RevokedCertificateEntries {
		s = append(s, serialHex(e.SerialNumber))
	}
	return strings.Join(s, " ")
}

// TestDeltaExactDuringBuild: a revocation that commits while a CRL is
// being built is not on it and is on the next delta, on SQLite and
// PostgreSQL; the delta lists exactly the revocations its base lacks.
func TestDeltaExactDuringBuild(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
		s, a := crlStoreFixture(t, db, clk, "0a", "0b", "0c", "0d")
		if err := revokeRow(ctx, db, clk.Now(), "0a"); err != nil {
			t.Fatal(err)
		}
		during := map[string]string{} // kind -> serial to revoke while it is built
		crlStateOf(s).duringBuild = func(kind string) {
			if serial := during[kind]; serial != "" {
				delete(during, kind)
				if err := revokeRow(ctx, db, clk.Now(), serial); err != nil {
					t.Errorf("revoke %s during the build: %v", serial, err)
				}
			}
		}
		step := func(name string, gen func(context.Context, *authority) (*storedCRL, error), want string) *storedCRL {
			t.Helper()
			clk.Add(time.Second)
			c, err := gen(ctx, a)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := serialsOf(t, c, a); got != want {
				t.Errorf("%s lists %q, want %q", name, got, want)
			}
			return c
		}
		during[kindFull] = "0b"
		base := step("base full CRL", s.generateBase, "0a")
		d1 := step("delta 1", s.generateDelta, "0b")
		if d1.base != base.number || d1.number <= base.number {
			t.Errorf("delta %d on %d, base is %d", d1.number, d1.base, base.number)
		}
		during[kindDelta] = "0c"
		step("delta 2", s.generateDelta, "0b")
		step("delta 3", s.generateDelta, "0b 0c")
		full := step("full CRL after revocations", s.generateCRL, "0a 0b 0c")
		d4 := step("delta 4", s.generateDelta, "0b 0c")
		if d4.base != base.number || full.deltaBase || !base.deltaBase {
			t.Errorf("delta 4 on %d: deltas stay on the scheduled full CRL %d", d4.base, base.number)
		}
		step("next base", s.generateBase, "0a 0b 0c")
		step("delta on the next base", s.generateDelta, "")
	}, append([]store.Migrations{audit.Migrations}, New().Migrations()...)...)
}

// TestRevocationSequenceCommitOrder shows why the PostgreSQL migration uses
// a counter row: a revocation that takes its sequence number after another
// cannot commit before it, so a CRL snapshot never holds a later number
// without the earlier one. (On SQLite one writer at a time gives the same.)
func TestRevocationSequenceCommitOrder(t *testing.T) {
	db := storetest.Postgres(t, append([]store.Migrations{audit.Migrations}, New().Migrations()...)...)
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	s, a := crlStoreFixture(t, db, clk, "0a", "0b")
	if _, err := s.generateBase(ctx, a); err != nil {
		t.Fatal(err)
	}
	t1, err := db.Writer().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Rollback()
	if _, err := t1.ExecContext(ctx, "UPDATE ca_certificates SET status = 'revoked', revoked_at = $1, revocation_reason = 1 WHERE issuer_id = 'r' AND serial = '0a'",
		clk.Now().Format(timeFormat)); err != nil {
		t.Fatal(err)
	}
	t2 := make(chan error, 1)
	go func() { t2 <- revokeRow(ctx, db, clk.Now(), "0b") }()
	// Wait until the second revocation waits for the first's counter lock.
	for {
		var waiting int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-t2:
			t.Fatalf("second revocation finished (%v) while the first holds its sequence", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	clk.Add(time.Second)
	mid, err := s.generateDelta(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got := serialsOf(t, mid, a); got != "" || mid.seq.Int64 != 0 {
		t.Errorf("delta while both revocations are open lists %q at sequence %d", got, mid.seq.Int64)
	}
	if err := t1.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-t2; err != nil {
		t.Fatal(err)
	}
	var s1, s2 int64
	if err := db.QueryRow(ctx, "SELECT (SELECT revocation_seq FROM ca_certificates WHERE serial = '0a'), (SELECT revocation_seq FROM ca_certificates WHERE serial = '0b')").Scan(&s1, &s2); err != nil {
		t.Fatal(err)
	}
	if s1 != 1 || s2 != 2 {
		t.Errorf("sequences %d, %d; want 1, 2 in commit order", s1, s2)
	}
	clk.Add(time.Second)
	d, err := s.generateDelta(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if got := serialsOf(t, d, a); got != "0a 0b" {
		t.Errorf("delta lists %q, want 0a 0b", got)
	}
}

// TestCRLRetention covers RFC 5280 §3.3 with the node's clock: a revoked
// certificate stays on the full CRLs until one issued after its expiry
// listed it, then goes; a certificate revoked after it expired is listed
// once too, though the previous CRL was already issued after its expiry.
func TestCRLRetention(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	tn := startCRLNode(t, filepath.Join(t.TempDir(), "data"), crlNodeOptions{clock: clk})
	ctx := t.Context()
	a := tn.svc.cas["ecdsa-issuing"]
	early, late := tn.issueECDSA(t), tn.issueECDSA(t)
	if status, raw := tn.revoke(a.id, "ra", early.Serial, "superseded"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	c, err := smx509.ParseCertificate(pemDER(t, early.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	gen := func(want string) {
		t.Helper()
		f, err := tn.svc.generateBase(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if got := serialsOf(t, f, a); got != want {
			t.Errorf("full CRL at %v lists %q, want %q", f.thisUpdate, got, want)
		}
	}
	gen(early.Serial)
	clk.Set(c.NotAfter.Add(-time.Minute))
	gen(early.Serial) // not expired yet
	clk.Set(c.NotAfter.Add(time.Hour))
	gen(early.Serial) // the first CRL after expiry still lists it
	// Revoked after expiry and after a CRL issued after expiry.
	if _, err := tn.db().Exec(ctx, "UPDATE ca_certificates SET status = 'revoked', revoked_at = ?, revocation_reason = 0 WHERE issuer_id = ? AND serial = ?",
		clk.Now().Format(timeFormat), a.id, late.Serial); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	gen(late.Serial) // early dropped; late listed once
	clk.Add(time.Hour)
	gen("")
	if _, rl := tn.fetchCRL(t, a.id); len(rl.RevokedCertificateEntries) != 0 {
		t.Errorf("served CRL lists %d entries", len(rl.RevokedCertificateEntries))
	}
}

// revokeHTTP is tn.revoke for other goroutines: it returns errors.
func (tn *testNode) revokeHTTP(ca, serial string) error {
	body := strings.NewReader(`{"serial":"` + serial + `","reason":"keyCompromise"}`)
	req, err := http.NewRequest("POST", "https://"+tn.n.Addresses().HTTPS+"/api/v1/ca/"+ca+"/revocations", body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tn.tokens["ra"])
	resp, err := tn.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke %s: %d %s", serial, resp.StatusCode, raw)
	}
	return nil
}

// getCRL fetches and verifies a CRL, for other goroutines.
func (tn *testNode) getCRL(ca string) (*smx509.RevocationList, error) {
	resp, err := tn.c.Get("http://" + tn.n.Addresses().HTTP + "/pki/" + ca + ".crl")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return crl.Verify(der, tn.svc.cas[strings.TrimSuffix(ca, "-delta")].cert)
}

// TestCRLCoalescing: N concurrent revocations make fewer than N CRL
// generations, yet each revocation, once acknowledged, is on the full CRL
// served, and all are on the final full and delta CRLs.
func TestCRLCoalescing(t *testing.T) {
	const n = 16
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	const ca = "ecdsa-issuing"
	var serials []string
	for range n {
		serials = append(serials, tn.issueECDSA(t).Serial)
	}
	const gens = "SELECT COUNT(*) FROM audit_log WHERE action = 'ca.crl.generate' AND object LIKE 'crl/ecdsa-issuing/%'"
	before := tn.count(gens)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for _, serial := range serials {
		wg.Go(func() {
			if err := tn.revokeHTTP(ca, serial); err != nil {
				errs <- err
				return
			}
			rl, err := tn.getCRL(ca)
			if err == nil && !listed(rl, serial) {
				err = fmt.Errorf("serial %s acknowledged but not on CRL %v", serial, rl.Number)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	generations := tn.count(gens) - before
	t.Logf("%d revocations, %d full CRL generations", n, generations)
	if generations < 1 || generations >= n {
		t.Errorf("%d generations for %d concurrent revocations, want 1..%d", generations, n, n-1)
	}
	_, full := tn.fetchCRL(t, ca)
	_, delta := tn.fetchCRL(t, ca+"-delta")
	for _, serial := range serials {
		if !listed(full, serial) || !listed(delta, serial) {
			t.Errorf("serial %s: on the full CRL %v, on the delta %v", serial, listed(full, serial), listed(delta, serial))
		}
	}
}

// metricValue reads one sample of the service's collectors.
func metricValue(t *testing.T, svc *Service, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestCRLNumbersAfterRestore: a database restored from a backup holds the
// CRL counter and CRLs of the time of the backup, while the CRLs published
// since had higher numbers. The next CRLs are numbered above all of those
// (RELIABILITY.md I5), full and delta, stored and served, because numbers
// follow the time (crl.NextNumber); with numbers counted from the
// restored counter they would repeat published ones.
func TestCRLNumbersAfterRestore(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	tn := startCRLNode(t, filepath.Join(t.TempDir(), "data"), crlNodeOptions{clock: clk})
	ctx := t.Context()
	a := tn.svc.cas["sm2-issuing"]
	var backupLast, backupMax int64
	if err := tn.db().QueryRow(ctx, "SELECT last FROM ca_crl_numbers WHERE issuer_id = ?", a.id).Scan(&backupLast); err != nil {
		t.Fatal(err)
	}
	if err := tn.db().QueryRow(ctx, "SELECT MAX(number) FROM ca_crls WHERE issuer_id = ?", a.id).Scan(&backupMax); err != nil {
		t.Fatal(err)
	}
	// Published after the backup: a day of scheduled CRLs and deltas.
	var published int64
	for range 6 {
		clk.Add(4 * time.Hour)
		for _, gen := range []func(context.Context, *authority) (*storedCRL, error){tn.svc.generateBase, tn.svc.generateDelta} {
			c, err := gen(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			published = max(published, c.number)
		}
	}
	// The restore: the counter and the CRLs as they were at the backup.
	if _, err := tn.db().Exec(ctx, "UPDATE ca_crl_numbers SET last = ? WHERE issuer_id = ?", backupLast, a.id); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.db().Exec(ctx, "DELETE FROM ca_crls WHERE issuer_id = ? AND number > ?", a.id, backupMax); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	full, err := tn.svc.generateBase(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	delta, err := tn.svc.generateDelta(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if full.number <= published || delta.number <= full.number {
		t.Errorf("after the restore: full CRL %d, delta %d; published before it up to %d", full.number, delta.number, published)
	}
	for _, name := range []string{a.id, a.id + "-delta"} {
		if _, rl := tn.fetchCRL(t, name); rl.Number.Int64() <= published {
			t.Errorf("served %s CRL number %v, published before the restore up to %d", name, rl.Number, published)
		}
	}
}

// TestCRLNumberRegressionAlert: a CRL whose number would not go up (a
// counter moved back, as after restoring a backup, and a clock set back
// before the last CRL) is not published, and raises an alert: an error log
// and the regressions counter.
func TestCRLNumberRegressionAlert(t *testing.T) {
	logs := &syncBuffer{}
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	tn := startCRLNode(t, filepath.Join(t.TempDir(), "data"), crlNodeOptions{logs: logs, clock: clk})
	ctx := t.Context()
	a := tn.svc.cas["ecdsa-root"]
	first, err := latestDelta(ctx, tn.db(), a.id)
	if err != nil {
		t.Fatal(err)
	}
	next, err := tn.svc.generateCRL(ctx, a)
	if err != nil || next.number <= first.number {
		t.Fatalf("generate: %+v, %v; want a number above %d", next, err, first.number)
	}
	if _, err := tn.db().Exec(ctx, "UPDATE ca_crl_numbers SET last = 0 WHERE issuer_id = ?", a.id); err != nil {
		t.Fatal(err)
	}
	clk.Add(-time.Hour)
	for i, gen := range []func(context.Context, *authority) (*storedCRL, error){tn.svc.generateCRL, tn.svc.generateDelta} {
		if _, err := gen(ctx, a); !errors.Is(err, crl.ErrNumberRegression) {
			t.Fatalf("generation %d after the counter and the clock went back: %v, want ErrNumberRegression", i, err)
		}
	}
	got, err := latestCRL(ctx, tn.db(), a.id)
	if err != nil || !bytes.Equal(got.der, next.der) {
		t.Fatalf("served CRL changed after a refused generation (%v)", err)
	}
	for _, kind := range []string{kindFull, kindDelta} {
		if v := metricValue(t, tn.svc, "govtrust_ca_crl_number_regressions_total", map[string]string{"ca": a.id, "kind": kind}); v != 1 {
			t.Errorf("regressions counter for %s CRLs: %v, want 1", kind, v)
		}
	}
	// The node registers the CA's collectors: /metrics (auditors) shows it.
	if status, body := tn.do("GET", "/metrics", "auditor", nil, nil); status != http.StatusOK ||
		!strings.Contains(string(body), `govtrust_ca_crl_number_regressions_total{ca="`+a.id+`",kind="full"} 1`) {
		t.Errorf("/metrics: %d, no regression counter of %s at 1", status, a.id)
	}
	if strings.Count(logs.String(), "CRL number regression") != 2 {
		t.Errorf("want two alert log lines, logs:\n%s", logs)
	}
}

// TestCRLFreshness covers ACCEPTANCE.md C-04 with a short schedule (full
// CRLs valid 10 min, deltas 6 min, a 30 s tick): the node's fake clock
// advances 30 s at a time over two idle hours, the loop ticks after each
// step, and every served full and delta CRL is still valid and younger than
// three quarters of its interval.
func TestCRLFreshness(t *testing.T) {
	sched := crlSchedule{full: 10 * time.Minute, delta: 6 * time.Minute, tick: 30 * time.Second}
	if err := sched.validate(); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	ticks, ticked := make(chan time.Time), make(chan error)
	tn := startCRLNode(t, filepath.Join(t.TempDir(), "data"), crlNodeOptions{clock: clk, schedule: &sched, ticks: ticks, ticked: ticked})
	numbers := map[string]map[string]bool{}
	for elapsed := time.Duration(0); elapsed < 2*time.Hour; elapsed += sched.tick {
		clk.Add(sched.tick)
		ticks <- clk.Now()
		if err := <-ticked; err != nil {
			t.Fatalf("refresh at +%v: %v", elapsed, err)
		}
		now := clk.Now()
		for _, id := range []string{"ecdsa-issuing", "sm2-root", "sm2-issuing-delta", "ecdsa-root-delta"} {
			_, rl := tn.fetchCRL(t, id)
			if !now.Before(rl.NextUpdate) || !now.Before(crl.RefreshDeadline(rl.ThisUpdate, rl.NextUpdate)) {
				t.Fatalf("%s at %v: CRL %v from %v to %v is past 3/4 of its interval", id, now, rl.Number, rl.ThisUpdate, rl.NextUpdate)
			}
			if numbers[id] == nil {
				numbers[id] = map[string]bool{}
			}
			numbers[id][rl.Number.String()] = true
		}
	}
	for id, ns := range numbers {
		interval := sched.full
		if strings.HasSuffix(id, "-delta") {
			interval = sched.delta
		}
		if min := int(2 * time.Hour / interval); len(ns) < min {
			t.Errorf("%s: %d CRLs served over 2 h, want at least %d", id, len(ns), min)
		}
	}
}

// TestCRLSchedule: schedules that cannot keep C-04 are refused.
func TestCRLSchedule(t *testing.T) {
	for _, c := range []struct {
		name string
		s    crlSchedule
		ok   bool
	}{
		{"default", defaultCRLSchedule, true},
		{"zero tick", crlSchedule{full: time.Hour, delta: 30 * time.Minute}, false},
		{"full over 7 days", crlSchedule{full: 8 * 24 * time.Hour, delta: time.Hour, tick: time.Minute}, false},
		{"delta not shorter", crlSchedule{full: time.Hour, delta: time.Hour, tick: time.Minute}, false},
		{"tick too long", crlSchedule{full: time.Hour, delta: 30 * time.Minute, tick: 3 * time.Minute}, false},
		{"tick a twelfth", crlSchedule{full: time.Hour, delta: 36 * time.Minute, tick: 3 * time.Minute}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.s.validate(); (err == nil) != c.ok {
				t.Errorf("validate: %v, want ok %v", err, c.ok)
			}
		})
	}
}

// TestRevocationAnswersBeforeSlowCRL holds a CRL generation inside its
// build: the revocation still answers 200 (after the schedule's wait bound,
// not after the generation), OCSP already says revoked, and the CRL lists
// the serial once the generation is let go.
func TestRevocationAnswersBeforeSlowCRL(t *testing.T) {
	sched := defaultCRLSchedule
	sched.wait = 50 * time.Millisecond
	tn := startCRLNode(t, filepath.Join(t.TempDir(), "data"), crlNodeOptions{schedule: &sched})
	status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csrPEM(goCSR(t, "slow.example.gov.cn", "slow.example.gov.cn")), Profile: "server-tls"}, "")
	if status != http.StatusCreated {
		t.Fatalf("issue: %d %s", status, raw)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	crlStateOf(tn.svc).duringBuild = func(string) {
		once.Do(func() { close(entered) })
		<-release
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, "superseded"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	// The generation is held in duringBuild until release, so the answer
	// came before the CRL whenever the generation got there: on a loaded
	// machine it may not have within the 50 ms wait.
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the revocation answered but no CRL generation started within 10 s")
	}
	want, _ := new(big.Int).SetString(out.Serial, 16)
	if r := tn.query(t, "ecdsa-issuing", want, nil); r.Status != ocsp.Revoked {
		t.Errorf("OCSP while the CRL is being made: %v, want revoked", r.Status)
	}
	close(release)
	released = true
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, rl := tn.fetchCRL(t, "ecdsa-issuing")
		listed := false
		for _, e := range rl.RevokedCertificateEntries {
			listed = listed || e.SerialNumber.Cmp(want) == 0
		}
		if listed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the CRL never listed the serial after the generation was let go")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A retired generation signs CRLs until the first full CRL after the last
// of its certificates expired, then stops (and stops at once when its own
// certificate has expired); its last CRLs stay served, and the active
// generation carries on.
func TestRetiredCRLsFinish(t *testing.T) {
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	tn := startCRLNode(t, filepath.Join(t.TempDir(), "data"), crlNodeOptions{clock: clk, ticks: make(chan time.Time)})
	ctx := t.Context()
	old := tn.issueECDSA(t)
	if status, raw := tn.revoke("ecdsa-issuing", "ra", old.Serial, "superseded"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	rolled, err := tn.svc.Rollover(ctx, "test", "ecdsa-issuing", "")
	if err != nil {
		t.Fatal(err)
	}
	retired := tn.svc.lookup(rolled.previous)
	if retired == nil || retired.status != statusRetired {
		t.Fatalf("previous generation %s not retired", rolled.previous)
	}
	crls := func(id string) int {
		return tn.count("SELECT COUNT(*) FROM ca_crls WHERE issuer_id = ?", id)
	}
	refresh := func() {
		t.Helper()
		if err := tn.svc.refreshCRLs(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Certificates of the retired generation still valid: it keeps its CRLs
	// fresh.
	refresh()
	clk.Add(8 * 24 * time.Hour)
	before := crls(retired.id)
	refresh()
	if crls(retired.id) == before {
		t.Fatal("the retired generation made no CRL while its certificates were valid")
	}
	if done, err := tn.svc.crlsFinished(ctx, retired, clk.Now()); err != nil || done {
		t.Fatalf("finished = %v, %v while its certificates are valid", done, err)
	}
	// Past the last expiry: one more full CRL (it still lists the expired
	// revoked certificate, RFC 5280 §3.3), then none.
	var last string
	if err := tn.db().QueryRow(ctx, "SELECT MAX(not_after) FROM ca_certificates WHERE issuer_id = ?", retired.id).Scan(&last); err != nil {
		t.Fatal(err)
	}
	lastExpiry, err := time.Parse(timeFormat, last)
	if err != nil {
		t.Fatal(err)
	}
	if !lastExpiry.Before(retired.cert.NotAfter) {
		t.Fatalf("test premise: a certificate (%v) outlives its CA (%v)", lastExpiry, retired.cert.NotAfter)
	}
	clk.Set(lastExpiry.Add(time.Hour))
	refresh()
	_, rl := tn.fetchCRL(t, retired.id)
	if !rl.ThisUpdate.After(lastExpiry) || serialsOf(t, &storedCRL{der: rl.Raw}, retired) != old.Serial {
		t.Errorf("final CRL of %v lists %q, want one made after %v listing %s", rl.ThisUpdate, serialsOf(t, &storedCRL{der: rl.Raw}, retired), lastExpiry, old.Serial)
	}
	final := crls(retired.id)
	activeBefore := crls(rolled.authority.id)
	for range 3 {
		clk.Add(8 * 24 * time.Hour)
		refresh()
	}
	if n := crls(retired.id); n != final {
		t.Errorf("the retired generation made %d CRLs after its last", n-final)
	}
	if crls(rolled.authority.id) <= activeBefore {
		t.Error("the active generation stopped making CRLs too")
	}
	// Still served (past its nextUpdate now, with max-age 0: every
	// certificate it could list has expired).
	req, err := http.NewRequest("GET", "http://"+tn.n.Addresses().HTTP+"/pki/"+retired.id+".crl", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, der := tn.send(req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("last CRL of the retired generation: HTTP %d", resp.StatusCode)
	}
	if _, err := crl.Verify(der, retired.cert); err != nil {
		t.Errorf("last CRL of the retired generation: %v", err)
	}
	// Its own certificate expired: finished whatever its certificates.
	if done, err := tn.svc.crlsFinished(ctx, retired, retired.cert.NotAfter); err != nil || !done {
		t.Errorf("finished at the CA's own expiry = %v, %v", done, err)
	}
}

// TestCRLClockSteppedBack: the wall clock steps back one minute after a
// revocation (an NTP correction). The full and delta CRLs are still made,
// with thisUpdate the clock's time (never in the future) and the entry's
// revocationDate clamped to it; OpenSSL verifies both; one warning per CRL
// is logged. Once the clock has caught up, the stored date is written.
func TestCRLClockSteppedBack(t *testing.T) {
	db := storetest.SQLite(t, append(New().Migrations(), audit.Migrations)...)
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	s, a := crlStoreFixture(t, db, clk, "0a", "0b")
	logs := &syncBuffer{}
	s.env.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if _, err := s.generateBase(ctx, a); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	revokedAt := clk.Now()
	if err := revokeRow(ctx, db, revokedAt, "0a"); err != nil {
		t.Fatal(err)
	}
	clk.Add(-time.Minute)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw})))
	check := func(name string, c *storedCRL, wantDate time.Time) {
		t.Helper()
		if got := serialsOf(t, c, a); got != "0a" {
			t.Errorf("%s lists %q, want 0a", name, got)
		}
		rl, err := crl.Verify(c.der, a.cert)
		if err != nil {
			t.Fatal(err)
		}
		if now := clk.Now().Truncate(time.Second); !rl.ThisUpdate.Equal(now) {
			t.Errorf("%s: thisUpdate %v, want the clock's %v", name, rl.ThisUpdate, now)
		}
		if got := rl.RevokedCertificateEntries[0].RevocationTime; !got.Equal(wantDate) {
			t.Errorf("%s: revocationDate %v, want %v", name, got, wantDate)
		}
		f := writeFile(t, dir, name+".pem", pemCRL(c.der))
		if out := openssl(t, "crl", "-in", f, "-noout", "-CAfile", caFile); !strings.Contains(out, "verify OK") {
			t.Errorf("openssl crl verify %s: %s", name, out)
		}
	}
	full, err := s.generateCRL(ctx, a)
	if err != nil {
		t.Fatalf("full CRL after the clock stepped back: %v", err)
	}
	check("full", full, clk.Now().Truncate(time.Second))
	delta, err := s.generateDelta(ctx, a)
	if err != nil {
		t.Fatalf("delta CRL after the clock stepped back: %v", err)
	}
	check("delta", delta, clk.Now().Truncate(time.Second))
	if n := strings.Count(logs.String(), "clock behind revocation dates"); n != 2 {
		t.Errorf("%d clamp warnings, want one per CRL:\n%s", n, logs)
	}
	clk.Add(2 * time.Minute)
	later, err := s.generateCRL(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	check("full-later", later, revokedAt)
	if n := strings.Count(logs.String(), "clock behind revocation dates"); n != 2 {
		t.Errorf("%d clamp warnings after the clock caught up, want still 2", n)
	}
}

// TestCRLTwoProcessRace: two processes on one database (two Services, each
// with its own lock) make a full CRL at nearly the same time; the one that
// started later (a higher, time-based number) stores first. The other
// finds the counter moved, starts again on a new snapshot and publishes
// above it: an ordinary race, not a number regression, so no alert.
func TestCRLTwoProcessRace(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
		s1, a := crlStoreFixture(t, db, clk, "0a")
		logs := &syncBuffer{}
		s1.env.Logger = slog.New(slog.NewTextHandler(logs, nil))
		if _, err := s1.generateBase(ctx, a); err != nil {
			t.Fatal(err)
		}
		s2 := New()
		s2.env, s2.vars = s1.env, s1.vars
		s2.cas[a.id] = a
		clk.Add(time.Second)
		var second *storedCRL
		crlStateOf(s1).duringBuild = func(string) {
			if second != nil {
				return
			}
			clk.Add(time.Millisecond) // process 2 starts a little later
			var err error
			if second, err = s2.generateCRL(ctx, a); err != nil {
				t.Errorf("process 2: %v", err)
			}
		}
		first, err := s1.generateCRL(ctx, a)
		if err != nil {
			t.Fatalf("process 1 lost an ordinary race and failed: %v", err)
		}
		if second == nil || first.number <= second.number {
			t.Fatalf("process 1 published %d, process 2 %v: want process 1 above", first.number, second)
		}
		if got, err := latestCRL(ctx, db, a.id); err != nil || got.number != first.number {
			t.Errorf("newest full CRL %+v (%v), want %d", got, err, first.number)
		}
		if v := metricValue(t, s1, "govtrust_ca_crl_number_regressions_total", map[string]string{"ca": a.id, "kind": kindFull}); v != 0 {
			t.Errorf("regression alert raised %v times for a race between two processes", v)
		}
		if strings.Contains(logs.String(), "ALERT") {
			t.Errorf("alert logged for a race:\n%s", logs)
		}
	}, append([]store.Migrations{audit.Migrations}, New().Migrations()...)...)
}

// serveCRLTest runs serveCRL for /pki/{name}.crl with the given request
// headers.
func serveCRLTest(s *Service, method, name string, hdr map[string]string) (*httptest.ResponseRecorder, error) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(method, "/pki/"+name+".crl", nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return w, s.serveCRL(w, r, name)
}

// servedNumber fetches /pki/{name}.crl, verifies it with a's certificate
// and returns its number and whether it is a delta CRL.
func servedNumber(t *testing.T, s *Service, name string, a *authority) (int64, bool) {
	t.Helper()
	w, err := serveCRLTest(s, http.MethodGet, name, nil)
	if err != nil || w.Code != http.StatusOK {
		t.Fatalf("GET /pki/%s.crl: %d, %v", name, w.Code, err)
	}
	rl, err := crl.Verify(w.Body.Bytes(), a.cert)
	if err != nil {
		t.Fatalf("/pki/%s.crl: %v", name, err)
	}
	_, delta := rawExtension(rl.Extensions, asn1.ObjectIdentifier{2, 5, 29, 27})
	return rl.Number.Int64(), delta
}

// TestCRLDeltaSuffixCAID: a CA whose id ends in "-delta" (ceremony.ValidID
// allows corp-delta) serves its full CRL at /pki/corp-delta.crl, the
// distribution point its certificates carry, and its delta CRL at
// /pki/corp-delta-delta.crl; for a CA without such a namesake,
// /pki/{ca}-delta.crl is still the delta CRL.
func TestCRLDeltaSuffixCAID(t *testing.T) {
	db := storetest.SQLite(t, append(New().Migrations(), audit.Migrations)...)
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	s, a := crlStoreFixture(t, db, clk, "0a")
	corp := *a
	corp.id = "corp-delta"
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		return insertAuthority(ctx, tx, authorityRow{id: corp.id, algorithm: "ecdsa-p256", keyURI: "soft:ca/corp-delta", cert: a.cert.Raw, created: clk.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry()
	reg.add(a)
	reg.add(&corp)
	s.reg.Store(reg)
	numbers := map[string]int64{}
	for _, x := range []*authority{a, &corp} {
		clk.Add(time.Second)
		if err := s.generateBoth(ctx, x, true); err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{kindFull, kindDelta} {
			c, err := latestWhere(ctx, db, x.id, "kind = '"+kind+"'", false)
			if err != nil {
				t.Fatal(err)
			}
			numbers[x.id+"/"+kind] = c.number
		}
	}
	for _, c := range []struct {
		name, want string
		delta      bool
	}{
		{"corp-delta", "corp-delta/full", false},
		{"corp-delta-delta", "corp-delta/delta", true},
		{"r", "r/full", false},
		{"r-delta", "r/delta", true},
	} {
		n, delta := servedNumber(t, s, c.name, a)
		if n != numbers[c.want] || delta != c.delta {
			t.Errorf("/pki/%s.crl: number %d (delta %v), want the %s CRL %d", c.name, n, delta, c.want, numbers[c.want])
		}
	}
	if _, err := serveCRLTest(s, http.MethodGet, "nobody-delta", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("/pki/nobody-delta.crl: %v, want ErrNotFound", err)
	}
}

// TestCRLRetentionScheduled: an expired revoked certificate stays listed
// until a regularly scheduled full CRL issued after its expiry has listed
// it (RFC 5280 §3.3, BR §4.10.1). Full CRLs made off the schedule (after
// revocations) after the expiry, even two of them, do not count.
func TestCRLRetentionScheduled(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
		s, a := crlStoreFixture(t, db, clk, "0a", "0b") // notAfter: now + 1 h
		if err := revokeRow(ctx, db, clk.Now(), "0a"); err != nil {
			t.Fatal(err)
		}
		gen := func(name string, g func(context.Context, *authority) (*storedCRL, error), want string) {
			t.Helper()
			c, err := g(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if got := serialsOf(t, c, a); got != want {
				t.Errorf("%s at %v lists %q, want %q", name, c.thisUpdate, got, want)
			}
		}
		clk.Add(time.Second)
		gen("scheduled full CRL before the expiry", s.generateBase, "0a")
		clk.Add(time.Hour) // 0a expired a second ago
		gen("first unscheduled full CRL after the expiry", s.generateCRL, "0a")
		clk.Add(time.Second)
		gen("second unscheduled full CRL after the expiry", s.generateCRL, "0a")
		clk.Add(16 * time.Hour)
		gen("first scheduled full CRL after the expiry", s.generateBase, "0a")
		clk.Add(time.Second)
		gen("unscheduled full CRL after that", s.generateCRL, "")
		clk.Add(16 * time.Hour)
		gen("next scheduled full CRL", s.generateBase, "")
	}, append([]store.Migrations{audit.Migrations}, New().Migrations()...)...)
}

// TestCRLServingHeaders: GET /pki/{ca}.crl and -delta.crl carry an ETag
// (kind and number), Last-Modified (thisUpdate), max-age and Expires at its
// end (never after nextUpdate); a conditional GET whose validators hold
// gets 304 (If-None-Match first, If-Modified-Since without it); HEAD gets
// the headers without the body; a CRL another process stored is served at
// once.
func TestCRLServingHeaders(t *testing.T) {
	db := storetest.SQLite(t, append(New().Migrations(), audit.Migrations)...)
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	s, a := crlStoreFixture(t, db, clk, "0a")
	if err := revokeRow(ctx, db, clk.Now(), "0a"); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if err := s.generateBoth(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	full, err := latestCRL(ctx, db, a.id)
	if err != nil {
		t.Fatal(err)
	}
	delta, err := latestDelta(ctx, db, a.id)
	if err != nil {
		t.Fatal(err)
	}
	get := func(method, name string, hdr map[string]string) *httptest.ResponseRecorder {
		t.Helper()
		w, err := serveCRLTest(s, method, name, hdr)
		if err != nil {
			t.Fatalf("%s /pki/%s.crl %v: %v", method, name, hdr, err)
		}
		return w
	}
	etag := func(kind string, n int64) string { return `"` + kind + "-" + strconv.FormatInt(n, 10) + `"` }
	clk.Add(time.Minute)
	for _, c := range []struct {
		name, kind string
		stored     *storedCRL
	}{{"r", kindFull, full}, {"r-delta", kindDelta, delta}} {
		w := get(http.MethodGet, c.name, nil)
		h := w.Result().Header
		if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), c.stored.der) {
			t.Fatalf("GET %s: %d, %d bytes, want the stored CRL", c.name, w.Code, w.Body.Len())
		}
		want := map[string]string{
			"Content-Type":   "application/pkix-crl",
			"Content-Length": strconv.Itoa(len(c.stored.der)),
			"Etag":           etag(c.kind, c.stored.number),
			"Last-Modified":  c.stored.thisUpdate.Format(http.TimeFormat),
			"Cache-Control":  "public, max-age=60, no-transform",
			"Expires":        clk.Now().Add(time.Minute).Format(http.TimeFormat),
		}
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("GET %s: %s %q, want %q", c.name, k, h.Get(k), v)
			}
		}
		w = get(http.MethodHead, c.name, nil)
		if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Result().Header.Get("Content-Length") != want["Content-Length"] ||
			w.Result().Header.Get("Etag") != want["Etag"] {
			t.Errorf("HEAD %s: %d, %d bytes, headers %v", c.name, w.Code, w.Body.Len(), w.Result().Header)
		}
		tag := want["Etag"]
		for _, cond := range []struct {
			hdr  map[string]string
			code int
		}{
			{map[string]string{"If-None-Match": tag}, http.StatusNotModified},
			{map[string]string{"If-None-Match": "W/" + tag}, http.StatusNotModified},
			{map[string]string{"If-None-Match": `"other", ` + tag}, http.StatusNotModified},
			{map[string]string{"If-None-Match": "*"}, http.StatusNotModified},
			{map[string]string{"If-None-Match": etag(c.kind, c.stored.number-1)}, http.StatusOK},
			{map[string]string{"If-Modified-Since": want["Last-Modified"]}, http.StatusNotModified},
			{map[string]string{"If-Modified-Since": clk.Now().Format(http.TimeFormat)}, http.StatusNotModified},
			{map[string]string{"If-Modified-Since": c.stored.thisUpdate.Add(-time.Second).Format(http.TimeFormat)}, http.StatusOK},
			{map[string]string{"If-Modified-Since": "yesterday"}, http.StatusOK},
			// If-None-Match decides when both are sent (RFC 9110 §13.2.2).
			{map[string]string{"If-None-Match": `"other"`, "If-Modified-Since": want["Last-Modified"]}, http.StatusOK},
		} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				w := get(method, c.name, cond.hdr)
				if w.Code != cond.code {
					t.Errorf("%s %s with %v: %d, want %d", method, c.name, cond.hdr, w.Code, cond.code)
				}
				if w.Code == http.StatusNotModified && (w.Body.Len() != 0 || w.Result().Header.Get("Etag") != tag ||
					w.Result().Header.Get("Expires") == "" || w.Result().Header.Get("Content-Type") != "") {
					t.Errorf("%s %s 304 with %v: body %d bytes, headers %v", method, c.name, cond.hdr, w.Body.Len(), w.Result().Header)
				}
			}
		}
	}
	// Ten seconds before nextUpdate: max-age 10, Expires = nextUpdate.
	clk.Set(full.nextUpdate.Add(-10 * time.Second))
	if h := get(http.MethodGet, "r", nil).Result().Header; h.Get("Cache-Control") != "public, max-age=10, no-transform" ||
		h.Get("Expires") != full.nextUpdate.Format(http.TimeFormat) {
		t.Errorf("10 s before nextUpdate %v: Cache-Control %q, Expires %q", full.nextUpdate, h.Get("Cache-Control"), h.Get("Expires"))
	}
	// Another process on the database publishes a full CRL: served at once,
	// with a new ETag.
	other := New()
	other.env, other.vars = s.env, s.vars
	other.cas[a.id] = a
	clk.Add(time.Second)
	next, err := other.generateCRL(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	w := get(http.MethodGet, "r", map[string]string{"If-None-Match": etag(kindFull, full.number)})
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), next.der) || w.Result().Header.Get("Etag") != etag(kindFull, next.number) {
		t.Errorf("after another process published %d: %d, ETag %q", next.number, w.Code, w.Result().Header.Get("Etag"))
	}
}

// TestCRLIfModifiedSinceNewerSameSecond: a client that revalidates with
// If-Modified-Since alone (wget -N, curl -z, a cache without ETag) never
// gets 304 for a CRL it does not hold. A revocation's CRL made in the same
// second as the one the client holds, one made after the clock stepped
// back, and one whose earlier, later-dated CRLs were pruned are all sent
// whole; a CRL whose second no earlier one shares answers 304 again, and
// If-None-Match still does throughout. Full and delta CRLs alike.
func TestCRLIfModifiedSinceNewerSameSecond(t *testing.T) {
	db := storetest.SQLite(t, append(New().Migrations(), audit.Migrations)...)
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	s, a := crlStoreFixture(t, db, clk, "0a", "0b")
	type held struct{ lastModified, etag string }
	fetch := func(name string, hdr map[string]string) (*httptest.ResponseRecorder, held) {
		t.Helper()
		w, err := serveCRLTest(s, http.MethodGet, name, hdr)
		if err != nil {
			t.Fatalf("GET /pki/%s.crl: %v", name, err)
		}
		h := w.Result().Header
		return w, held{h.Get("Last-Modified"), h.Get("Etag")}
	}
	// expect checks the answer to a client holding h, for both CRL files.
	expect := func(step, name string, h held, imsCode int) {
		t.Helper()
		if w, _ := fetch(name, map[string]string{"If-Modified-Since": h.lastModified}); w.Code != imsCode {
			t.Errorf("%s: GET %s If-Modified-Since %s: %d, want %d", step, name, h.lastModified, w.Code, imsCode)
		}
	}
	if err := s.generateBoth(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	names := []string{"r", "r-delta"}
	first := map[string]held{}
	for _, n := range names {
		_, first[n] = fetch(n, nil)
		expect("unchanged", n, first[n], http.StatusNotModified)
	}
	// A revocation 100 ms later; its CRLs have the same thisUpdate.
	clk.Add(100 * time.Millisecond)
	if err := revokeRow(ctx, db, clk.Now(), "0a"); err != nil {
		t.Fatal(err)
	}
	if err := s.generateBoth(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		w, now := fetch(n, nil)
		if now.lastModified != first[n].lastModified || now.etag == first[n].etag {
			t.Fatalf("%s: Last-Modified %s, ETag %s after %s, %s: want the same second, a new CRL", n, now.lastModified, now.etag, first[n].lastModified, first[n].etag)
		}
		rl, err := crl.Verify(w.Body.Bytes(), a.cert)
		if err != nil || len(rl.RevokedCertificateEntries) != 1 {
			t.Fatalf("%s after the revocation: %v, %d entries", n, err, len(rl.RevokedCertificateEntries))
		}
		expect("same second", n, first[n], http.StatusOK)
		if w, _ := fetch(n, map[string]string{"If-None-Match": now.etag}); w.Code != http.StatusNotModified {
			t.Errorf("same second: GET %s If-None-Match %s: %d, want 304", n, now.etag, w.Code)
		}
	}
	// A second later: a CRL of its own second is a strong validator again.
	clk.Add(time.Second)
	if err := s.generateBoth(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	latest := map[string]held{}
	for _, n := range names {
		_, latest[n] = fetch(n, nil)
		expect("next second, held", n, latest[n], http.StatusNotModified)
		expect("next second, older held", n, first[n], http.StatusOK)
	}
	// The clock steps back a minute; a revocation's CRLs are dated before
	// the ones clients hold.
	clk.Add(-time.Minute)
	if err := revokeRow(ctx, db, clk.Now(), "0b"); err != nil {
		t.Fatal(err)
	}
	if err := s.generateBoth(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		expect("clock stepped back", n, latest[n], http.StatusOK)
	}
	// More CRLs than are kept (crlKeep), a second apart, all before the
	// clock catches up: the later-dated ones are pruned, the number still
	// tells.
	for range crlKeep + 1 {
		clk.Add(time.Second)
		if err := s.generateBoth(ctx, a, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		expect("clock stepped back, pruned", n, latest[n], http.StatusOK)
	}
	// Once the clock is past the dates of the old CRLs, dates are strong
	// again.
	clk.Add(time.Minute)
	if err := s.generateBoth(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		_, h := fetch(n, nil)
		expect("clock caught up", n, h, http.StatusNotModified)
		expect("clock caught up, older held", n, latest[n], http.StatusOK)
	}
}

// discardWriter is a ResponseWriter that counts the body bytes.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// TestCRLServedOnce: concurrent GETs of a large CRL share one copy in
// memory; they do not each read it from the database. Another process
// stores an 8 MB CRL; 16 concurrent requests allocate less than 4 times
// its size in all (each reading it would be 16 times), and once it is
// loaded, 16 more allocate less than a tenth of it.
func TestCRLServedOnce(t *testing.T) {
	db := storetest.SQLite(t, append(New().Migrations(), audit.Migrations)...)
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	s, a := crlStoreFixture(t, db, clk, "0a")
	c, err := s.generateBase(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// The served bytes are not parsed: a blob of the size of a CRL of
	// 160,000 entries stands for it.
	const size = 8 << 20
	big := make([]byte, size)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO ca_crls (issuer_id, number, kind, this_update, next_update, der, created_at, base_number, revocation_seq, delta_base)
		VALUES (?, ?, 'full', ?, ?, ?, ?, NULL, 0, 0)`, a.id, c.number+1, c.thisUpdate.Format(timeFormat), c.nextUpdate.Format(timeFormat),
		big, c.thisUpdate.Format(timeFormat)); err != nil {
		t.Fatal(err)
	}
	const n = 16
	wave := func() uint64 {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		ws := make([]*discardWriter, n)
		errs := make([]error, n)
		for i := range n {
			ws[i] = &discardWriter{h: http.Header{}}
			wg.Go(func() {
				errs[i] = s.serveCRL(ws[i], httptest.NewRequest(http.MethodGet, "/pki/r.crl", nil), "r")
			})
		}
		wg.Wait()
		runtime.ReadMemStats(&after)
		for i := range n {
			if errs[i] != nil || ws[i].n != size {
				t.Fatalf("request %d: %v, %d bytes, want %d", i, errs[i], ws[i].n, size)
			}
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	cold := wave()
	warm := wave()
	t.Logf("%d concurrent GETs of a %d MiB CRL allocated %.1f MiB (first), %.2f MiB (loaded)", n, size>>20,
		float64(cold)/(1<<20), float64(warm)/(1<<20))
	if cold > 4*size {
		t.Errorf("%d concurrent GETs allocated %d bytes, over 4 times the CRL (%d): each read it", n, cold, size)
	}
	if warm > size/10 {
		t.Errorf("%d GETs of a loaded CRL allocated %d bytes", n, warm)
	}
}

// TestCRLCatchUpCommittedRevocation (RELIABILITY.md I4, ACCEPTANCE.md C-01):
// a revocation committed whose CRLs were never made (its process died
// between the commit and afterRevocation, or another process on the same
// database revoked) is listed by the full CRL and the delta of the next
// refresh, the delta numbered above the full CRL and still on the scheduled
// base. A refresh with nothing new makes no CRL, on either of two processes
// sharing the database, before and after the catch-up.
func TestCRLCatchUpCommittedRevocation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := clock.NewFake(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
		s1, a := crlStoreFixture(t, db, clk, "0a", "0b")
		a.status = statusActive
		s2 := New() // a second process on the same database
		s2.env, s2.vars = s1.env, s1.vars
		s2.cas[a.id] = a
		s2.reg.Store(s1.registry())
		crls := func() int {
			t.Helper()
			var n int
			if err := db.ReadRow(ctx, "SELECT COUNT(*) FROM ca_crls WHERE issuer_id = ?", a.id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		refresh := func(s *Service) {
			t.Helper()
			clk.Add(time.Second)
			if err := s.refreshCRLs(ctx); err != nil {
				t.Fatal(err)
			}
		}
		refresh(s1) // the first CRLs, as at Start
		base, err := latestBase(ctx, db, a.id)
		if err != nil {
			t.Fatal(err)
		}
		idle := func(when string) {
			t.Helper()
			n := crls()
			refresh(s1)
			refresh(s2)
			refresh(s1)
			if got := crls(); got != n {
				t.Errorf("%s: refreshes with nothing new made %d CRLs", when, got-n)
			}
		}
		idle("before the revocation")

		if err := revokeRow(ctx, db, clk.Now(), "0a"); err != nil { // no afterRevocation
			t.Fatal(err)
		}
		refresh(s2)
		full, err := latestCRL(ctx, db, a.id)
		if err != nil {
			t.Fatal(err)
		}
		delta, err := latestDelta(ctx, db, a.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := serialsOf(t, full, a); got != "0a" {
			t.Errorf("full CRL %d after the refresh lists %q, want 0a", full.number, got)
		}
		if got := serialsOf(t, delta, a); got != "0a" {
			t.Errorf("delta CRL %d after the refresh lists %q, want 0a", delta.number, got)
		}
		if delta.number <= full.number || delta.base != base.number || full.deltaBase {
			t.Errorf("delta %d on %d, full %d (a base: %v); want the delta above the full CRL and on the scheduled base %d",
				delta.number, delta.base, full.number, full.deltaBase, base.number)
		}
		idle("after the catch-up")

		// A catch-up full CRL without its delta (the process died between
		// the two) is caught up too.
		if err := revokeRow(ctx, db, clk.Now(), "0b"); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
		if _, err := s1.generateCRL(ctx, a); err != nil {
			t.Fatal(err)
		}
		refresh(s1)
		d, err := latestDelta(ctx, db, a.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := serialsOf(t, d, a); got != "0a 0b" {
			t.Errorf("delta %d after a full CRL without its delta lists %q, want 0a 0b", d.number, got)
		}
		idle("after the second catch-up")
	}, append([]store.Migrations{audit.Migrations}, New().Migrations()...)...)
}

// revokeCommitted revokes serial of ecdsa-issuing in the database as the
// revoke handler's transaction does, without the CRLs that follow it: the
// process that revoked died right after the commit.
func (tn *testNode) revokeCommitted(t *testing.T, serial string) {
	t.Helper()
	if _, err := tn.db().Exec(t.Context(), `UPDATE ca_certificates SET status = 'revoked', revoked_at = ?, revocation_reason = 1
		WHERE issuer_id = 'ecdsa-issuing' AND serial = ?`, time.Now().UTC().Format(timeFormat), serial); err != nil {
		t.Fatal(err)
	}
}

// TestCRLCatchUpAtStart: a revocation committed by a process killed before
// its CRLs is on the served full CRL and delta as soon as the CA starts
// again, without waiting for a tick.
func TestCRLCatchUpAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	tn := startNode(t, dir)
	out := tn.issueECDSA(t)
	tn.revokeCommitted(t, out.Serial)
	tn.stop()

	tn = startNode(t, dir)
	_, full := tn.fetchCRL(t, "ecdsa-issuing")
	_, delta := tn.fetchCRL(t, "ecdsa-issuing-delta")
	if !listed(full, out.Serial) || !listed(delta, out.Serial) || delta.Number.Cmp(full.Number) <= 0 {
		t.Errorf("after restart: serial %s on the full CRL %v: %v, on the delta %v: %v; want both, the delta above",
			out.Serial, full.Number, listed(full, out.Serial), delta.Number, listed(delta, out.Serial))
	}
}

// TestForceCRLMakesDelta: a CRL forced by an operator comes with a delta
// numbered above it and listing what it lists, so that clients following
// the delta see what the forced full CRL was made for.
func TestForceCRLMakesDelta(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	tn.addAccount("operator", authz.BootstrapOrg, policy.Confidential, policy.RoleCAOperator)
	out := tn.issueECDSA(t)
	tn.revokeCommitted(t, out.Serial)
	status, raw := tn.do("POST", "/api/v1/ca/ecdsa-issuing/crls", "operator", nil, nil)
	var info CRLInfo
	if status != http.StatusCreated || json.Unmarshal(raw, &info) != nil {
		t.Fatalf("force: %d %s", status, raw)
	}
	_, full := tn.fetchCRL(t, "ecdsa-issuing")
	_, delta := tn.fetchCRL(t, "ecdsa-issuing-delta")
	if full.Number.Int64() != info.Number || !listed(full, out.Serial) {
		t.Errorf("served full CRL %v (answer %d) lists %s: %v", full.Number, info.Number, out.Serial, listed(full, out.Serial))
	}
	if delta.Number.Cmp(full.Number) <= 0 || !listed(delta, out.Serial) {
		t.Errorf("served delta %v, full CRL %v: delta lists %s: %v; want the delta above, listing it", delta.Number, full.Number, out.Serial, listed(delta, out.Serial))
	}
	if n := tn.audited("account/operator", "ca.crl.generate", audit.Success); n != 1 {
		t.Errorf("%d records of the forced CRL by the operator, want 1", n)
	}
}

// TestCRLCatchUpTwoProcessesPostgres: two CA processes on one PostgreSQL
// database; a third revoked and died before its CRLs. The first process to
// tick publishes a full CRL and a delta listing the revocation, the other
// serves them, and further ticks of both make no CRL.
func TestCRLCatchUpTwoProcessesPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	set := func(o *node.Options) { o.DB = &url }
	a := startNodeWith(t, filepath.Join(t.TempDir(), "a"), set)
	b := startNodeWith(t, filepath.Join(t.TempDir(), "b"), set)
	out := a.issueECDSA(t)
	a.revokeCommitted(t, out.Serial)
	if err := b.svc.refreshCRLs(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tn := range []*testNode{a, b} {
		_, full := tn.fetchCRL(t, "ecdsa-issuing")
		_, delta := tn.fetchCRL(t, "ecdsa-issuing-delta")
		if !listed(full, out.Serial) || !listed(delta, out.Serial) || delta.Number.Cmp(full.Number) <= 0 {
			t.Errorf("serial %s on the full CRL %v: %v, on the delta %v: %v; want both, the delta above",
				out.Serial, full.Number, listed(full, out.Serial), delta.Number, listed(delta, out.Serial))
		}
	}
	const crls = "SELECT COUNT(*) FROM ca_crls"
	n := a.count(crls)
	for range 2 {
		for _, tn := range []*testNode{a, b} {
			if err := tn.svc.refreshCRLs(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := a.count(crls); got != n {
		t.Errorf("ticks with nothing new made %d CRLs", got-n)
	}
}

// TestCRLCatchUpLeavesQueuedRevocation: a tick while the CRLs of a
// revocation made by this process are being built does not build them a
// second time (for a large CA that would double the work at the worst
// moment): the revocation's generation lists it.
func TestCRLCatchUpLeavesQueuedRevocation(t *testing.T) {
	sched := defaultCRLSchedule
	sched.wait = 50 * time.Millisecond
	tn := startCRLNode(t, filepath.Join(t.TempDir(), "data"), crlNodeOptions{schedule: &sched})
	out := tn.issueECDSA(t)
	const crls = "SELECT COUNT(*) FROM ca_crls WHERE issuer_id = 'ecdsa-issuing'"
	before := tn.count(crls)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	crlStateOf(tn.svc).duringBuild = func(string) {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	if status, raw := tn.revoke("ecdsa-issuing", "ra", out.Serial, "superseded"); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no CRL generation started within 10 s of the revocation")
	}
	ticked := make(chan error, 1)
	go func() { ticked <- tn.svc.refreshCRLs(context.Background()) }()
	select {
	case err := <-ticked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the tick waits for the revocation's CRL generation")
	}
	close(release)
	released = true
	for deadline := time.Now().Add(30 * time.Second); tn.count(crls) < before+2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the revocation's CRLs were not made")
		}
	}
	if err := tn.svc.refreshCRLs(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := tn.count(crls) - before; got != 2 {
		t.Errorf("%d CRLs made for one revocation and two ticks, want 2 (a full CRL and its delta)", got)
	}
	_, delta := tn.fetchCRL(t, "ecdsa-issuing-delta")
	if !listed(delta, out.Serial) {
		t.Errorf("delta %v does not list %s", delta.Number, out.Serial)
	}
}
