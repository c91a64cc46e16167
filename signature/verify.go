package signature

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/crlscope"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// Check names of a report.
const (
	CheckSignature  = "signature"
	CheckTimestamp  = "timestamp"
	CheckValidity   = "validity"
	CheckChain      = "chain"
	CheckRevocation = "revocation"
	CheckCounter    = "counter-signature"
	CheckArchive    = "archive-timestamp"
	CheckKeyUsage   = "key-usage"
)

// Reasons of failed checks besides the codec's (cms.Reason*).
const (
	ReasonExpired         = "certificate-expired"
	ReasonNotYetValid     = "certificate-not-yet-valid"
	ReasonUntrusted       = "untrusted-chain"
	ReasonRevoked         = "revoked"
	ReasonRevocationUnk   = "revocation-unavailable"
	ReasonBadTimestamp    = "bad-timestamp"
	ReasonMalformed       = "malformed"
	ReasonNoSigner        = "no-signer"
	ReasonRevokedAfterUse = "revoked-after-signing"
	ReasonKeyUsage        = "certificate-not-for-signing"
)

// Check is one verification step with its outcome.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// CertInfo describes a certificate of a chain.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Evidence is what proves the signing time or the revocation status.
type Evidence struct {
	// Source: "signature-time-stamp", "verification-time"; "ocsp",
	// "embedded-ocsp", "crl", "embedded-crl".
	Source string    `json:"source"`
	Time   time.Time `json:"time"`
	// For time-stamps: the TSA and the token's serial. For revocation: the
	// status ("good", "revoked", "unknown"), the revocation time, the URL
	// asked, the response's production time.
	TSA        string     `json:"tsa,omitempty"`
	Serial     string     `json:"serial,omitempty"`
	Status     string     `json:"status,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	URL        string     `json:"url,omitempty"`
	ProducedAt *time.Time `json:"produced_at,omitempty"`
	Subject    string     `json:"subject,omitempty"`
}

// SignerReport is the verdict on one signer.
type SignerReport struct {
	Valid     bool       `json:"valid"`
	Signer    *CertInfo  `json:"signer,omitempty"`
	Algorithm string     `json:"algorithm"`
	Digest    string     `json:"digest"`
	Chain     []CertInfo `json:"chain,omitempty"`
	// SigningTime is the time the signature is judged at, SigningTimeEvidence
	// what proves it; ClaimedSigningTime is the signer's own signingTime
	// attribute (a claim, not evidence).
	SigningTime         time.Time  `json:"signing_time"`
	SigningTimeEvidence Evidence   `json:"signing_time_evidence"`
	ClaimedSigningTime  *time.Time `json:"claimed_signing_time,omitempty"`
	Revocation          []Evidence `json:"revocation,omitempty"`
	Checks              []Check    `json:"checks"`
}

// Report is a verification result.
type Report struct {
	Valid   bool           `json:"valid"`
	Format  string         `json:"format"` // "cms" or "raw"
	Family  string         `json:"family,omitempty"`
	Content string         `json:"content"` // "attached", "detached", "digest"
	Signers []SignerReport `json:"signers"`
	Checks  []Check        `json:"checks,omitempty"` // message-level failures
	Summary string         `json:"summary"`
}

// Fetcher gets revocation data: an OCSP response for a DER request, a CRL.
type Fetcher interface {
	OCSP(ctx context.Context, url string, req []byte) ([]byte, error)
	CRL(ctx context.Context, url string) ([]byte, error)
}

// HTTPFetcher fetches over HTTP (RFC 6960 Appendix A POST, RFC 5280 §4.2.1.13 GET).
type HTTPFetcher struct{ Client *http.Client }

const maxFetch = 8 << 20

func (f *HTTPFetcher) do(req *http.Request) ([]byte, error) {
	c := f.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", req.URL, resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxFetch))
}

// OCSP implements Fetcher.
func (f *HTTPFetcher) OCSP(ctx context.Context, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	return f.do(req)
}

// CRL implements Fetcher.
func (f *HTTPFetcher) CRL(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return f.do(req)
}

// Verifier verifies signatures against trust anchors.
type Verifier struct {
	// Roots are the trust anchors: the platform's roots and configured
	// foreign ones.
	Roots []*smx509.Certificate
	// Intermediates complete chains (the platform's issuing CAs).
	Intermediates []*smx509.Certificate
	// Fetch gets OCSP responses and CRLs; nil verifies offline, from the
	// evidence embedded in the message only.
	Fetch Fetcher
	Now   func() time.Time
	// Limits bound the CMS parser.
	Limits *cms.Limits
}

// Input is what to verify.
type Input struct {
	// Signature is a DER CMS SignedData, or a raw signature when
	// Certificate is set.
	Signature []byte
	// Certificate is the signer of a raw signature.
	Certificate *smx509.Certificate
	// Content is the signed data (detached CMS, raw); Digest its hash
	// with Hash instead (hash-only). For raw SM2 the digest is e of
	// cms.SM2Digest.
	Content []byte
	Digest  []byte
	Hash    *cms.Hash
	// UID is the SM2 user ID expected (default 1234567812345678).
	UID []byte
}

func info(c *smx509.Certificate) *CertInfo {
	return &CertInfo{Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: fmt.Sprintf("%x", c.SerialNumber),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func pool(certs []*smx509.Certificate) *smx509.CertPool {
	p := smx509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// Verify verifies in and reports. It never returns a nil report; an error
// is returned only when ctx ends.
func (v *Verifier) Verify(ctx context.Context, in *Input) *Report {
	if in.Certificate != nil {
		return v.verifyRaw(ctx, in)
	}
	rep := &Report{Format: "cms"}
	sd, err := cms.Parse(in.Signature, v.Limits)
	if err != nil {
		rep.Checks = append(rep.Checks, Check{Name: "parse", Reason: ReasonMalformed, Detail: err.Error()})
		rep.Summary = "INVALID: the signature is not a well-formed CMS SignedData: " + err.Error()
		return rep
	}
	rep.Family = sd.Family.String()
	switch {
	case !sd.Detached:
		rep.Content = "attached"
	case in.Content != nil:
		rep.Content = "detached"
	default:
		rep.Content = "digest"
	}
	rep.Valid = true
	for i, s := range sd.Signers {
		sr := v.verifySigner(ctx, sd, i, s, in)
		rep.Valid = rep.Valid && sr.Valid
		rep.Signers = append(rep.Signers, sr)
	}
	rep.Summary = summary(rep)
	return rep
}

func (sr *SignerReport) check(name string, pass bool, reason, format string, args ...any) {
	sr.Checks = append(sr.Checks, Check{Name: name, Pass: pass, Reason: reason, Detail: fmt.Sprintf(format, args...)})
	if !pass {
		sr.Valid = false
	}
}

func algName(c *smx509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if sm2.IsSM2PublicKey(k) {
			return "SM2"
		}
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", c.PublicKey)
}

func (v *Verifier) verifySigner(ctx context.Context, sd *cms.SignedData, i int, s *cms.SignerInfo, in *Input) SignerReport {
	sr := SignerReport{Valid: true, Digest: s.Digest.Name, Algorithm: s.SignatureAlgorithm.String()}
	opts := cms.VerifyOptions{Content: in.Content, Certificates: v.Intermediates, UID: in.UID}
	if in.Content == nil && in.Digest != nil {
		opts.Digest = in.Digest
	}
	cert, err := sd.Verify(i, opts)
	if cert == nil {
		cert = sd.FindCertificate(s, v.Intermediates)
	}
	if err != nil {
		reason := string(cms.ReasonOf(err))
		if reason == "" {
			reason = ReasonMalformed
		}
		sr.check(CheckSignature, false, reason, "%v", err)
	} else {
		sr.check(CheckSignature, true, "", "%s signature over %s valid", algName(cert), map[bool]string{true: "the signed attributes", false: "the content"}[s.RawSignedAttrs != nil])
	}
	if cert == nil {
		return sr
	}
	sr.Signer = info(cert)
	sr.Algorithm = algName(cert) + " (" + s.SignatureAlgorithm.String() + ")"
	if t, ok := s.SigningTime(); ok {
		sr.ClaimedSigningTime = &t
	}
	extra := append(append([]*smx509.Certificate{}, sd.Certificates...), v.Intermediates...)
	// The signing time: proven by a signature time-stamp, or now.
	sr.SigningTime, sr.SigningTimeEvidence = v.now().UTC(), Evidence{Source: "verification-time", Time: v.now().UTC()}
	for _, tok := range s.SignatureTimeStamps() {
		t, ev, err := v.checkToken(tok, s.Signature, nil, extra)
		if err != nil {
			sr.check(CheckTimestamp, false, ReasonBadTimestamp, "signature time-stamp: %v", err)
			continue
		}
		sr.SigningTime, sr.SigningTimeEvidence = t, ev
		sr.check(CheckTimestamp, true, "", "signature time-stamped at %s by %s", t.Format(time.RFC3339), ev.TSA)
		break
	}
	for j := range s.CounterSigners {
		if c, err := sd.VerifyCounterSignature(s, j, cms.VerifyOptions{Certificates: v.Intermediates, UID: in.UID}); err != nil {
			sr.check(CheckCounter, false, string(cms.ReasonOf(err)), "counter-signature %d: %v", j, err)
		} else {
			sr.check(CheckCounter, true, "", "counter-signature %d by %s valid", j, c.Subject)
		}
	}
	for _, tok := range s.ArchiveTimeStamps() {
		content := sd.Content
		if sd.Detached {
			content = in.Content
		}
		if content == nil {
			sr.check(CheckArchive, false, ReasonBadTimestamp, "archive time-stamp: the content is needed to check it")
			continue
		}
		if _, ev, err := v.checkToken(tok, nil, func(h *cms.Hash) ([]byte, error) { return sd.ArchiveImprint(i, h, content) }, extra); err != nil {
			sr.check(CheckArchive, false, ReasonBadTimestamp, "archive time-stamp: %v", err)
		} else {
			sr.check(CheckArchive, true, "", "validation data archived at %s by %s", ev.Time.Format(time.RFC3339), ev.TSA)
		}
	}
	v.checkCertificate(ctx, &sr, cert, extra, sd)
	return sr
}

// checkToken verifies a time-stamp token whose imprint is the hash of
// data, or what imprint computes; it returns genTime and the evidence.
func (v *Verifier) checkToken(der, data []byte, imprint func(*cms.Hash) ([]byte, error), extra []*smx509.Certificate) (time.Time, Evidence, error) {
	tok, err := tsp.ParseToken(der)
	if err != nil {
		return time.Time{}, Evidence{}, err
	}
	mi := tok.Info.MessageImprint
	want := data
	if imprint != nil {
		if want, err = imprint(mi.Hash); err != nil {
			return time.Time{}, Evidence{}, err
		}
	} else {
		want = mi.Hash.Sum(data)
	}
	tsaCert, err := tok.Verify(tsp.VerifyOptions{Roots: pool(v.Roots), Intermediates: extra, Digest: want})
	if err != nil {
		return time.Time{}, Evidence{}, err
	}
	t := tok.Info.GenTime.UTC()
	return t, Evidence{Source: "signature-time-stamp", Time: t, TSA: tsaCert.Subject.String(), Serial: fmt.Sprintf("%x", tok.Info.SerialNumber)}, nil
}

// checkCertificate checks the signer certificate at the signing time:
// validity, chain to a trust anchor, revocation of every certificate of
// the chain below the anchor.
func (v *Verifier) checkCertificate(ctx context.Context, sr *SignerReport, cert *smx509.Certificate, extra []*smx509.Certificate, sd *cms.SignedData) {
	at := sr.SigningTime
	switch {
	case at.After(cert.NotAfter):
		sr.check(CheckValidity, false, ReasonExpired, "the certificate expired at %s, before the signing time %s", cert.NotAfter.UTC().Format(time.RFC3339), at.Format(time.RFC3339))
	case at.Before(cert.NotBefore):
		sr.check(CheckValidity, false, ReasonNotYetValid, "the certificate is valid from %s, after the signing time", cert.NotBefore.UTC().Format(time.RFC3339))
	default:
		sr.check(CheckValidity, true, "", "valid at %s", at.Format(time.RFC3339))
	}
	if err := SigningUsage(cert); err != nil {
		sr.check(CheckKeyUsage, false, ReasonKeyUsage, "%v", err)
	} else {
		sr.check(CheckKeyUsage, true, "", "the key is for signing")
	}
	// The chain is judged at the signing time, or within the leaf's
	// validity when that is the failure already reported.
	ct := at
	if ct.After(cert.NotAfter) {
		ct = cert.NotAfter
	}
	if ct.Before(cert.NotBefore) {
		ct = cert.NotBefore
	}
	chains, err := cert.Verify(smx509.VerifyOptions{Roots: pool(v.Roots), Intermediates: pool(extra), CurrentTime: ct,
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}})
	if err != nil || len(chains) == 0 {
		sr.check(CheckChain, false, ReasonUntrusted, "no chain to a trust anchor: %v", err)
		return
	}
	chain := chains[0]
	for _, c := range chain {
		sr.Chain = append(sr.Chain, *info(c))
	}
	sr.check(CheckChain, true, "", "chains to %s", chain[len(chain)-1].Subject)
	for k := 0; k+1 < len(chain); k++ {
		ev, err := v.status(ctx, chain[k], chain[k+1], sd, at)
		if err != nil {
			sr.check(CheckRevocation, false, ReasonRevocationUnk, "%s: %v", chain[k].Subject, err)
			continue
		}
		ev.Subject = chain[k].Subject.String()
		sr.Revocation = append(sr.Revocation, ev)
		switch {
		case ev.Status == "good":
			sr.check(CheckRevocation, true, "", "%s: good (%s)", chain[k].Subject, ev.Source)
		case ev.Status == "revoked" && ev.RevokedAt.After(at):
			// A revocation after a proven signing time leaves the signature
			// valid: that is what the time-stamp is for.
			sr.check(CheckRevocation, true, ReasonRevokedAfterUse, "%s: revoked at %s, after the signing time %s proven by %s", chain[k].Subject,
				ev.RevokedAt.Format(time.RFC3339), at.Format(time.RFC3339), sr.SigningTimeEvidence.Source)
		case ev.Status == "revoked":
			sr.check(CheckRevocation, false, ReasonRevoked, "%s: revoked at %s, not after the signing time %s", chain[k].Subject, ev.RevokedAt.Format(time.RFC3339), at.Format(time.RFC3339))
		default:
			sr.check(CheckRevocation, false, ReasonRevocationUnk, "%s: status %s (%s)", chain[k].Subject, ev.Status, ev.Source)
		}
	}
}

var oidKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 15}

// keyUsageNames are the names of RFC 5280 §4.2.1.3 keyUsage bits, in bit
// order.
var keyUsageNames = []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement",
	"keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}

// SigningUsage says why cert's key must not be taken for a signer's or a
// seal maker's (nil when it may): its keyUsage extension (RFC 5280
// §4.2.1.3), when present, must have digitalSignature or nonRepudiation
// (contentCommitment). An encryption certificate (keyEncipherment,
// dataEncipherment: the GM/T 0015 encryption half of a dual pair, whose
// key the KMC generated and escrows) or a CA certificate used as a signer
// is refused: a signature by an escrowed key proves nothing about who
// made it. Without the extension the key is not restricted.
func SigningUsage(cert *smx509.Certificate) error {
	present := false
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidKeyUsage) {
			present = true
			break
		}
	}
	if !present || cert.KeyUsage&(smx509.KeyUsageDigitalSignature|smx509.KeyUsageContentCommitment) != 0 {
		return nil
	}
	var names []string
	for i, n := range keyUsageNames {
		if cert.KeyUsage&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if names == nil {
		names = []string{"(no bit set)"}
	}
	what := "its key is not for signing"
	if cert.KeyUsage&(smx509.KeyUsageKeyEncipherment|smx509.KeyUsageDataEncipherment|smx509.KeyUsageKeyAgreement) != 0 {
		what = "it is an encryption certificate, whose key may be escrowed (GM/T 0015), not a signing one"
	}
	return fmt.Errorf("%s has keyUsage %s, without digitalSignature or nonRepudiation: %s", cert.Subject, strings.Join(names, ", "), what)
}

// status finds the revocation status of cert at time at (the signing
// time): embedded OCSP responses and CRLs first (long-term validation
// data), then the OCSP responder and the CRL distribution points the
// certificate names; among the embedded evidence, a revocation wins.
// Evidence that does not speak for at (see fresh) is passed over, and so
// is a CRL that does not list cert and is not complete for it (see
// crlEvidence).
func (v *Verifier) status(ctx context.Context, cert, issuer *smx509.Certificate, sd *cms.SignedData, at time.Time) (Evidence, error) {
	var errs []error
	if sd != nil {
		// Embedded evidence: a revocation any of it proves wins over the
		// "good" of the rest (a CRL listing the certificate beside an OCSP
		// response or a CRL made before); else the first usable, OCSP
		// before CRLs.
		var first *Evidence
		use := func(ev Evidence) bool {
			if ev.Status == "revoked" {
				return true
			}
			if first == nil {
				first = &ev
			}
			return false
		}
		for _, r := range sd.Revocation {
			if r.OCSP != nil {
				ev, err := ocspEvidence(r.OCSP, cert, issuer, "embedded-ocsp", "", at)
				if err != nil {
					errs = append(errs, fmt.Errorf("embedded OCSP response: %w", err))
				} else if use(ev) {
					return ev, nil
				}
			}
		}
		for _, r := range sd.Revocation {
			if r.CRL != nil {
				ev, err := crlEvidence(r.CRL, cert, issuer, "embedded-crl", "", at)
				if err != nil {
					errs = append(errs, fmt.Errorf("embedded CRL: %w", err))
				} else if use(ev) {
					return ev, nil
				}
			}
		}
		if first != nil {
			return *first, nil
		}
	}
	if v.Fetch == nil {
		if len(errs) > 0 {
			return Evidence{}, fmt.Errorf("offline, and the message embeds no usable revocation data for it: %w", errors.Join(errs...))
		}
		return Evidence{}, errors.New("offline, and the message embeds no revocation data for it")
	}
	for _, url := range cert.OCSPServer {
		req, err := ocsp.CreateRequest(cert, issuer, nil)
		if err != nil {
			errs = append(errs, err)
			break
		}
		der, err := v.Fetch.OCSP(ctx, url, req)
		if err == nil {
			var ev Evidence
			if ev, err = ocspEvidence(der, cert, issuer, "ocsp", url, at); err == nil {
				return ev, nil
			}
		}
		errs = append(errs, fmt.Errorf("OCSP %s: %w", url, err))
	}
	for _, url := range cert.CRLDistributionPoints {
		if !strings.HasPrefix(url, "http") {
			continue
		}
		der, err := v.Fetch.CRL(ctx, url)
		if err == nil {
			var ev Evidence
			if ev, err = crlEvidence(der, cert, issuer, "crl", url, at); err == nil {
				return ev, nil
			}
		}
		errs = append(errs, fmt.Errorf("CRL %s: %w", url, err))
	}
	if len(errs) == 0 {
		return Evidence{}, errors.New("the certificate names no OCSP responder or CRL distribution point")
	}
	return Evidence{}, errors.Join(errs...)
}

// evidenceSkew allows for the clocks of a responder or CRL issuer and of
// the signer or verifier to differ.
const evidenceSkew = 5 * time.Minute

// fresh reports whether status information that is valid from thisUpdate
// to nextUpdate (zero: not stated) says what a certificate's status was at
// time at: it was issued at or after at, or it was still valid at at. A
// revocation is permanent, so "revoked" is conclusive whenever it was
// issued; "good" from before at and expired by then says nothing about
// at: the certificate may have been revoked in between, and the response
// replayed (an OCSP response or CRL fetched over plain HTTP can be an old
// one; RFC 6960 §3.2 items 5 and 6, RFC 5280 §6.3.3 (a)).
func fresh(thisUpdate, nextUpdate, at time.Time) error {
	if !thisUpdate.Before(at.Add(-evidenceSkew)) {
		return nil
	}
	if !nextUpdate.IsZero() && !at.After(nextUpdate.Add(evidenceSkew)) {
		return nil
	}
	until := "no nextUpdate"
	if !nextUpdate.IsZero() {
		until = "valid until " + nextUpdate.UTC().Format(time.RFC3339)
	}
	return fmt.Errorf("stale: issued %s, %s, which says nothing about %s", thisUpdate.UTC().Format(time.RFC3339), until, at.UTC().Format(time.RFC3339))
}

func ocspEvidence(der []byte, cert, issuer *smx509.Certificate, source, url string, at time.Time) (Evidence, error) {
	r, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		return Evidence{}, err
	}
	if r.Status != ocsp.Revoked {
		if err := fresh(r.ThisUpdate, r.NextUpdate, at); err != nil {
			return Evidence{}, fmt.Errorf("OCSP response: %w", err)
		}
	}
	p := r.ProducedAt.UTC()
	ev := Evidence{Source: source, Time: r.ThisUpdate.UTC(), URL: url, ProducedAt: &p, Status: r.Status.String()}
	switch r.Status {
	case ocsp.Good:
		ev.Status = "good"
	case ocsp.Revoked:
		t := r.RevokedAt.UTC()
		ev.Status, ev.RevokedAt = "revoked", &t
	default:
		ev.Status = "unknown"
	}
	return ev, nil
}

// crlEvidence is what the CRL der says of cert, which issuer issued, at
// time at. A CRL of the issuer that lists cert proves it revoked, whatever
// the CRL's kind and scope: a delta CRL, or a CRL of another partition,
// lists only serials the issuer revoked (but a delta's removeFromCRL entry
// takes a certificate off its base and revokes nothing). Absence proves
// "good" only on a CRL complete for cert (RFC 5280 §5.2.4, §5.2.5, §6.3.3
// (b)): not a delta CRL, which lists only the changes since its base; with
// an issuingDistributionPoint, if any, that covers cert (user or CA
// certificates only, attribute certificates only, some reasons only, a
// distribution point name cert does not name); fresh at at. A CRL with a
// critical extension or entry extension not processed here (an indirect
// CRL among them) is not used at all (§5.2, §5.3). The rules are
// internal/crlscope's, as for client certificates.
func crlEvidence(der []byte, cert, issuer *smx509.Certificate, source, url string, at time.Time) (Evidence, error) {
	rl, err := smx509.ParseRevocationList(der)
	if err != nil {
		return Evidence{}, err
	}
	if !bytes.Equal(rl.RawIssuer, cert.RawIssuer) {
		return Evidence{}, errors.New("CRL of another issuer")
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return Evidence{}, fmt.Errorf("CRL signature: %w", err)
	}
	what := "the CRL"
	if rl.Number != nil {
		what = "CRL " + rl.Number.String()
	}
	sc, err := crlscope.Read(rl.Extensions, rl.RawIssuer)
	if err != nil {
		return Evidence{}, fmt.Errorf("%s not usable: %w", what, err)
	}
	if sc.Base != nil {
		what = fmt.Sprintf("delta CRL %v (base %v)", rl.Number, sc.Base) // Read checked the number
	}
	ev := Evidence{Source: source, Time: rl.ThisUpdate.UTC(), URL: url}
	for _, e := range rl.RevokedCertificateEntries {
		if err := crlscope.CheckEntry(e.Extensions); err != nil {
			return Evidence{}, fmt.Errorf("%s not usable: entry %x: %w", what, e.SerialNumber, err)
		}
		if ev.RevokedAt == nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 && (sc.Base == nil || e.ReasonCode != crlscope.ReasonRemoveFromCRL) {
			t := e.RevocationTime.UTC()
			ev.Status, ev.RevokedAt = "revoked", &t
		}
	}
	if ev.RevokedAt != nil {
		return ev, nil
	}
	if sc.Base != nil {
		return Evidence{}, fmt.Errorf("%s does not list the certificate, which proves nothing: a delta CRL lists only the changes since its base CRL (RFC 5280 §5.2.4)", what)
	}
	switch m := sc.IDP.Covers(cert.BasicConstraintsValid && cert.IsCA, crlscope.DistributionPoints(cert.RawIssuer, cert.Extensions)); {
	case m == 0:
		return Evidence{}, fmt.Errorf("%s does not cover the certificate: its issuingDistributionPoint limits it to other certificates or distribution points (RFC 5280 §5.2.5)", what)
	case m != crlscope.AllReasons:
		return Evidence{}, fmt.Errorf("%s covers the certificate for some revocation reasons only (issuingDistributionPoint onlySomeReasons, RFC 5280 §5.2.5)", what)
	}
	if err := fresh(rl.ThisUpdate, rl.NextUpdate, at); err != nil {
		return Evidence{}, fmt.Errorf("CRL: %w", err)
	}
	ev.Status = "good"
	return ev, nil
}

func (v *Verifier) verifyRaw(ctx context.Context, in *Input) *Report {
	rep := &Report{Format: "raw", Content: "attached"}
	if in.Content == nil {
		rep.Content = "digest"
	}
	cert := in.Certificate
	sr := SignerReport{Valid: true, Signer: info(cert), Algorithm: algName(cert)}
	h := in.Hash
	if h == nil {
		h = cms.DefaultDigest(cert.PublicKey)
	}
	sr.Digest = h.Name
	if err := cms.VerifyRaw(cert.PublicKey, h, in.UID, in.Content, in.Digest, in.Signature); err != nil {
		sr.check(CheckSignature, false, string(cms.ReasonOf(err)), "%v", err)
	} else {
		sr.check(CheckSignature, true, "", "%s signature valid", algName(cert))
	}
	sr.SigningTime, sr.SigningTimeEvidence = v.now().UTC(), Evidence{Source: "verification-time", Time: v.now().UTC()}
	v.checkCertificate(ctx, &sr, cert, v.Intermediates, nil)
	rep.Signers, rep.Valid = []SignerReport{sr}, sr.Valid
	rep.Summary = summary(rep)
	return rep
}

// summary is the human-readable verdict.
func summary(r *Report) string {
	var b strings.Builder
	if r.Valid {
		b.WriteString("VALID")
	} else {
		b.WriteString("INVALID")
	}
	fmt.Fprintf(&b, ": %s signature", r.Format)
	if r.Family != "" {
		fmt.Fprintf(&b, " (%s, %s content)", r.Family, r.Content)
	}
	fmt.Fprintf(&b, ", %d signer(s)\n", len(r.Signers))
	for i, s := range r.Signers {
		who := "unknown signer"
		if s.Signer != nil {
			who = s.Signer.Subject
		}
		verdict := "valid"
		if !s.Valid {
			verdict = "INVALID"
		}
		fmt.Fprintf(&b, "signer %d: %s — %s, %s with %s\n", i+1, who, verdict, s.Algorithm, s.Digest)
		fmt.Fprintf(&b, "  signing time %s (%s)\n", s.SigningTime.Format(time.RFC3339), s.SigningTimeEvidence.Source)
		WriteChecks(&b, "  ", s.Checks)
	}
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "[FAIL] %s: %s (%s)\n", c.Name, c.Detail, c.Reason)
	}
	return b.String()
}

// WriteChecks writes checks one a line after indent: ok or FAIL, the
// check's name and detail, and the reason of a failure. The summaries of
// signature and seal reports share it.
func WriteChecks(b *strings.Builder, indent string, checks []Check) {
	for _, c := range checks {
		mark := "ok  "
		if !c.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(b, "%s[%s] %s: %s", indent, mark, c.Name, c.Detail)
		if c.Reason != "" {
			fmt.Fprintf(b, " (%s)", c.Reason)
		}
		b.WriteString("\n")
	}
}
