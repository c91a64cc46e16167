package tsa

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/testenv"
	"github.com/govtrust/govtrust/tsa/tsp"
)

func ptr(s string) *string { return &s }

// testNode is a running node with the CA and the TSA.
type testNode struct {
	t   *testing.T
	dir string
	n   *node.Node
	ca  *ca.Service
	svc *Service
	c   *http.Client
}

// startNode starts a node in dir; config, when not empty, is the YAML of
// the configuration file.
func startNode(t *testing.T, dir, config string) *testNode {
	t.Helper()
	return startNodeDB(t, dir, config, "")
}

// startNodeDB is startNode on the database dbURL ("" for SQLite in dir).
func startNodeDB(t *testing.T, dir, config, dbURL string) *testNode {
	t.Helper()
	return startNodeClock(t, dir, config, dbURL, nil)
}

// startNodeClock is startNodeDB with the node clock clk (nil: the real one).
func startNodeClock(t *testing.T, dir, config, dbURL string, clk clock.Clock) *testNode {
	t.Helper()
	return startNodeFull(t, dir, config, dbURL, clk, New)
}

// startNodeFull is startNodeClock with the TSA made by mk from the CA.
func startNodeFull(t *testing.T, dir, config, dbURL string, clk clock.Clock, mk func(Issuer) *Service) *testNode {
	t.Helper()
	c := ca.New()
	svc := mk(c)
	opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}, Clock: clk}
	if dbURL != "" {
		opts.DB = &dbURL
	}
	if config != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		opts.ConfigFile = filepath.Join(dir, "test.yaml")
		if err := os.WriteFile(opts.ConfigFile, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := node.Start(context.Background(), opts, c, svc)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{t: t, dir: dir, n: n, ca: c, svc: svc,
		c: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) stop() {
	if tn.n != nil {
		if err := tn.n.Shutdown(context.Background()); err != nil {
			tn.t.Errorf("shutdown: %v", err)
		}
		tn.n = nil
	}
}

// post sends body to the plain HTTP listener.
func (tn *testNode) post(path, ctype string, body []byte) (int, string, []byte) {
	tn.t.Helper()
	resp, err := tn.c.Post("http://"+tn.n.Addresses().HTTP+path, ctype, bytes.NewReader(body))
	if err != nil {
		tn.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

func (tn *testNode) get(url, bearer string) (int, []byte) {
	tn.t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := tn.c.Do(req)
	if err != nil {
		tn.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// stamp posts a DER request and parses the TimeStampResp.
func (tn *testNode) stamp(path string, req []byte) (*tsp.Response, []byte) {
	tn.t.Helper()
	status, ct, body := tn.post(path, QueryType, req)
	if status != http.StatusOK || ct != ReplyType {
		tn.t.Fatalf("POST %s: %d %s %s", path, status, ct, body)
	}
	r, err := tsp.ParseResponse(body)
	if err != nil {
		tn.t.Fatalf("parse response: %v", err)
	}
	return r, body
}

// rootPEM fetches a CA certificate as PEM into dir and returns the path.
func (tn *testNode) caPEM(id string) (string, *smx509.Certificate) {
	tn.t.Helper()
	status, der := tn.get("http://"+tn.n.Addresses().HTTP+"/pki/"+id+".crt", "")
	if status != 200 {
		tn.t.Fatalf("GET /pki/%s.crt: %d", id, status)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		tn.t.Fatal(err)
	}
	p := filepath.Join(tn.t.TempDir(), id+".pem")
	writePEM(tn.t, p, der)
	return p, cert
}

func (tn *testNode) roots(id string) *smx509.CertPool {
	_, c := tn.caPEM(id)
	pool := smx509.NewCertPool()
	pool.AddCert(c)
	return pool
}

// appToken creates a department application account and returns its token.
func (tn *testNode) appToken() string {
	tn.t.Helper()
	ctx := context.Background()
	az := tn.n.Env().Authz
	acc, err := az.CreateAccount(ctx, authz.NewAccount{Name: "app-" + filepath.Base(tn.t.TempDir()), Kind: authz.KindApplication, Org: "demo",
		Clearance: policy.Public, Roles: []policy.Role{"application"}})
	if err != nil {
		tn.t.Fatal(err)
	}
	tok, _, err := az.CreateToken(ctx, acc.ID, "test", nil, time.Hour)
	if err != nil {
		tn.t.Fatal(err)
	}
	return tok
}

func writePEM(t *testing.T, path string, ders ...[]byte) {
	t.Helper()
	var b bytes.Buffer
	for _, d := range ders {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d}))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.LookPath(t, name)
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// fakeNTP is an NTP server on UDP loopback whose clock is the real one plus
// an offset the test sets; the other fields make it a bad server.
type fakeNTP struct {
	conn   net.PacketConn
	offset atomic.Int64
	// at, when not zero, is the server's clock (UnixNano), standing still.
	at atomic.Int64
	// rootDelay and rootDisp are sent as the root delay and dispersion.
	rootDelay, rootDisp atomic.Int64
	// ref is the reference timestamp's distance before the transmit time
	// (negative: after it); zeroRef sends zero.
	ref     atomic.Int64
	zeroRef atomic.Bool
	// hold is added to the transmit timestamp (T3 = T2 + hold).
	hold atomic.Int64
	// precision is the precision the answers state (log2 seconds, RFC
	// 5905 §7.3), added to -20 (about a microsecond): 0 gives -20.
	precision atomic.Int32
	// drop makes the server read requests without answering them.
	drop atomic.Bool
	// kiss answers with the kiss-o'-death RATE; otherCookie echoes
	// another transmit timestamp than the request's.
	kiss, otherCookie atomic.Bool
	// requests counts the requests read, dropped or not.
	requests atomic.Int64
}

func newFakeNTP(t *testing.T) *fakeNTP {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNTP{conn: conn}
	f.ref.Store(int64(10 * time.Second))
	go f.serve()
	t.Cleanup(func() { conn.Close() })
	return f
}

func (f *fakeNTP) addr() string { return f.conn.LocalAddr().String() }

// ntpShortOf is d in the NTP short format (16.16 seconds).
func ntpShortOf(d int64) uint32 { return uint32(uint64(d) << 16 / uint64(time.Second)) }

func (f *fakeNTP) serve() {
	buf := make([]byte, 128)
	for {
		n, from, err := f.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		f.requests.Add(1)
		if n < 48 || f.drop.Load() {
			continue
		}
		now := time.Now().Add(time.Duration(f.offset.Load()))
		if at := f.at.Load(); at != 0 {
			now = time.Unix(0, at)
		}
		resp := make([]byte, 48)
		resp[0] = 0<<6 | 4<<3 | 4 // LI 0, VN 4, mode server
		resp[1] = 1               // stratum 1
		resp[3] = byte(int8(-20 + f.precision.Load()))
		binary.BigEndian.PutUint32(resp[4:8], ntpShortOf(f.rootDelay.Load()))
		binary.BigEndian.PutUint32(resp[8:12], ntpShortOf(f.rootDisp.Load()))
		xmt := now.Add(time.Duration(f.hold.Load()))
		if !f.zeroRef.Load() {
			binary.BigEndian.PutUint64(resp[16:24], toNTP(xmt.Add(-time.Duration(f.ref.Load()))))
		}
		copy(resp[24:32], buf[40:48])
		if f.kiss.Load() {
			resp[1] = 0
			copy(resp[12:16], "RATE")
		}
		if f.otherCookie.Load() {
			resp[24] ^= 1
		}
		binary.BigEndian.PutUint64(resp[32:40], toNTP(now))
		binary.BigEndian.PutUint64(resp[40:48], toNTP(xmt))
		_, _ = f.conn.WriteTo(resp, from)
	}
}

func pemDecode(b []byte) ([]byte, []byte) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, nil
	}
	return blk.Bytes, rest
}
