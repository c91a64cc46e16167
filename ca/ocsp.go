package ca

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/govtrust/govtrust/ca/ocsp"
)

// ocspValidity is the interval from thisUpdate to nextUpdate of an OCSP
// response: inside the 8 h – 4 d of ACCEPTANCE.md C-02 (CA/B Forum BR
// §4.9.10 asks for at least 8 hours and at most 10 days). Responses are
// made from the database on every request, so a revocation is visible at
// once whatever this interval is; it only bounds how long caches keep one.
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
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/ocsp-request" {
			return writeOCSP(w, ocsp.CreateErrorResponse(ocsp.MalformedRequest), time.Time{})
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
	if err != nil || len(body) > maxOCSPRequest {
		// A body the edge's own limit cut short is malformed as well: no
		// OCSP request is that large (ACCEPTANCE.md C-09).
		return writeOCSP(w, ocsp.CreateErrorResponse(ocsp.MalformedRequest), time.Time{})
	}
	der, next := s.ocspAnswer(r.Context(), a, body)
	return writeOCSP(w, der, next)
}

// ocspGET answers GET /ocsp/{ca}/{request} (RFC 6960 Appendix A.1, RFC 5019
// §5). The request is taken from the escaped path as received: ServeMux's
// wildcard holds the unescaped, and a base64 '/' would already be part of
// the path. A raw "//" in the base64 never reaches this handler: ServeMux
// redirects the request to the cleaned path first (reported; it needs a fix
// at the edge).
func (s *Service) ocspGET(w http.ResponseWriter, r *http.Request) error {
	a, err := s.authority(r.PathValue("ca"))
	if err != nil {
		return err
	}
	_, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/"), "/")
	body, err := ocsp.DecodeGETPath(rest)
	if err != nil {
		return writeOCSP(w, ocsp.CreateErrorResponse(ocsp.MalformedRequest), time.Time{})
	}
	der, next := s.ocspAnswer(r.Context(), a, body)
	if !next.IsZero() {
		// RFC 5019 §6.2: caches may keep the response until nextUpdate.
		now := s.env.Clock.Now()
		maxAge := int(next.Sub(now) / time.Second)
		if maxAge < 0 {
			maxAge = 0
		}
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(maxAge)+", no-transform, must-revalidate")
		w.Header().Set("Last-Modified", now.UTC().Format(http.TimeFormat))
		w.Header().Set("Expires", next.UTC().Format(http.TimeFormat))
	}
	return writeOCSP(w, der, next)
}

// writeOCSP writes an OCSPResponse. OCSP errors travel in the body with
// HTTP 200 (RFC 6960 §2.3, RFC 5019 §2.2.3); only a successful response
// (next not zero) may be cached.
func writeOCSP(w http.ResponseWriter, der []byte, next time.Time) error {
	w.Header().Set("Content-Type", "application/ocsp-response")
	if next.IsZero() {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(der)))
	_, err := w.Write(der)
	return err
}

// ocspAnswer returns the DER OCSPResponse for a DER request to CA a, and the
// response's nextUpdate (zero for an error response).
//
// The CA's own key signs (RFC 6960 §2.6 allows the issuing CA as responder;
// C-02 accepts it). Every answer is signed on demand, so an anonymous caller
// makes the CA key sign once per request.
// TODO(ca): a delegated responder certificate (id-kp-OCSPSigning,
// ocsp-nocheck) with its own key, and pre-signed responses.
func (s *Service) ocspAnswer(ctx context.Context, a *authority, body []byte) ([]byte, time.Time) {
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		return ocsp.CreateErrorResponse(ocsp.MalformedRequest), time.Time{}
	}
	if !req.MatchesIssuer(a.cert) {
		// Not a certificate of this CA: this responder is not authoritative
		// for it (RFC 6960 §2.3 unauthorized).
		return ocsp.CreateErrorResponse(ocsp.Unauthorized), time.Time{}
	}
	now := s.env.Clock.Now().UTC().Truncate(time.Second)
	t := ocsp.Template{Status: ocsp.Unknown, SerialNumber: req.SerialNumber, HashAlgorithm: req.HashAlgorithm,
		ThisUpdate: now, NextUpdate: now.Add(ocspValidity), ProducedAt: now, Nonce: req.Nonce, RevocationReason: ocsp.NoReason}
	status, revokedAt, reason, err := s.certStatus(ctx, a, req)
	if err != nil {
		s.env.Logger.Error("ocsp: status lookup failed", "ca", a.id, "err", err)
		return ocsp.CreateErrorResponse(ocsp.TryLater), time.Time{}
	}
	t.Status = status
	if status == ocsp.Revoked {
		t.RevokedAt, t.RevocationReason = revokedAt, reason
	}
	der, err := ocsp.CreateResponse(a.cert, nil, t, a.signer)
	if err != nil {
		s.env.Logger.Error("ocsp: sign failed", "ca", a.id, "err", err)
		return ocsp.CreateErrorResponse(ocsp.InternalError), time.Time{}
	}
	return der, t.NextUpdate
}

// certStatus looks a request's serial up under a: good or revoked as
// stored, unknown when a never issued it (a serial never issued is never
// "good", RFC 6960 §2.2).
func (s *Service) certStatus(ctx context.Context, a *authority, req *ocsp.Request) (ocsp.Status, time.Time, int, error) {
	if req.SerialNumber.Sign() <= 0 {
		return ocsp.Unknown, time.Time{}, 0, nil
	}
	serial := serialHex(req.SerialNumber)
	for _, sub := range s.authorities() {
		// The CA certificates a root issued are in ca_authorities, not in
		// ca_certificates; they cannot be revoked yet.
		if sub.parent == a.id && serialHex(sub.cert.SerialNumber) == serial {
			return ocsp.Good, time.Time{}, 0, nil
		}
	}
	c, err := certBySerial(ctx, s.env.DB, a.id, serial)
	switch {
	case errors.Is(err, ErrNotFound):
		return ocsp.Unknown, time.Time{}, 0, nil
	case err != nil:
		return 0, time.Time{}, 0, err
	case c.status == "revoked":
		return ocsp.Revoked, c.revokedAt, c.reason, nil
	case c.status == "good":
		return ocsp.Good, time.Time{}, 0, nil
	}
	return 0, time.Time{}, 0, fmt.Errorf("certificate %s/%s: unknown status %q", a.id, serial, c.status)
}
