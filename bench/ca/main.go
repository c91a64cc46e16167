// Ca measures the certificate authority end to end (ACCEPTANCE.md §3.1):
// SM2 certificates issued per second over the HTTPS API (CSR in,
// certificate out: profile, pre-issuance lint, SM2 signature by the
// software keystore, durable store with its audit record and outbox event),
// the latency of issuance at half that rate, the peak RSS, and OCSP
// responses per second from the pre-signed cache and signed on demand (the
// issue's target for the cache is 1.0 or better). Each rate is also printed as a
// ratio to raw SM2 signing measured in the same run (bench/README.md); the
// issue's target for issuance with SQLite is 0.10 or better (-check).
//
// The program starts a node with the CA service in its own process, in a
// temporary data directory: SQLite there by default, or the PostgreSQL
// database -db names (it must be empty: the node migrates it and creates its
// CA hierarchy and keys in it). The clients run in the same process, on the
// same cores, over loopback, as §3.1 asks ("clients on the same host"), so
// their TLS and JSON work is part of what is measured; the peak RSS is the
// whole process's (node and clients; a PostgreSQL server is a process of its
// own and not counted).
//
// The phases, each for -duration after a short warm-up:
//
//  1. the reference rates (ref.Measure for -ref-duration per operation),
//     before any load;
//  2. issuance, closed loop: -clients goroutines, each with its own
//     keep-alive HTTPS connection, POST /api/v1/ca/sm2-issuing/certificates
//     with one fixed SM2 CSR under the server-tls profile, as fast as the
//     node answers;
//  3. issuance, paced (open loop) at half the rate of phase 2: requests are
//     scheduled at fixed intervals and latency is counted from the scheduled
//     time, so a stall is not hidden by the clients waiting for it
//     (coordinated omission);
//  4. OCSP from the pre-signed cache, closed loop: POST /ocsp/sm2-issuing on
//     the public HTTP listener (RFC 6960 Appendix A.1) for a certificate
//     issued in phase 2, without a nonce (the RFC 5019 profile): the node
//     answers from its memory cache of responses its delegated SM2
//     responder signed ahead of time (ca/ocsp_cache.go);
//  5. OCSP signed on demand, closed loop: the same with a fresh nonce each,
//     so the node reads the status from the database and the delegated
//     responder signs every answer.
//
// The first answer of each kind is checked in full (certificate signature
// by the issuing CA; OCSP response signature by the delegated responder
// the CA certified, status good, nonce echoed) and every answer after it by
// status (and, from the cache, by being the byte-identical pre-signed
// response), so a broken service cannot report a fast rate.
//
// Usage:
//
//	go run ./bench/ca [-duration 10s] [-clients N] [-db postgres://...] [-check] [-cpuprofile issue.pprof] [-ocspprofile ocsp.pprof]
//
// With PostgreSQL, on a throw-away server:
//
//	scripts/with-postgres.sh sh -c 'go run ./bench/ca -db "$GTTEST_POSTGRES_URL"'
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/bench/ref"
	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// minIssueRatio is the issue's target for SQLite issuance, as a ratio to raw
// SM2 signing; -check exits 1 below it.
const minIssueRatio = 0.10

// minCacheRatio is the issue's target for OCSP answers from the pre-signed
// cache, as a ratio to raw SM2 signing; it is reported, not enforced.
const minCacheRatio = 1.0

const (
	caID    = "sm2-issuing"
	profile = "server-tls"
	// host is a public-looking name: server-tls refuses internal names
	// (BR §7.1.2.7.12).
	host = "portal.example.gov.cn"
)

type options struct {
	duration, refDuration, warmup time.Duration
	clients                       int
	db                            string
	check                         bool
	cpuProfile, ocspProfile       string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measuring time of each load phase")
	flag.DurationVar(&o.refDuration, "ref-duration", 3*time.Second, "measuring time of each reference rate")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each phase")
	flag.IntVar(&o.clients, "clients", 2*runtime.GOMAXPROCS(0), "concurrent keep-alive clients")
	flag.StringVar(&o.db, "db", "", "PostgreSQL URL of an empty database; empty for SQLite in the temporary directory")
	flag.BoolVar(&o.check, "check", false, fmt.Sprintf("exit 1 when the issuance ratio is below %.2f", minIssueRatio))
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the closed-loop issuance phase to this file")
	flag.StringVar(&o.ocspProfile, "ocspprofile", "", "write a CPU profile of the OCSP-from-cache phase to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ca:", err)
		os.Exit(1)
	}
}

// figure is one line of the report.
type figure struct {
	name  string
	res   result
	rss   string // peak RSS during the phase
	ratio float64
}

func run(ctx context.Context, w io.Writer, o options) error {
	if o.duration <= 0 || o.refDuration <= 0 || o.warmup < 0 || o.clients <= 0 {
		return errors.New("-duration, -ref-duration and -clients must be positive, -warmup not negative")
	}
	facts := ref.Collect(ctx)
	tmp, err := os.MkdirTemp("", "bench-ca-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	dir := filepath.Join(tmp, "data")
	opts := node.Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: os.Environ()}
	if o.db != "" {
		opts.DB = &o.db
	}
	n, err := node.Start(ctx, opts, ca.New())
	if err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = n.Shutdown(sctx)
	}()
	db := n.Env().DB
	settings, err := db.Durability(ctx)
	if err != nil {
		return err
	}
	token, err := node.ReadBootstrapToken(dir, "ra")
	if err != nil {
		return fmt.Errorf("ra token: %w", err)
	}
	tlsConf, err := pinnedTLS(dir)
	if err != nil {
		return err
	}

	facts.Print(w)
	fmt.Fprintf(w, "storage:  %s\n", storageName(db.Driver(), o.db, dir))
	fmt.Fprintf(w, "keys:     software keystore (hsm/soft), CA key soft:ca/%s decrypted once, signing in process memory\n", caID)
	var dur []string
	for _, s := range settings {
		v := s.Name + "=" + s.Value
		if !s.Safe {
			v += " (UNSAFE)"
		}
		dur = append(dur, v)
	}
	fmt.Fprintf(w, "durability: %s\n", strings.Join(dur, ", "))
	fmt.Fprintf(w, "duration: %s per load phase after %s warm-up; reference %s per operation\n", o.duration, o.warmup, o.refDuration)
	fmt.Fprintf(w, "clients:  %d in this process, each on its own keep-alive connection over loopback (same cores as the node)\n", o.clients)
	fmt.Fprintf(w, "request:  POST /api/v1/ca/%s/certificates, profile %s, one fixed SM2 CSR; OCSP POST /ocsp/%s over HTTP, without nonce (cache) or with a fresh nonce each (on demand)\n",
		caID, profile, caID)
	fmt.Fprintf(w, "ocsp:     delegated SM2 responder (ocsp-signer certificate, key in the software keystore); pre-signed responses in memory backed by ca_ocsp_responses\n\n")

	// The reference first, so the load does not disturb it.
	rates, err := ref.Measure(ctx, o.refDuration)
	if err != nil {
		return err
	}
	rates.Report(w)
	fmt.Fprintln(w)

	body, err := issueBody()
	if err != nil {
		return err
	}
	is := &issuer{url: "https://" + n.Addresses().HTTPS + "/api/v1/ca/" + caID + "/certificates", auth: "Bearer " + token, body: body}
	for range o.clients {
		is.clients = append(is.clients, newClient(tlsConf))
	}
	first, issuingCA, err := is.issueChecked(ctx)
	if err != nil {
		return fmt.Errorf("first issuance: %w", err)
	}

	var figs []figure
	// Closed loop.
	if err := warm(ctx, o, is.issue); err != nil {
		return err
	}
	ref.ResetPeakRSS()
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	issue, err := closedLoop(ctx, o.duration, o.clients, is.issue)
	if perr := stopProfile(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("issuance: %w", err)
	}
	issueRatio := rates.Ratio(issue.rate(), ref.SM2Sign)
	figs = append(figs, figure{name: "issuance, closed loop", res: issue, rss: ref.PeakRSS(), ratio: issueRatio})

	// Paced at half the closed-loop rate.
	half := issue.rate() / 2
	ref.ResetPeakRSS()
	paced, err := openLoop(ctx, o.duration, half, o.clients, is.issue)
	if err != nil {
		return fmt.Errorf("paced issuance: %w", err)
	}
	figs = append(figs, figure{name: fmt.Sprintf("issuance, paced at %.0f/s", half), res: paced, rss: ref.PeakRSS(),
		ratio: rates.Ratio(paced.rate(), ref.SM2Sign)})

	oc := &ocspClient{url: "http://" + n.Addresses().HTTP + "/ocsp/" + caID, serial: first.SerialNumber, issuer: issuingCA}
	for range o.clients {
		oc.clients = append(oc.clients, newClient(nil))
	}
	// OCSP from the pre-signed cache: the first request fills it.
	if err := oc.cachedChecked(ctx); err != nil {
		return fmt.Errorf("first OCSP query without nonce: %w", err)
	}
	if err := warm(ctx, o, oc.cachedQuery); err != nil {
		return err
	}
	ref.ResetPeakRSS()
	stopProfile, err = startProfile(o.ocspProfile)
	if err != nil {
		return err
	}
	cq, err := closedLoop(ctx, o.duration, o.clients, oc.cachedQuery)
	if perr := stopProfile(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("ocsp from cache: %w", err)
	}
	cacheRatio := rates.Ratio(cq.rate(), ref.SM2Sign)
	figs = append(figs, figure{name: "OCSP POST, pre-signed cache", res: cq, rss: ref.PeakRSS(), ratio: cacheRatio})

	// OCSP signed on demand.
	if err := oc.queryChecked(ctx); err != nil {
		return fmt.Errorf("first OCSP query: %w", err)
	}
	if err := warm(ctx, o, oc.query); err != nil {
		return err
	}
	ref.ResetPeakRSS()
	oq, err := closedLoop(ctx, o.duration, o.clients, oc.query)
	if err != nil {
		return fmt.Errorf("ocsp: %w", err)
	}
	figs = append(figs, figure{name: "OCSP POST, signed on demand", res: oq, rss: ref.PeakRSS(), ratio: rates.Ratio(oq.rate(), ref.SM2Sign)})
	// One more full check after the load: the answers stayed right.
	if err := oc.queryChecked(ctx); err != nil {
		return fmt.Errorf("OCSP query after the load: %w", err)
	}
	if err := oc.cachedChecked(ctx); err != nil {
		return fmt.Errorf("OCSP query without nonce after the load: %w", err)
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tops/s\tratio to sm2-sign\tCPU µs/op\tCPU ratio\tp50\tp99\tmax\tok\terrors\tpeak RSS")
	for _, f := range figs {
		r := f.res
		cpuRatio := "-"
		if r.cpu > 0 {
			cpuRatio = fmt.Sprintf("%.3f", rates.CPURatio(r.cpuPerOp(), ref.SM2Sign))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", f.name, r.rate(), f.ratio,
			float64(r.cpuPerOp())/float64(time.Microsecond), cpuRatio,
			ms(r.percentile(0.50)), ms(r.percentile(0.99)), ms(r.percentile(1)), r.ok, r.errs, f.rss)
	}
	tw.Flush()
	fmt.Fprintf(w, "(ratio = rate / raw SM2 signing on all cores, this run; peak RSS = VmHWM of this process during the phase, node and clients)\n")
	fmt.Fprintf(w, "(CPU µs/op = CPU time of this process, node and clients, per answered request; CPU ratio = CPU of one raw SM2 signature (%.1f µs) / CPU µs/op:\n"+
		" the rate ratio the phase would reach with the cores to itself and no waiting, a load-independent estimate when the machine is shared)\n",
		float64(rates.SM2SignCPU)/float64(time.Microsecond))
	fmt.Fprintf(w, "(paced latency counts from the scheduled send time; closed-loop latency from the actual send)\n")
	for _, f := range figs {
		if f.res.firstErr != nil {
			fmt.Fprintf(w, "first error in %s: %v\n", f.name, f.res.firstErr)
		}
	}

	if o.check {
		if !(issueRatio >= minIssueRatio) { // NaN fails too
			return fmt.Errorf("issuance at %.3f of raw SM2 signing, below %.2f", issueRatio, minIssueRatio)
		}
		fmt.Fprintf(w, "check:    issuance ratio %.3f >= %.2f: ok\n", issueRatio, minIssueRatio)
	}
	fmt.Fprintf(w, "target:   OCSP from the pre-signed cache at %.3f of raw SM2 signing (issue target >= %.1f): %s\n", cacheRatio, minCacheRatio,
		map[bool]string{true: "met", false: "NOT met"}[cacheRatio >= minCacheRatio])
	return nil
}

func ptr(s string) *string { return &s }

// startProfile starts a CPU profile into path, if any, and returns what
// stops it and closes the file.
func startProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// storageName describes the store without credentials.
func storageName(d store.Driver, dbURL, dir string) string {
	if dbURL == "" {
		return fmt.Sprintf("%s, %s", d, filepath.Join(dir, "govtrust.db"))
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return string(d) // never echo an unparsable URL: it may hold a password
	}
	return fmt.Sprintf("%s, %s%s", d, u.Host, u.Path)
}

// pinnedTLS trusts exactly the node's bootstrap TLS certificate
// (DIR/bootstrap/tls-chain.pem), which names 127.0.0.1.
func pinnedTLS(dir string) (*tls.Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, "bootstrap", "tls-chain.pem"))
	if err != nil {
		return nil, fmt.Errorf("node TLS certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("node TLS certificate: no certificate in tls-chain.pem")
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}

// newClient is one keep-alive client with a connection of its own.
func newClient(conf *tls.Config) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: conf, MaxIdleConns: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}}
}

// issueBody is the JSON of an issuance request for a fresh SM2 key.
func issueBody() ([]byte, error) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{DNSNames: []string{host}}, key)
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	return json.Marshal(ca.IssueRequest{CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), Profile: profile})
}

// issuer posts issuance requests.
type issuer struct {
	url, auth string
	body      []byte
	clients   []*http.Client
}

// post sends one request from client w and returns the decoded answer.
func (is *issuer) post(ctx context.Context, w int) (*ca.IssueResponse, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", is.url, bytes.NewReader(is.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", is.auth)
	resp, err := is.clients[w].Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("status %d: %.200s", resp.StatusCode, raw)
	}
	var out ca.IssueResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if out.Serial == "" || out.Certificate == "" {
		return nil, errors.New("answer without serial or certificate")
	}
	return &out, nil
}

func (is *issuer) issue(ctx context.Context, w int) error {
	_, err := is.post(ctx, w)
	return err
}

// issueChecked issues one certificate and checks it is signed by the
// issuing CA of the answer's chain; it returns both.
func (is *issuer) issueChecked(ctx context.Context) (*smx509.Certificate, *smx509.Certificate, error) {
	out, err := is.post(ctx, 0)
	if err != nil {
		return nil, nil, err
	}
	if len(out.Chain) == 0 {
		return nil, nil, errors.New("answer without chain")
	}
	cert, err := parsePEM(out.Certificate)
	if err != nil {
		return nil, nil, err
	}
	issuing, err := parsePEM(out.Chain[0])
	if err != nil {
		return nil, nil, err
	}
	if err := cert.CheckSignatureFrom(issuing); err != nil {
		return nil, nil, fmt.Errorf("issued certificate: %w", err)
	}
	if cert.SignatureAlgorithm != smx509.SM2WithSM3 {
		return nil, nil, fmt.Errorf("issued certificate signed with %s, want SM2-SM3", cert.SignatureAlgorithm)
	}
	return cert, issuing, nil
}

func parsePEM(s string) (*smx509.Certificate, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("no PEM certificate")
	}
	return smx509.ParseCertificate(b.Bytes)
}

// ocspClient posts OCSP requests for one certificate.
type ocspClient struct {
	url     string
	serial  *big.Int
	issuer  *smx509.Certificate
	clients []*http.Client
	// plainReq is the request without a nonce, presigned its verified
	// answer (cachedChecked).
	plainReq, presigned []byte
}

// post sends one request with a fresh nonce and returns the request's nonce
// and the response DER of a 200 answer.
func (oc *ocspClient) post(ctx context.Context, w int) ([]byte, []byte, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	der, err := ocsp.CreateRequestForSerial(oc.serial, oc.issuer, &ocsp.RequestOptions{Nonce: nonce})
	if err != nil {
		return nil, nil, err
	}
	raw, err := oc.send(ctx, w, der)
	return nonce, raw, err
}

// send posts a DER request from client w and returns the response DER of a
// 200 answer.
func (oc *ocspClient) send(ctx context.Context, w int, der []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", oc.url, bytes.NewReader(der))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := oc.clients[w].Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return raw, nil
}

// cachedChecked sends a request without a nonce (RFC 5019 §2.1), verifies
// the answer in full (signed by a delegated responder the CA certified, for
// the serial, good, no nonce), and sends it again: the second answer must be
// the same bytes, the pre-signed response. It keeps both for cachedQuery.
func (oc *ocspClient) cachedChecked(ctx context.Context) error {
	der, err := ocsp.CreateRequestForSerial(oc.serial, oc.issuer, nil)
	if err != nil {
		return err
	}
	raw, err := oc.send(ctx, 0, der)
	if err != nil {
		return err
	}
	r, err := ocsp.ParseResponse(raw, oc.issuer)
	if err != nil {
		return err
	}
	if r.SerialNumber.Cmp(oc.serial) != 0 || r.Nonce != nil || r.Status != ocsp.Good || r.Certificate == nil {
		return fmt.Errorf("answer for serial %x, nonce %x, status %s, delegated %v; want %x, none, good, delegated",
			r.SerialNumber, r.Nonce, r.Status, r.Certificate != nil, oc.serial)
	}
	again, err := oc.send(ctx, 0, der)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, raw) {
		return errors.New("a second request without nonce got another response: not answered from the pre-signed cache")
	}
	oc.plainReq, oc.presigned = der, raw
	return nil
}

// cachedQuery sends the request without a nonce and checks the answer is
// the pre-signed response cachedChecked verified.
func (oc *ocspClient) cachedQuery(ctx context.Context, w int) error {
	raw, err := oc.send(ctx, w, oc.plainReq)
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, oc.presigned) {
		return errors.New("answer differs from the verified pre-signed response")
	}
	return nil
}

// query checks only the OCSPResponse's responseStatus (RFC 6960 §4.2.1),
// which is all a client can check without verifying the signature: a full
// check per answer would add an SM2 verification to every request on the
// cores the node runs on.
func (oc *ocspClient) query(ctx context.Context, w int) error {
	_, raw, err := oc.post(ctx, w)
	if err != nil {
		return err
	}
	in := cryptobyte.String(raw)
	var resp, status cryptobyte.String
	if !in.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1(&status, cbasn1.ENUM) || len(status) != 1 {
		return errors.New("malformed OCSPResponse")
	}
	if status[0] != 0 {
		return fmt.Errorf("OCSP responseStatus %d, want successful (0)", status[0])
	}
	return nil
}

// queryChecked verifies one answer in full: signature by the CA or a
// delegated responder it certified, serial, nonce and status good.
func (oc *ocspClient) queryChecked(ctx context.Context) error {
	nonce, raw, err := oc.post(ctx, 0)
	if err != nil {
		return err
	}
	r, err := ocsp.ParseResponse(raw, oc.issuer)
	if err != nil {
		return err
	}
	if r.SerialNumber.Cmp(oc.serial) != 0 || !bytes.Equal(r.Nonce, nonce) || r.Status != ocsp.Good {
		return fmt.Errorf("answer for serial %x, nonce %x, status %s; want %x, %x, good", r.SerialNumber, r.Nonce, r.Status, oc.serial, nonce)
	}
	return nil
}

// result is what a load phase measured.
type result struct {
	ok, errs int64
	elapsed  time.Duration
	// cpu is the CPU time this process (node and clients) used during the
	// phase.
	cpu      time.Duration
	lat      []time.Duration // sorted, successes only
	firstErr error
}

// cpuPerOp is the process CPU time per answered request.
func (r result) cpuPerOp() time.Duration {
	if r.ok == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.ok)
}

func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// percentile is the nearest-rank percentile of the latencies (p = 1 is the
// maximum).
func (r result) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.lat)))) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// collector gathers latencies and errors from workers.
type collector struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int64
	firstErr error
}

func (c *collector) add(lat []time.Duration, errs int64, firstErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lat = append(c.lat, lat...)
	c.errs += errs
	if c.firstErr == nil {
		c.firstErr = firstErr
	}
}

func (c *collector) result(elapsed time.Duration) (result, error) {
	slices.Sort(c.lat)
	r := result{ok: int64(len(c.lat)), errs: c.errs, elapsed: elapsed, lat: c.lat, firstErr: c.firstErr}
	if r.ok == 0 {
		return r, fmt.Errorf("no request succeeded (%d failed): %w", r.errs, r.firstErr)
	}
	return r, nil
}

// op is one request from client w.
type op func(ctx context.Context, w int) error

// warm runs the load unmeasured for the warm-up time.
func warm(ctx context.Context, o options, f op) error {
	if o.warmup == 0 {
		return nil
	}
	_, err := closedLoop(ctx, o.warmup, o.clients, f)
	return err
}

// closedLoop runs f from workers goroutines, each sending its next request
// when the last is answered, for d. A failed request is counted and the
// worker goes on, so the error rate is part of the figure.
func closedLoop(ctx context.Context, d time.Duration, workers int, f op) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		c    collector
	)
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	cpu0 := ref.CPUTime()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var (
				lat      []time.Duration
				errs     int64
				firstErr error
			)
			for !stop.Load() && ctx.Err() == nil {
				t := time.Now()
				if err := f(ctx, w); err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, time.Since(t))
			}
			c.add(lat, errs, firstErr)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	r, err := c.result(elapsed)
	r.cpu = ref.CPUTime() - cpu0
	return r, err
}

// openLoop schedules requests at rate per second for d, handing each to
// the next free of workers goroutines. Latency runs from the scheduled time,
// so queueing behind a slow answer counts. The rate is the answered
// requests over the time from the start to the last answer.
func openLoop(ctx context.Context, d time.Duration, rate float64, workers int, f op) (result, error) {
	if !(rate > 0) {
		return result{}, fmt.Errorf("pace %.3f/s: need a positive rate", rate)
	}
	interval := time.Duration(float64(time.Second) / rate)
	count := int(d / interval)
	jobs := make(chan time.Time, count)
	var (
		wg   sync.WaitGroup
		c    collector
		last atomic.Int64 // UnixNano of the last answer
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var (
				lat      []time.Duration
				errs     int64
				firstErr error
			)
			for at := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				err := f(ctx, w)
				now := time.Now()
				for {
					l := last.Load()
					if now.UnixNano() <= l || last.CompareAndSwap(l, now.UnixNano()) {
						break
					}
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, now.Sub(at))
			}
			c.add(lat, errs, firstErr)
		})
	}
	// The schedule is fixed up front; a worker takes the next slot when it
	// is free and sleeps until the slot's time, so the send rate never
	// exceeds rate and a late slot is sent at once.
	for i := range count {
		jobs <- start.Add(time.Duration(i+1) * interval)
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	return c.result(time.Unix(0, last.Load()).Sub(start))
}
