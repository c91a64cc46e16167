package ca

// End-to-end tests of ACCEPTANCE.md rows:
// a running node with the CA service, driven over its HTTPS API and its
// plain-HTTP publication URLs, judged with OpenSSL and the linters.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/ca/lint"
	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/ca/profile"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/testenv"
)

// accStartNode starts a node like startNode, with a fixed plain-HTTP
// address (the profiles write {base} from the configured listener, so the
// URLs in certificates are fetchable only when its port is not 0) and an
// optional injected clock.
func accStartNode(t *testing.T, dir, httpAddr string, clk clock.Clock) *testNode {
	t.Helper()
	svc := New()
	opts := node.Options{DataDir: dir, HTTP: ptr(httpAddr), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}, Clock: clk}
	n, err := node.Start(context.Background(), opts, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, svc: svc, tokens: map[string]string{},
		c: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 8}}}
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

// accKeys makes subscriber keys. RSA keys are generated once per size and
// reused (a 3072-bit key takes seconds; the lints look at each certificate,
// not at key freshness); call warm early so they are made in the
// background. Safe for concurrent use; it returns errors rather than
// failing the test, so workers can call it.
type accKeys struct {
	rsa2048, rsa3072 func() (*rsa.PrivateKey, error)
	// platform are the keys of the platform's own certificates (internal
	// profiles): a key certified to the platform is not certified to an
	// organisation too (checkKeyHolder), so they are other RSA keys.
	platform *accKeys
}

func newAccKeys() *accKeys {
	k := rsaKeys()
	k.platform = rsaKeys()
	return k
}

func rsaKeys() *accKeys {
	return &accKeys{
		rsa2048: sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }),
		rsa3072: sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 3072) }),
	}
}

// warm starts the RSA key generations.
func (k *accKeys) warm() {
	go k.rsa2048() //nolint:errcheck // the result is kept by OnceValues
	go k.rsa3072() //nolint:errcheck
}

func (k *accKeys) key(kind string) (crypto.Signer, error) {
	switch kind {
	case "sm2":
		return sm2.GenerateKey(rand.Reader)
	case "ecdsa-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa-2048":
		return k.rsa2048()
	case "rsa-3072":
		return k.rsa3072()
	}
	return nil, fmt.Errorf("unknown key kind %s", kind)
}

// mustKey is key for the test goroutine.
func (k *accKeys) mustKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	s, err := k.key(kind)
	if err != nil {
		t.Fatalf("key %s: %v", kind, err)
	}
	return s
}

// mustCSR signs a request (SM2 keys with the default user ID).
func mustCSR(t testing.TB, key crypto.Signer, tmpl *smx509.CertificateRequest) []byte {
	t.Helper()
	der, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CSR: %v", err)
	}
	return der
}

// Names the sweep draws from: Chinese and ASCII, short and at the upper
// bound of RFC 5280 Appendix A (64 characters).
var (
	accPersons = []string{"张三", "李四", "欧阳娜娜", "Wang Wei", "买买提·艾力", strings.Repeat("名", 64)}
	accOrgs    = []string{"某某市人民政府", "福建省公安厅", "Fuzhou Municipal Data Bureau", "某某市市场监督管理局（知识产权局）", strings.Repeat("O", 64)}
	accUnits   = []string{"信息中心", "Office of IT", "行政审批科"}
	accPlaces  = [][2]string{{"福建省", "福州市"}, {"Fujian", "Xiamen"}, {"广东省", "深圳市"}}
)

// accRecord is a registration record with optional parts left out for some
// i, so certificates with and without ST, L, OU and optional identity
// extensions are all made.
func accRecord(i int) map[string]string {
	r := map[string]string{
		"CN": accPersons[i%len(accPersons)], "O": accOrgs[i%len(accOrgs)],
		"id-card": "11010519491231002X", "uscc": "91350100M000100Y43",
	}
	if i%2 == 0 {
		r["OU"] = accUnits[i%len(accUnits)]
	}
	if i%3 != 1 {
		p := accPlaces[i%len(accPlaces)]
		r["ST"], r["L"] = p[0], p[1]
	} else {
		r["L"] = accPlaces[i%len(accPlaces)][1]
	}
	if i%2 == 0 {
		// The mailbox the RA verified: person profiles take it from here
		// (accRequest repeats it in the request for some).
		r["mail"] = fmt.Sprintf("user%d@example.gov.cn", i)
	}
	if i%4 == 0 {
		r["tax"], r["social-insurance"] = "350100M000100Y4", "A1234567"
	}
	return r
}

// accRequest is the request a subscriber of profile prof sends, varied by i.
func accRequest(prof *profile.Profile, i int) *smx509.CertificateRequest {
	host := fmt.Sprintf("svc%d.example.gov.cn", i)
	p := prof.Purpose
	switch p {
	case lint.PurposeTLSServer, lint.PurposeTLSPrivate:
		r := &smx509.CertificateRequest{DNSNames: []string{host, fmt.Sprintf("www.svc%d.example.gov.cn", i)}}
		if i%2 == 0 {
			r.Subject.CommonName = host
		}
		if i%3 == 0 {
			r.IPAddresses = []net.IP{net.IPv4(218, 85, 152, byte(1+i%250))}
		}
		return r
	case lint.PurposeTLSClient:
		r := &smx509.CertificateRequest{Subject: pkix.Name{CommonName: []string{"审批系统", "exchange-adapter", "统一身份认证平台"}[i%3]}}
		if i%2 == 1 {
			r.Subject.OrganizationalUnit = []string{accUnits[i%len(accUnits)]}
		}
		if i%3 == 2 {
			r.EmailAddresses = []string{fmt.Sprintf("ops%d@example.gov.cn", i)}
		}
		return r
	case lint.PurposeOCSPSigner:
		return &smx509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("govtrust OCSP responder %d", i)}}
	case lint.PurposeTSA:
		return &smx509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("govtrust 时间戳服务 %d", i)}}
	case lint.PurposeCA:
		return &smx509.CertificateRequest{Subject: pkix.Name{CommonName: fmt.Sprintf("govtrust 二级 CA %d", i)}}
	}
	// Profiles whose subject comes from the record: the request still
	// carries a name (ignored with a note) and, for person-sign, an email.
	r := &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "from the request"}}
	if prof.SAN.Email.Max > 0 && i%2 == 0 {
		r.EmailAddresses = []string{fmt.Sprintf("user%d@example.gov.cn", i)}
	}
	return r
}

// a07Justified are the warnings and notices the A-07 sweep may find, by
// purpose, each with the reason it is accepted. A finding not listed fails
// the sweep, and so does a listed one that never appears (a stale
// justification).
var a07Justified = map[lint.Purpose]map[string]string{
	lint.PurposeTLSServer: {
		"zlint/w_ext_subject_key_identifier_not_recommended_subscriber": "BR v2 §7.1.2.7.6 does not recommend a subjectKeyIdentifier in subscriber certificates; " +
			"ACCEPTANCE A-10 and RFC 5280 §4.2.1.2 (SHOULD) want it in every certificate, and path building by key identifier needs it",
		"zlint/w_subject_common_name_included": "BR §7.1.2.7.4 does not recommend a commonName; the subscriber asked for one, " +
			"and the profile keeps it only when it equals a subjectAltName (BR §7.1.4.3 allows that; older clients still read the CN)",
		"zlint/w_sub_cert_aia_contains_internal_names": "the test node publishes at a loopback address (http://127.0.0.1:port), so the AIA URL names no public host; " +
			"a production node's {base} is its public host name, and where it is not the warning is what the operator should see",
	},
}

// a07Job is one certificate to issue.
type a07Job struct {
	ca, profile, key string
	i                int
}

// a07PerCombination certificates are issued for each (CA, profile, key
// type) the profile allows: 34 combinations, 1,020 certificates.
const a07PerCombination = 30

// TestLintSweepA07 covers ACCEPTANCE.md A-07: at least 1,000 certificates
// across every built-in profile on the SM2 and the ECDSA hierarchy, with
// every key type each profile accepts under that hierarchy (SM2; P-256,
// P-384 and RSA under ECDSA), and varied names, SANs, optional attributes
// and identity extensions. Each is linted again after issuance with
// govtrust's lints and, for ECDSA and RSA, zlint (lint.Check with the
// profile's purpose and maximum validity): zero errors, and every warning
// or notice must be in a07Justified.
//
// Certificates go through POST /api/v1/ca/{ca}/certificates, except the
// internal profiles (ocsp-signer, tsa, node-tls, seal-maker), which the API
// refuses and the platform's services obtain through Service.IssueFor, and
// two kinds the API does not issue from an issuing CA by design: encryption
// certificates (person-enc, org-enc: the key comes from the KMC, which the
// CA service does not call yet) and sub-CA certificates (issuing CAs have
// pathLenConstraint 0). Those are issued with the service's own path
// (profile.Apply, then signLinted with the service's CA key and
// certificate), enc under the issuing CA with a KMC stand-in key, sub-CA
// under the root as the built-in hierarchy is made.
func TestLintSweepA07(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	profiles := profile.Builtin()
	var jobs []a07Job
	combos := map[string]bool{}
	for _, name := range profile.BuiltinNames {
		p := profiles[name]
		for _, h := range []struct{ issuing, root string }{{"sm2-issuing", "sm2-root"}, {"ecdsa-issuing", "ecdsa-root"}} {
			ca := h.issuing
			if p.Purpose == lint.PurposeCA {
				ca = h.root
			}
			for _, kt := range p.KeyTypes {
				if (kt == "sm2") != strings.HasPrefix(ca, "sm2-") {
					continue
				}
				combos[ca+"/"+name+"/"+string(kt)] = true
				for i := range a07PerCombination {
					jobs = append(jobs, a07Job{ca: ca, profile: name, key: string(kt), i: i})
				}
			}
		}
	}
	if len(jobs) < 1000 {
		t.Fatalf("only %d certificates planned, A-07 asks for at least 1,000", len(jobs))
	}
	for _, name := range profile.BuiltinNames {
		if profiles[name].Purpose == lint.PurposeTLSPrivate {
			continue // a node's own HTTPS listener: crypto/tls speaks no SM2
		}
		if !combos["sm2-issuing/"+name+"/sm2"] && !combos["sm2-root/"+name+"/sm2"] {
			t.Errorf("profile %s is not swept on the SM2 hierarchy", name)
		}
	}

	keys := newAccKeys()
	keys.warm()
	// RSA jobs last, so the workers issue the rest while the keys are made.
	sort.SliceStable(jobs, func(a, b int) bool {
		return !strings.HasPrefix(jobs[a].key, "rsa") && strings.HasPrefix(jobs[b].key, "rsa")
	})

	type result struct {
		job      a07Job
		findings []lint.Finding
		err      error
	}
	start := time.Now()
	results := make([]result, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for n := range next {
				is, err := a07Issue(tn, profiles, keys, jobs[n])
				results[n] = result{job: jobs[n], err: err}
				if err == nil {
					results[n].findings = is.findings
				}
			}
		})
	}
	for n := range jobs {
		next <- n
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)

	perCombo := map[string]int{}
	seen := map[lint.Purpose]map[string]int{}
	failures := 0
	for _, r := range results {
		p := profiles[r.job.profile].Purpose
		if r.err != nil {
			if failures++; failures <= 10 {
				t.Errorf("%s/%s/%s #%d: %v", r.job.ca, r.job.profile, r.job.key, r.job.i, r.err)
			}
			continue
		}
		perCombo[r.job.ca+"/"+r.job.profile+"/"+r.job.key]++
		for _, f := range r.findings {
			switch {
			case f.Severity == lint.Error:
				if failures++; failures <= 10 {
					t.Errorf("%s/%s/%s #%d: lint error %s", r.job.ca, r.job.profile, r.job.key, r.job.i, f)
				}
			case a07Justified[p][f.Lint] == "":
				if failures++; failures <= 10 {
					t.Errorf("%s/%s/%s #%d: unexpected %s (add it to a07Justified with a reason, or fix the profile)", r.job.ca, r.job.profile, r.job.key, r.job.i, f)
				}
			default:
				if seen[p] == nil {
					seen[p] = map[string]int{}
				}
				seen[p][f.Lint]++
			}
		}
	}
	if failures > 10 {
		t.Errorf("... %d failures in all", failures)
	}
	total := 0
	for c := range combos {
		if perCombo[c] != a07PerCombination {
			t.Errorf("%s: %d certificates issued, want %d", c, perCombo[c], a07PerCombination)
		}
		total += perCombo[c]
	}
	for p, m := range a07Justified {
		for n, why := range m {
			if seen[p][n] == 0 {
				t.Errorf("justified %s %s never appeared: remove it from a07Justified", p, n)
			}
			t.Logf("accepted %s on %s: %d times: %s", n, p, seen[p][n], why)
		}
	}
	t.Logf("A-07: %d certificates over %d (CA, profile, key type) combinations in %s, relinted with own lints + zlint %v (tls-server also %v); zlint exclusions: %v",
		total, len(combos), elapsed.Round(time.Millisecond), lint.ZlintSources(lint.PurposeSign), lint.ZlintSources(lint.PurposeTLSServer)[len(lint.ZlintSources(lint.PurposeSign)):], lint.ZlintExclusions(lint.PurposeTLSServer))
}

// a07Issued is one certificate of the sweep, its issuer and its re-lint.
type a07Issued struct {
	cert     *smx509.Certificate
	issuer   *authority
	findings []lint.Finding
}

// a07Issue issues one certificate of the sweep and re-lints it.
func a07Issue(tn *testNode, profiles map[string]*profile.Profile, keys *accKeys, j a07Job) (*a07Issued, error) {
	p := profiles[j.profile]
	ks := keys
	if p.Internal {
		ks = keys.platform
	}
	key, err := ks.key(j.key)
	if err != nil {
		return nil, err
	}
	csrDER, err := smx509.CreateCertificateRequest(rand.Reader, accRequest(p, j.i), key)
	if err != nil {
		return nil, err
	}
	rec := accRecord(j.i)
	a := tn.svc.cas[j.ca]
	var der []byte
	if p.KeySource == "kmc" || p.Purpose == lint.PurposeCA {
		csr, err := profile.ParseCSR(csrDER)
		if err != nil {
			return nil, err
		}
		in := profile.Input{CSR: csr, Record: rec, Now: tn.svc.env.Clock.Now().UTC(), Issuer: a.cert, CAID: a.id, Vars: tn.svc.vars}
		if p.KeySource == "kmc" {
			kmc, err := sm2.GenerateKey(rand.Reader) // the KMC's generated encryption key
			if err != nil {
				return nil, err
			}
			in.PublicKey = kmc.Public()
		}
		if p.Purpose == lint.PurposeCA {
			in.Record = map[string]string{"O": rec["O"]}
			if ou, ok := rec["OU"]; ok {
				in.Record["OU"] = ou
			}
		}
		res, err := p.Apply(in)
		if err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
		if der, err = signLinted(res, a); err != nil {
			return nil, err
		}
	} else if p.Internal {
		if der, _, err = tn.svc.IssueFor(context.Background(), j.ca, j.profile, csrDER, rec, "service/a07"); err != nil {
			return nil, err
		}
	} else {
		body, _ := json.Marshal(IssueRequest{CSR: csrPEM(csrDER), Profile: j.profile, Record: rec})
		req, err := http.NewRequest("POST", "https://"+tn.n.Addresses().HTTPS+"/api/v1/ca/"+j.ca+"/certificates", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tn.tokens["ra"])
		resp, err := tn.c.Do(req)
		if err != nil {
			return nil, err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, raw)
		}
		var out IssueResponse
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, err
		}
		b, _ := pem.Decode([]byte(out.Certificate))
		if b == nil {
			return nil, fmt.Errorf("no PEM certificate in %s", raw)
		}
		der = b.Bytes
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(a.cert); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	exp := lint.Expect{Purpose: p.Purpose, MaxValidity: time.Duration(p.Validity), Now: tn.svc.env.Clock.Now()}
	if p.CA != nil {
		exp.PathLen = p.CA.PathLen
	}
	return &a07Issued{cert: cert, issuer: a, findings: lint.Check(der, a.cert, exp)}, nil
}

var oidExtIDP = asn1.ObjectIdentifier{2, 5, 29, 28}

// accGet fetches a public URL over plain HTTP.
func accGet(t *testing.T, method, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// distributionPointNames returns the DER of the distributionPoint [0]
// field of each DistributionPoint of a cRLDistributionPoints value
// (RFC 5280 §4.2.1.13), with the URIs it names.
func distributionPointNames(t *testing.T, v []byte) (ders [][]byte, uris [][]string) {
	t.Helper()
	in := cryptobyte.String(v)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		t.Fatal("cRLDistributionPoints does not decode")
	}
	for !seq.Empty() {
		var dp cryptobyte.String
		if !seq.ReadASN1(&dp, cbasn1.SEQUENCE) {
			t.Fatal("DistributionPoint does not decode")
		}
		var name cryptobyte.String
		if !dp.ReadASN1Element(&name, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			t.Fatal("DistributionPoint without a distributionPoint name")
		}
		ders = append(ders, []byte(name))
		uris = append(uris, generalNameURIs(t, name))
	}
	return ders, uris
}

// generalNameURIs reads the URIs of a [0] DistributionPointName holding a
// fullName [0] GeneralNames.
func generalNameURIs(t *testing.T, name cryptobyte.String) []string {
	t.Helper()
	var dpn, full cryptobyte.String
	if !name.ReadASN1(&dpn, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!dpn.ReadASN1(&full, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		t.Fatal("distributionPoint is not a fullName")
	}
	var out []string
	for !full.Empty() {
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !full.ReadAnyASN1(&v, &tag) {
			t.Fatal("GeneralName does not decode")
		}
		if tag == cbasn1.Tag(6).ContextSpecific() {
			out = append(out, string(v))
		}
	}
	return out
}

// idpDistributionPoint returns the DER of the distributionPoint [0] field of
// a CRL's issuingDistributionPoint (RFC 5280 §5.2.5), or nil when the CRL has
// no such extension or the extension has no name.
func idpDistributionPoint(t *testing.T, rl *smx509.RevocationList) []byte {
	t.Helper()
	for _, e := range rl.Extensions {
		if !e.Id.Equal(oidExtIDP) {
			continue
		}
		in := cryptobyte.String(e.Value)
		var seq, name cryptobyte.String
		if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
			t.Fatal("issuingDistributionPoint does not decode")
		}
		if !seq.ReadASN1Element(&name, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil
		}
		return name
	}
	return nil
}

// TestExtensionsA10 covers ACCEPTANCE.md A-10 for every built-in profile on
// both hierarchies: authorityKeyIdentifier equals the issuer's
// subjectKeyIdentifier, subjectKeyIdentifier present, keyUsage present and
// critical, basicConstraints critical on CA certificates, no extension
// twice; every CRL distribution point and AIA URL of the certificate is
// fetched from the running node (CRL and caIssuers with GET, OCSP with a
// POSTed request for the certificate) and answers 200 with the right
// content type; the CRL verifies under the issuer and its
// issuingDistributionPoint is byte-identical to the certificate's
// distribution point name. ldap:// URLs are served by the directory
// service, not by this node's CA service: they are listed, not fetched.
func TestExtensionsA10(t *testing.T) {
	tn := accStartNode(t, filepath.Join(t.TempDir(), "data"), testenv.FreeAddr(t), nil)
	profiles := profile.Builtin()
	keys := newAccKeys()
	ldapURLs := map[string]bool{}
	for _, name := range profile.BuiltinNames {
		p := profiles[name]
		for _, h := range []struct{ issuing, root, key string }{{"sm2-issuing", "sm2-root", "sm2"}, {"ecdsa-issuing", "ecdsa-root", "ecdsa-p256"}} {
			ca := h.issuing
			if p.Purpose == lint.PurposeCA {
				ca = h.root
			}
			allowed := false
			for _, kt := range p.KeyTypes {
				allowed = allowed || string(kt) == h.key
			}
			if !allowed {
				continue
			}
			t.Run(ca+"/"+name, func(t *testing.T) {
				is, err := a07Issue(tn, profiles, keys, a07Job{ca: ca, profile: name, key: h.key, i: 3})
				if err != nil {
					t.Fatal(err)
				}
				c, iss := is.cert, is.issuer.cert
				if errs := lint.Errors(is.findings); len(errs) > 0 {
					t.Errorf("lint errors: %v", errs)
				}
				if len(iss.SubjectKeyId) == 0 || !bytes.Equal(c.AuthorityKeyId, iss.SubjectKeyId) {
					t.Errorf("AKI % x, issuer SKI % x", c.AuthorityKeyId, iss.SubjectKeyId)
				}
				if len(c.SubjectKeyId) == 0 {
					t.Error("no subjectKeyIdentifier")
				}
				seen := map[string]bool{}
				crit := map[string]bool{}
				var crldp []byte
				for _, e := range c.Extensions {
					if seen[e.Id.String()] {
						t.Errorf("extension %s twice", e.Id)
					}
					seen[e.Id.String()], crit[e.Id.String()] = true, e.Critical
					if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 31}) {
						crldp = e.Value
					}
				}
				if !seen["2.5.29.15"] || !crit["2.5.29.15"] {
					t.Errorf("keyUsage present %v, critical %v; want both", seen["2.5.29.15"], crit["2.5.29.15"])
				}
				if c.IsCA && (!seen["2.5.29.19"] || !crit["2.5.29.19"]) {
					t.Error("CA certificate without a critical basicConstraints")
				}
				if c.IsCA != (p.Purpose == lint.PurposeCA) {
					t.Errorf("IsCA %v for purpose %s", c.IsCA, p.Purpose)
				}

				if len(c.CRLDistributionPoints) == 0 && p.Purpose != lint.PurposeOCSPSigner {
					t.Error("no CRL distribution point") // ocsp-signer: id-pkix-ocsp-nocheck instead
				}
				if crldp != nil {
					ders, uris := distributionPointNames(t, crldp)
					for i, us := range uris {
						for _, u := range us {
							if strings.HasPrefix(u, "ldap:") {
								ldapURLs[u] = true
								continue
							}
							resp, der := accGet(t, "GET", u, "", nil)
							if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
								t.Fatalf("CRLDP %s: HTTP %d, %q", u, resp.StatusCode, resp.Header.Get("Content-Type"))
							}
							rl, err := smx509.ParseRevocationList(der)
							if err != nil {
								t.Fatalf("CRLDP %s: %v", u, err)
							}
							if err := rl.CheckSignatureFrom(iss); err != nil {
								t.Errorf("CRL from %s does not verify under the issuer: %v", u, err)
							}
							t.Run("IDP", func(t *testing.T) {
								idp := idpDistributionPoint(t, rl)
								switch {
								case idp == nil:
									t.Fatalf("CRL at %s has no issuingDistributionPoint name (RFC 5280 §5.2.5); A-10 wants it byte-identical to the certificate's CRLDP % x", u, ders[i])
								case !bytes.Equal(idp, ders[i]):
									t.Fatalf("CRL at %s: issuingDistributionPoint name % x differs from the certificate's distribution point % x", u, idp, ders[i])
								}
							})
						}
					}
				}
				for _, u := range c.IssuingCertificateURL {
					if strings.HasPrefix(u, "ldap:") {
						ldapURLs[u] = true
						continue
					}
					resp, der := accGet(t, "GET", u, "", nil)
					if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-cert" || !bytes.Equal(der, iss.Raw) {
						t.Errorf("caIssuers %s: HTTP %d, %q, issuer certificate %v", u, resp.StatusCode, resp.Header.Get("Content-Type"), bytes.Equal(der, iss.Raw))
					}
				}
				if len(c.OCSPServer) == 0 && p.Purpose != lint.PurposeOCSPSigner {
					t.Error("no OCSP URL")
				}
				for _, u := range c.OCSPServer {
					req, err := ocsp.CreateRequest(c, iss, nil)
					if err != nil {
						t.Fatal(err)
					}
					resp, body := accGet(t, "POST", u, "application/ocsp-request", req)
					if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
						t.Errorf("OCSP %s: HTTP %d, %q", u, resp.StatusCode, resp.Header.Get("Content-Type"))
					}
					if _, err := ocsp.ParseResponseForCert(body, c, iss); err != nil {
						t.Errorf("OCSP %s: %v", u, err)
					}
				}
			})
		}
	}
	t.Logf("ldap:// URLs in certificates, served by the directory service and not fetched here: %v", ldapURLs)
}

// accRawName encodes a Name of one-attribute RDNs with the given string
// tags, so a test can send what Go's encoder would not (a PrintableString
// holding '&', a NUL in a UTF8String).
func accRawName(t *testing.T, attrs ...struct {
	oid asn1.ObjectIdentifier
	tag int
	v   string
}) []byte {
	t.Helper()
	var rdns pkix.RDNSequence
	for _, a := range attrs {
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: a.oid, Value: asn1.RawValue{Tag: a.tag, Bytes: []byte(a.v)}}})
	}
	der, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var (
	oidAttrCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidAttrOU = asn1.ObjectIdentifier{2, 5, 4, 11}
	// printableLine matches what openssl asn1parse prints for a
	// PrintableString whose value keeps to the X.680 §41.4 set.
	printableLine = regexp.MustCompile(`prim: PRINTABLESTRING\s+:(.*)$`)
	printableSet  = regexp.MustCompile(`^[A-Za-z0-9 '()+,\-./:=?]*$`)
)

// accASN1Strings runs openssl asn1parse on a PEM certificate and returns its
// output; it fails the test if a PrintableString holds a character outside
// the PrintableString set.
func accASN1Strings(t *testing.T, dir, name, pemCert string) string {
	t.Helper()
	out := openssl(t, "asn1parse", "-in", writeFile(t, dir, name, pemCert))
	for _, line := range strings.Split(out, "\n") {
		if m := printableLine.FindStringSubmatch(strings.TrimRight(line, " ")); m != nil && !printableSet.MatchString(m[1]) {
			t.Errorf("%s: PrintableString %q outside the PrintableString character set", name, m[1])
		}
	}
	return out
}

// TestCSRFieldAbuseA06 covers ACCEPTANCE.md A-06 through the API: abusive
// requests made with OpenSSL or by hand are refused with a 4xx and nothing
// is stored, or issued with only what the profile controls: no CA bit, no
// keyCertSign, no request-chosen critical or unknown extension, and legal
// string types (openssl asn1parse: UTF8String for Chinese, a '&' sent in a
// PrintableString re-encoded as UTF8String, every PrintableString within
// its character set).
func TestCSRFieldAbuseA06(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()
	ecKey := filepath.Join(dir, "ec.key")
	openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ecKey)
	sm2Key := filepath.Join(dir, "sm2.key")
	openssl(t, "genpkey", "-algorithm", "SM2", "-out", sm2Key)
	goKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	opensslCSR := func(t *testing.T, key string, args ...string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".csr")
		base := []string{"req", "-new", "-key", key, "-utf8", "-out", p}
		if key == sm2Key {
			base = append(base, "-sm3", "-sigopt", "distid:1234567812345678")
		}
		openssl(t, append(base, args...)...)
		return readFile(t, p)
	}
	type attr = struct {
		oid asn1.ObjectIdentifier
		tag int
		v   string
	}
	bc, _ := asn1.Marshal(struct{ CA bool }{true})
	stored := func() int { return tn.count("SELECT COUNT(*) FROM ca_certificates") }

	refused := []struct {
		name string
		csr  func(t *testing.T) string
		want int
		msg  string
	}{
		// OpenSSL itself refuses to write names over the upper bound, so
		// these requests are made by hand.
		{"CN of 65 characters", func(t *testing.T) string {
			return csrPEM(mustCSR(t, goKey, &smx509.CertificateRequest{RawSubject: accRawName(t, attr{oidAttrCN, asn1.TagPrintableString, strings.Repeat("a", 65)})}))
		}, http.StatusUnprocessableEntity, "more than 64"},
		{"OU of 65 Chinese characters", func(t *testing.T) string {
			return csrPEM(mustCSR(t, goKey, &smx509.CertificateRequest{RawSubject: accRawName(t, attr{oidAttrCN, asn1.TagUTF8String, "app"}, attr{oidAttrOU, asn1.TagUTF8String, strings.Repeat("科", 65)})}))
		}, http.StatusUnprocessableEntity, "more than 64"},
		{"NUL in CN", func(t *testing.T) string {
			return csrPEM(mustCSR(t, goKey, &smx509.CertificateRequest{RawSubject: accRawName(t, attr{oidAttrCN, asn1.TagUTF8String, "app\x00.evil.example"})}))
		}, http.StatusUnprocessableEntity, "control character"},
		{"escape sequence in OU", func(t *testing.T) string {
			return csrPEM(mustCSR(t, goKey, &smx509.CertificateRequest{RawSubject: accRawName(t, attr{oidAttrCN, asn1.TagUTF8String, "app"}, attr{oidAttrOU, asn1.TagUTF8String, "ops\x1b[31m"})}))
		}, http.StatusUnprocessableEntity, "control character"},
		{"RTL override in CN", func(t *testing.T) string {
			return opensslCSR(t, ecKey, "-subj", "/CN=gpj.\u202eexe")
		}, http.StatusUnprocessableEntity, "bidirectional"},
		{"duplicate extension", func(t *testing.T) string {
			return csrPEM(mustCSR(t, goKey, &smx509.CertificateRequest{Subject: pkix.Name{CommonName: "app"},
				ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}, {Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}}}))
		}, http.StatusBadRequest, "duplicate"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			before := stored()
			status, _, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: tc.csr(t), Profile: "client-tls"}, "")
			if status != tc.want || !strings.Contains(string(raw), tc.msg) {
				t.Fatalf("status %d: %s; want %d mentioning %q", status, raw, tc.want, tc.msg)
			}
			if n := stored(); n != before {
				t.Errorf("ca_certificates went from %d to %d rows", before, n)
			}
		})
	}

	// Requests asking for a CA certificate, keyCertSign, an unknown
	// critical extension: issued, with the profile's extensions only.
	for _, tc := range []struct{ name, ca, key string }{{"ECDSA", "ecdsa-issuing", ecKey}, {"SM2", "sm2-issuing", sm2Key}} {
		t.Run("CA bit, keyCertSign and unknown critical extension ignored/"+tc.name, func(t *testing.T) {
			csr := opensslCSR(t, tc.key, "-subj", "/CN=审批系统/OU=信息中心",
				"-addext", "basicConstraints=critical,CA:TRUE,pathlen:5",
				"-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
				"-addext", "nameConstraints=critical,permitted;DNS:evil.example",
				"-addext", "1.2.3.4.5.6=critical,DER:0500")
			status, out, raw := tn.issue(tc.ca, IssueRequest{CSR: csr, Profile: "client-tls", Record: map[string]string{"O": "某某市人民政府"}}, "")
			if status != http.StatusCreated {
				t.Fatalf("status %d: %s", status, raw)
			}
			leaf := writeFile(t, dir, tc.name+"-leaf.pem", out.Certificate)
			text := openssl(t, "x509", "-in", leaf, "-noout", "-text")
			for _, bad := range []string{"CA:TRUE", "Certificate Sign", "CRL Sign", "Name Constraints", "1.2.3.4.5.6", "pathlen"} {
				if strings.Contains(text, bad) {
					t.Errorf("issued certificate contains %q:\n%s", bad, text)
				}
			}
			cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
			if err != nil {
				t.Fatal(err)
			}
			// The only critical extension client-tls writes is keyUsage.
			for _, e := range cert.Extensions {
				if e.Critical && !e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 15}) {
					t.Errorf("critical extension %s the profile does not write", e.Id)
				}
			}
			if cert.IsCA || cert.KeyUsage != smx509.KeyUsageDigitalSignature {
				t.Errorf("IsCA %v, key usage %b; want a leaf with digitalSignature only", cert.IsCA, cert.KeyUsage)
			}
			asn := accASN1Strings(t, dir, tc.name+"-leaf.pem", out.Certificate)
			for _, want := range []string{"UTF8STRING        :审批系统", "UTF8STRING        :信息中心", "UTF8STRING        :某某市人民政府", "PRINTABLESTRING   :CN"} {
				if !strings.Contains(asn, want) {
					t.Errorf("asn1parse lacks %q:\n%s", want, asn)
				}
			}
		})
	}

	t.Run("ampersand in a PrintableString re-encoded as UTF8String", func(t *testing.T) {
		csr := csrPEM(mustCSR(t, goKey, &smx509.CertificateRequest{RawSubject: accRawName(t,
			attr{oidAttrCN, asn1.TagPrintableString, "R&D gateway"}, attr{oidAttrOU, asn1.TagPrintableString, "R&D"})}))
		if strings.Contains(openssl(t, "asn1parse", "-in", writeFile(t, dir, "amp.csr", csr)), "PRINTABLESTRING   :R&D") == false {
			t.Fatal("the request does not carry '&' in a PrintableString")
		}
		status, out, raw := tn.issue("ecdsa-issuing", IssueRequest{CSR: csr, Profile: "client-tls"}, "")
		if status != http.StatusCreated {
			t.Fatalf("status %d: %s", status, raw)
		}
		asn := accASN1Strings(t, dir, "amp-leaf.pem", out.Certificate)
		for _, want := range []string{"UTF8STRING        :R&D gateway", "UTF8STRING        :R&D"} {
			if !strings.Contains(asn, want) {
				t.Errorf("asn1parse lacks %q:\n%s", want, asn)
			}
		}
	})
}

// rawSubjectValues returns each attribute of a DER Name as OID → (tag,
// value octets).
func rawSubjectValues(t *testing.T, name []byte) map[string]struct {
	tag cbasn1.Tag
	v   []byte
} {
	t.Helper()
	out := map[string]struct {
		tag cbasn1.Tag
		v   []byte
	}{}
	in := cryptobyte.String(name)
	var rdns cryptobyte.String
	if !in.ReadASN1(&rdns, cbasn1.SEQUENCE) {
		t.Fatal("Name does not decode")
	}
	for !rdns.Empty() {
		var set, atv cryptobyte.String
		var oid asn1.ObjectIdentifier
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !rdns.ReadASN1(&set, cbasn1.SET) || !set.ReadASN1(&atv, cbasn1.SEQUENCE) ||
			!atv.ReadASN1ObjectIdentifier(&oid) || !atv.ReadAnyASN1(&v, &tag) {
			t.Fatal("RDN does not decode")
		}
		out[oid.String()] = struct {
			tag cbasn1.Tag
			v   []byte
		}{tag, v}
	}
	return out
}

// TestChineseNamesA13 covers the CA part of ACCEPTANCE.md A-13: a
// certificate with O, OU and CN in Chinese (from the RA's record, requested
// with OpenSSL) carries the same UTF-8 octets in the DER (as UTF8String),
// in the API's answer (GET .../certificates/{serial}, raw JSON octets and
// decoded), and in `openssl x509 -nameopt utf8,sep_comma_plus -subject`.
// The LDAP and portal views belong to the directory and portal tests.
func TestChineseNamesA13(t *testing.T) {
	tn := startNode(t, filepath.Join(t.TempDir(), "data"))
	dir := t.TempDir()
	names := map[string]string{"O": "福建省某某市人民政府", "OU": "大数据管理局（信息中心）", "CN": "某某市政务服务中心·电子签名"}
	oids := map[string]string{"O": "2.5.4.10", "OU": "2.5.4.11", "CN": "2.5.4.3"}
	rec := map[string]string{"O": names["O"], "OU": names["OU"], "CN": names["CN"], "ST": "福建省", "L": "福州市", "uscc": "91350100M000100Y43"}
	for _, tc := range []struct{ ca, alg string }{{"sm2-issuing", "SM2"}, {"ecdsa-issuing", "EC"}} {
		t.Run(tc.ca, func(t *testing.T) {
			key := filepath.Join(dir, tc.alg+".key")
			csr := filepath.Join(dir, tc.alg+".csr")
			if tc.alg == "SM2" {
				openssl(t, "genpkey", "-algorithm", "SM2", "-out", key)
				openssl(t, "req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678", "-utf8", "-subj", "/CN="+names["CN"]+"/O="+names["O"], "-out", csr)
			} else {
				openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
				openssl(t, "req", "-new", "-key", key, "-utf8", "-subj", "/CN="+names["CN"]+"/O="+names["O"], "-out", csr)
			}
			status, out, raw := tn.issue(tc.ca, IssueRequest{CSR: readFile(t, csr), Profile: "org-sign", Record: rec}, "")
			if status != http.StatusCreated {
				t.Fatalf("status %d: %s", status, raw)
			}
			cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
			if err != nil {
				t.Fatal(err)
			}
			der := rawSubjectValues(t, cert.RawSubject)
			for k, v := range names {
				got := der[oids[k]]
				if got.tag != cbasn1.UTF8String || !bytes.Equal(got.v, []byte(v)) {
					t.Errorf("DER %s: tag %d, octets % x; want UTF8String % x", k, got.tag, got.v, []byte(v))
				}
			}

			status, body := tn.do("GET", "/api/v1/ca/"+tc.ca+"/certificates/"+out.Serial, "ra", nil, nil)
			if status != http.StatusOK {
				t.Fatalf("GET: %d %s", status, body)
			}
			var got CertificateResponse
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range names {
				// The JSON carries the UTF-8 octets themselves, not \u escapes.
				if !bytes.Contains(body, []byte(k+"="+v)) || !strings.Contains(got.Subject, k+"="+v) {
					t.Errorf("API subject %q (raw %q) lacks %s=%s", got.Subject, body, k, v)
				}
			}

			subj := openssl(t, "x509", "-in", writeFile(t, dir, tc.alg+"-leaf.pem", out.Certificate), "-noout", "-subject", "-nameopt", "utf8,sep_comma_plus")
			for k, v := range names {
				if !strings.Contains(subj, k+"="+v) {
					t.Errorf("openssl -subject %q lacks %s=%s", subj, k, v)
				}
			}
			if strings.Contains(subj, `\`) {
				t.Errorf("openssl escaped the name (mojibake or escapes): %q", subj)
			}
		})
	}
}

// validityTimes returns the tags and texts of notBefore and notAfter as
// openssl asn1parse prints them (the first two times in the certificate).
func validityTimes(t *testing.T, dir, name, pemCert string) []string {
	t.Helper()
	var out []string
	re := regexp.MustCompile(`prim: (UTCTIME|GENERALIZEDTIME)\s+:(\S+)`)
	for _, m := range re.FindAllStringSubmatch(openssl(t, "asn1parse", "-in", writeFile(t, dir, name, pemCert)), -1) {
		out = append(out, m[1]+" "+m[2])
	}
	if len(out) != 2 {
		t.Fatalf("asn1parse shows %d times, want notBefore and notAfter: %v", len(out), out)
	}
	return out
}

// TestValidityA09 covers ACCEPTANCE.md A-09 on a node whose clock is
// injected (fake), on both hierarchies:
//   - the 2049/2050 boundary of RFC 5280 §4.1.2.5: a notAfter of
//     2049-12-31 23:59:59 is the UTCTime 491231235959Z, one second later the
//     GeneralizedTime 20500101000000Z, both with seconds and Z
//     (openssl asn1parse);
//   - notBefore is the signing time minus the profile's one-hour backdate
//     (within BR §7.1.2.7's 48 hours) and the period is exactly the
//     profile's maximum; the API takes no requested validity (an extra
//     field is a 400), so a longer one cannot be asked for;
//   - near the end of the issuing CA, notAfter is clamped to the issuer's
//     notAfter, never beyond; after it, issuance is refused (422).
//
// Reaching the end of the issuing CA takes ten years of fake time, longer
// than any API token lives (authz.MaxTokenTTL), so the test renews the
// security administrator's and the RA's tokens through POST /api/v1/tokens
// as it goes.
func TestValidityA09(t *testing.T) {
	person := profile.Builtin()["person-sign"]
	validity := time.Duration(person.Validity)
	backdate := time.Duration(person.Backdate)
	boundary := time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)
	// Signing at c1 gives notAfter = c1 − backdate + validity − 1 s
	// = 2049-12-31 23:59:59.
	c1 := boundary.Add(-validity + backdate)
	clk := clock.NewFake(c1.Add(-24 * time.Hour))
	tn := accStartNode(t, filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", clk)
	dir := t.TempDir()
	keys := newAccKeys()

	issue := func(t *testing.T, ca, kind string) (int, *IssueResponse, []byte) {
		t.Helper()
		csr := csrPEM(mustCSR(t, keys.mustKey(t, kind), &smx509.CertificateRequest{}))
		return tn.issue(ca, IssueRequest{CSR: csr, Profile: "person-sign", Record: accRecord(0)}, "")
	}
	hierarchies := []struct{ ca, key string }{{"sm2-issuing", "sm2"}, {"ecdsa-issuing", "ecdsa-p256"}}

	for _, h := range hierarchies {
		t.Run("2050 boundary/"+h.ca, func(t *testing.T) {
			for _, tc := range []struct {
				now  time.Time
				want string
			}{
				{c1, "UTCTIME 491231235959Z"},
				{c1.Add(time.Second), "GENERALIZEDTIME 20500101000000Z"},
			} {
				clk.Set(tc.now)
				status, out, raw := issue(t, h.ca, h.key)
				if status != http.StatusCreated {
					t.Fatalf("status %d: %s", status, raw)
				}
				times := validityTimes(t, dir, h.ca+"-boundary.pem", out.Certificate)
				nb := "UTCTIME " + tc.now.Add(-backdate).Format("060102150405Z")
				if times[0] != nb || times[1] != tc.want {
					t.Errorf("signed at %s: validity %v, want [%s %s]", tc.now, times, nb, tc.want)
				}
				cert, err := smx509.ParseCertificate(pemDER(t, out.Certificate))
				if err != nil {
					t.Fatal(err)
				}
				if d := tc.now.Sub(cert.NotBefore); d < 0 || d > 48*time.Hour {
					t.Errorf("notBefore %s is %s before signing", cert.NotBefore, d)
				}
				if got := cert.NotAfter.Sub(cert.NotBefore) + time.Second; got != validity {
					t.Errorf("period %s, want the profile's %s", got, validity)
				}
				if errs := lint.Errors(lint.Certificate(cert, tn.svc.cas[h.ca].cert)); len(errs) > 0 {
					t.Errorf("lint errors: %v", errs)
				}
			}
		})
	}

	t.Run("no requested validity in the API", func(t *testing.T) {
		before := tn.count("SELECT COUNT(*) FROM ca_certificates")
		csr := csrPEM(mustCSR(t, keys.mustKey(t, "sm2"), &smx509.CertificateRequest{}))
		body := map[string]any{"csr": csr, "profile": "person-sign", "record": accRecord(0), "validity": "3650d"}
		if status, raw := tn.do("POST", "/api/v1/ca/sm2-issuing/certificates", "ra", body, nil); status != http.StatusBadRequest {
			t.Fatalf("status %d: %s; want 400 for the unknown field", status, raw)
		}
		if n := tn.count("SELECT COUNT(*) FROM ca_certificates"); n != before {
			t.Errorf("ca_certificates went from %d to %d", before, n)
		}
	})

	// Walk the clock to 100 days before the issuing CAs end, renewing the
	// tokens every 300 days.
	end := tn.svc.cas["sm2-issuing"].cert.NotAfter
	if e := tn.svc.cas["ecdsa-issuing"].cert.NotAfter; e.Before(end) {
		end = e
	}
	target := end.Add(-100 * 24 * time.Hour)
	renew := func(t *testing.T) {
		t.Helper()
		// The security administrator manages tokens (三员分立), its own last.
		for _, role := range []string{"ra", "secadmin"} {
			status, raw := tn.do("POST", "/api/v1/tokens", "secadmin", map[string]any{"account": role, "name": "a09-" + role, "ttl": "8760h"}, nil)
			if status != http.StatusCreated {
				t.Fatalf("renew %s token: status %d: %s", role, status, raw)
			}
			var out struct{ Token string }
			if err := json.Unmarshal(raw, &out); err != nil || out.Token == "" {
				t.Fatalf("renew %s token: %s", role, raw)
			}
			tn.tokens[role] = out.Token
		}
	}
	for clk.Now().Before(target) {
		renew(t)
		next := clk.Now().Add(300 * 24 * time.Hour)
		if next.After(target) {
			next = target
		}
		clk.Set(next)
	}
	renew(t)

	for _, h := range hierarchies {
		t.Run("clamped to the issuer/"+h.ca, func(t *testing.T) {
			issuer := tn.svc.cas[h.ca].cert
			clk.Set(issuer.NotAfter.Add(-100 * 24 * time.Hour))
			status, out, raw := issue(t, h.ca, h.key)
			if status != http.StatusCreated {
				t.Fatalf("status %d: %s", status, raw)
			}
			leaf := writeFile(t, dir, h.ca+"-clamped.pem", out.Certificate)
			iss := writeFile(t, dir, h.ca+"-issuer.pem", out.Chain[0])
			if got, want := openssl(t, "x509", "-in", leaf, "-noout", "-enddate"), openssl(t, "x509", "-in", iss, "-noout", "-enddate"); got != want {
				t.Errorf("leaf %s, issuer %s: want the issuer's notAfter", strings.TrimSpace(got), strings.TrimSpace(want))
			}
			times := validityTimes(t, dir, h.ca+"-clamped.pem", out.Certificate)
			if !strings.HasPrefix(times[1], "GENERALIZEDTIME ") || !strings.HasSuffix(times[1], "Z") || len(times[1]) != len("GENERALIZEDTIME 20550101000000Z") {
				t.Errorf("notAfter %s: want a GeneralizedTime with seconds and Z", times[1])
			}
		})
		t.Run("refused after the issuer's end/"+h.ca, func(t *testing.T) {
			clk.Set(tn.svc.cas[h.ca].cert.NotAfter.Add(time.Hour))
			before := tn.count("SELECT COUNT(*) FROM ca_certificates")
			status, _, raw := issue(t, h.ca, h.key)
			if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "not valid at") {
				t.Fatalf("status %d: %s; want 422: the issuing CA is not valid", status, raw)
			}
			if n := tn.count("SELECT COUNT(*) FROM ca_certificates"); n != before {
				t.Errorf("ca_certificates went from %d to %d", before, n)
			}
		})
	}
}
