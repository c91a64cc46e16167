// Ca measures the certificate authority end to end (ACCEPTANCE.md §3.1):
// SM2 certificates issued per second over the HTTPS API (CSR in,
// certificate out: profile, pre-issuance lint, SM2 signature by the
// software keystore, durable store with its audit record and outbox event),
// the latency of issuance at half that rate, the peak RSS, and OCSP
// responses per second from the pre-signed cache and signed on demand (the
// issue's target for the cache is 1.0 or better). Each rate is also printed
// as a ratio to raw SM2 signing measured in the same run (bench/README.md);
// the issue's target for issuance with SQLite is 0.10 or better (-check).
//
// The program starts a node with the CA service in its own process, in a
// temporary data directory: SQLite there by default, or the PostgreSQL
// database -db names (it must be empty: the node migrates it and creates its
// CA hierarchy and keys in it).
//
// Split cores, the default: before anything else the program pins its own
// process, the node's, to CPU 0 (ref.Pin; the node runs two Ps on it), so the
// reference rates (ref.Measure) are measured on that same core, and each
// load phase runs its clients in a child process (this program again,
// -child) pinned to CPU 1. The clients are on the same host and talk to the
// node over loopback, as §3.1 asks, but not on its core: the rates and
// ratios are one core of service against one core of raw signing, and the
// CPU time counted over each measured window (getrusage) is the node's
// alone. The report gives the node's CPU per request, the clients' apart,
// and the CPU ratio, the CPU of one raw SM2 signature over the node's CPU
// per request, which holds when other work on a shared machine moves the
// wall-clock rates. The peak RSS is the node's process. A PostgreSQL server
// (-db) runs in processes of its own that are not pinned: they use either
// core, the clients' included, and their CPU is not in the node's.
//
// With -split=false everything runs in this one process on all cores: the
// clients' TLS, JSON and HTTP work is then part of the CPU and peak RSS
// measured, and the ratios are to raw signing on all cores.
//
// The phases, each for -duration after a -warmup of the same load (none
// before the paced one):
//
//  1. the reference rates (ref.Measure for -ref-duration per operation),
//     before any load;
//  2. issuance, closed loop: -clients clients, each with its own
//     keep-alive HTTPS connection (net/http), POST
//     /api/v1/ca/sm2-issuing/certificates with one fixed SM2 CSR under the
//     server-tls profile, as fast as the node answers;
//  3. issuance, paced (open loop) at half the rate of phase 2: requests are
//     scheduled at fixed intervals and latency is counted from the scheduled
//     time, so a stall is not hidden by the clients waiting for it
//     (coordinated omission);
//  4. OCSP from the pre-signed cache, closed loop: POST /ocsp/sm2-issuing on
//     the public HTTP listener (RFC 6960 Appendix A.1) for a certificate
//     issued in phase 2, without a nonce (the RFC 5019 profile): the node
//     answers from its memory cache of responses its delegated SM2
//     responder signed ahead of time (ca/ocsp_cache.go);
//  5. the same request by GET /ocsp/sm2-issuing/{base64, percent-encoded}
//     (RFC 5019 §5: clients send requests of up to 255 octets so), its
//     first answer checked for the cache headers too;
//  6. OCSP signed on demand, closed loop: POST with a fresh nonce each, so
//     the node reads the status from the database and the delegated
//     responder signs every answer.
//
// The OCSP clients write their requests and parse the answers on a
// keep-alive HTTP/1.1 connection each without net/http (raw.go), whose
// cost per request would be of the order of the few tens of µs the node
// spends on an answer from its cache.
//
// The first answer of each kind is checked in full by this process
// (certificate signature by the issuing CA; OCSP response signature by the
// delegated responder the CA certified, status good, nonce echoed), the
// OCSP answers again after the load; under load the clients check every
// answer: issuance by status and a certificate that parses, OCSP from the
// cache (POST and GET) by being the byte-identical pre-signed response,
// OCSP on demand by a successful responseStatus that carries the request's
// nonce. So a broken service cannot report a fast rate.
//
// Usage:
//
//	go run ./bench/ca [-duration 10s] [-clients N] [-db postgres://...] [-split=false] [-check] [-cpuprofile issue.pprof] [-ocspprofile ocsp.pprof]
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
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

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
	split                         bool

	// Child mode: the load generator of one phase.
	child string  // the loadSpec file
	cpu   int     // pin to this CPU
	rate  float64 // offered rate, 0 for a closed loop
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measuring time of each load phase")
	flag.DurationVar(&o.refDuration, "ref-duration", 3*time.Second, "measuring time of each reference rate")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each phase")
	flag.IntVar(&o.clients, "clients", 16, "concurrent keep-alive clients (README measures with 16)")
	flag.StringVar(&o.db, "db", "", "PostgreSQL URL of an empty database; empty for SQLite in the temporary directory")
	flag.BoolVar(&o.check, "check", false, fmt.Sprintf("exit 1 when the issuance ratio is below %.2f", minIssueRatio))
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the node's process over the closed-loop issuance phase to this file")
	flag.StringVar(&o.ocspProfile, "ocspprofile", "", "write a CPU profile of the node's process over the OCSP-from-cache phase to this file")
	flag.BoolVar(&o.split, "split", true, "node (and the reference rates) pinned to CPU 0, clients in a child process pinned to CPU 1; false: all in one process on all cores")
	flag.StringVar(&o.child, "child", "", "internal: run as the load generator of a parent bench/ca, for the phase this file describes")
	flag.IntVar(&o.cpu, "cpu", -1, "internal (-child): pin to this CPU")
	flag.Float64Var(&o.rate, "rate", 0, "internal (-child): offered rate, 0 for a closed loop")
	flag.Parse()

	// Pin first: the threads the runtime starts later inherit the mask,
	// and the reference rates must be measured on the node's core.
	var err error
	switch {
	case o.child != "" && o.cpu >= 0:
		err = ref.Pin(o.cpu)
	case o.child == "" && o.split:
		err = ref.Pin(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/ca:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if o.child != "" {
		err = runChild(ctx, o)
	} else {
		err = run(ctx, os.Stdout, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/ca:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, o options) error {
	if o.duration <= 0 || o.refDuration <= 0 || o.warmup < 0 || o.clients <= 0 {
		return errors.New("-duration, -ref-duration and -clients must be positive, -warmup not negative")
	}
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
	facts := ref.Collect(ctx) // after the node has set GOMAXPROCS
	db := n.Env().DB
	settings, err := db.Durability(ctx)
	if err != nil {
		return err
	}
	token, err := node.ReadBootstrapToken(dir, "ra")
	if err != nil {
		return fmt.Errorf("ra token: %w", err)
	}
	tlsChain := filepath.Join(dir, "bootstrap", "tls-chain.pem")
	tlsConf, err := pinnedTLS(tlsChain)
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
	if o.split {
		pg := ""
		if o.db != "" {
			pg = "; the PostgreSQL server's processes are NOT pinned (either core) and their CPU is not counted as the node's"
		}
		fmt.Fprintf(w, "cores:    split: node and reference rates in this process pinned to CPU 0, GOMAXPROCS %d; clients in a child process pinned to CPU 1%s\n", runtime.GOMAXPROCS(0), pg)
	} else {
		fmt.Fprintf(w, "cores:    not split: node, clients and reference rates in this process on all cores, GOMAXPROCS %d\n", runtime.GOMAXPROCS(0))
	}
	fmt.Fprintf(w, "clients:  %d, each on its own keep-alive connection over loopback (issuance: net/http over TLS; OCSP: raw HTTP/1.1)\n", o.clients)
	fmt.Fprintf(w, "request:  POST /api/v1/ca/%s/certificates, profile %s, one fixed SM2 CSR; OCSP POST (and GET) /ocsp/%s over HTTP, without nonce (cache) or with a fresh nonce each (on demand)\n",
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
	first, issuingCA, err := is.issueChecked(ctx, newClient(tlsConf))
	if err != nil {
		return fmt.Errorf("first issuance: %w", err)
	}

	r := &runner{o: o, dir: tmp}
	issueSpec := loadSpec{Phase: phaseIssue, URL: is.url, Body: body, TLSChain: tlsChain, token: token}
	issue, err := r.phase(ctx, "issuance, closed loop", issueSpec, 0, o.warmup, o.cpuProfile)
	if err != nil {
		return err
	}
	// Paced at half the closed-loop rate.
	half := issue.res.rate() / 2
	paced, err := r.phase(ctx, fmt.Sprintf("issuance, paced at %.0f/s", half), issueSpec, half, 0, "")
	if err != nil {
		return err
	}

	oc := &ocspClient{url: "http://" + n.Addresses().HTTP + "/ocsp/" + caID, serial: first.SerialNumber, issuer: issuingCA, hc: newClient(nil)}
	// OCSP from the pre-signed cache: the first request fills it.
	if err := oc.cachedChecked(ctx); err != nil {
		return fmt.Errorf("first OCSP query without nonce: %w", err)
	}
	cq, err := r.phase(ctx, "OCSP POST, pre-signed cache", loadSpec{Phase: phaseOCSPCache, URL: oc.url, Body: oc.plainReq, Expect: oc.presigned},
		0, o.warmup, o.ocspProfile)
	if err != nil {
		return err
	}
	// The same over GET, as RFC 5019 §5 has clients send a request of at
	// most 255 octets: the first answer checked in full.
	getPath, err := oc.getChecked(ctx)
	if err != nil {
		return fmt.Errorf("first OCSP GET: %w", err)
	}
	gq, err := r.phase(ctx, "OCSP GET, pre-signed cache", loadSpec{Phase: phaseOCSPGet, URL: oc.url, GetPath: getPath, Expect: oc.presigned},
		0, o.warmup, "")
	if err != nil {
		return err
	}
	// OCSP signed on demand.
	if err := oc.queryChecked(ctx); err != nil {
		return fmt.Errorf("first OCSP query: %w", err)
	}
	oq, err := r.phase(ctx, "OCSP POST, signed on demand", loadSpec{Phase: phaseOCSPNonce, URL: oc.url, Issuer: issuingCA.Raw, Serial: first.SerialNumber},
		0, o.warmup, "")
	if err != nil {
		return err
	}
	// One more full check after the load: the answers stayed right.
	if err := oc.queryChecked(ctx); err != nil {
		return fmt.Errorf("OCSP query after the load: %w", err)
	}
	if err := oc.cachedChecked(ctx); err != nil {
		return fmt.Errorf("OCSP query without nonce after the load: %w", err)
	}

	figs := []figure{issue, paced, cq, gq, oq}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cpuCols := "server CPU µs/op\tclient CPU µs/op\tCPU ratio\tserver cores busy"
	if !o.split {
		cpuCols = "process CPU µs/op\tclient CPU µs/op\tCPU ratio\tprocess cores busy"
	}
	fmt.Fprintf(tw, "figure\tops/s\tratio to sm2-sign\t%s\tp50\tp99\tmax\tok\terrors\tpeak RSS\n", cpuCols)
	for _, f := range figs {
		client := "-"
		if f.res.CPU > 0 {
			client = fmt.Sprintf("%.0f", us(f.clientCPU()))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.0f\t%s\t%.3f\t%.2f\t%s\t%s\t%s\t%d\t%d\t%s\n", f.name, f.res.rate(), rates.Ratio(f.res.rate(), ref.SM2Sign),
			us(f.serverCPU()), client, rates.CPURatio(f.serverCPU(), ref.SM2Sign), f.cores(),
			ms(f.res.P50), ms(f.res.P99), ms(f.res.Max), f.res.OK, f.res.Errs, f.rss)
	}
	tw.Flush()
	if o.split {
		fmt.Fprintf(w, "(ratio = rate / raw SM2 signing on 1 core, CPU 0, the node's, this run; server CPU = getrusage of the node's process over the\n"+
			" measured window per answered request%s; client CPU = the same for the load generator on CPU 1;\n"+
			" server cores busy = server CPU / wall time, 1.00 = CPU 0 saturated; peak RSS = VmHWM of the node's process during the phase)\n",
			map[bool]string{true: ", without the PostgreSQL server's", false: ""}[o.db != ""])
	} else {
		fmt.Fprintf(w, "(ratio = rate / raw SM2 signing on all cores, this run; process CPU = getrusage of this process, node and clients, per answered\n"+
			" request; process cores busy = that CPU / wall time; peak RSS = VmHWM of this process during the phase, node and clients)\n")
	}
	fmt.Fprintf(w, "(CPU ratio = CPU of one raw SM2 signature (%.1f µs) / %s CPU µs/op: the rate ratio the phase would reach on an idle machine\n"+
		" with nothing waiting (a disk, a lock), a load-independent estimate when the machine is shared)\n", us(rates.SM2SignCPU),
		map[bool]string{true: "server", false: "process"}[o.split])
	fmt.Fprintf(w, "(paced latency counts from the scheduled send time; closed-loop latency from the actual send)\n")
	for _, f := range figs {
		if f.res.FirstErr != "" {
			fmt.Fprintf(w, "first error in %s: %s\n", f.name, f.res.FirstErr)
		}
	}

	issueRatio := rates.Ratio(issue.res.rate(), ref.SM2Sign)
	if o.check {
		if !(issueRatio >= minIssueRatio) { // NaN fails too
			return fmt.Errorf("issuance at %.3f of raw SM2 signing, below %.2f", issueRatio, minIssueRatio)
		}
		fmt.Fprintf(w, "check:    issuance ratio %.3f >= %.2f: ok\n", issueRatio, minIssueRatio)
	}
	cacheRatio := rates.Ratio(cq.res.rate(), ref.SM2Sign)
	fmt.Fprintf(w, "target:   OCSP from the pre-signed cache at %.3f of raw SM2 signing (issue target >= %.1f): %s\n", cacheRatio, minCacheRatio,
		map[bool]string{true: "met", false: "NOT met"}[cacheRatio >= minCacheRatio])
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

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

// pinnedTLS trusts exactly the node's bootstrap TLS certificate, which
// names 127.0.0.1, in chainFile (DIR/bootstrap/tls-chain.pem).
func pinnedTLS(chainFile string) (*tls.Config, error) {
	b, err := os.ReadFile(chainFile)
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
}

// post sends one request with hc and returns the decoded answer.
func (is *issuer) post(ctx context.Context, hc *http.Client) (*ca.IssueResponse, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", is.url, bytes.NewReader(is.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", is.auth)
	resp, err := hc.Do(req)
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

// issueChecked issues one certificate and checks it is signed by the
// issuing CA of the answer's chain; it returns both.
func (is *issuer) issueChecked(ctx context.Context, hc *http.Client) (*smx509.Certificate, *smx509.Certificate, error) {
	out, err := is.post(ctx, hc)
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

// ocspClient checks the node's OCSP answers for one certificate in full.
type ocspClient struct {
	url    string
	serial *big.Int
	issuer *smx509.Certificate
	hc     *http.Client
	// plainReq is the request without a nonce, presigned its verified
	// answer (cachedChecked): what the ocsp-cache load sends and expects.
	plainReq, presigned []byte
}

// send posts a DER request and returns the response DER of a 200 answer.
func (oc *ocspClient) send(ctx context.Context, der []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", oc.url, bytes.NewReader(der))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := oc.hc.Do(req)
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
// the same bytes, the pre-signed response. It keeps both for the load.
func (oc *ocspClient) cachedChecked(ctx context.Context) error {
	der, err := ocsp.CreateRequestForSerial(oc.serial, oc.issuer, nil)
	if err != nil {
		return err
	}
	raw, err := oc.send(ctx, der)
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
	again, err := oc.send(ctx, der)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, raw) {
		return errors.New("a second request without nonce got another response: not answered from the pre-signed cache")
	}
	oc.plainReq, oc.presigned = der, raw
	return nil
}

// getChecked sends the request without nonce by GET (RFC 6960 Appendix
// A.1, RFC 5019 §5) and checks that the answer is the pre-signed response
// cachedChecked verified, with cache headers that end at its nextUpdate;
// it returns the escaped path.
func (oc *ocspClient) getChecked(ctx context.Context) (string, error) {
	u, err := url.Parse(oc.url)
	if err != nil {
		return "", err
	}
	path := u.Path + "/" + ocsp.EncodeGETPath(oc.plainReq)
	req, err := http.NewRequestWithContext(ctx, "GET", u.Scheme+"://"+u.Host+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := oc.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(raw, oc.presigned) {
		return "", fmt.Errorf("GET answered %d with %d octets, not the pre-signed response", resp.StatusCode, len(raw))
	}
	if !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=") || resp.Header.Get("Expires") == "" {
		return "", fmt.Errorf("GET answer without cache headers (Cache-Control %q, Expires %q)", resp.Header.Get("Cache-Control"), resp.Header.Get("Expires"))
	}
	return path, nil
}

// queryChecked sends a request with a fresh nonce and verifies the answer
// in full: signature by the CA or a delegated responder it certified,
// serial, nonce and status good.
func (oc *ocspClient) queryChecked(ctx context.Context) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	der, err := ocsp.CreateRequestForSerial(oc.serial, oc.issuer, &ocsp.RequestOptions{Nonce: nonce})
	if err != nil {
		return err
	}
	raw, err := oc.send(ctx, der)
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
