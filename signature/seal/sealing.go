package seal

import (
	"context"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/signature"
	"github.com/govtrust/govtrust/signature/cms"
	"github.com/govtrust/govtrust/signature/ofd"
	"github.com/govtrust/govtrust/signature/pdf"
	"github.com/govtrust/govtrust/signature/ses"
)

// Document formats.
const (
	FormatSES = "ses" // any file: a detached .ses SES_Signature
	FormatOFD = "ofd" // GB/T 33190 §18 seal signature in the package
	FormatPDF = "pdf" // a CMS signature in an incremental update
)

// sessionTTL is how long a prepared sealing waits for the USB key.
const sessionTTL = 5 * time.Minute

// PrepareRequest asks the server to prepare a sealing: what the official's
// USB key must sign.
type PrepareRequest struct {
	Format string `json:"format"` // ses, ofd, pdf
	// Document is the file (base64); for ses, Digest (the SM3 of a file
	// too large to upload, hash-only mode) may be sent instead.
	Document []byte `json:"document,omitempty"`
	Digest   []byte `json:"digest,omitempty"`
	// Name is the document's name shown to the official and logged.
	Name string `json:"name"`
	// Certificate is the official's signing certificate (PEM), as the
	// agent reads it from the USB key.
	Certificate string `json:"certificate"`
	// Page (from 1) and the seal's position in millimetres from the top
	// left corner (OFD, PDF).
	Page int     `json:"page,omitempty"`
	X    float64 `json:"x,omitempty"`
	Y    float64 `json:"y,omitempty"`
	// Position places the seal instead of page, x and y (OFD, PDF).
	Position *Position `json:"position,omitempty"`
}

// Position is where the seal goes: {page, x, y} as the top-level fields,
// {keyword, occurrence}: centred on the occurrence-th (from 1, default 1)
// occurrence of keyword in the pages' text, or {riding: true, y}: a riding
// seal (骑缝章) sliced across the right edges of all pages, its top at y
// mm or vertically centred without y.
type Position struct {
	Page       int      `json:"page,omitempty"`
	X          float64  `json:"x,omitempty"`
	Y          *float64 `json:"y,omitempty"`
	Keyword    string   `json:"keyword,omitempty"`
	Occurrence int      `json:"occurrence,omitempty"`
	Riding     bool     `json:"riding,omitempty"`
}

// validate checks the position for format.
func (p *Position) validate(format string) error {
	kw := p.Keyword != ""
	switch {
	case p.Page < 0 || p.X < 0 || (p.Y != nil && *p.Y < 0) || p.Occurrence < 0:
		return errors.New("position: page, x, y and occurrence must not be negative")
	case kw && p.Riding:
		return errors.New("position: keyword and riding exclude each other")
	case (kw || p.Riding) && (p.Page != 0 || p.X != 0):
		return errors.New("position: page and x go with neither keyword nor riding")
	case kw && p.Y != nil:
		return errors.New("position: y does not go with keyword")
	case p.Occurrence != 0 && !kw:
		return errors.New("position: occurrence needs keyword")
	case kw && (!utf8.ValidString(p.Keyword) || len(p.Keyword) > ofd.MaxKeywordBytes || strings.TrimSpace(p.Keyword) == ""):
		return fmt.Errorf("position: keyword: non-blank UTF-8 of at most %d bytes", ofd.MaxKeywordBytes)
	case kw && format != FormatOFD && format != FormatPDF:
		return errors.New("position: keyword positions are for OFD and PDF documents")
	case p.Riding && format != FormatOFD && format != FormatPDF:
		return errors.New("position: a riding seal is for OFD and PDF documents")
	case format == FormatSES && (p.Page != 0 || p.X != 0 || p.Y != nil):
		return errors.New("position: a detached seal has no position")
	}
	return nil
}

// position returns the request's position, from the position object or
// the top-level page, x and y.
func (r *PrepareRequest) position() Position {
	if r.Position != nil {
		return *r.Position
	}
	p := Position{Page: r.Page, X: r.X}
	if r.Y != 0 {
		y := r.Y
		p.Y = &y
	}
	return p
}

// Validate implements httpx.Validator.
func (r *PrepareRequest) Validate() error {
	switch {
	case r.Format != FormatSES && r.Format != FormatOFD && r.Format != FormatPDF:
		return fmt.Errorf("format: %q is not ses, ofd or pdf", r.Format)
	case len(r.Document) == 0 && r.Digest == nil:
		// A JSON client omits an empty document ("omitempty"), so a
		// missing one is most often a 0-byte file (ACCEPTANCE.md H-05).
		return errors.New("document: missing or empty; a 0-byte document cannot be sealed (send digest for hash-only mode)")
	case r.Document != nil && r.Digest != nil:
		return errors.New("exactly one of document and digest")
	case r.Digest != nil && (r.Format != FormatSES || len(r.Digest) != 32):
		return errors.New("digest: 32 bytes (SM3), with format ses only")
	case r.Name == "" || len(r.Name) > 255:
		return errors.New("name: 1-255 characters")
	case r.Certificate == "":
		return errors.New("certificate: the official's signing certificate (PEM)")
	case r.Page < 0 || r.X < 0 || r.Y < 0:
		return errors.New("page and position must not be negative")
	case r.Position != nil && (r.Page != 0 || r.X != 0 || r.Y != 0):
		return errors.New("position: send position or page, x and y, not both")
	case r.Position != nil:
		return r.Position.validate(r.Format)
	}
	return nil
}

// Prepared is what the agent shows and signs.
type Prepared struct {
	Session  string `json:"session"`
	Format   string `json:"format"`
	SealID   string `json:"seal_id"`
	SealName string `json:"seal_name"`
	Document string `json:"document"`
	// DocumentHash (hex) is shown to the official: for ses the dataHash the
	// seal signature binds (SM3 of the document, or SHA-256 for an ECDSA
	// signer), which the agent checks; otherwise the SM3 of the document.
	DocumentHash string `json:"document_hash"`
	// ToBeSigned is the DER TBS_Sign the USB key signs (SM2 with SM3 and
	// the default user ID), or for pdf the DER SET OF the CMS signed
	// attributes (SM2 the same way, or ECDSA P-256 over SHA-256).
	ToBeSigned []byte    `json:"to_be_signed"`
	Expires    time.Time `json:"expires"`

	// SignatureXML is, for ofd, the Signature.xml whose hash ToBeSigned
	// signs: the agent checks it and shows the files it protects.
	SignatureXML []byte `json:"signature_xml,omitempty"`
}

type session struct {
	p Prepared
	// docSM3 is the SM3 of the document (hex), for the audit record and
	// the usage log.
	docSM3  string
	actor   string
	account string
	cert    []byte
	subject string
	ofd     *ofd.Prepared
	pdf     *pdf.Prepared
	cms     *cms.SignedData
	expires time.Time
}

type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func (ss *sessions) put(s *session, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, o := range ss.m {
		if now.After(o.expires) {
			delete(ss.m, id)
		}
	}
	ss.m[s.p.Session] = s
}

// take removes and returns the session id of account.
func (ss *sessions) take(id, account string, now time.Time) (*session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok || s.account != account || now.After(s.expires) {
		return nil, false
	}
	delete(ss.m, id)
	return s, true
}

// Prepare checks that p may use seal id with the given certificate and
// returns what the USB key must sign.
func (s *Service) Prepare(ctx context.Context, p *authz.Principal, id string, req PrepareRequest) (*Prepared, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	r, err := s.Seal(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.env.Clock.Now().UTC()
	if err := s.mayUse(ctx, p, r, now); err != nil {
		return nil, err
	}
	b, _ := pem.Decode([]byte(req.Certificate))
	if b == nil {
		return nil, fmt.Errorf("%w: certificate is not PEM", ErrRequest)
	}
	cert, err := smx509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrRequest, err)
	}
	if !r.parsed.Lists(cert.Raw) {
		return nil, s.refuse(ctx, p, r, "the certificate is not one the seal lists")
	}
	if err := signature.SigningUsage(cert); err != nil {
		return nil, s.refuse(ctx, p, r, err.Error())
	}
	alg, err := ses.AlgorithmFor(cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	docHash := req.Digest
	if docHash == nil {
		docHash = ses.SM3(req.Document)
	}
	at := now.Truncate(time.Second)
	sess := &session{actor: p.Actor(), account: p.Account.ID, cert: cert.Raw, subject: cert.Subject.String(), expires: now.Add(sessionTTL)}
	var tbs *ses.TBS
	var raw []byte
	shownHash := docHash
	switch req.Format {
	case FormatSES:
		h := docHash
		if !alg.Equal(ses.OIDSM2WithSM3) {
			if req.Document == nil {
				return nil, fmt.Errorf("%w: hash-only mode needs an SM2 signer (the digest is SM3)", ErrRequest)
			}
			h = ses.DataHash(alg, req.Document)
		}
		tbs = ses.NewTBS(r.DER, at, h, "file:"+asciiName(req.Name))
		shownHash = h
	case FormatOFD:
		rp := req.position()
		w := float64(r.parsed.Info.Picture.Width)
		h := w
		if ph := float64(r.parsed.Info.Picture.Height); ph > 0 {
			h = ph
		}
		op := ofd.Position{Page: max(rp.Page, 1) - 1, X: rp.X, Width: w, Height: h, Keyword: rp.Keyword, Occurrence: rp.Occurrence,
			Riding: rp.Riding, Centred: rp.Riding && rp.Y == nil}
		if rp.Y != nil {
			op.Y = *rp.Y
		}
		pr, err := ofd.Prepare(req.Document, at, alg.String(), op, "govtrust")
		if errors.Is(err, ofd.ErrTooLarge) {
			return nil, httpx.Errorf(http.StatusRequestEntityTooLarge, "document: %v", err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRequest, err)
		}
		sess.ofd = pr
		tbs = ses.NewTBS(r.DER, at, ses.DataHash(alg, pr.SignatureXML), pr.Path)
	case FormatPDF:
		// The picture is drawn as an image XObject: PNG only.
		if r.parsed.Info.Picture.Type != "PNG" {
			return nil, fmt.Errorf("%w: the seal picture is %s; PDF sealing needs a PNG picture", ErrRequest, r.parsed.Info.Picture.Type)
		}
		w := float64(r.parsed.Info.Picture.Width)
		rp := req.position()
		y := 0.0
		if rp.Y != nil {
			y = *rp.Y
		}
		pr, err := pdf.Prepare(req.Document, pdf.Field{Name: "govtrust-seal-" + newID(6), Signer: cert.Subject.CommonName, Reason: r.Name,
			Time: at, Picture: r.parsed.Info.Picture.Data, Position: pdf.Position{Page: max(rp.Page, 1), X: rp.X, Y: y, Width: w, Height: w,
				Riding: rp.Riding, Centred: rp.Riding && rp.Y == nil, Keyword: rp.Keyword, Occurrence: rp.Occurrence},
			Reserve: pdf.DefaultReserve + len(r.DER)})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRequest, err)
		}
		sd, toSign, err := pdf.NewSignedData(pr, cert, nil, r.DER, at)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRequest, err)
		}
		sess.pdf, sess.cms, raw = pr, sd, toSign
	}
	if tbs != nil {
		if raw, err = tbs.Marshal(ses.V4); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRequest, err)
		}
	}
	sess.docSM3 = hex.EncodeToString(docHash)
	sess.p = Prepared{Session: newID(12), Format: req.Format, SealID: r.ID, SealName: r.Name, Document: req.Name,
		DocumentHash: hex.EncodeToString(shownHash), ToBeSigned: raw, Expires: sess.expires}
	if sess.ofd != nil {
		sess.p.SignatureXML = sess.ofd.SignatureXML
	}
	s.sessions.put(sess, now)
	return &sess.p, nil
}

// mayUse refuses (refuse) a use of seal r by p at now unless p is bound
// to it, it is active and within its validity. Prepare checks it, and
// Complete again: the seal may have been suspended or revoked, or p
// unbound from it, while the USB key signed.
func (s *Service) mayUse(ctx context.Context, p *authz.Principal, r *Record, now time.Time) error {
	switch {
	case !slices.Contains(r.Holders, p.Account.ID):
		return s.refuse(ctx, p, r, fmt.Sprintf("%s is not bound to the seal", p.Account.Name))
	case r.Status != StatusActive:
		return s.refuse(ctx, p, r, "the seal is "+r.Status)
	case !r.parsed.ValidAt(now):
		return s.refuse(ctx, p, r, "the seal is outside its validity period")
	}
	return nil
}

// refuse audits a refused use of a seal and returns the error.
func (s *Service) refuse(ctx context.Context, p *authz.Principal, r *Record, why string) error {
	err := fmt.Errorf("%w: %s", ErrForbidden, why)
	rec := audit.Record{Actor: p.Actor(), Action: "seal.use", Object: "seal/" + r.ID, Outcome: audit.Failure, Details: map[string]any{"reason": why}}
	if _, aerr := s.env.Audit.Do(ctx, s.env.DB, rec, nil); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// CompleteRequest carries the USB key's signature over ToBeSigned.
type CompleteRequest struct {
	Signature []byte `json:"signature"`
}

// Sealed is the result of a sealing.
type Sealed struct {
	Format string `json:"format"`
	// Document is the sealed OFD, or for ses the DER SES_Signature.
	Document    []byte    `json:"document"`
	SealID      string    `json:"seal_id"`
	SignedAt    time.Time `json:"signed_at"`
	Timestamped bool      `json:"timestamped"`
	Usage       string    `json:"usage_id"`
}

// Complete checks the USB key's signature, time-stamps it, assembles the
// SES_Signature, embeds it and logs the use of the seal.
func (s *Service) Complete(ctx context.Context, p *authz.Principal, id string, req CompleteRequest) (*Sealed, error) {
	now := s.env.Clock.Now().UTC()
	sess, ok := s.sessions.take(id, p.Account.ID, now)
	if !ok {
		return nil, fmt.Errorf("%w: sealing session %q (unknown, expired or not yours)", ErrNotFound, id)
	}
	// The seal as it is now, not as it was when the session was prepared.
	r, err := s.Seal(ctx, sess.p.SealID)
	if err != nil {
		return nil, err
	}
	if err := s.mayUse(ctx, p, r, now); err != nil {
		return nil, err
	}
	if sess.pdf != nil {
		out, err := s.completePDF(ctx, sess, req.Signature)
		if err != nil {
			return nil, err
		}
		return out, s.logUse(ctx, p, sess, out)
	}
	sig, err := ses.Assemble(sess.p.ToBeSigned, sess.cert, req.Signature, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: the USB key's signature: %v", ErrRequest, err)
	}
	var token []byte
	if s.stamper != nil {
		h := cms.HashByName("sm3")
		token, err = signature.StampVia(s.stamper)(ctx, tsaProfile(sig.SignAlg), h, h.Sum(sig.Value))
		if err != nil && s.cfg.RequireTimestamp {
			return nil, fmt.Errorf("seal: time-stamp: %w", err)
		}
		if err != nil {
			s.env.Logger.Warn("seal: no time-stamp, sealing without one", "err", err)
			token = nil
		}
	} else if s.cfg.RequireTimestamp {
		return nil, errors.New("seal: a time-stamp is required and no TSA is wired in")
	}
	if token != nil {
		if sig, err = ses.Assemble(sess.p.ToBeSigned, sess.cert, req.Signature, token); err != nil {
			return nil, err
		}
	}
	out := &Sealed{Format: sess.p.Format, Document: sig.Raw, SealID: sess.p.SealID, SignedAt: sig.TBS.TimeInfo, Timestamped: token != nil, Usage: newID(8)}
	if sess.ofd != nil {
		if out.Document, err = sess.ofd.Finish(sig.Raw); err != nil {
			return nil, err
		}
	}
	return out, s.logUse(ctx, p, sess, out)
}

// completePDF attaches the USB key's signature to the CMS signed data,
// adds the signature time-stamp (RFC 3161 over the signature value, as
// for SES) and writes the DER into the PDF's /Contents.
func (s *Service) completePDF(ctx context.Context, sess *session, sig []byte) (*Sealed, error) {
	if err := pdf.Attach(sess.cms, sess.pdf, sig); err != nil {
		return nil, fmt.Errorf("%w: the USB key's signature: %v", ErrRequest, err)
	}
	si := sess.cms.Signers[0]
	alg, err := ses.AlgorithmFor(sess.cms.FindCertificate(si, nil).PublicKey)
	if err != nil {
		return nil, err
	}
	token, err := s.timestamp(ctx, tsaProfile(alg), si.Digest, si.Signature)
	if err != nil {
		return nil, err
	}
	if token != nil {
		si.AddSignatureTimeStamp(token)
	}
	der, err := sess.cms.Marshal()
	if err != nil {
		return nil, err
	}
	doc, err := sess.pdf.Finish(der)
	if err != nil {
		return nil, err
	}
	at, _ := si.SigningTime()
	return &Sealed{Format: FormatPDF, Document: doc, SealID: sess.p.SealID, SignedAt: at, Timestamped: token != nil, Usage: newID(8)}, nil
}

// timestamp asks the TSA for a token over value with h; nil without a
// TSA or on failure, unless the policy requires one.
func (s *Service) timestamp(ctx context.Context, profile string, h *cms.Hash, value []byte) ([]byte, error) {
	if s.stamper == nil {
		if s.cfg.RequireTimestamp {
			return nil, errors.New("seal: a time-stamp is required and no TSA is wired in")
		}
		return nil, nil
	}
	token, err := signature.StampVia(s.stamper)(ctx, profile, h, h.Sum(value))
	if err != nil && s.cfg.RequireTimestamp {
		return nil, fmt.Errorf("seal: time-stamp: %w", err)
	}
	if err != nil {
		s.env.Logger.Warn("seal: no time-stamp, sealing without one", "err", err)
		return nil, nil
	}
	return token, nil
}

// logUse audits the use of the seal and records it in its usage log.
func (s *Service) logUse(ctx context.Context, p *authz.Principal, sess *session, out *Sealed) error {
	rec := audit.Record{Actor: p.Actor(), Action: "seal.use", Object: "seal/" + sess.p.SealID, Outcome: audit.Success,
		Details: map[string]any{"document": sess.p.Document, "sm3": sess.docSM3, "format": sess.p.Format, "signer": sess.subject, "usage": out.Usage}}
	_, err := s.env.Audit.Do(ctx, s.env.DB, rec, func(tx *store.Tx) error {
		ts := 0
		if out.Timestamped {
			ts = 1
		}
		_, err := tx.Exec(ctx, `INSERT INTO seal_usage (id, seal_id, actor, signer, format, document, doc_hash, signed_at, timestamped) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			out.Usage, sess.p.SealID, p.Actor(), sess.subject, sess.p.Format, sess.p.Document, sess.docSM3, out.SignedAt.Format(timeFormat), ts)
		return err
	})
	if err != nil {
		return fmt.Errorf("seal: record use: %w", err)
	}
	return nil
}

// asciiName keeps the IA5 characters of a document name for propertyInfo.
func asciiName(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// tsaProfile is the platform TSA profile whose algorithm matches the
// signer's: an SM2 signature gets an SM2 time-stamp.
func tsaProfile(alg asn1.ObjectIdentifier) string {
	if alg.Equal(ses.OIDSM2WithSM3) {
		return "sm2"
	}
	return "ecdsa"
}
