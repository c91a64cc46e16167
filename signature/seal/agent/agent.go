// Package agent is the local signing agent (本地签章助手) that runs on an
// official's computer: it holds a crypto.Signer on the official's USB key
// (PKCS#11; cmd/govtrust wires hsm/pkcs11), listens on the loopback
// interface only, shows what it is asked to sign and signs it. The PIN is
// asked by the agent itself when it opens the token and never leaves the
// computer; the server receives only signatures.
//
// What is shown is read from the bytes to be signed, not taken from the
// caller's word: the agent parses the TBS_Sign (GB/T 38540 §7.3) and shows
// the seal's name and ID from the SESeal inside it. Its propertyInfo must
// agree with the format: "file:NAME" for a detached seal (format ses),
// whose dataHash must be the document hash given and shown; the package
// path of Signature.xml for an OFD seal (format ofd), whose bytes come
// with the request: the agent hashes them, checks that the hash is the
// dataHash, and shows the files Signature.xml protects with their SM3. For
// a PDF seal (format pdf) it parses the CMS signed attributes and shows the
// seal and the messageDigest they carry. Any other format is refused. The
// document's name is the only thing shown on the caller's word.
//
// Requests from a browser must come from a configured origin (the Origin
// header), and the Host header must name the loopback address, so that a
// web page cannot reach the agent through DNS rebinding.
package agent

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/govtrust/govtrust/signature/pdf"
	"github.com/govtrust/govtrust/signature/ses"
)

// Formats the agent signs.
const (
	FormatSES = "ses" // a detached SES_Signature: TBS_Sign over the document's hash
	FormatOFD = "ofd" // an OFD seal: TBS_Sign over the hash of Signature.xml
	FormatPDF = "pdf" // a PDF seal: the CMS signed attributes
)

// Request is what the server prepared and the agent is asked to sign.
type Request struct {
	Format   string `json:"format"` // ses, ofd or pdf
	Document string `json:"document"`
	// DocumentHash (hex) is, for ses only, the document's hash: it must be
	// the TBS_Sign's dataHash. For ofd and pdf the agent reads the hash
	// from what is signed and this must be empty.
	DocumentHash string `json:"document_hash,omitempty"`
	// SealID, when given, must be the ID of the seal in ToBeSigned.
	SealID     string `json:"seal_id,omitempty"`
	SealName   string `json:"seal_name,omitempty"`
	ToBeSigned []byte `json:"to_be_signed"`
	// SignatureXML is, for ofd only, the Signature.xml the TBS_Sign's
	// dataHash is the hash of (GB/T 33190 §18, GB/T 38540 §7.3).
	SignatureXML []byte `json:"signature_xml,omitempty"`
}

// Reference is a file an OFD Signature.xml protects.
type Reference struct {
	File string // package path, absolute ("/Doc_0/Document.xml")
	SM3  string // the CheckValue, hex
}

// Shown is what the agent shows the official, read from what is signed;
// only Document, the document's name, is the caller's word.
type Shown struct {
	Document string
	// DocumentHash (hex) is the hash the signature binds: for ses the
	// document's (SM3 for SM2 keys), for ofd that of Signature.xml, for
	// pdf the messageDigest over the PDF's signed byte range.
	DocumentHash string
	SealID       string
	SealName     string
	Format       string
	// Property is the TBS_Sign's propertyInfo ("file:NAME", the path of
	// Signature.xml), or for pdf "pdf-byte-range".
	Property string
	Time     time.Time
	// References are, for ofd, the files Signature.xml protects, in its
	// order, with their SM3.
	References []Reference
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
	switch req.Format {
	case FormatSES, FormatOFD:
	case FormatPDF:
		return a.signPDF(req)
	default:
		return nil, fmt.Errorf("agent: format %q: ses, ofd or pdf", req.Format)
	}
	tbs, err := ses.ParseTBS(req.ToBeSigned, ses.V4)
	if err != nil {
		return nil, fmt.Errorf("agent: what is to be signed is not a TBS_Sign: %w", err)
	}
	seal, err := a.sealOf(req, tbs.Seal)
	if err != nil {
		return nil, err
	}
	shown := Shown{Document: req.Document, DocumentHash: hex.EncodeToString(tbs.DataHash), SealID: seal.Info.ESID,
		SealName: seal.Info.Property.Name, Format: req.Format, Property: tbs.PropertyInfo, Time: tbs.TimeInfo}
	switch req.Format {
	case FormatSES:
		if !strings.HasPrefix(tbs.PropertyInfo, "file:") {
			return nil, fmt.Errorf("agent: propertyInfo %q is not that of a detached seal (file:NAME): not format ses", tbs.PropertyInfo)
		}
		if req.SignatureXML != nil {
			return nil, errors.New("agent: signature_xml goes with format ofd only")
		}
		want, err := hex.DecodeString(req.DocumentHash)
		if err != nil || !bytes.Equal(want, tbs.DataHash) {
			return nil, errors.New("agent: the document hash shown is not the one to be signed")
		}
	case FormatOFD:
		if !isSignatureXMLPath(tbs.PropertyInfo) {
			return nil, fmt.Errorf("agent: propertyInfo %q is not the package path of an OFD Signature.xml: not format ofd", tbs.PropertyInfo)
		}
		if req.DocumentHash != "" {
			return nil, errors.New("agent: document_hash goes with format ses only: for ofd the agent hashes signature_xml")
		}
		if len(req.SignatureXML) == 0 {
			return nil, errors.New("agent: format ofd needs signature_xml, the Signature.xml whose hash is signed")
		}
		alg, err := ses.AlgorithmFor(a.cfg.Signer.Public())
		if err != nil {
			return nil, fmt.Errorf("agent: USB key: %w", err)
		}
		if !bytes.Equal(ses.DataHash(alg, req.SignatureXML), tbs.DataHash) {
			return nil, errors.New("agent: signature_xml is not the Signature.xml to be signed (its hash is not the dataHash)")
		}
		if shown.References, err = parseSignatureXML(req.SignatureXML, tbs.PropertyInfo); err != nil {
			return nil, err
		}
	}
	return a.confirmAndSign(req, shown)
}

// sealOf parses the seal to apply and checks that it lists this USB key's
// certificate and, when the request names one, is that seal.
func (a *Agent) sealOf(req Request, der []byte) (*ses.Seal, error) {
	seal, err := ses.ParseSeal(der)
	if err != nil {
		return nil, fmt.Errorf("agent: the seal to apply: %w", err)
	}
	if !seal.Lists(a.cfg.Certificate) {
		return nil, errors.New("agent: the seal does not list this USB key's certificate")
	}
	if req.SealID != "" && req.SealID != seal.Info.ESID {
		return nil, fmt.Errorf("agent: seal_id %q is not the seal to be applied (%s)", req.SealID, seal.Info.ESID)
	}
	return seal, nil
}

// signPDF checks, shows and signs the CMS signed attributes of a PDF
// seal: the seal shown is the one they carry (pdf.OIDAttrSeal), the hash
// their messageDigest.
func (a *Agent) signPDF(req Request) ([]byte, error) {
	if req.DocumentHash != "" || req.SignatureXML != nil {
		return nil, errors.New("agent: format pdf takes neither document_hash nor signature_xml: the agent shows the messageDigest it signs")
	}
	tbs, err := pdf.ParseToBeSigned(req.ToBeSigned)
	if err != nil {
		return nil, fmt.Errorf("agent: what is to be signed is not PDF signed attributes: %w", err)
	}
	if tbs.Seal == nil {
		return nil, errors.New("agent: the PDF signature names no seal")
	}
	seal, err := a.sealOf(req, tbs.Seal)
	if err != nil {
		return nil, err
	}
	shown := Shown{Document: req.Document, DocumentHash: hex.EncodeToString(tbs.Digest), SealID: seal.Info.ESID, SealName: seal.Info.Property.Name,
		Format: req.Format, Property: "pdf-byte-range", Time: tbs.SigningTime}
	return a.confirmAndSign(req, shown)
}

// isSignatureXMLPath reports whether p is an absolute, clean OFD package
// path of a Signature.xml, as an OFD seal's propertyInfo is.
func isSignatureXMLPath(p string) bool {
	return strings.HasPrefix(p, "/") && path.Clean(p) == p && path.Base(p) == "Signature.xml" && utf8.ValidString(p)
}

// parseSignatureXML reads the files an OFD Signature.xml at sigPath
// protects. It refuses what a reader could understand otherwise than the
// agent shows it: several SignedInfo or References, a check method other
// than SM3, a reference without one SM3 CheckValue, a file referenced
// twice.
func parseSignatureXML(b []byte, sigPath string) ([]Reference, error) {
	var doc struct {
		XMLName    xml.Name
		SignedInfo []struct {
			References []struct {
				CheckMethod string `xml:"CheckMethod,attr"`
				Reference   []struct {
					FileRef    string   `xml:"FileRef,attr"`
					CheckValue []string `xml:"CheckValue"`
				} `xml:"Reference"`
			} `xml:"References"`
		} `xml:"SignedInfo"`
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("agent: signature_xml: "+format, args...)
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, bad("%v", err)
	}
	if doc.XMLName.Local != "Signature" {
		return nil, bad("the root element is %s, not Signature", doc.XMLName.Local)
	}
	if len(doc.SignedInfo) != 1 || len(doc.SignedInfo[0].References) != 1 {
		return nil, bad("one SignedInfo with one References expected")
	}
	refs := doc.SignedInfo[0].References[0]
	if cm := refs.CheckMethod; cm != "" && !strings.EqualFold(cm, "SM3") && cm != "1.2.156.10197.1.401" {
		return nil, bad("check method %q is not SM3", cm)
	}
	if len(refs.Reference) == 0 {
		return nil, bad("no Reference: the signature would protect no file")
	}
	out := make([]Reference, 0, len(refs.Reference))
	seen := make(map[string]bool, len(refs.Reference))
	for _, r := range refs.Reference {
		if strings.TrimSpace(r.FileRef) == "" || len(r.CheckValue) != 1 {
			return nil, bad("a Reference needs a FileRef and one CheckValue")
		}
		h, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.CheckValue[0]))
		if err != nil || len(h) != 32 {
			return nil, bad("the CheckValue of %q is not a base64 SM3 hash", r.FileRef)
		}
		f := r.FileRef
		if !strings.HasPrefix(f, "/") {
			f = path.Join(path.Dir(sigPath), f)
		}
		f = path.Clean(f)
		if seen[f] {
			return nil, bad("%s is referenced twice", f)
		}
		seen[f] = true
		out = append(out, Reference{File: f, SM3: hex.EncodeToString(h)})
	}
	return out, nil
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
	a.cfg.Logger.Info("agent: signed", "document", req.Document, "format", shown.Format, "hash", shown.DocumentHash, "seal", shown.SealID)
	return sig, nil
}
