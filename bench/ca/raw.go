package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// maxAnswer bounds the body a rawConn reads: an OCSP response for one
// certificate with the responder's certificate is about 1 KiB.
const maxAnswer = 64 << 10

// rawConn is one keep-alive HTTP/1.1 connection that posts a body (or
// sends a GET) and returns the body of a 200 answer of the expected
// content type: a load
// generator like bench/tsa's, in the manner of wrk. The bytes on the wire
// are those net/http sends, without net/http's transport (goroutines and
// channels per request), to keep the clients' CPU per request low: the node
// answers OCSP from its cache in a few tens of µs.
type rawConn struct {
	addr, wantType string
	// head is the POST request line and headers up to the value of
	// Content-Length.
	head []byte
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	buf  []byte // scratch for the request head
	body []byte // the last answer's body, reused
}

// newRawConns returns n connections (opened on first use) that post to
// rawURL with Content-Type reqType and expect answers of type respType.
func newRawConns(rawURL, reqType, respType string, n int) ([]*rawConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("raw client: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("raw client: %q is not an http URL", rawURL)
	}
	head := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: ", u.RequestURI(), u.Host, reqType)
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = &rawConn{addr: u.Host, wantType: respType, head: head}
	}
	return conns, nil
}

// close closes the connection, if open.
func (c *rawConn) close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// post sends body and returns the answer's body, valid until the next
// post. Any error closes the connection (the next post opens a new one), so
// an answer is never read from a connection left mid-message.
func (c *rawConn) post(ctx context.Context, body []byte) ([]byte, error) {
	c.buf = append(strconv.AppendInt(append(c.buf[:0], c.head...), int64(len(body)), 10), "\r\n\r\n"...)
	return c.do(ctx, c.buf, body)
}

// get sends req, a whole GET request (line and header fields), and returns
// the answer's body as post does.
func (c *rawConn) get(ctx context.Context, req []byte) ([]byte, error) {
	return c.do(ctx, req, nil)
}

// do sends head and body and returns the answer's body.
func (c *rawConn) do(ctx context.Context, head, body []byte) ([]byte, error) {
	if c.conn == nil {
		d := net.Dialer{Timeout: 10 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return nil, err
		}
		c.conn, c.r, c.w = conn, bufio.NewReaderSize(conn, 8192), bufio.NewWriterSize(conn, 4096)
	}
	answer, keep, err := c.roundTrip(head, body)
	if err != nil || !keep {
		if cerr := c.close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	return answer, err
}

// roundTrip writes one request and reads its answer; keep is false when
// the server said it closes the connection.
func (c *rawConn) roundTrip(head, body []byte) (answer []byte, keep bool, err error) {
	if err := c.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return nil, false, err
	}
	// bufio.Writer keeps the first write error and returns it from Flush.
	c.w.Write(head)
	c.w.Write(body)
	if err := c.w.Flush(); err != nil {
		return nil, false, err
	}
	// Status line and header fields (RFC 9112 §4, §5).
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, false, err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return nil, false, fmt.Errorf("raw client: %q", bytes.TrimSpace(line))
	}
	length, ctype, keep := -1, "", true
	for {
		line, err = c.r.ReadSlice('\n')
		if err != nil {
			return nil, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return nil, false, fmt.Errorf("raw client: header %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 || length > maxAnswer {
				return nil, false, fmt.Errorf("raw client: Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Content-Type")):
			ctype = string(v)
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return nil, false, errors.New("raw client: chunked answers are not supported")
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			keep = false
		}
	}
	if length < 0 || ctype != c.wantType {
		return nil, false, fmt.Errorf("raw client: answer without Content-Length or of type %q, want %s", ctype, c.wantType)
	}
	if cap(c.body) < length {
		c.body = make([]byte, length)
	}
	c.body = c.body[:length]
	if _, err := io.ReadFull(c.r, c.body); err != nil {
		return nil, false, err
	}
	return c.body, keep, nil
}
