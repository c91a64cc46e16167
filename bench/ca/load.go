package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/govtrust/govtrust/bench/ref"
	"github.com/govtrust/govtrust/ca/ocsp"
)

// The load phases (loadSpec.Phase).
const (
	phaseIssue     = "issue"
	phaseOCSPCache = "ocsp-cache"
	phaseOCSPNonce = "ocsp-nonce"
	phaseOCSPGet   = "ocsp-get"
)

// tokenEnv carries the RA's bearer token to a child process: an argument
// would show in ps(1) to every user of the machine.
const tokenEnv = "BENCH_CA_TOKEN"

// measuringLine is what a child prints when its warm-up ends and the
// measured phase begins; its report, one JSON line, follows.
const measuringLine = "measuring"

// loadSpec is what the clients of one phase send and how they check each
// answer. A split run gives it to the child as a JSON file (without the
// token, which goes in tokenEnv).
type loadSpec struct {
	Phase string `json:"phase"`
	URL   string `json:"url"`
	// Body is the issuance request (JSON) or the OCSP request without a
	// nonce (DER).
	Body []byte `json:"body,omitempty"`
	// Expect is the verified pre-signed OCSP response every answer must
	// equal (ocsp-cache, ocsp-get).
	Expect []byte `json:"expect,omitempty"`
	// Issuer (the issuing CA's certificate, DER) and Serial name the
	// certificate the on-demand OCSP requests ask about (ocsp-nonce).
	Issuer []byte `json:"issuer,omitempty"`
	// GetPath is the escaped path of the RFC 5019 GET request for Body
	// (ocsp-get).
	GetPath string   `json:"get_path,omitempty"`
	Serial  *big.Int `json:"serial,omitempty"`
	// TLSChain is the file of the node's bootstrap TLS chain, the only
	// certificate the issuance clients trust (pinnedTLS).
	TLSChain string `json:"tls_chain,omitempty"`

	token string // the RA's bearer token (issue)
}

// op is one request from client w, its answer checked.
type op func(ctx context.Context, w int) error

// newOp returns the requests of s for clients workers, each on a
// keep-alive connection of its own, and what closes the connections.
func (s *loadSpec) newOp(clients int) (op, func() error, error) {
	switch s.Phase {
	case phaseIssue:
		if s.token == "" {
			return nil, nil, errors.New("issuance needs the RA token")
		}
		conf, err := pinnedTLS(s.TLSChain)
		if err != nil {
			return nil, nil, err
		}
		is := &issuer{url: s.URL, auth: "Bearer " + s.token, body: s.Body}
		hcs := make([]*http.Client, clients)
		for i := range hcs {
			hcs[i] = newClient(conf)
		}
		closeAll := func() error {
			for _, hc := range hcs {
				hc.CloseIdleConnections()
			}
			return nil
		}
		// Every answer: 201, a serial and a certificate that parses; the
		// first was checked in full (issueChecked).
		return func(ctx context.Context, w int) error {
			out, err := is.post(ctx, hcs[w])
			if err != nil {
				return err
			}
			_, err = parsePEM(out.Certificate)
			return err
		}, closeAll, nil
	case phaseOCSPCache, phaseOCSPNonce, phaseOCSPGet:
		conns, err := newRawConns(s.URL, "application/ocsp-request", "application/ocsp-response", clients)
		if err != nil {
			return nil, nil, err
		}
		closeAll := func() error {
			var errs []error
			for _, c := range conns {
				errs = append(errs, c.close())
			}
			return errors.Join(errs...)
		}
		// From the cache, by GET or POST: every answer is the pre-signed
		// response the parent verified.
		expect := func(send func(ctx context.Context, w int) ([]byte, error)) func(ctx context.Context, w int) error {
			return func(ctx context.Context, w int) error {
				raw, err := send(ctx, w)
				if err != nil {
					return err
				}
				if !bytes.Equal(raw, s.Expect) {
					return errors.New("answer differs from the verified pre-signed response")
				}
				return nil
			}
		}
		if s.Phase == phaseOCSPGet {
			u, err := url.Parse(s.URL)
			if err != nil {
				return nil, nil, err
			}
			req := fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", s.GetPath, u.Host)
			return expect(func(ctx context.Context, w int) ([]byte, error) { return conns[w].get(ctx, req) }), closeAll, nil
		}
		if s.Phase == phaseOCSPCache {
			return expect(func(ctx context.Context, w int) ([]byte, error) { return conns[w].post(ctx, s.Body) }), closeAll, nil
		}
		issuingCA, err := smx509.ParseCertificate(s.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("issuing CA certificate: %w", err)
		}
		return func(ctx context.Context, w int) error {
			nonce := make([]byte, 16)
			if _, err := rand.Read(nonce); err != nil {
				return err
			}
			der, err := ocsp.CreateRequestForSerial(s.Serial, issuingCA, &ocsp.RequestOptions{Nonce: nonce})
			if err != nil {
				return err
			}
			raw, err := conns[w].post(ctx, der)
			if err != nil {
				return err
			}
			return checkOnDemand(raw, nonce)
		}, closeAll, nil
	}
	return nil, nil, fmt.Errorf("unknown load phase %q", s.Phase)
}

// checkOnDemand checks what a client can check of an answer without
// verifying it: responseStatus successful (RFC 6960 §4.2.1) and the
// request's nonce in it (RFC 9654). A full check (ocsp.ParseResponse, as
// queryChecked does once per phase) verifies two SM2 signatures, the
// responder's certificate and the response: nearly as much CPU as the node
// spends answering, so the clients' core, not the node's, could set the
// rate.
func checkOnDemand(raw, nonce []byte) error {
	in := cryptobyte.String(raw)
	var resp, status cryptobyte.String
	if !in.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1(&status, cbasn1.ENUM) || len(status) != 1 {
		return errors.New("malformed OCSPResponse")
	}
	if status[0] != 0 {
		return fmt.Errorf("OCSP responseStatus %d, want successful (0)", status[0])
	}
	if !bytes.Contains(resp, nonce) {
		return errors.New("answer without the request's nonce")
	}
	return nil
}

// figure is one load phase as the node's process saw it.
type figure struct {
	name string
	res  result
	cpu  time.Duration // this process's CPU over the measured window
	rss  string        // this process's peak RSS over the measured window
}

// serverCPU is this process's CPU per answered request: the node's alone
// in a split run, the node's and the clients' otherwise.
func (f figure) serverCPU() time.Duration { return perOp(f.cpu, f.res.OK) }

// clientCPU is the child's CPU per answered request, 0 when the clients
// ran in this process.
func (f figure) clientCPU() time.Duration { return perOp(f.res.CPU, f.res.OK) }

// cores is the CPU this process used over the phase, in cores.
func (f figure) cores() float64 {
	if f.res.Elapsed <= 0 {
		return 0
	}
	return float64(f.cpu) / float64(f.res.Elapsed)
}

func perOp(d time.Duration, ops int64) time.Duration {
	if ops <= 0 {
		return 0
	}
	return d / time.Duration(ops)
}

// runner runs load phases against the node in this process: with the
// clients in a child pinned to CPU 1 (split), or in this process.
type runner struct {
	o   options
	dir string // where the children's specs are written
}

// meter measures this process over a phase's measured window: CPU time,
// peak RSS, and a CPU profile into profile when set.
type meter struct {
	profile     string
	cpu0        time.Duration
	stopProfile func() error
	running     bool
}

func (m *meter) start() error {
	stop, err := startProfile(m.profile)
	if err != nil {
		return err
	}
	ref.ResetPeakRSS()
	m.stopProfile, m.running, m.cpu0 = stop, true, ref.CPUTime()
	return nil
}

// stop ends the window and fills f's CPU and RSS; it does nothing when the
// window is not open.
func (m *meter) stop(f *figure) error {
	if !m.running {
		return nil
	}
	f.cpu, f.rss, m.running = ref.CPUTime()-m.cpu0, ref.PeakRSS(), false
	return m.stopProfile()
}

// phase runs one load phase for -duration after warmup (closed loop) or
// paced at rate requests per second (open loop, rate > 0), and profiles
// this process over it into profile when set.
func (r *runner) phase(ctx context.Context, name string, spec loadSpec, rate float64, warmup time.Duration, profile string) (figure, error) {
	f := figure{name: name}
	m := &meter{profile: profile}
	var err error
	if r.o.split {
		err = r.child(ctx, spec, rate, warmup, m, &f)
	} else {
		err = r.inProcess(ctx, spec, rate, warmup, m, &f)
	}
	if serr := m.stop(&f); err == nil {
		err = serr
	}
	if err == nil && f.res.OK == 0 {
		err = fmt.Errorf("no request succeeded (%d failed): %s", f.res.Errs, f.res.FirstErr)
	}
	if err != nil {
		return f, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func (r *runner) inProcess(ctx context.Context, spec loadSpec, rate float64, warmup time.Duration, m *meter, f *figure) (err error) {
	op, closeAll, err := spec.newOp(r.o.clients)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeAll(); err == nil {
			err = cerr
		}
	}()
	if err := warm(ctx, warmup, r.o.clients, op); err != nil {
		return err
	}
	if err := m.start(); err != nil {
		return err
	}
	f.res, err = drive(ctx, r.o.duration, rate, r.o.clients, op)
	return err
}

// child runs the phase in a child process pinned to CPU 1 and measures
// this process from its "measuring" line to its report.
func (r *runner) child(ctx context.Context, spec loadSpec, rate float64, warmup time.Duration, m *meter, f *figure) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	file := filepath.Join(r.dir, "load-"+spec.Phase+".json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-child", file, "-cpu", "1", "-clients", strconv.Itoa(r.o.clients),
		"-duration", r.o.duration.String(), "-warmup", warmup.String(), "-rate", strconv.FormatFloat(rate, 'f', -1, 64))
	cmd.Env = os.Environ()
	if spec.token != "" {
		cmd.Env = append(cmd.Env, tokenEnv+"="+spec.token)
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("client process: %w", err)
	}
	err = readChild(bufio.NewScanner(out), m, f)
	if err != nil {
		cancel() // a child still running is killed
	}
	if werr := cmd.Wait(); werr != nil {
		err = errors.Join(err, fmt.Errorf("client process: %w", werr))
	}
	return err
}

// readChild reads a child's output: the measured window opens at its
// "measuring" line and closes at its report.
func readChild(sc *bufio.Scanner, m *meter, f *figure) error {
	for sc.Scan() {
		switch {
		case !m.running && sc.Text() == measuringLine:
			if err := m.start(); err != nil {
				return err
			}
		case m.running:
			if err := m.stop(f); err != nil {
				return err
			}
			if err := json.Unmarshal(sc.Bytes(), &f.res); err != nil {
				return fmt.Errorf("client process said %q: %w", sc.Text(), err)
			}
			return nil
		default:
			return fmt.Errorf("client process said %q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("client process: %w", err)
	}
	return errors.New("client process ended without a report")
}

// runChild is the load generator of a split run: the spec in file o.child,
// a warm-up, "measuring", the phase, then its report as one JSON line.
func runChild(ctx context.Context, o options) (err error) {
	b, err := os.ReadFile(o.child)
	if err != nil {
		return err
	}
	var spec loadSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("load spec %s: %w", o.child, err)
	}
	spec.token = os.Getenv(tokenEnv)
	op, closeAll, err := spec.newOp(o.clients)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeAll(); err == nil {
			err = cerr
		}
	}()
	if err := warm(ctx, o.warmup, o.clients, op); err != nil {
		return err
	}
	if _, err := fmt.Println(measuringLine); err != nil {
		return err
	}
	cpu0 := ref.CPUTime()
	res, err := drive(ctx, o.duration, o.rate, o.clients, op)
	if err != nil {
		return err
	}
	res.CPU = ref.CPUTime() - cpu0
	return json.NewEncoder(os.Stdout).Encode(res)
}

// result is what the clients of a load phase measured; a child sends it
// to its parent as JSON.
type result struct {
	OK      int64         `json:"ok"`
	Errs    int64         `json:"errors"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Nearest-rank latency percentiles of the answered requests.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
	// CPU is the child's CPU time over the phase (zero when the clients
	// ran in the node's process).
	CPU      time.Duration `json:"cpu_ns"`
	FirstErr string        `json:"first_error,omitempty"`
}

func (r result) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// collector gathers latencies and errors from workers.
type collector struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int64
	firstErr error
}

// tally is one worker's share of a phase, merged into the collector when
// the worker ends (no lock per request).
type tally struct {
	lat      []time.Duration
	errs     int64
	firstErr error
}

// record counts one request: its latency, or its error.
func (t *tally) record(lat time.Duration, err error) {
	if err != nil {
		t.errs++
		if t.firstErr == nil {
			t.firstErr = err
		}
		return
	}
	t.lat = append(t.lat, lat)
}

func (c *collector) add(t *tally) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lat = append(c.lat, t.lat...)
	c.errs += t.errs
	if c.firstErr == nil {
		c.firstErr = t.firstErr
	}
}

func (c *collector) result(elapsed time.Duration) result {
	slices.Sort(c.lat)
	r := result{OK: int64(len(c.lat)), Errs: c.errs, Elapsed: elapsed,
		P50: percentile(c.lat, 0.50), P99: percentile(c.lat, 0.99), Max: percentile(c.lat, 1)}
	if c.firstErr != nil {
		r.FirstErr = c.firstErr.Error()
	}
	return r
}

// percentile is the nearest-rank percentile of sorted latencies (p = 1 is
// the maximum).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// warm runs the load unmeasured for d; a warm-up in which no request
// succeeds is an error.
func warm(ctx context.Context, d time.Duration, workers int, f op) error {
	if d <= 0 {
		return nil
	}
	r, err := closedLoop(ctx, d, workers, f)
	if err != nil {
		return err
	}
	if r.OK == 0 {
		return fmt.Errorf("warm-up: no request succeeded (%d failed): %s", r.Errs, r.FirstErr)
	}
	return nil
}

// drive runs a closed loop (rate 0) or an open loop at rate for d.
func drive(ctx context.Context, d time.Duration, rate float64, workers int, f op) (result, error) {
	if rate == 0 {
		return closedLoop(ctx, d, workers, f)
	}
	return openLoop(ctx, d, rate, workers, f)
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
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var t tally
			for !stop.Load() && ctx.Err() == nil {
				sent := time.Now()
				err := f(ctx, w)
				t.record(time.Since(sent), err)
			}
			c.add(&t)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	return c.result(elapsed), nil
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
			var t tally
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
				t.record(now.Sub(at), err)
			}
			c.add(&t)
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
	return c.result(time.Unix(0, last.Load()).Sub(start)), nil
}
