package seal

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/signature"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/pdf"
	"github.com/govtrust/govtrust/signature/ses"
)

func httpClient() *http.Client { return &http.Client{Timeout: 10 * time.Second} }

// Check names of a seal verification report, in the order of
// GM-STANDARDS.md §5.2 ("verification order"). Certificate checks of the
// signer come from package signature (validity, chain, revocation).
const (
	CheckFormat       = "format"
	CheckSignature    = "signature"       // the signer's signature over TBS_Sign
	CheckDocument     = "document-digest" // dataHash against the document
	CheckTimestamp    = "timestamp"
	CheckSignerListed = "signer-listed"
	CheckMaker        = "seal-maker-signature"
	CheckMakerCert    = "seal-maker-certificate"
	CheckSealValidity = "seal-validity"
	CheckSealStatus   = "seal-status"
	CheckReferences   = "ofd-references"
	CheckSealFile     = "ofd-seal-file"  // Seal.esl is the eseal signed
	CheckByteRange    = "pdf-byte-range" // covers the file but /Contents
)

// Reasons of failed checks, besides package signature's.
const (
	ReasonMalformed        = "malformed"
	ReasonBadSignature     = "bad-signature"
	ReasonDigestMismatch   = "document-digest-mismatch"
	ReasonNoTimestamp      = "timestamp-missing"
	ReasonBadTimestamp     = signature.ReasonBadTimestamp
	ReasonSignerNotListed  = "signer-not-listed"
	ReasonBadMaker         = "bad-maker-signature"
	ReasonPictureTampered  = "picture-tampered"
	ReasonSealExpired      = "seal-expired"
	ReasonSealNotYetValid  = "seal-not-yet-valid"
	ReasonSealRevoked      = "seal-revoked"
	ReasonSealSuspended    = "seal-suspended"
	ReasonSealUnknown      = "seal-not-registered"
	ReasonMakerUnknown     = "seal-maker-not-recognised"
	ReasonTooLarge         = "document-too-large" // an OFD zip bomb (package ofd's limits): 413 over HTTP
	ReasonReferenceChanged = "ofd-file-changed"
	ReasonByteRange        = "pdf-byte-range-incomplete"
	ReasonAppended         = "pdf-changed-after-signing"
	// An OFD signature that leaves files of the package unprotected
	// (package ofd's Signatures: OFD.xml, the document and every file but
	// the signature list and the signatures' own).
	ReasonReferencesIncomplete = "ofd-references-incomplete"
	// An OFD seal file (Seal.esl), which readers draw the seal from, that
	// is not the SESeal inside SignedValue.dat (GM-STANDARDS.md §6).
	ReasonSealFileMismatch = "seal-file-mismatch"
)

// VerifyRequest is what to verify.
type VerifyRequest struct {
	Format string `json:"format"` // ses (detached), ofd, pdf
	// Document is the document (an OFD package, or the file a detached
	// .ses seals); Digest its SM3 instead (hash-only, ses).
	Document []byte `json:"document,omitempty"`
	Digest   []byte `json:"digest,omitempty"`
	// Signature is the detached DER SES_Signature (ses).
	Signature []byte `json:"signature,omitempty"`
}

// Validate implements httpx.Validator.
func (r *VerifyRequest) Validate() error {
	switch {
	case r.Format != FormatSES && r.Format != FormatOFD && r.Format != FormatPDF:
		return fmt.Errorf("format: %q is not ses, ofd or pdf", r.Format)
	case r.Format == FormatSES && len(r.Signature) == 0:
		return errors.New("signature: the .ses file")
	case r.Format == FormatSES && r.Document == nil && r.Digest == nil:
		return errors.New("document: missing or empty (send digest for a hash-only seal)")
	case r.Format == FormatSES && r.Document != nil && r.Digest != nil:
		return errors.New("exactly one of document and digest")
	case r.Format != FormatSES && len(r.Document) == 0:
		return errors.New("document: the OFD package or the PDF")
	}
	return nil
}

// SealReport is the verification of one seal signature.
type SealReport struct {
	Valid        bool      `json:"valid"`
	Version      int       `json:"version,omitempty"`
	SealID       string    `json:"seal_id,omitempty"`
	SealName     string    `json:"seal_name,omitempty"`
	SealStatus   string    `json:"seal_status,omitempty"`
	PropertyInfo string    `json:"property_info,omitempty"`
	ClaimedTime  time.Time `json:"claimed_time,omitzero"`
	// SigningTime is proven by the time-stamp, or the verification time.
	SigningTime         time.Time            `json:"signing_time"`
	SigningTimeEvidence signature.Evidence   `json:"signing_time_evidence"`
	Signer              *signature.CertInfo  `json:"signer,omitempty"`
	Maker               *signature.CertInfo  `json:"maker,omitempty"`
	Chain               []signature.CertInfo `json:"chain,omitempty"`
	Revocation          []signature.Evidence `json:"revocation,omitempty"`
	Checks              []signature.Check    `json:"checks"`
}

// Report is a verification report.
type Report struct {
	Valid   bool              `json:"valid"`
	Format  string            `json:"format"`
	Seals   []SealReport      `json:"seals"`
	Checks  []signature.Check `json:"checks,omitempty"` // document-level failures
	Summary string            `json:"summary"`
}

func (sr *SealReport) check(name string, pass bool, reason, format string, args ...any) {
	sr.Checks = append(sr.Checks, signature.Check{Name: name, Pass: pass, Reason: reason, Detail: fmt.Sprintf(format, args...)})
	if !pass {
		sr.Valid = false
	}
}

// tooLarge returns the check that refused the document as too large to
// verify, nil when none did.
func (r *Report) tooLarge() *signature.Check {
	for i, c := range r.Checks {
		if c.Reason == ReasonTooLarge {
			return &r.Checks[i]
		}
	}
	return nil
}

// Reasons returns the reasons of the failed checks of a report.
func (r *Report) Reasons() []string {
	var out []string
	for _, c := range r.Checks {
		out = append(out, c.Reason)
	}
	for _, s := range r.Seals {
		for _, c := range s.Checks {
			if !c.Pass {
				out = append(out, c.Reason)
			}
		}
	}
	return out
}

// Verify verifies seal signatures and reports every check with its reason.
func (s *Service) Verify(ctx context.Context, req VerifyRequest) *Report {
	rep := &Report{Format: req.Format}
	fail := func(name, reason, detail string) *Report {
		rep.Checks = append(rep.Checks, signature.Check{Name: name, Reason: reason, Detail: detail})
		rep.Summary = summary(rep)
		return rep
	}
	if err := req.Validate(); err != nil {
		return fail(CheckFormat, ReasonMalformed, err.Error())
	}
	switch req.Format {
	case FormatSES:
		hash := func(alg asn1.ObjectIdentifier) []byte {
			if req.Document != nil {
				return ses.DataHash(alg, req.Document)
			}
			return req.Digest
		}
		rep.Seals = append(rep.Seals, s.verifySES(ctx, req.Signature, hash, ""))
	case FormatOFD:
		found, err := ofd.Signatures(req.Document)
		if errors.Is(err, ofd.ErrTooLarge) {
			return fail(CheckFormat, ReasonTooLarge, err.Error())
		}
		if err != nil {
			return fail(CheckFormat, ReasonMalformed, err.Error())
		}
		if len(found) == 0 {
			return fail(CheckFormat, ReasonMalformed, "the document has no signature")
		}
		for _, f := range found {
			xmlBytes := f.SignatureXML
			sr := s.verifySES(ctx, f.SignedValue, func(alg asn1.ObjectIdentifier) []byte { return ses.DataHash(alg, xmlBytes) }, f.Path)
			if len(f.BadReferences) > 0 {
				// A changed file of the package is a changed document.
				sr.check(CheckDocument, false, ReasonDigestMismatch, "%d of %d protected files changed: %s", len(f.BadReferences), f.References, strings.Join(f.BadReferences, ", "))
			}
			switch {
			case len(f.Unprotected) > 0:
				// Files no Reference covers could have been added or
				// replaced after sealing.
				sr.check(CheckReferences, false, ReasonReferencesIncomplete, "the signature does not protect %d file(s) of the package: %s (it must reference OFD.xml, the document and every file but the signature list and the signatures' own files)",
					len(f.Unprotected), fileList(f.Unprotected))
			case len(f.BadReferences) == 0:
				sr.check(CheckReferences, true, "", "%d protected files unchanged (SM3), the whole package but the signatures", f.References)
			}
			checkSealFiles(&sr, f)
			rep.Seals = append(rep.Seals, sr)
		}
	case FormatPDF:
		found, err := pdf.SignaturesContext(ctx, req.Document)
		if err != nil {
			return fail(CheckFormat, ReasonMalformed, err.Error())
		}
		if len(found) == 0 {
			return fail(CheckFormat, ReasonMalformed, "the document has no signature")
		}
		for _, f := range found {
			rep.Seals = append(rep.Seals, s.verifyPDF(ctx, req.Document, f))
		}
	}
	rep.Valid = len(rep.Seals) > 0
	for _, sr := range rep.Seals {
		rep.Valid = rep.Valid && sr.Valid
	}
	rep.Summary = summary(rep)
	return rep
}

// fileList names the first files of a list, and how many more there are.
func fileList(files []string) string {
	const shown = 10
	if len(files) <= shown {
		return strings.Join(files, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(files[:shown], ", "), len(files)-shown)
}

// checkSealFiles checks that each seal file (Seal.esl) of an OFD
// signature, from which readers draw the seal picture, is the SESeal
// inside its SignedValue.dat byte for byte (GM-STANDARDS.md §6,
// verification step 2, as ofdrw's OFDValidator checks). A signature with
// no seal file passes; one whose SignedValue.dat does not parse is
// reported malformed by verifySES already.
func checkSealFiles(sr *SealReport, f *ofd.Found) {
	if len(f.SealFiles) == 0 {
		return
	}
	sig, err := ses.ParseSignature(f.SignedValue)
	if err != nil {
		return
	}
	ok, paths := true, make([]string, 0, len(f.SealFiles))
	for _, sf := range f.SealFiles {
		paths = append(paths, sf.Path)
		switch {
		case sf.Path == "":
			sr.check(CheckSealFile, false, ReasonSealFileMismatch, "SignedInfo's Seal names no BaseLoc")
		case sf.Data == nil:
			sr.check(CheckSealFile, false, ReasonSealFileMismatch, "SignedInfo's Seal/BaseLoc names %s, which the package lacks", sf.Path)
		case !bytes.Equal(sf.Data, sig.TBS.Seal):
			sr.check(CheckSealFile, false, ReasonSealFileMismatch, "%s is not the seal the signature applies (the SESeal inside SignedValue.dat): readers would show another seal", sf.Path)
		default:
			continue
		}
		ok = false
	}
	if ok {
		sr.check(CheckSealFile, true, "", "%s: the seal the signature applies", strings.Join(paths, ", "))
	}
}

// verifySES verifies one DER SES_Signature; hash gives the digest of the
// protected data for the signer's algorithm; wantProperty, when set, is
// the propertyInfo the container requires (the OFD Signature.xml path).
func (s *Service) verifySES(ctx context.Context, der []byte, hash func(asn1.ObjectIdentifier) []byte, wantProperty string) SealReport {
	sr := SealReport{Valid: true}
	sig, err := ses.ParseSignature(der)
	if err != nil {
		sr.check(CheckFormat, false, ReasonMalformed, "%v", err)
		return sr
	}
	sr.Version, sr.PropertyInfo, sr.ClaimedTime = sig.Format, sig.TBS.PropertyInfo, sig.TBS.TimeInfo
	seal, err := sig.Seal()
	if err != nil {
		sr.check(CheckFormat, false, ReasonMalformed, "the seal inside: %v", err)
		return sr
	}
	sr.SealID, sr.SealName = seal.Info.ESID, seal.Info.Property.Name
	v := s.Verifier()

	// 1. The signer's signature over TBS_Sign.
	signer, err := sig.Verify()
	if err != nil {
		sr.check(CheckSignature, false, ReasonBadSignature, "%v", err)
	} else {
		sr.check(CheckSignature, true, "", "signature over TBS_Sign valid (%s)", sig.SignAlg)
	}
	// 2. The data: dataHash against the document.
	if bytes.Equal(hash(sig.SignAlg), sig.TBS.DataHash) {
		sr.check(CheckDocument, true, "", "dataHash matches the document")
	} else {
		sr.check(CheckDocument, false, ReasonDigestMismatch, "dataHash does not match the document: it was changed after sealing, or this is another document")
	}
	if wantProperty != "" && sig.TBS.PropertyInfo != wantProperty {
		sr.check(CheckDocument, false, ReasonDigestMismatch, "propertyInfo %q is not the signature's own path %q", sig.TBS.PropertyInfo, wantProperty)
	}
	// 3. The signing time: the time-stamp over the signature value.
	at, ev := s.checkSigningTime(v, &sr, sig.TimeStamp, sig.Value)
	// 4. The signer's certificate at the signing time; 5. the seal lists it.
	if signer != nil {
		checkSigner(ctx, v, &sr, seal, signer, at, ev)
	}
	s.checkSeal(ctx, &sr, seal, sig.TBS.Seal, at, ev)
	return sr
}

// checkSigningTime checks the time-stamp token (nil: none) over a
// signature value and returns the signing time it proves, or the
// verification time when there is none, with its evidence; it sets both
// in sr.
func (s *Service) checkSigningTime(v *signature.Verifier, sr *SealReport, token, value []byte) (time.Time, signature.Evidence) {
	at, ev := v.Now().UTC(), signature.Evidence{Source: "verification-time", Time: v.Now().UTC()}
	switch {
	case token != nil:
		t, tev, err := v.CheckTimeStamp(token, value, nil)
		if err != nil {
			sr.check(CheckTimestamp, false, ReasonBadTimestamp, "time-stamp over the signature: %v", err)
		} else {
			at, ev = t, tev
			sr.check(CheckTimestamp, true, "", "signature time-stamped at %s by %s", t.Format(time.RFC3339), tev.TSA)
		}
	case s.cfg.RequireTimestamp:
		sr.check(CheckTimestamp, false, ReasonNoTimestamp, "policy requires a time-stamp and the signature has none")
	}
	sr.SigningTime, sr.SigningTimeEvidence = at, ev
	return at, ev
}

// checkSigner checks the signer's certificate at the signing time and that
// the seal lists it.
func checkSigner(ctx context.Context, v *signature.Verifier, sr *SealReport, seal *ses.Seal, signer *smx509.Certificate, at time.Time, ev signature.Evidence) {
	cr := v.CheckCertificate(ctx, signer, nil, at, ev)
	sr.Signer, sr.Chain, sr.Revocation = cr.Signer, cr.Chain, cr.Revocation
	for _, c := range cr.Checks {
		sr.check("signer-"+c.Name, c.Pass || c.Reason == signature.ReasonRevokedAfterUse, c.Reason, "%s", c.Detail)
	}
	if seal.Lists(signer.Raw) {
		sr.check(CheckSignerListed, true, "", "the seal lists %s", signer.Subject)
	} else {
		sr.check(CheckSignerListed, false, ReasonSignerNotListed, "%s is not among the certificates the seal lists", signer.Subject)
	}
}

// checkSeal checks the seal applied (DER sealDER): maker signature (a
// changed picture breaks it), maker certificate, validity and registry
// status at the signing time.
func (s *Service) checkSeal(ctx context.Context, sr *SealReport, seal *ses.Seal, sealDER []byte, at time.Time, ev signature.Evidence) {
	rec, recErr := s.Seal(ctx, seal.Info.ESID)
	if maker, err := seal.VerifyMaker(); err != nil {
		reason := ReasonBadMaker
		if recErr == nil && rec.parsed != nil && !bytes.Equal(rec.parsed.Info.Picture.Data, seal.Info.Picture.Data) {
			reason = ReasonPictureTampered
		}
		sr.check(CheckMaker, false, reason, "%v", err)
	} else {
		sr.Maker = &signature.CertInfo{Subject: maker.Subject.String(), Issuer: maker.Issuer.String(), Serial: fmt.Sprintf("%x", maker.SerialNumber),
			NotBefore: maker.NotBefore.UTC(), NotAfter: maker.NotAfter.UTC()}
		sr.check(CheckMaker, true, "", "made by %s", maker.Subject)
		s.checkMakerCert(ctx, sr, maker, at, ev)
	}
	p := seal.Info.Property
	switch {
	case at.After(p.ValidEnd):
		sr.check(CheckSealValidity, false, ReasonSealExpired, "the seal expired at %s, before the signing time %s", p.ValidEnd.Format(time.RFC3339), at.Format(time.RFC3339))
	case at.Before(p.ValidStart):
		sr.check(CheckSealValidity, false, ReasonSealNotYetValid, "the seal is valid from %s, after the signing time", p.ValidStart.Format(time.RFC3339))
	default:
		sr.check(CheckSealValidity, true, "", "valid from %s to %s", p.ValidStart.Format(time.RFC3339), p.ValidEnd.Format(time.RFC3339))
	}
	switch {
	case errors.Is(recErr, ErrNotFound):
		sr.SealStatus = "unknown"
		sr.check(CheckSealStatus, true, ReasonSealUnknown, "the seal %s is not in this platform's registry; its status cannot be checked here", seal.Info.ESID)
	case recErr != nil:
		sr.check(CheckSealStatus, false, ReasonMalformed, "registry: %v", recErr)
	default:
		if !bytes.Equal(rec.DER, sealDER) {
			reason := ReasonBadMaker
			if !bytes.Equal(rec.parsed.Info.Picture.Data, seal.Info.Picture.Data) {
				reason = ReasonPictureTampered
			}
			sr.check(CheckMaker, false, reason, "the seal in the signature differs from the registry's seal %s", rec.ID)
		}
		st, why, err := s.statusAt(ctx, rec.ID, at)
		sr.SealStatus = rec.Status
		switch {
		case err != nil:
			sr.check(CheckSealStatus, false, ReasonMalformed, "registry: %v", err)
		case st == StatusRevoked:
			sr.check(CheckSealStatus, false, ReasonSealRevoked, "the seal was revoked at the signing time (%s)", why)
		case st == StatusSuspended:
			sr.check(CheckSealStatus, false, ReasonSealSuspended, "the seal was suspended at the signing time (%s)", why)
		case st == "":
			sr.check(CheckSealStatus, false, ReasonSealNotYetValid, "the seal was not yet made at the signing time")
		default:
			sr.check(CheckSealStatus, true, "", "active at the signing time (now %s)", rec.Status)
		}
	}
}

// checkMakerCert checks that the seal's maker is a seal maker and its
// certificate at the signing time. Whoever holds a certificate can sign
// an SESeal in any name, so a certificate that chains to a trust anchor is
// not enough: the maker must be one of the platform's own makers (any
// generation of the table seal_maker, retired ones included: the seals
// they made carry their certificates), checked against the platform's
// anchors, or be certified by a configured foreign seal-maker issuer
// (seal.maker_anchors), checked against those issuers only. Any other
// maker, a person's certificate of the platform CA say, is not recognised
// and the seal is invalid.
func (s *Service) checkMakerCert(ctx context.Context, sr *SealReport, maker *smx509.Certificate, at time.Time, ev signature.Evidence) {
	mine, err := s.platformMaker(ctx, maker.Raw)
	if err != nil {
		sr.check(CheckMakerCert, false, ReasonMalformed, "registry of seal makers: %v", err)
		return
	}
	var mr signature.SignerReport
	what := "the platform's seal maker"
	if mine {
		mr = s.Verifier().CheckCertificate(ctx, maker, nil, at, ev)
	} else {
		if len(s.makerAnchors) == 0 {
			sr.check(CheckMakerCert, false, ReasonMakerUnknown, "%s is not a seal maker of this platform, and no foreign seal maker is configured (seal.maker_anchors)", maker.Subject)
			return
		}
		v := &signature.Verifier{Roots: s.makerAnchors, Fetch: s.fetch, Now: s.env.Clock.Now}
		mr = v.CheckCertificate(ctx, maker, nil, at, ev)
		for _, c := range mr.Checks {
			if c.Name == signature.CheckChain && !c.Pass {
				sr.check(CheckMakerCert, false, ReasonMakerUnknown, "%s is not a seal maker of this platform nor certified by a configured foreign seal-maker issuer (seal.maker_anchors): %s", maker.Subject, c.Detail)
				return
			}
		}
		what = "the foreign seal maker"
	}
	valid := true
	for _, c := range mr.Checks {
		if !c.Pass && c.Reason != signature.ReasonRevokedAfterUse {
			sr.check(CheckMakerCert, false, c.Reason, "maker %s: %s", c.Name, c.Detail)
			valid = false
		}
	}
	if valid {
		sr.check(CheckMakerCert, true, "", "%s %s; its certificate is valid and trusted at the signing time", what, maker.Subject)
	}
}

// platformMaker says whether der is the certificate of one of the
// platform's seal-maker generations, active or retired.
func (s *Service) platformMaker(ctx context.Context, der []byte) (bool, error) {
	var n int
	err := s.env.DB.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, `SELECT COUNT(*) FROM seal_maker WHERE cert = ?`, der).Scan(&n)
	})
	return n > 0, err
}

func summary(r *Report) string {
	var b strings.Builder
	if r.Valid {
		b.WriteString("VALID")
	} else {
		b.WriteString("INVALID")
	}
	fmt.Fprintf(&b, ": %s, %d seal signature(s)\n", r.Format, len(r.Seals))
	for i, s := range r.Seals {
		verdict := "valid"
		if !s.Valid {
			verdict = "INVALID"
		}
		who := "unknown signer"
		if s.Signer != nil {
			who = s.Signer.Subject
		}
		fmt.Fprintf(&b, "seal %d: %q (%s) by %s — %s\n", i+1, s.SealName, s.SealID, who, verdict)
		fmt.Fprintf(&b, "  signing time %s (%s)\n", s.SigningTime.Format(time.RFC3339), s.SigningTimeEvidence.Source)
		signature.WriteChecks(&b, "  ", s.Checks)
	}
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "[FAIL] %s: %s (%s)\n", c.Name, c.Detail, c.Reason)
	}
	return b.String()
}

// verifyPDF verifies one PDF signature: the ByteRange, the CMS signature
// over the bytes it covers (the document digest), that nothing follows
// the signed revision, the time-stamp, the signer and the seal it carries.
func (s *Service) verifyPDF(ctx context.Context, doc []byte, f *pdf.Signature) SealReport {
	sr := SealReport{Valid: true, PropertyInfo: "pdf-field:" + f.Field}
	if f.Err != nil {
		sr.check(CheckFormat, false, ReasonMalformed, "%v", f.Err)
		return sr
	}
	v := s.Verifier()
	signer, err := f.Verify(doc, nil)
	switch {
	case errors.Is(err, pdf.ErrByteRange):
		sr.check(CheckByteRange, false, ReasonByteRange, "%v", err)
	case err == nil || errors.Is(err, pdf.ErrAppended):
		sr.check(CheckByteRange, true, "", "ByteRange %v covers the signed revision but /Contents", f.ByteRange)
		sr.check(CheckSignature, true, "", "CMS signature over the signed revision valid (%s)", f.SignedData.Signers[0].SignatureAlgorithm)
		sr.check(CheckDocument, true, "", "messageDigest matches the signed bytes")
		if err != nil {
			sr.check(CheckDocument, false, ReasonAppended, "%v", err)
		}
	case cms.ReasonOf(err) == cms.ReasonContentAltered:
		sr.check(CheckByteRange, true, "", "ByteRange %v covers the whole file but /Contents", f.ByteRange)
		sr.check(CheckDocument, false, ReasonDigestMismatch, "messageDigest does not match the signed bytes: the document was changed after sealing")
	default:
		sr.check(CheckSignature, false, ReasonBadSignature, "%v", err)
	}
	si := f.SignedData.Signers[0]
	if t, ok := si.SigningTime(); ok {
		sr.ClaimedTime = t
	}
	var token []byte
	if tokens := si.SignatureTimeStamps(); len(tokens) > 0 {
		token = tokens[0]
	}
	at, ev := s.checkSigningTime(v, &sr, token, si.Signature)
	if f.Seal == nil {
		sr.check(CheckFormat, false, ReasonMalformed, "the signature carries no seal (signed attribute %s)", pdf.OIDAttrSeal)
		return sr
	}
	seal, err := ses.ParseSeal(f.Seal)
	if err != nil {
		sr.check(CheckFormat, false, ReasonMalformed, "the seal inside: %v", err)
		return sr
	}
	sr.Version, sr.SealID, sr.SealName = seal.Format, seal.Info.ESID, seal.Info.Property.Name
	if signer == nil {
		signer = f.SignedData.FindCertificate(si, nil)
	}
	if signer != nil {
		checkSigner(ctx, v, &sr, seal, signer, at, ev)
	}
	s.checkSeal(ctx, &sr, seal, f.Seal, at, ev)
	return sr
}
