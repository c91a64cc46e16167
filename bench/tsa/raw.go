package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/govtrust/govtrust/tsa/tsp"
)

// rawClient is one keep-alive HTTP/1.1 connection that posts
// TimeStampReqs and checks each answer as tsa/client does without roots:
// HTTP 200 with application/timestamp-reply, a granted TimeStampResp, a
// token that parses strictly (tsp.ParseToken) and carries the request's
// imprint and nonce. It is a load generator in the manner of wrk: the same
// bytes on the wire as tsa/client sends, without net/http's transport
// (goroutines and channels per request) so that a client on the same
// machine takes less of the CPU the server is measured on. -go-client
// uses tsa/client instead.
type rawClient struct {
	addr, path, host string
	hash             *tsp.HashAlg
	seq              *atomic.Int64
	conn             net.Conn
	r                *bufio.Reader
	w                *bufio.Writer
	head             []byte
}

func newRawClient(rawURL string, h *tsp.HashAlg, seq *atomic.Int64) (*rawClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("raw client: %q is not an http URL", rawURL)
	}
	return &rawClient{addr: u.Host, path: u.RequestURI(), host: u.Host, hash: h, seq: seq}, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// stamp makes one request; any error closes the connection, the next
// request opens a new one.
func (c *rawClient) stamp(ctx context.Context) error {
	if c.conn == nil {
		d := net.Dialer{Timeout: 10 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		c.conn, c.r, c.w = conn, bufio.NewReaderSize(conn, 8192), bufio.NewWriterSize(conn, 4096)
	}
	err := c.roundTrip()
	if err != nil {
		c.close()
	}
	return err
}

func (c *rawClient) roundTrip() error {
	n := c.seq.Add(1)
	digest := c.hash.Sum(strconv.AppendInt([]byte("bench "), n, 10))
	nonce := big.NewInt(n)
	req := tsp.NewRequest(c.hash, digest, nonce, false)
	body, err := req.Marshal()
	if err != nil {
		return err
	}
	if err := c.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	c.head = fmt.Appendf(c.head[:0], "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/timestamp-query\r\nContent-Length: %d\r\n\r\n",
		c.path, c.host, len(body))
	c.w.Write(c.head)
	c.w.Write(body)
	if err := c.w.Flush(); err != nil {
		return err
	}
	// Status line and headers (RFC 9112 §4, §5).
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("raw client: %q", bytes.TrimSpace(line))
	}
	length, ctype := -1, ""
	for {
		line, err = c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("raw client: header %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 || length > 1<<20 {
				return fmt.Errorf("raw client: Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Content-Type")):
			ctype = string(v)
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return errors.New("raw client: chunked answers are not supported")
		}
	}
	if length < 0 || ctype != "application/timestamp-reply" {
		return fmt.Errorf("raw client: answer without Content-Length or of type %q", ctype)
	}
	resp := make([]byte, length)
	if _, err := io.ReadFull(c.r, resp); err != nil {
		return err
	}
	r, err := tsp.ParseResponse(resp)
	if err != nil {
		return err
	}
	if r.Token == nil {
		return fmt.Errorf("raw client: rejected (status %d): %s", r.Status, r.StatusString)
	}
	tok, err := tsp.ParseToken(r.Token)
	if err != nil {
		return err
	}
	mi := tok.Info.MessageImprint
	if !mi.HashAlgorithm.Equal(c.hash.OID) || !bytes.Equal(mi.HashedMessage, digest) {
		return errors.New("raw client: token imprint is not the request's")
	}
	if tok.Info.Nonce == nil || tok.Info.Nonce.Cmp(nonce) != 0 {
		return errors.New("raw client: token nonce is not the request's")
	}
	return nil
}
