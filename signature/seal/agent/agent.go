// Package agent is the local signing agent (本地签章助手) that runs on an
// official's computer: it holds a crypto.Signer on the official's USB key
// (PKCS#11; cmd/govtrust wires hsm/pkcs11), listens on the loopback
// interface only, shows what it is asked to sign and signs it. The PIN is
// asked by the agent itself when it opens the token and never leaves the
// computer; the server receives only signatures.
//
// What is shown is read from the bytes to be signed, not taken from the
// caller's word: the agent parses the TBS_Sign (GB/T 38540 §7.3), shows
// the seal's name and ID from the SESeal inside it and, for a detached
// seal, checks that its dataHash is the document hash shown. Requests from
// a browser must come from a configured origin (the Origin header), and
// the Host header must name the loopback address, so that a web page
// cannot reach the agent through DNS rebinding.
package agent

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/govtrust/govtrust/signature/pdf"
	"github.com/govtrust/govtrust/signature/ses"
)

// Request is what the server prepared and the agent is asked to sign.
type Request struct {
	Format       string `json:"format"`
	Document     string `json:"document"`
	DocumentHash string `json:"document_hash"` // hex
	SealID       string `json:"seal_id"`
	SealName     string `json:"seal_name"`
	ToBeSigned   []byte `json:"to_be_signed"`
}

// Shown is what the agent shows the official, read from ToBeSigned.
type Shown struct {
	Document     string
	DocumentHash string
	SealID       string
	SealName     string
	Format       string
	Property     string
	Time         time.Time
}

// Config configures an agent.
type Config struct {
	Signer      crypto.Signer
	Certificate []byte // DER, the signer's
	// Origins are the web origins allowed to call the agent
	// ("https://portal.example.gov.cn"); requests without an Origin header
	// come from local programs (the CLI) and are allowed.
	Origins []string
	// Confirm shows what is to be signed and returns whether the official
	// agrees. Nil refuses everything.
	Confirm func(Shown) bool
	Logger  *slog.Logger
}

// Agent is the signing agent's HTTP handler.
type Agent struct{ cfg Config }

// New returns an agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Signer == nil || len(cfg.Certificate) == 0 {
		return nil, errors.New("agent: a signer and its certificate are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Agent{cfg: cfg}, nil
}

// Listen listens on addr, which must be a loopback address.
func Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("agent: listen address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("agent: %q is not a loopback address: the agent listens on 127.0.0.1 only", addr)
	}
	return net.Listen("tcp", addr)
}

// ServeHTTP serves GET /v1/certificate and POST /v1/sign.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		http.Error(w, "agent: Host must be the loopback address", http.StatusForbidden)
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		if !slices.Contains(a.cfg.Origins, o) {
			a.cfg.Logger.Warn("agent: refused a request from an untrusted origin", "origin", o)
			http.Error(w, "agent: origin not trusted", http.StatusForbidden)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Vary", "Origin")
	}
	switch {
	case r.Method == http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/certificate":
		writeJSON(w, http.StatusOK, map[string]string{"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cfg.Certificate}))})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/sign":
		var req Request
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "agent: malformed request: "+err.Error(), http.StatusBadRequest)
			return
		}
		sig, err := a.Sign(req)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, ErrDeclined) {
				status = http.StatusForbidden
			}
			http.Error(w, err.Error(), status)
			return
		}
		writeJSON(w, http.StatusOK, map[string][]byte{"signature": sig})
	default:
		http.NotFound(w, r)
	}
}

// ErrDeclined is returned when the official does not confirm.
var ErrDeclined = errors.New("agent: the official declined to sign")

// Sign checks, shows and signs a request.
func (a *Agent) Sign(req Request) ([]byte, error) {
	if req.Format == "pdf" {
		return a.signPDF(req)
	}
	tbs, err := ses.ParseTBS(req.ToBeSigned, ses.V4)
	if err != nil {
		return nil, fmt.Errorf("agent: what is to be signed is not a TBS_Sign: %w", err)
	}
	seal, err := ses.ParseSeal(tbs.Seal)
	if err != nil {
		return nil, fmt.Errorf("agent: the seal to apply: %w", err)
	}
	if !seal.Lists(a.cfg.Certificate) {
		return nil, errors.New("agent: the seal does not list this USB key's certificate")
	}
	if req.Format == "ses" {
		want, err := hex.DecodeString(req.DocumentHash)
		if err != nil || !bytes.Equal(want, tbs.DataHash) {
			return nil, errors.New("agent: the document hash shown is not the one to be signed")
		}
	}
	shown := Shown{Document: req.Document, DocumentHash: req.DocumentHash, SealID: seal.Info.ESID, SealName: seal.Info.Property.Name,
		Format: req.Format, Property: tbs.PropertyInfo, Time: tbs.TimeInfo}
	return a.confirmAndSign(req, shown)
}

// signPDF checks, shows and signs the CMS signed attributes of a PDF
// seal: the seal shown is the one they carry (pdf.OIDAttrSeal).
func (a *Agent) signPDF(req Request) ([]byte, error) {
	tbs, err := pdf.ParseToBeSigned(req.ToBeSigned)
	if err != nil {
		return nil, fmt.Errorf("agent: what is to be signed is not PDF signed attributes: %w", err)
	}
	if tbs.Seal == nil {
		return nil, errors.New("agent: the PDF signature names no seal")
	}
	seal, err := ses.ParseSeal(tbs.Seal)
	if err != nil {
		return nil, fmt.Errorf("agent: the seal to apply: %w", err)
	}
	if !seal.Lists(a.cfg.Certificate) {
		return nil, errors.New("agent: the seal does not list this USB key's certificate")
	}
	shown := Shown{Document: req.Document, DocumentHash: req.DocumentHash, SealID: seal.Info.ESID, SealName: seal.Info.Property.Name,
		Format: req.Format, Property: "pdf-byte-range:" + hex.EncodeToString(tbs.Digest), Time: tbs.SigningTime}
	return a.confirmAndSign(req, shown)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Client talks to an agent (the CLI's side).
type Client struct {
	URL    string // http://127.0.0.1:PORT
	HTTP   *http.Client
	Origin string // sent as Origin when set
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Origin != "" {
		req.Header.Set("Origin", c.Origin)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

// Certificate returns the USB key's certificate (DER).
func (c *Client) Certificate(ctx context.Context) ([]byte, error) {
	var out struct {
		Certificate string `json:"certificate"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/certificate", nil, &out); err != nil {
		return nil, err
	}
	b, _ := pem.Decode([]byte(out.Certificate))
	if b == nil {
		return nil, errors.New("agent: certificate is not PEM")
	}
	return b.Bytes, nil
}

// Sign asks the agent to sign.
func (c *Client) Sign(ctx context.Context, req Request) ([]byte, error) {
	var out struct {
		Signature []byte `json:"signature"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/sign", req, &out); err != nil {
		return nil, err
	}
	return out.Signature, nil
}

// confirmAndSign shows the official what is to be sealed and, once they
// confirm, signs it with the USB key.
func (a *Agent) confirmAndSign(req Request, shown Shown) ([]byte, error) {
	if a.cfg.Confirm == nil || !a.cfg.Confirm(shown) {
		a.cfg.Logger.Info("agent: declined", "document", req.Document, "seal", shown.SealID)
		return nil, ErrDeclined
	}
	sig, _, err := ses.SignMessage(a.cfg.Signer, req.ToBeSigned)
	if err != nil {
		return nil, fmt.Errorf("agent: USB key: %w", err)
	}
	a.cfg.Logger.Info("agent: signed", "document", req.Document, "sm3", req.DocumentHash, "seal", shown.SealID)
	return sig, nil
}
