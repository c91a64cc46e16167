package lint

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	zx509 "github.com/zmap/zcrypto/x509"
	_ "github.com/zmap/zlint/v3" // registers the lints
	zl "github.com/zmap/zlint/v3/lint"
)

// zlint runs alongside govtrust's own lints on ECDSA and RSA certificates.
// Its parser (zcrypto) refuses SM2 keys ("unsupported elliptic curve",
// INTEROP.md §1), so SM2 certificates get only the own lints, which cover
// the same RFC 5280 ground structurally and the BR's TLS server
// certificate shape (lints_br.go).
//
// Which zlint sources run (ZlintSources), and why:
//
//   - every certificate: the RFC sources (RFC 5280, RFC 3279, RFC 5480,
//     RFC 5891, RFC 6962, RFC 8813) and Community, the sources that state
//     what any X.509 certificate must look like;
//   - TLS server certificates (PurposeTLSServer) also CABF_BR: server-tls
//     follows the Baseline Requirements' certificate shape (RELIABILITY.md
//     §1.3) so that browsers and TLS libraries accept it;
//   - never CABF_SMIME_BR, CABF_CS_BR, CABF_EV, ETSI_ESI, Mozilla, Apple,
//     Chrome: govtrust's certificates are not issued under the S/MIME, code
//     signing or EV guidelines (they carry none of their 2.23.140.1 policy
//     OIDs, and the personal certificates follow GM/T 0015 instead), nor
//     under eIDAS or a browser root program. zlint's own framework would
//     apply the BR lints to every certificate without extendedKeyUsage
//     (sub-CAs, seal makers), which is why the sources are chosen by
//     purpose rather than left to zlint.
//
// Excluded lints (zlintExcluded) are named with the reason.
//
// zlint errors and fatals are Error findings and refuse issuance; warnings
// are Warning and notices Notice findings. Findings are named
// "zlint/<zlint lint name>".
var (
	zlintBase = zl.SourceList{zl.RFC5280, zl.RFC3279, zl.RFC5480, zl.RFC5891, zl.RFC6962, zl.RFC8813, zl.Community}
	zlintTLS  = zl.SourceList{zl.CABFBaselineRequirements}
)

// zlintExclusion is one zlint lint govtrust does not run, for which
// purposes (none listed: every purpose), and why.
type zlintExclusion struct {
	purposes []Purpose
	why      string
}

// zlintExcluded are the zlint lints that contradict a deliberate govtrust
// rule, each with the reason. Everything else in the chosen sources runs;
// its warnings are findings that tests must justify one by one.
var zlintExcluded = map[string]zlintExclusion{
	// The lint verifies the certificate's signature against the keys of
	// eight compromised eMudhra intermediates: eight ECDSA P-384
	// verifications, 5.6 of the 7.6 ms zlint took per certificate
	// (BenchmarkZlintOnly). A pre-issuance certificate is signed with
	// govtrust's throw-away key, and issued ones with govtrust's own CA
	// keys, so it can only pass.
	"e_cert_issued_by_compromised_emudhra_ca": {nil,
		"checks for signatures by eMudhra's compromised CA keys; govtrust certificates are signed by govtrust keys (and linted under a throw-away key), so it can only pass, at 5.6 ms a certificate"},
	// BR §7.1.2.7.9 wants a CA/B Forum reserved policy OID
	// (2.23.140.1.2.x) in every server certificate. Writing one would claim
	// the certificate was validated under BR §3.2.2.4 (domain validation by
	// the CA), which a government RA does not do: govtrust's TLS
	// certificates come from a private hierarchy that relying parties
	// install deliberately, and certificatePolicies is profile-controlled.
	"e_sub_cert_certificate_policies_missing": {[]Purpose{PurposeTLSServer},
		"no CA/B Forum policy OID: not issued under BR §3.2.2.4 domain validation (private government hierarchy)"},
	"e_sub_cert_cert_policy_empty": {[]Purpose{PurposeTLSServer},
		"no CA/B Forum policy OID: not issued under BR §3.2.2.4 domain validation (private government hierarchy)"},
}

// zlintKUEKU is waived for certificates in the GM/T 0015 signing shape.
// zlint accepts only the key usage sets its table lists for each EKU (for
// clientAuth: digitalSignature and/or keyAgreement); RFC 5280 §4.2.1.12
// asks that the certificate be used only for a purpose consistent with
// both extensions. A GM/T 0015 signing certificate has exactly
// digitalSignature and nonRepudiation (lint e_gmt0015_sign_ku) and uses
// digitalSignature for TLS client authentication (GM/T 0024 §7.3.1.1.1),
// which is consistent with both; nonRepudiation covers the document
// signatures it also makes.
const (
	zlintKUEKU    = "e_key_usage_and_extended_key_usage_inconsistent"
	zlintKUEKUWhy = "waived for end-entity certificates with key usage exactly digitalSignature+nonRepudiation (GM/T 0015 signing) and EKUs among clientAuth, emailProtection: clientAuth uses digitalSignature, consistent with both extensions (RFC 5280 §4.2.1.12)"
)

// gmSigningShape reports whether the certificate is a GM/T 0015 signing
// certificate as the sign profiles make it.
func (c *ctx) gmSigningShape() bool {
	if c.isCA || !c.kuOK || c.ku != gmSignBits || !c.ekuOK {
		return false
	}
	for _, id := range c.eku {
		if !id.Equal(oidEKUClientAuth) && !id.Equal(oidEKUEmailProtection) {
			return false
		}
	}
	return true
}

// ZlintExclusions lists the zlint lints not run (or whose verdict is
// waived) for a purpose, with the reason for each.
func ZlintExclusions(p Purpose) map[string]string {
	out := map[string]string{zlintKUEKU: zlintKUEKUWhy}
	for n, e := range zlintExcluded {
		if e.appliesTo(p) {
			out[n] = e.why
		}
	}
	return out
}

// zlintPurpose is the purpose that selects zlint's sources: the profile's,
// or for a certificate linted without one (Certificate), tls-server when it
// has id-kp-serverAuth, so a re-lint runs the BR lints the issuance ran.
func (c *ctx) zlintPurpose() Purpose {
	if c.exp.Purpose == "" && c.hasEKUOID(oidEKUServerAuth) {
		return PurposeTLSServer
	}
	return c.exp.Purpose
}

func (e zlintExclusion) appliesTo(p Purpose) bool {
	if len(e.purposes) == 0 {
		return true
	}
	for _, q := range e.purposes {
		if q == p {
			return true
		}
	}
	return false
}

// ZlintPrefix starts the name of every finding that comes from zlint.
const ZlintPrefix = "zlint/"

// ZlintSources lists the zlint lint sources run for certificates of a
// purpose (see the comment on zlintBase).
func ZlintSources(p Purpose) []string {
	var out []string
	for _, s := range zlintSourcesFor(p) {
		out = append(out, string(s))
	}
	return out
}

func zlintSourcesFor(p Purpose) zl.SourceList {
	s := append(zl.SourceList{}, zlintBase...)
	if p == PurposeTLSServer {
		s = append(s, zlintTLS...)
	}
	return s
}

// zlintSet is the filtered zlint registry of one purpose, with its lint
// list and configuration taken out once: zlint.LintCertificateEx sorts the
// registry's lint names on every call, a fifth of its cost.
type zlintSet struct {
	lints  []*zl.CertificateLint
	config zl.Configuration
}

// zlintSets holds one set per purpose, built on first use.
var (
	zlintMu   sync.Mutex
	zlintSets = map[Purpose]*zlintSet{}
)

func zlintFor(p Purpose) (*zlintSet, error) {
	zlintMu.Lock()
	defer zlintMu.Unlock()
	if s, ok := zlintSets[p]; ok {
		return s, nil
	}
	var excl []string
	for n, e := range zlintExcluded {
		if e.appliesTo(p) {
			excl = append(excl, n)
		}
	}
	r, err := zl.GlobalRegistry().Filter(zl.FilterOptions{IncludeSources: zlintSourcesFor(p), ExcludeNames: excl})
	if err != nil {
		return nil, fmt.Errorf("zlint registry: %w", err)
	}
	s := &zlintSet{lints: r.CertificateLints().Lints(), config: r.GetConfiguration()}
	zlintSets[p] = s
	return s, nil
}

// runZlint lints der with zlint when neither the certificate's key nor its
// issuer's is SM2.
func (c *ctx) runZlint() []Finding {
	if c.key == nil || c.issuerKey == nil || c.key.kind == keySM2 || c.issuerKey.kind == keySM2 {
		return nil
	}
	set, err := zlintFor(c.zlintPurpose())
	if err != nil {
		return []Finding{{Lint: ZlintPrefix + "e_registry", Severity: Error, Source: "zlint", Detail: err.Error()}}
	}
	zc, err := zx509.ParseCertificate(c.der)
	if err != nil {
		return []Finding{{Lint: ZlintPrefix + "e_parse", Severity: Error, Source: "zlint (zcrypto)",
			Detail: fmt.Sprintf("zcrypto refuses the certificate: %v", err)}}
	}
	var out []Finding
	for _, l := range set.lints {
		r := l.Execute(zc, set.config) // Execute turns a panicking lint into Fatal
		name := l.Name
		var sev Severity
		switch r.Status {
		case zl.Error, zl.Fatal:
			sev = Error
		case zl.Warn:
			sev = Warning
		case zl.Notice:
			sev = Notice
		default:
			continue
		}
		if name == zlintKUEKU && c.gmSigningShape() {
			continue
		}
		detail := l.Description
		if r.Details != "" {
			detail += ": " + r.Details
		}
		if r.Status == zl.Fatal {
			detail = "fatal: " + detail
		}
		src := "zlint " + string(l.Source)
		if cit := strings.TrimSpace(l.Citation); cit != "" {
			src += " (" + cit + ")"
		}
		out = append(out, Finding{Lint: ZlintPrefix + name, Severity: sev, Source: src, Detail: detail})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Lint < out[j].Lint })
	return out
}
