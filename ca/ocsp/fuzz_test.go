package ocsp

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata/fuzz and its issuer certificates")

// Issuers of the committed response seeds (certificates only; the keys are
// thrown away when -update writes the corpus).
var seedIssuerFiles = []string{"testdata/seed-issuer-sm2.pem", "testdata/seed-issuer-ecdsa.pem"}

func loadSeedIssuers(t testing.TB) []*smx509.Certificate {
	t.Helper()
	var out []*smx509.Certificate
	for _, f := range seedIssuerFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("seed issuer: %v (go test -run TestFuzzSeeds -update writes it)", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", f)
		}
		c, err := smx509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// FuzzParseRequest: no panic, every error wraps ErrMalformedRequest, and an
// accepted request keeps its invariants and survives re-encoding.
func FuzzParseRequest(f *testing.F) {
	p := pkiFor(f, "SM2")
	for _, h := range []HashAlg{SHA1, SM3} {
		der, err := CreateRequest(p.leaf, p.ca, &RequestOptions{Hash: h, Nonce: []byte("fuzz-nonce-16oct")})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		in := bytes.Clone(der)
		r, err := ParseRequest(der)
		if !bytes.Equal(in, der) {
			t.Fatal("ParseRequest modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedRequest) {
				t.Fatalf("error does not wrap ErrMalformedRequest: %v", err)
			}
			return
		}
		if r.SerialNumber == nil || !r.HashAlgorithm.Valid() ||
			len(r.IssuerNameHash) != r.HashAlgorithm.Size() || len(r.IssuerKeyHash) != r.HashAlgorithm.Size() {
			t.Fatalf("accepted an inconsistent request: %+v", r)
		}
		if r.Nonce != nil && (len(r.Nonce) < MinNonceLen || len(r.Nonce) > MaxNonceLen) {
			t.Fatalf("accepted a nonce of %d octets", len(r.Nonce))
		}
		if !bytes.Equal(r.Raw, der) {
			t.Fatal("Raw differs from the input")
		}
		r.MatchesIssuer(p.ca)
		enc := encodeRequest(t, r)
		r2, err := ParseRequest(enc)
		if err != nil {
			t.Fatalf("re-encoded request refused: %v", err)
		}
		if r2.HashAlgorithm != r.HashAlgorithm || r2.SerialNumber.Cmp(r.SerialNumber) != 0 ||
			!bytes.Equal(r2.IssuerNameHash, r.IssuerNameHash) || !bytes.Equal(r2.IssuerKeyHash, r.IssuerKeyHash) ||
			!bytes.Equal(r2.Nonce, r.Nonce) {
			t.Fatal("re-encoded request reads differently")
		}
		if !bytes.Equal(encodeRequest(t, r2), enc) {
			t.Fatal("encoding is not stable")
		}
	})
}

// FuzzParseResponse: no panic for any issuer, and an accepted response is
// consistent, names the issuer and parses the same again.
func FuzzParseResponse(f *testing.F) {
	// The committed corpus (testdata/fuzz/FuzzParseResponse) was signed
	// under these issuers; the seeds are all the target needs.
	issuers := loadSeedIssuers(f)
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, iss := range issuers {
			r, err := ParseResponse(der, iss)
			if err != nil {
				var re *ResponseError
				if errors.As(err, &re) && (re.Status == Successful || !re.Status.defined()) {
					t.Fatalf("ResponseError with status %v", re.Status)
				}
				continue
			}
			if r.SerialNumber == nil || r.Status < Good || r.Status > Unknown || r.ProducedAt.IsZero() || r.ThisUpdate.IsZero() {
				t.Fatalf("accepted an inconsistent response: %+v", r)
			}
			if (r.Status == Revoked) == r.RevokedAt.IsZero() {
				t.Fatal("revocation time and status disagree")
			}
			if r.RevocationReason != NoReason && !validReason(r.RevocationReason) {
				t.Fatalf("reason %d", r.RevocationReason)
			}
			if !certIDMatches(certID{hash: r.HashAlgorithm, nameHash: r.IssuerNameHash, keyHash: r.IssuerKeyHash}, iss) {
				t.Fatal("accepted a response for another issuer")
			}
			if !bytes.Equal(r.Raw, der) || !bytes.Contains(der, r.TBSResponseData) {
				t.Fatal("Raw or TBSResponseData do not come from the input")
			}
			r2, err := ParseResponse(r.Raw, iss)
			if err != nil || r2.Status != r.Status || r2.SerialNumber.Cmp(r.SerialNumber) != 0 {
				t.Fatalf("second parse differs: %v", err)
			}
		}
	})
}

// seed is one committed corpus entry: its kind (valid, invalid, error) is
// in the file name and checked by TestFuzzSeeds.
type seed struct {
	name string
	der  []byte
}

func writeCorpus(t *testing.T, target string, seeds []seed) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.der)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readCorpus(t *testing.T, target string) []seed {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%v (go test -run TestFuzzSeeds -update writes it)", err)
	}
	var out []seed
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
			t.Fatalf("%s: not a []byte corpus file", e.Name())
		}
		v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, seed{e.Name(), []byte(v)})
	}
	return out
}

// TestFuzzSeeds checks the committed corpus: "valid-" seeds parse,
// "invalid-" ones are refused, "error-" responses are unsigned error
// answers. With -update it first rewrites the corpus from a fresh test PKI,
// CreateRequest/CreateResponse, hand-built bad encodings and OpenSSL.
func TestFuzzSeeds(t *testing.T) {
	if *update {
		writeSeeds(t)
	}
	issuers := loadSeedIssuers(t)
	for _, s := range readCorpus(t, "FuzzParseRequest") {
		t.Run("request/"+s.name, func(t *testing.T) {
			_, err := ParseRequest(s.der)
			switch {
			case strings.HasPrefix(s.name, "valid-") && err != nil:
				t.Errorf("refused: %v", err)
			case strings.HasPrefix(s.name, "invalid-") && err == nil:
				t.Error("accepted")
			}
		})
	}
	for _, s := range readCorpus(t, "FuzzParseResponse") {
		t.Run("response/"+s.name, func(t *testing.T) {
			iss := issuers[0]
			if strings.Contains(s.name, "ecdsa") {
				iss = issuers[1]
			}
			_, err := ParseResponse(s.der, iss)
			var re *ResponseError
			switch {
			case strings.HasPrefix(s.name, "valid-") && err != nil:
				t.Errorf("refused: %v", err)
			case strings.HasPrefix(s.name, "invalid-") && err == nil:
				t.Error("accepted")
			case strings.HasPrefix(s.name, "error-") && !errors.As(err, &re):
				t.Errorf("err = %v, want a ResponseError", err)
			}
		})
	}
}

func writeSeeds(t *testing.T) {
	var reqs, resps []seed
	now := time.Now()
	for i, alg := range []string{"SM2", "ECDSA"} {
		p := newTestPKI(t, alg)
		a := strings.ToLower(alg)
		writePEM(t, seedIssuerFiles[i], "CERTIFICATE", p.ca.Raw)

		// Requests: ours, OpenSSL's, and hand-built bad ones.
		for _, h := range []HashAlg{SHA1, SHA256, SM3} {
			for _, nonce := range [][]byte{nil, []byte("0123456789abcdef")} {
				der, err := CreateRequest(p.leaf, p.ca, &RequestOptions{Hash: h, Nonce: nonce})
				if err != nil {
					t.Fatal(err)
				}
				reqs = append(reqs, seed{fmt.Sprintf("valid-%s-%v-nonce%d", a, h, len(nonce)), der})
			}
		}
		dir := t.TempDir()
		p.writeFiles(t, dir)
		for _, h := range []HashAlg{SHA1, SHA256, SM3} {
			for _, nf := range []string{"-no_nonce", "-nonce"} {
				if out, err := openssl(t, dir, "ocsp", "-issuer", "ca.pem", digestFlag(h), "-cert", "leaf.pem", "-reqout", "req.der", nf); err != nil {
					t.Fatalf("openssl: %v\n%s", err, out)
				}
				der, err := os.ReadFile(filepath.Join(dir, "req.der"))
				if err != nil {
					t.Fatal(err)
				}
				reqs = append(reqs, seed{fmt.Sprintf("valid-openssl-%s-%v%s", a, h, nf), der})
			}
		}
		id := p.idFor(t, SHA1)
		crit := pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: nullDER}
		good, _ := CreateRequest(p.leaf, p.ca, nil)
		for name, der := range map[string][]byte{
			"valid-signed-named":        buildRequest(reqSpec{ids: []certID{id}, name: true, signature: true}),
			"invalid-two-requests":      buildRequest(reqSpec{ids: []certID{id, id}}),
			"invalid-critical-ext":      buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{crit}}),
			"invalid-version-explicit":  buildRequest(reqSpec{version: ptr[int64](0), ids: []certID{id}}),
			"invalid-version-2":         buildRequest(reqSpec{version: ptr[int64](1), ids: []certID{id}}),
			"invalid-nonce-0":           buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{nonceExtension([]byte{})}}),
			"invalid-nonce-33":          buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{nonceExtension(make([]byte, 33))}}),
			"invalid-nonce-129":         buildRequest(reqSpec{ids: []certID{id}, exts: []pkix.Extension{nonceExtension(make([]byte, 129))}}),
			"invalid-trailing":          append(bytes.Clone(good), 0),
			"invalid-truncated":         good[:len(good)-1],
			"invalid-empty-requestlist": buildRequest(reqSpec{}),
		} {
			reqs = append(reqs, seed{name + "-" + a, der})
		}

		// Responses.
		for _, delegated := range []bool{true, false} {
			for _, c := range []struct {
				name   string
				status Status
				reason int
				h      HashAlg
			}{
				{"good", Good, NoReason, SHA1},
				{"revoked", Revoked, ReasonKeyCompromise, SM3},
				{"revoked-noreason", Revoked, NoReason, SHA256},
				{"unknown", Unknown, NoReason, SM3},
			} {
				tmpl := p.baseTemplate(now)
				tmpl.Status, tmpl.HashAlgorithm, tmpl.Nonce = c.status, c.h, []byte("0123456789abcdef")
				if c.status == Revoked {
					tmpl.RevokedAt, tmpl.RevocationReason = now.Add(-time.Hour), c.reason
				}
				responder, key := p.signer, p.signerKey
				if !delegated {
					responder, key = p.ca, p.caKey
				}
				der, err := CreateResponse(p.ca, responder, tmpl, key)
				if err != nil {
					t.Fatal(err)
				}
				resps = append(resps, seed{fmt.Sprintf("valid-%s-delegated%v-%s", a, delegated, c.name), der})
			}
		}
		good2, _ := CreateResponse(p.ca, p.signer, p.baseTemplate(now), p.signerKey)
		r, err := ParseResponse(good2, p.ca)
		if err != nil {
			t.Fatal(err)
		}
		tampered := bytes.Clone(r.TBSResponseData)
		tampered[len(tampered)-3] ^= 1
		resps = append(resps,
			seed{"invalid-" + a + "-tampered", assemble(tampered, r.SignatureAlgorithmOID, nil, r.Signature, p.signer)},
			seed{"invalid-" + a + "-no-signer-cert", assemble(r.TBSResponseData, r.SignatureAlgorithmOID, nil, r.Signature)},
			seed{"invalid-" + a + "-trailing", append(bytes.Clone(good2), 0)},
			seed{"invalid-" + a + "-truncated", good2[:len(good2)-10]},
		)
	}
	for _, s := range []ResponseStatus{MalformedRequest, InternalError, TryLater, SigRequired, Unauthorized} {
		resps = append(resps, seed{"error-" + s.String(), CreateErrorResponse(s)})
	}
	writeCorpus(t, "FuzzParseRequest", reqs)
	writeCorpus(t, "FuzzParseResponse", resps)
}
