package ca

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/store"
)

// ocspValidity is the interval from thisUpdate to nextUpdate of an OCSP
// response: inside the 8 h – 4 d of ACCEPTANCE.md C-02 (CA/B Forum BR
// §4.9.10 asks for at least 8 hours and at most 10 days). A revocation
// reaches the responder's own cache at once (ocsp_cache.go), whatever this
// interval is; it bounds how long HTTP caches and clients keep a response.
const ocspValidity = 24 * time.Hour

// maxOCSPRequest bounds a POST body. An RFC 5019 request for one
// certificate is about 100 octets; 16 KiB leaves room for a signed request
// with its certificates.
const maxOCSPRequest = 16 << 10

// ocspPOST answers POST /ocsp/{ca} (RFC 6960 Appendix A.1.1).
func (s *Service) ocspPOST(w http.ResponseWriter, r *http.Request) error {
	a, err := s.authority(r.PathValue("ca"))
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/ocsp-request" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/ocsp-request" {
			return writeOCSP(w, ocsp.CreateErrorResponse(ocsp.MalformedRequest), nil)
		}
	}
	body, err := readOCSPBody(r)
	if err != nil {
		// A body the edge's own limit cut short is malformed as well: no
		// OCSP request is that large (ACCEPTANCE.md C-09).
		return writeOCSP(w, ocsp.CreateErrorResponse(ocsp.MalformedRequest), nil)
	}
	ans := s.ocspAnswer(r.Context(), a, body)
	return writeOCSP(w, ans.der, ans.cache)
}

// readOCSPBody reads a POST body of at most maxOCSPRequest octets, in one
// allocation when the client sent a Content-Length (they all do).
func readOCSPBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= maxOCSPRequest {
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
	if err == nil && len(body) > maxOCSPRequest {
		err = errors.New("OCSP request too large")
	}
	return body, err
}

// ocspGET answers GET /ocsp/{ca}/{request...} (RFC 6960 Appendix A.1, RFC
// 5019 §5). The wildcard holds the tail percent-decoded once, with every
// "/" of the base64 as the client sent it, raw or as %2F: httpx.Mux.OpaqueTail
// escapes the tail's slashes before ServeMux routes, so a "//" is neither
// merged nor redirected.
func (s *Service) ocspGET(w http.ResponseWriter, r *http.Request) error {
	a, err := s.authority(r.PathValue("ca"))
	if err != nil {
		return err
	}
	body, err := ocsp.DecodeGETValue(r.PathValue("request"))
	if err != nil {
		return writeOCSP(w, ocsp.CreateErrorResponse(ocsp.MalformedRequest), nil)
	}
	ans := s.ocspAnswer(r.Context(), a, body)
	if ans.cache != nil {
		// RFC 5019 §6.2: caches may keep the response until its nextUpdate,
		// and no longer; the headers describe the response served (for a
		// pre-signed one, its own thisUpdate and nextUpdate, not now + 24 h).
		now := s.env.Clock.Now()
		maxAge := max(0, int(ans.cache.nextUpdate.Sub(now)/time.Second))
		lastModified, expires := ans.cache.httpDates()
		h := w.Header()
		h["Cache-Control"] = []string{"public, max-age=" + strconv.Itoa(maxAge) + ", no-transform, must-revalidate"}
		h["Last-Modified"] = []string{lastModified}
		h["Expires"] = []string{expires}
		if ans.cache.etag != "" {
			h["Etag"] = []string{ans.cache.etag}
		}
	}
	return writeOCSP(w, ans.der, ans.cache)
}

// writeOCSP writes an OCSPResponse. OCSP errors travel in the body with
// HTTP 200 (RFC 6960 §2.3, RFC 5019 §2.2.3); only a successful response
// (c not nil) may be cached.
func writeOCSP(w http.ResponseWriter, der []byte, c *cached) error {
	h := w.Header()
	h["Content-Type"] = hdrOCSPResponse // canonical key, shared value: no allocation
	if c == nil {
		h["Cache-Control"] = hdrNoStore
	}
	h["Content-Length"] = []string{strconv.Itoa(len(der))}
	_, err := w.Write(der)
	return err
}

var (
	hdrOCSPResponse = []string{"application/ocsp-response"}
	hdrNoStore      = []string{"no-store"}
)

// ocspAnswerResult is an answer: the DER OCSPResponse and, for a successful
// one, its times.
type ocspAnswerResult struct {
	der   []byte
	cache *cached
}

func ocspError(status ocsp.ResponseStatus) ocspAnswerResult {
	return ocspAnswerResult{der: ocsp.CreateErrorResponse(status)}
}

// ocspAnswer answers a DER request to CA a (see ocsp_cache.go for the
// cache and responder.go for the delegated responders): a request without
// a nonce from the pre-signed cache when the answer is cacheable, anything
// else signed on demand by the CA's delegated responder, with the request's
// nonce echoed (RFC 9654 §2.1; ParseRequest refuses lengths other than 1
// to 32 octets as malformedRequest).
func (s *Service) ocspAnswer(ctx context.Context, a *authority, body []byte) ocspAnswerResult {
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		return ocspError(ocsp.MalformedRequest)
	}
	if !s.ocspMatches(a, req) {
		// Not a certificate of this CA: this responder is not authoritative
		// for it (RFC 6960 §2.3 unauthorized).
		return ocspError(ocsp.Unauthorized)
	}
	st := s.ocspState()
	if st != nil && req.Nonce == nil {
		c, err := s.presigned(ctx, st, a, req)
		if err != nil {
			s.env.Logger.Error("ocsp: pre-signed response failed", "ca", a.id, "err", err)
			return ocspError(ocsp.TryLater)
		}
		if c != nil {
			return ocspAnswerResult{der: c.der, cache: c}
		}
	}
	t, _, err := s.template(ctx, a, req.SerialNumber, req.HashAlgorithm, req.Nonce)
	if err != nil {
		s.env.Logger.Error("ocsp: status lookup failed", "ca", a.id, "err", err)
		return ocspError(ocsp.TryLater)
	}
	var r *responder
	if st != nil {
		r = st.responder(a.id)
	}
	r = ocspSigner(a, r, &t)
	der, err := s.signOCSP(a, r, t)
	if err != nil {
		s.env.Logger.Error("ocsp: sign failed", "ca", a.id, "err", err)
		return ocspError(ocsp.InternalError)
	}
	return ocspAnswerResult{der: der, cache: &cached{der: der, thisUpdate: t.ThisUpdate, nextUpdate: t.NextUpdate}}
}

// template is what a response about serial under a states now: the status
// read from the database, thisUpdate = producedAt = now (whole seconds),
// nextUpdate = now + ocspValidity, and a revocationTime after now (a clock
// behind the revoking one) set to now. stored is the ca_certificates state
// the answer rests on, its status empty when the answer may not be cached
// (unknown serial).
func (s *Service) template(ctx context.Context, a *authority, serial *big.Int, hash ocsp.HashAlg, nonce []byte) (t ocsp.Template, stored certState, err error) {
	now := s.env.Clock.Now().UTC().Truncate(time.Second)
	t = ocsp.Template{Status: ocsp.Unknown, SerialNumber: serial, HashAlgorithm: hash,
		ThisUpdate: now, NextUpdate: now.Add(ocspValidity), ProducedAt: now, Nonce: nonce, RevocationReason: ocsp.NoReason}
	status, revokedAt, reason, stored, err := s.certStatus(ctx, a, serial)
	if err != nil {
		return t, certState{}, err
	}
	t.Status = status
	if status == ocsp.Revoked {
		if revokedAt.After(t.ThisUpdate) {
			// Revoked "after now": this process's clock is behind the one
			// that revoked (stepped back, or another process on the same
			// PostgreSQL a moment behind). The answer is revoked all the
			// same, dated no later than thisUpdate as RFC 6960 §4.2.1
			// requires; thisUpdate stays this clock's now, since a response
			// not yet valid is one relying parties reject.
			s.env.Logger.Warn("ocsp: revocation dated after this process's clock; revocationTime set to thisUpdate",
				"ca", a.id, "serial", serialHex(serial), "revoked_at", revokedAt.UTC().Format(time.RFC3339), "this_update", t.ThisUpdate.Format(time.RFC3339))
			revokedAt = t.ThisUpdate
		}
		t.RevokedAt, t.RevocationReason = revokedAt, reason
	}
	return t, stored, nil
}

// ocspSigner picks who signs t, a response of a, and clamps t's nextUpdate
// to the end of that signer's certificate. r, a's delegated responder in
// use (nil: none), signs when its certificate is valid from t's thisUpdate
// to its nextUpdate. Otherwise its rollover has failed until its last day
// (responders roll over 30 days before their end, responder.go): the CA key
// signs (nil, RFC 6960 §2.6) until a successor is made, rather than answer
// with a response that outlives its responder's certificate or, once that
// has expired, not at all. A responder whose certificate ends no earlier
// than its CA's (clamped to the CA's life) keeps signing: the CA key would
// cover no more. No response's nextUpdate is after the notAfter of the
// certificate it is verified with.
func ocspSigner(a *authority, r *responder, t *ocsp.Template) *responder {
	if r != nil && !r.covers(t.ThisUpdate, t.NextUpdate) &&
		(!r.covers(t.ThisUpdate, t.ThisUpdate) || r.cert.NotAfter.Before(a.cert.NotAfter)) {
		r = nil
	}
	end := a.cert.NotAfter
	if r != nil {
		end = r.cert.NotAfter
	}
	if t.NextUpdate.After(end) && end.After(t.ThisUpdate) {
		t.NextUpdate = end
	}
	return r
}

// signerGeneration is the generation of the responder that signs a's
// responses made at now (ocspSigner; 0: the CA key), which a cached
// response must have been signed by to be served.
func signerGeneration(a *authority, r *responder, now time.Time) int64 {
	this := now.UTC().Truncate(time.Second)
	if r = ocspSigner(a, r, &ocsp.Template{ThisUpdate: this, NextUpdate: this.Add(ocspValidity)}); r != nil {
		return r.generation
	}
	return 0
}

// signOCSP signs t with r, the CA's delegated responder, whose certificate
// goes into the response (RFC 6960 §4.2.2.2); with the CA's own key when r
// is nil (RFC 6960 §2.6). r is what ocspSigner picked for t.
func (s *Service) signOCSP(a *authority, r *responder, t ocsp.Template) ([]byte, error) {
	if r == nil {
		return ocsp.CreateResponse(a.cert, nil, t, a.signer)
	}
	return ocsp.CreateResponse(a.cert, r.cert, t, r.signer)
}

// certState is the row of ca_certificates an OCSP answer rests on: its
// status and, for a revoked certificate, the revocation's date, reason and
// sequence (revocation_seq, which a revocation and a change of its reason
// both move). A pre-signed response is stored only while the row still
// holds exactly this state (storeResponse): a status alone would let a
// response signed before a change of reason (superseded to keyCompromise,
// revoke.go) be stored after it. status is empty for an answer that is not
// cached (a serial the CA never issued).
type certState struct {
	status    string // "good" or "revoked"
	revokedAt string // as stored; empty unless revoked
	reason    int    // -1 unless revoked
	seq       int64  // revocation_seq
}

// readCertState reads the state of issuer/serial, sql.ErrNoRows when there
// is no such certificate. lock takes the row FOR SHARE on PostgreSQL (in a
// transaction: a concurrent revocation or change of reason waits for it).
func readCertState(ctx context.Context, q store.Querier, issuer, serial string, lock bool) (certState, error) {
	query := `SELECT status, COALESCE(revoked_at, ''), COALESCE(revocation_reason, -1), revocation_seq
		FROM ca_certificates WHERE issuer_id = ? AND serial = ?`
	if lock && q.Driver() == store.Postgres {
		query += " FOR SHARE"
	}
	var c certState
	err := q.QueryRow(ctx, query, issuer, serial).Scan(&c.status, &c.revokedAt, &c.reason, &c.seq)
	return c, err
}

// certStatus looks serial up under a: good or revoked as stored, unknown
// when a never issued it (a serial never issued is never "good", RFC 6960
// §2.2). stored is the ca_certificates state behind the answer, with an
// empty status for unknown serials. The CA certificates a root issued are
// rows of ca_certificates like any (authorities.go), so a revoked one
// answers revoked.
func (s *Service) certStatus(ctx context.Context, a *authority, n *big.Int) (status ocsp.Status, revokedAt time.Time, reason int, stored certState, err error) {
	if n.Sign() <= 0 {
		return ocsp.Unknown, time.Time{}, 0, certState{}, nil
	}
	serial := serialHex(n)
	var c certState
	err = s.env.DB.Read(ctx, func(q store.Querier) error {
		var err error
		c, err = readCertState(ctx, q, a.id, serial, false)
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ocsp.Unknown, time.Time{}, 0, certState{}, nil
	case err != nil:
		return 0, time.Time{}, 0, certState{}, fmt.Errorf("read certificate %s/%s: %w", a.id, serial, err)
	case c.status == "revoked":
		var at time.Time
		if c.revokedAt != "" {
			if at, err = time.Parse(timeFormat, c.revokedAt); err != nil {
				return 0, time.Time{}, 0, certState{}, fmt.Errorf("certificate %s/%s: bad revocation time: %w", a.id, serial, err)
			}
		}
		return ocsp.Revoked, at, c.reason, c, nil
	case c.status == "good":
		return ocsp.Good, time.Time{}, 0, c, nil
	}
	return 0, time.Time{}, 0, certState{}, fmt.Errorf("certificate %s/%s: unknown status %q", a.id, serial, c.status)
}

// ocspMatches reports whether req's CertID names CA a, with a's CertID
// hashes under every algorithm computed on its first request (kept by
// certificate: a rollover makes a new one).
func (s *Service) ocspMatches(a *authority, req *ocsp.Request) bool {
	v, ok := s.ocspIssuers.Load(a.cert)
	if !ok {
		is, err := ocsp.NewIssuer(a.cert)
		if err != nil {
			return false
		}
		v, _ = s.ocspIssuers.LoadOrStore(a.cert, is)
	}
	return req.Matches(v.(*ocsp.Issuer))
}
