package tsa

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// Media types of RFC 3161 §3.4.
const (
	QueryType = "application/timestamp-query"
	ReplyType = "application/timestamp-reply"
)

// PublicRoutes implements node.PublicRouter: the protocol and the unit
// certificates, open to anyone as RFC 3161 §3.4 transports are.
func (s *Service) PublicRoutes(m *authz.Mux) {
	m.Handle("POST /tsa", authz.Rule{Public: "RFC 3161 time-stamping (default profile, SM2)"}, s.timestamp)
	m.Handle("POST /tsa/{profile}", authz.Rule{Public: "RFC 3161 time-stamping (named profile)"}, s.timestamp)
	m.Handle("GET /tsa/{profile}/certs", authz.Rule{Public: "TSA certificates, current and retired, with the issuing chain, to verify tokens"}, s.certs)
}

// APIRoutes implements node.APIRouter: the look-up of issued tokens and a
// forced rollover.
func (s *Service) APIRoutes(m *authz.Mux) {
	tokenRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "tsa-token", ID: r.PathValue("serial")}, nil
	}
	unitRes := func(r *http.Request) (policy.Resource, error) {
		return policy.Resource{Type: "key", ID: "tsa/" + r.PathValue("profile")}, nil
	}
	m.Handle("GET /api/v1/tsa/tokens/{serial}", authz.Rule{Action: "tsa.timestamp", Resource: tokenRes}, s.lookup)
	m.Handle("POST /api/v1/tsa/{profile}/rollover", authz.Rule{Action: "hsm.key.create", Resource: unitRes}, s.rollover)
}

// reply writes a TimeStampResp, given in parts (always HTTP 200: the
// status is inside).
func reply(w http.ResponseWriter, der ...[]byte) error {
	h := w.Header()
	h["Content-Type"] = replyType
	h["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	for _, b := range der {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Header values shared by every reply (net/http only reads them).
var (
	replyType = []string{ReplyType}
	noStore   = []string{"no-store"}
)

// reject answers a rejection; the reason goes to the request log.
func (s *Service) reject(w http.ResponseWriter, r *http.Request, err error) error {
	fail := tsp.FailureOf(err)
	text := fail.String()
	var re *tsp.RequestError
	if errors.As(err, &re) {
		text = re.Text
	}
	if fail == tsp.SystemFailure {
		s.env.Logger.Error("tsa: system failure", "request_id", httpx.RequestID(r.Context()), "error", err)
		text = "system failure"
	}
	return reply(w, tsp.Rejection(fail, text))
}

func (s *Service) timestamp(w http.ResponseWriter, r *http.Request) error {
	profile := r.PathValue("profile")
	if profile == "" {
		profile = DefaultProfile
	}
	if specByName(profile) == nil {
		return fmt.Errorf("%w: no TSA profile %q", ErrNotFound, profile)
	}
	// Refuse an oversized body before reading it (ACCEPTANCE.md G-02).
	max := s.cfg.MaxBodyBytes
	if r.ContentLength > max {
		return fmt.Errorf("%w: %d bytes exceeds tsa.max_body_bytes %d", httpx.ErrTooLarge, r.ContentLength, max)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: body exceeds tsa.max_body_bytes %d", httpx.ErrTooLarge, max)
		}
		return s.reject(w, r, &tsp.RequestError{Fail: tsp.BadDataFormat, Text: "request body unreadable"})
	}
	if ct := r.Header.Get("Content-Type"); ct != QueryType && !isQueryType(ct) {
		return s.reject(w, r, &tsp.RequestError{Fail: tsp.BadDataFormat, Text: "content type must be " + QueryType})
	}
	tok, _, err := s.Stamp(r.Context(), profile, body)
	if err != nil {
		return s.reject(w, r, err)
	}
	return reply(w, tsp.GrantedHeader(len(tok)), tok)
}

// isQueryType reports whether the Content-Type ct is QueryType, with
// parameters or in another case (RFC 2045 §5.1); the handler checks the
// exact string first, which clients send.
func isQueryType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == QueryType
}

// Stamp parses a DER TimeStampReq and returns the token for it, recorded,
// and its serial (hex). Its errors carry the failure bit (tsp.FailureOf).
func (s *Service) Stamp(ctx context.Context, profile string, der []byte) ([]byte, string, error) {
	req, err := tsp.ParseRequest(der)
	if err != nil {
		return nil, "", err
	}
	policy := s.policies[0]
	if req.ReqPolicy != nil {
		ok := false
		for _, p := range s.policies {
			ok = ok || p.Equal(req.ReqPolicy)
		}
		if !ok {
			return nil, "", &tsp.RequestError{Fail: tsp.UnacceptedPolicy, Text: "policy " + req.ReqPolicy.String() + " is not offered"}
		}
		policy = req.ReqPolicy
	}
	// RFC 3161 §2.4.1: an extension the TSA does not recognise, critical or
	// not, is refused; this TSA recognises none.
	if len(req.Extensions) > 0 {
		return nil, "", &tsp.RequestError{Fail: tsp.UnacceptedExtension, Text: "extension " + req.Extensions[0].ID.String() + " is not supported"}
	}
	if st := s.clock.check(); !st.ok {
		return nil, "", &tsp.RequestError{Fail: tsp.TimeNotAvailable, Text: "time not available"}
	}
	u := s.units.Load().active[profile]
	if u == nil {
		return nil, "", errNoUnit
	}
	if why := u.revoked.Load(); why != nil {
		return nil, "", errors.New(*why)
	}
	var signing bool
	s.rec.startSigning(&signing)
	defer s.rec.stopSigning(&signing)
	for attempt := 1; ; attempt++ {
		// genTime as the token encodes it (to the millisecond), so the
		// record and the look-up hold exactly the token's genTime.
		now := s.env.Clock.Now().UTC().Truncate(tsp.GenTimePrecision)
		// Never a token the unit's certificate does not cover (RFC 3161
		// has no failure for it: systemFailure, and /readyz says why).
		if err := u.validAt(now); err != nil {
			return nil, "", err
		}
		serial, err := newSerial(now)
		if err != nil {
			return nil, "", err
		}
		info := &tsp.TSTInfo{Policy: policy, MessageImprint: req.MessageImprint, SerialNumber: serial,
			GenTime: now, Accuracy: s.cfg.Accuracy, Nonce: req.Nonce}
		tok, err := u.signer.Sign(info, req.CertReq)
		if err != nil {
			return nil, "", err
		}
		hexSerial := serial.Text(16)
		err = s.record(ctx, hexSerial, u, info, tok, &signing)
		if errors.Is(err, errSerialTaken) && attempt < 3 {
			continue // an 80-bit collision: draw again, the token was never sent
		}
		if err != nil {
			return nil, "", fmt.Errorf("tsa: record token %s: %w", hexSerial, err)
		}
		// A revocation acknowledged while this token was being made: it is
		// recorded, never returned (the CA's hook marks before the ack).
		if why := u.revoked.Load(); why != nil {
			return nil, "", errors.New(*why)
		}
		return tok, hexSerial, nil
	}
}

// newSerial is 0x01, the 48-bit Unix time in milliseconds at t, then 10
// random octets: 17 octets, within the 160 bits of RFC 3161 §2.4.2.
// Uniqueness comes from the database constraint (a collision draws again,
// errSerialTaken); the 80 random bits make one negligible (more than the
// 64 CSPRNG bits the CA/B Forum asks of certificate serials). The time
// prefix makes the serial index grow at its end: a batch of tokens dirties
// a few index pages per commit instead of one random page per token (on
// SQLite every dirty page is a WAL frame written and fsynced; issue #7
// measured this as the largest recording cost).
func newSerial(t time.Time) (*big.Int, error) {
	var b [17]byte
	if _, err := rand.Read(b[7:]); err != nil {
		return nil, fmt.Errorf("tsa: serial: %w", err)
	}
	ms := uint64(t.UnixMilli())
	b[0] = 1
	for i := 6; i >= 1; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	return new(big.Int).SetBytes(b[:]), nil
}

// record stores the token through the recorder; it returns once durable.
func (s *Service) record(ctx context.Context, serial string, u *unit, info *tsp.TSTInfo, tok []byte, signing *bool) error {
	var nonce any
	if info.Nonce != nil {
		nonce = info.Nonce.Text(16)
	}
	mi := info.MessageImprint
	return s.rec.record(ctx, tokenRow{serial: serial, profile: u.profile, generation: u.generation,
		policy: info.Policy.String(), hashAlg: mi.Hash.Name, imprint: mi.HashedMessage,
		genTime: info.GenTime.UTC().Format(timeFormat), nonce: nonce, token: tok}, signing)
}

// TokenRecord is the answer of GET /api/v1/tsa/tokens/{serial}.
type TokenRecord struct {
	Serial     string `json:"serial"`
	Profile    string `json:"profile"`
	Generation int    `json:"generation"`
	Policy     string `json:"policy"`
	HashAlg    string `json:"hash_alg"`
	Imprint    string `json:"imprint"`
	GenTime    string `json:"gen_time"`
	Nonce      string `json:"nonce,omitempty"`
	// Token is the DER token, base64.
	Token string `json:"token"`
}

// Token returns the record of the token with serial (hex, any case).
func (s *Service) Token(ctx context.Context, serial string) (*TokenRecord, error) {
	n, ok := new(big.Int).SetString(strings.ToLower(serial), 16)
	if !ok || n.Sign() <= 0 || len(serial) > 40 {
		return nil, fmt.Errorf("%w: serial must be a positive hex integer of at most 20 octets", ErrRequest)
	}
	var rec TokenRecord
	var imprint, tok []byte
	var nonce *string
	// On the reader pool: a look-up does not wait for the recorder's batch.
	err := s.env.DB.ReadRow(ctx, "SELECT serial, profile, generation, policy, hash_alg, imprint, gen_time, nonce, token FROM tsa_tokens WHERE serial = ?",
		n.Text(16)).Scan(&rec.Serial, &rec.Profile, &rec.Generation, &rec.Policy, &rec.HashAlg, &imprint, &rec.GenTime, &nonce, &tok)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no token %s", ErrNotFound, serial)
	}
	if err != nil {
		return nil, fmt.Errorf("tsa: look up %s: %w", serial, err)
	}
	rec.Imprint = fmt.Sprintf("%x", imprint)
	rec.Token = base64.StdEncoding.EncodeToString(tok)
	if nonce != nil {
		rec.Nonce = *nonce
	}
	return &rec, nil
}

func (s *Service) lookup(w http.ResponseWriter, r *http.Request) error {
	rec, err := s.Token(r.Context(), r.PathValue("serial"))
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, rec)
}

// certs serves the profile's unit certificates, newest first, then the
// issuing CA's chain, as PEM.
func (s *Service) certs(w http.ResponseWriter, r *http.Request) error {
	profile := r.PathValue("profile")
	all := s.units.Load().all[profile]
	if len(all) == 0 {
		return fmt.Errorf("%w: no TSA profile %q", ErrNotFound, profile)
	}
	var out []byte
	seen := map[string]bool{}
	add := func(der []byte) {
		if !seen[string(der)] {
			seen[string(der)] = true
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
	}
	for _, u := range all {
		add(u.cert.Raw)
	}
	for _, u := range all {
		for _, c := range u.chain {
			add(c)
		}
	}
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	_, err := w.Write(out)
	return err
}

func (s *Service) rollover(w http.ResponseWriter, r *http.Request) error {
	actor := "unknown"
	if p := authz.PrincipalFrom(r.Context()); p != nil && p.Account != nil {
		actor = p.Actor()
	}
	cert, err := s.Rollover(r.Context(), r.PathValue("profile"), actor)
	if err != nil {
		return err
	}
	return httpx.WriteJSON(w, http.StatusOK, map[string]string{
		"profile": r.PathValue("profile"), "serial": fmt.Sprintf("%x", cert.SerialNumber),
		"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
	})
}

// PolicyOIDs returns the accepted policies, the default first.
func (s *Service) PolicyOIDs() []asn1.ObjectIdentifier { return s.policies }

// BatchStats reports the recording transactions committed and the tokens
// they carried (for load programs: tokens per commit).
func (s *Service) BatchStats() (batches, tokens uint64) {
	if s.rec == nil {
		return 0, 0
	}
	return s.rec.stats()
}
