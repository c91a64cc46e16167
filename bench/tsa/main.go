// Tsa measures the time-stamping authority end to end (issue #7): tokens per
// second over HTTP (keep-alive, concurrent clients) for the SM2 and the
// ECDSA profile, each as a ratio to raw signing of the same algorithm
// measured in the same run (bench/README.md; the target for SM2 is
// 0.35 or better, -check), then the latency p50/p99 at half that rate.
//
// The node (CA and TSA services, SQLite in a temporary directory, software
// keys) runs in this process. The clients run in a child process (this
// program again, -child), over loopback, so that the server's CPU can be
// counted apart from theirs. By default (-split) this process is pinned to
// CPU 0 before anything is measured (the node then runs two Ps on it,
// internal/node/procs.go), the raw reference is
// measured here on that core, and the child is pinned to CPU 1: the rate and
// its ratio are those of one core serving clients that run beside it, not
// on it (bench/README.md, "Split cores"). -split=false lets both use every
// core (a machine serving its own clients); -clients-in-process (with
// -split=false) puts the clients in this process. Every request is a fresh SM3 or
// SHA-256 imprint with a nonce; every answer is parsed and matched with its
// request (imprint, nonce) by the Go client (tsa/client), and the first
// token of each profile is verified in full against the root. Tokens are
// recorded in the database before they are returned, as in production.
//
// Because the machine may be shared (a loaded box moves wall-clock rates by
// a factor of two), the program also counts CPU time (getrusage): the
// server's CPU per token over each closed-loop phase, the clients' (the
// child's own), and the CPU of one raw signature made as bench/ref makes it
// (1 KiB message, on all cores, in this process, the same run). The CPU
// ratio, raw-signature CPU over server CPU per token, is what the rate ratio
// would be on an idle machine whose clients are elsewhere.
//
// Usage:
//
//	go run ./bench/tsa [-duration 10s] [-clients N] [-check] [-clients-in-process]
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/bench/ref"
	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/tsa"
	"github.com/govtrust/govtrust/tsa/client"
	"github.com/govtrust/govtrust/tsa/tsp"
)

// minSM2Ratio is the target for SM2 tokens as a ratio to raw SM2
// signing; -check exits 1 below it.
const minSM2Ratio = 0.35

type options struct {
	duration, refDuration, warmup time.Duration
	clients                       int
	check                         bool
	cpuProfile                    string
	inProcess                     bool
	goClient                      bool
	split                         bool
	cpu                           int

	// Child mode: the load generator.
	child bool
	url   string
	hash  string
	rate  float64
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measuring time of each load phase")
	flag.DurationVar(&o.refDuration, "ref-duration", 3*time.Second, "measuring time of each reference rate")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each phase")
	flag.IntVar(&o.clients, "clients", 64, "concurrent keep-alive clients")
	flag.BoolVar(&o.check, "check", false, fmt.Sprintf("exit 1 when the SM2 ratio is below %.2f", minSM2Ratio))
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the closed-loop SM2 phase to this file")
	flag.BoolVar(&o.inProcess, "clients-in-process", false, "run the clients in this process rather than in a child")
	flag.BoolVar(&o.goClient, "go-client", false, "load with tsa/client (net/http) instead of the raw keep-alive HTTP/1.1 load generator")
	flag.BoolVar(&o.split, "split", true, "server (and the raw reference) pinned to CPU 0, clients to CPU 1")
	flag.IntVar(&o.cpu, "cpu", -1, "internal (-child): pin to this CPU")
	flag.BoolVar(&o.child, "child", false, "internal: run as the load generator of a parent bench/tsa")
	flag.StringVar(&o.url, "url", "", "internal (-child): the TSA URL")
	flag.StringVar(&o.hash, "hash", "sm3", "internal (-child): imprint hash")
	flag.Float64Var(&o.rate, "rate", 0, "internal (-child): offered rate, 0 for a closed loop")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch {
	case o.child && o.cpu >= 0:
		err = ref.Pin(o.cpu)
	case !o.child && o.split && o.inProcess:
		err = errors.New("-split needs the clients in a child process")
	case !o.child && o.split:
		err = ref.Pin(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/tsa:", err)
		os.Exit(1)
	}
	if o.child {
		err = runChild(ctx, o)
	} else {
		err = run(ctx, os.Stdout, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/tsa:", err)
		os.Exit(1)
	}
}

func ptr(s string) *string { return &s }

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawSM2CPU measures the CPU time of one SM2 signature as bench/ref's
// sm2-sign makes it (1 KiB random message, default user ID, on all cores).
func rawSM2CPU(ctx context.Context, d time.Duration) (time.Duration, float64, error) {
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return 0, 0, err
	}
	msg := make([]byte, ref.MessageSize)
	if _, err := rand.Read(msg); err != nil {
		return 0, 0, err
	}
	var n atomic.Int64
	start := cpuTime()
	rate, err := ref.Throughput(ctx, d, ref.Workers(), func() error {
		n.Add(1)
		_, err := key.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return (cpuTime() - start) / time.Duration(max(n.Load(), 1)), rate, nil
}

// phase is one load phase as the server saw it.
type phase struct {
	res       result
	serverCPU time.Duration // server process CPU per token
	clientCPU time.Duration // client CPU per token (child mode only)
	tokens    uint64
	perCommit float64
}

func run(ctx context.Context, w io.Writer, o options) error {
	if o.duration <= 0 || o.refDuration <= 0 || o.clients <= 0 {
		return errors.New("-duration, -ref-duration and -clients must be positive")
	}
	tmp, err := os.MkdirTemp("", "bench-tsa-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	c := ca.New()
	svc := tsa.New(c)
	n, err := node.Start(ctx, node.Options{DataDir: filepath.Join(tmp, "data"), HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"),
		LDAP: ptr(""), LogOutput: io.Discard, Environ: []string{}}, c, svc)
	if err != nil {
		return err
	}
	defer n.Shutdown(context.Background())
	facts := ref.Collect(ctx) // after the node has set GOMAXPROCS

	where := "in a child process (their CPU counted apart)"
	if o.inProcess {
		where = "in this process (server CPU includes theirs)"
	}
	facts.Print(w)
	fmt.Fprintf(w, "storage:     SQLite (embedded, WAL, synchronous=FULL), tokens recorded by the TSA's group-commit recorder\n")
	fmt.Fprintf(w, "keys:        software keystore (in process)\n")
	fmt.Fprintf(w, "durability:  every token committed before it is returned\n")
	fmt.Fprintf(w, "duration:    %s per phase, %d keep-alive clients over loopback HTTP, %s\n", o.duration, o.clients, where)
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(w, "load:        %s (before the run)\n", l[:len(l)-1])
	}
	fmt.Fprintln(w)

	rates, err := ref.Measure(ctx, o.refDuration)
	if err != nil {
		return err
	}
	rates.Report(w)
	rawCPU, rawRate, err := rawSM2CPU(ctx, o.refDuration)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sm2-sign CPU: %.1f µs per signature (getrusage; %.0f/s on %d cores in this measurement)\n\n",
		us(rawCPU), rawRate, ref.Workers())

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.clients, MaxConnsPerHost: o.clients}}
	base := "http://" + n.Addresses().HTTP
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\trate\tratio\tp50\tp99\terrors\tserver CPU/token\tclient CPU/token\ttokens/commit")
	var sm2Ratio float64
	for _, p := range []struct {
		profile, root, base string
		hash                *tsp.HashAlg
	}{{"sm2", "sm2-root", ref.SM2Sign, tsp.SM3}, {"ecdsa", "ecdsa-root", ref.P256Sign, tsp.SHA256}} {
		url := base + "/tsa/" + p.profile
		cl := client.New(url)
		cl.HTTP, cl.Hash, cl.NoCerts = hc, p.hash, true
		if err := verifyOne(ctx, n, cl, p.root); err != nil {
			return fmt.Errorf("%s: first token: %w", p.profile, err)
		}
		load := func(rate float64, profile bool) (phase, error) {
			var stopProfile func()
			begin := func() {
				if profile && o.cpuProfile != "" {
					if f, err := os.Create(o.cpuProfile); err == nil && pprof.StartCPUProfile(f) == nil {
						stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
					}
				}
			}
			var ph phase
			var err error
			if o.inProcess {
				ph, err = loadInProcess(ctx, o, svc, cl, rate, begin)
			} else {
				ph, err = loadChild(ctx, o, svc, url, p.hash.Name, rate, begin)
			}
			if stopProfile != nil {
				stopProfile()
			}
			return ph, err
		}
		closed, err := load(0, p.profile == "sm2")
		if err != nil {
			return fmt.Errorf("%s: %w", p.profile, err)
		}
		ratio := rates.Ratio(closed.res.rate(), p.base)
		if p.profile == "sm2" {
			sm2Ratio = ratio
		}
		fmt.Fprintf(tw, "%s tokens/s (closed loop)\t%.0f/s\t%.2f of %s\t%s\t%s\t%d\t%.0f µs\t%s\t%.1f\n", p.profile, closed.res.rate(), ratio, p.base,
			ms(closed.res.percentile(0.5)), ms(closed.res.percentile(0.99)), closed.res.errs, us(closed.serverCPU), cpuOrDash(closed.clientCPU), closed.perCommit)
		paced, err := load(closed.res.rate()/2, false)
		if err != nil {
			return fmt.Errorf("%s: %w", p.profile, err)
		}
		fmt.Fprintf(tw, "%s at half rate (%.0f/s offered)\t%.0f/s\t\t%s\t%s\t%d\t%.0f µs\t%s\t%.1f\n", p.profile, closed.res.rate()/2, paced.res.rate(),
			ms(paced.res.percentile(0.5)), ms(paced.res.percentile(0.99)), paced.res.errs, us(paced.serverCPU), cpuOrDash(paced.clientCPU), paced.perCommit)
		if p.profile == "sm2" {
			defer fmt.Fprintf(w, "\nSM2 CPU ratio: %.2f (raw sm2-sign CPU %.1f µs / server CPU per token %.1f µs); with the clients' CPU: %s\n",
				float64(rawCPU)/float64(closed.serverCPU), us(rawCPU), us(closed.serverCPU), withClients(rawCPU, closed))
		}
	}
	tw.Flush()
	if o.check && !(sm2Ratio >= minSM2Ratio) {
		return fmt.Errorf("SM2 ratio %.2f is below the target %.2f", sm2Ratio, minSM2Ratio)
	}
	return nil
}

func withClients(raw time.Duration, p phase) string {
	if p.clientCPU == 0 {
		return "included above (clients in process)"
	}
	return fmt.Sprintf("%.2f (%.1f µs per token in all)", float64(raw)/float64(p.serverCPU+p.clientCPU), us(p.serverCPU+p.clientCPU))
}

func cpuOrDash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f µs", us(d))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// snapshot is the server's counters at one instant.
type snapshot struct {
	cpu             time.Duration
	batches, tokens uint64
}

func snap(svc *tsa.Service) snapshot {
	b, t := svc.BatchStats()
	return snapshot{cpu: cpuTime(), batches: b, tokens: t}
}

func (s snapshot) phase(end snapshot, res result) phase {
	toks := end.tokens - s.tokens
	return phase{res: res, tokens: toks, serverCPU: (end.cpu - s.cpu) / time.Duration(max(toks, 1)),
		perCommit: float64(toks) / math.Max(1, float64(end.batches-s.batches))}
}

func loadInProcess(ctx context.Context, o options, svc *tsa.Service, cl *client.Client, rate float64, begin func()) (phase, error) {
	var seq atomic.Int64
	op := func(ctx context.Context) error {
		_, err := cl.Stamp(ctx, fmt.Appendf(nil, "bench %d", seq.Add(1)))
		return err
	}
	if rate == 0 {
		closedLoop(ctx, o.warmup, o.clients, op)
	}
	begin()
	s := snap(svc)
	var res result
	if rate == 0 {
		res = closedLoop(ctx, o.duration, o.clients, op)
	} else {
		res = pacedLoop(ctx, o.duration, rate, o.clients, op)
	}
	ph := s.phase(snap(svc), res)
	if res.firstErr != nil && res.ok == 0 {
		return ph, res.firstErr
	}
	return ph, nil
}

// childReport is what a child prints when its phase ends.
type childReport struct {
	OK, Errs int64
	Elapsed  time.Duration
	P50, P99 time.Duration
	CPU      time.Duration // the child's CPU over the measured phase
	FirstErr string
}

// loadChild runs one phase in a child process: it prints "measuring" when
// its warm-up ends, then its report as JSON.
func loadChild(ctx context.Context, o options, svc *tsa.Service, url, hash string, rate float64, begin func()) (phase, error) {
	exe, err := os.Executable()
	if err != nil {
		return phase{}, err
	}
	warm := o.warmup
	if rate > 0 {
		warm = 0
	}
	cmd := exec.CommandContext(ctx, exe, "-child", "-url", url, "-hash", hash, "-rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"-clients", strconv.Itoa(o.clients), "-duration", o.duration.String(), "-warmup", warm.String(), "-go-client="+strconv.FormatBool(o.goClient))
	if o.split {
		cmd.Args = append(cmd.Args, "-cpu", "1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return phase{}, err
	}
	if err := cmd.Start(); err != nil {
		return phase{}, err
	}
	sc := bufio.NewScanner(out)
	var s snapshot
	var rep childReport
	for sc.Scan() {
		if sc.Text() == "measuring" {
			begin()
			s = snap(svc)
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			return phase{}, fmt.Errorf("child said %q: %w", sc.Text(), err)
		}
	}
	end := snap(svc)
	if err := cmd.Wait(); err != nil {
		return phase{}, fmt.Errorf("client process: %w", err)
	}
	res := result{ok: rep.OK, errs: rep.Errs, elapsed: rep.Elapsed, p50: rep.P50, p99: rep.P99}
	ph := s.phase(end, res)
	ph.clientCPU = rep.CPU / time.Duration(max(rep.OK, 1))
	if rep.FirstErr != "" && rep.OK == 0 {
		return ph, errors.New(rep.FirstErr)
	}
	return ph, nil
}

// runChild is the load generator: a warm-up, "measuring", the phase, then
// its report.
func runChild(ctx context.Context, o options) error {
	h := tsp.HashByName(o.hash)
	if h == nil || o.url == "" {
		return errors.New("-child needs -url and -hash")
	}
	var op func(ctx context.Context) error
	if o.goClient {
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.clients, MaxConnsPerHost: o.clients}}
		cl := client.New(o.url)
		cl.HTTP, cl.Hash, cl.NoCerts = hc, h, true
		var seq atomic.Int64
		op = func(ctx context.Context) error {
			_, err := cl.Stamp(ctx, fmt.Appendf(nil, "bench %d %d", os.Getpid(), seq.Add(1)))
			return err
		}
	} else {
		// One connection per client: a pool the workers take from.
		var seq atomic.Int64
		pool := make(chan *rawClient, o.clients*4)
		for range cap(pool) {
			rc, err := newRawClient(o.url, h, &seq)
			if err != nil {
				return err
			}
			pool <- rc
		}
		defer func() {
			for range cap(pool) {
				(<-pool).close()
			}
		}()
		op = func(ctx context.Context) error {
			rc := <-pool
			defer func() { pool <- rc }()
			return rc.stamp(ctx)
		}
	}
	if o.warmup > 0 {
		closedLoop(ctx, o.warmup, o.clients, op)
	}
	fmt.Println("measuring")
	start := cpuTime()
	var res result
	if o.rate == 0 {
		res = closedLoop(ctx, o.duration, o.clients, op)
	} else {
		res = pacedLoop(ctx, o.duration, o.rate, o.clients, op)
	}
	rep := childReport{OK: res.ok, Errs: res.errs, Elapsed: res.elapsed, P50: res.percentile(0.5), P99: res.percentile(0.99), CPU: cpuTime() - start}
	if res.firstErr != nil {
		rep.FirstErr = res.firstErr.Error()
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// verifyOne checks one token of the profile in full against its root.
func verifyOne(ctx context.Context, n *node.Node, cl *client.Client, rootID string) error {
	resp, err := http.Get("http://" + n.Addresses().HTTP + "/pki/" + rootID + ".crt")
	if err != nil {
		return err
	}
	der, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	root, err := smx509.ParseCertificate(der)
	if err != nil {
		return err
	}
	check := *cl
	check.NoCerts = false
	check.Roots = smx509.NewCertPool()
	check.Roots.AddCert(root)
	_, err = check.Stamp(ctx, []byte("first"))
	return err
}

type result struct {
	ok, errs int64
	elapsed  time.Duration
	lat      []time.Duration
	firstErr error
	// p50, p99 are set when the latencies come from a child.
	p50, p99 time.Duration
}

func (r result) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return map[float64]time.Duration{0.5: r.p50, 0.99: r.p99}[p]
	}
	i := int(math.Ceil(p*float64(len(r.lat)))) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

type collector struct {
	mu  sync.Mutex
	res result
}

func (c *collector) add(lat time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.res.errs++
		if c.res.firstErr == nil {
			c.res.firstErr = err
		}
		return
	}
	c.res.ok++
	c.res.lat = append(c.res.lat, lat)
}

func (c *collector) done(elapsed time.Duration) result {
	slices.Sort(c.res.lat)
	c.res.elapsed = elapsed
	return c.res
}

// closedLoop runs op from workers goroutines, each as fast as answers come.
func closedLoop(ctx context.Context, d time.Duration, workers int, op func(context.Context) error) result {
	var c collector
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				err := op(ctx)
				c.add(time.Since(t), err)
			}
		})
	}
	wg.Wait()
	return c.done(time.Since(start))
}

// pacedLoop offers rate requests per second at fixed intervals and counts
// latency from the scheduled time (no coordinated omission).
func pacedLoop(ctx context.Context, d time.Duration, rate float64, workers int, op func(context.Context) error) result {
	var c collector
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	slots := make(chan time.Time, 4096)
	start := time.Now()
	for range workers * 4 {
		wg.Go(func() {
			for at := range slots {
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				err := op(ctx)
				c.add(time.Since(at), err)
			}
		})
	}
	for at := start; at.Before(start.Add(d)) && ctx.Err() == nil; at = at.Add(interval) {
		slots <- at
	}
	close(slots)
	wg.Wait()
	return c.done(time.Since(start))
}
