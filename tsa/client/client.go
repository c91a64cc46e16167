// Package client is the Go client of an RFC 3161 time-stamping authority
// (govtrust's or any other): it sends a TimeStampReq over HTTP (RFC 3161
// §3.4), checks that the answer is for that request (imprint, nonce) and,
// when trust anchors are given, verifies the token.
//
// Services that need timestamps (signatures, seals, the audit log) declare
// a small interface of their own and cmd/govtrust hands them a *Client
// (ARCHITECTURE.md §1).
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/tsa/tsp"
)

// Client talks to one TSA URL, such as http://127.0.0.1:8080/tsa or
// http://127.0.0.1:8080/tsa/ecdsa.
type Client struct {
	URL string
	// HTTP defaults to a client with a 30 s timeout.
	HTTP *http.Client
	// Hash is the imprint algorithm for Stamp's data (default SM3).
	Hash *tsp.HashAlg
	// NoCerts leaves certReq unset: the token then does not carry the TSA
	// certificate (smaller; the verifier must have it).
	NoCerts bool
	// Roots, when set, make every token verified before it is returned,
	// with Intermediates completing the chain.
	Roots         *smx509.CertPool
	Intermediates []*smx509.Certificate
}

// New returns a client of url.
func New(url string) *Client { return &Client{URL: url} }

// RejectedError is a TSA's refusal.
type RejectedError struct {
	Status   int
	Failures []tsp.FailureInfo
	Text     string
}

func (e *RejectedError) Error() string {
	var names []string
	for _, f := range e.Failures {
		names = append(names, f.String())
	}
	return fmt.Sprintf("tsa: request rejected (status %d, %s): %s", e.Status, strings.Join(names, ","), e.Text)
}

// Result is a token received.
type Result struct {
	// Token is the DER ContentInfo of the token.
	Token []byte
	Info  *tsp.TSTInfo
	// TSA is the certificate that signed, when the token carries it or
	// verification found it.
	TSA *smx509.Certificate
}

// maxReply bounds a TimeStampResp read from the wire.
const maxReply = 1 << 20

// Stamp time-stamps data, hashed with c.Hash.
func (c *Client) Stamp(ctx context.Context, data []byte) (*Result, error) {
	h := c.Hash
	if h == nil {
		h = tsp.SM3
	}
	return c.StampDigest(ctx, h, h.Sum(data))
}

// StampDigest time-stamps a digest made with h.
func (c *Client) StampDigest(ctx context.Context, h *tsp.HashAlg, digest []byte) (*Result, error) {
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	req := tsp.NewRequest(h, digest, nonce, !c.NoCerts)
	der, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(der))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/timestamp-query")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("tsa: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, fmt.Errorf("tsa: read reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tsa: HTTP %d: %.200s", resp.StatusCode, body)
	}
	r, err := tsp.ParseResponse(body)
	if err != nil {
		return nil, err
	}
	if r.Token == nil {
		return nil, &RejectedError{Status: r.Status, Failures: r.Failures, Text: r.StatusString}
	}
	return c.check(r.Token, req)
}

// check parses the token and matches it with req; with Roots it verifies.
func (c *Client) check(der []byte, req *tsp.Request) (*Result, error) {
	tok, err := tsp.ParseToken(der)
	if err != nil {
		return nil, err
	}
	res := &Result{Token: der, Info: tok.Info}
	mi := tok.Info.MessageImprint
	if !mi.HashAlgorithm.Equal(req.MessageImprint.HashAlgorithm) || !bytes.Equal(mi.HashedMessage, req.MessageImprint.HashedMessage) {
		return nil, errors.New("tsa: token imprint is not the request's")
	}
	if tok.Info.Nonce == nil || tok.Info.Nonce.Cmp(req.Nonce) != 0 {
		return nil, errors.New("tsa: token nonce is not the request's")
	}
	if c.Roots != nil {
		if res.TSA, err = tok.Verify(tsp.VerifyOptions{Roots: c.Roots, Intermediates: c.Intermediates, Request: req}); err != nil {
			return nil, err
		}
	} else if len(tok.Certificates) > 0 {
		res.TSA = tok.Certificates[0]
	}
	return res, nil
}
