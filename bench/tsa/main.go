// Tsa measures the time-stamping authority end to end (issue #7): tokens per
// second over HTTP (keep-alive, concurrent clients) for the SM2 and the
// ECDSA profile, each as a ratio to raw signing of the same algorithm
// measured in the same run (bench/README.md; the target for SM2 is
// 0.35 or better, -check), then the latency p50/p99 at half that rate.
//
// The node (CA and TSA services, SQLite in a temporary directory, software
// keys) runs in this process, the clients too, on the same cores, over
// loopback: their HTTP and ASN.1 work is part of what is measured. Every
// request is a fresh SM3 or SHA-256 imprint with a nonce; every answer is
// parsed and matched with its request (imprint, nonce) by the Go client, and
// the first token of each profile is verified in full against the root.
// Tokens are recorded in the database before they are returned, as in
// production.
//
// Usage:
//
//	go run ./bench/tsa [-duration 10s] [-clients N] [-check]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

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
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measuring time of each load phase")
	flag.DurationVar(&o.refDuration, "ref-duration", 3*time.Second, "measuring time of each reference rate")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each phase")
	flag.IntVar(&o.clients, "clients", 4*runtime.GOMAXPROCS(0), "concurrent keep-alive clients")
	flag.BoolVar(&o.check, "check", false, fmt.Sprintf("exit 1 when the SM2 ratio is below %.2f", minSM2Ratio))
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the closed-loop SM2 phase to this file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tsa:", err)
		os.Exit(1)
	}
}

func ptr(s string) *string { return &s }

func run(ctx context.Context, w io.Writer, o options) error {
	if o.duration <= 0 || o.refDuration <= 0 || o.clients <= 0 {
		return errors.New("-duration, -ref-duration and -clients must be positive")
	}
	facts := ref.Collect(ctx)
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

	facts.Print(w)
	fmt.Fprintf(w, "storage:     SQLite (embedded, WAL, synchronous=FULL), tokens recorded through the group-commit batcher\n")
	fmt.Fprintf(w, "keys:        software keystore (in process)\n")
	fmt.Fprintf(w, "durability:  every token committed before it is returned\n")
	fmt.Fprintf(w, "duration:    %s per phase, %d keep-alive clients, loopback HTTP\n\n", o.duration, o.clients)

	rates, err := ref.Measure(ctx, o.refDuration)
	if err != nil {
		return err
	}
	rates.Report(w)
	fmt.Fprintln(w)

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.clients, MaxConnsPerHost: o.clients}}
	base := "http://" + n.Addresses().HTTP
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\trate\tratio\tp50\tp99\terrors")
	var sm2Ratio float64
	for _, p := range []struct {
		profile, root, base string
		hash                *tsp.HashAlg
	}{{"sm2", "sm2-root", ref.SM2Sign, tsp.SM3}, {"ecdsa", "ecdsa-root", ref.P256Sign, tsp.SHA256}} {
		cl := client.New(base + "/tsa/" + p.profile)
		cl.HTTP, cl.Hash, cl.NoCerts = hc, p.hash, true
		if err := verifyOne(ctx, n, cl, p.root); err != nil {
			return fmt.Errorf("%s: first token: %w", p.profile, err)
		}
		var seq atomic.Int64
		op := func(ctx context.Context) error {
			_, err := cl.Stamp(ctx, fmt.Appendf(nil, "bench %d", seq.Add(1)))
			return err
		}
		closedLoop(ctx, o.warmup, o.clients, op)
		if o.cpuProfile != "" && p.profile == "sm2" {
			f, err := os.Create(o.cpuProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
		}
		closed := closedLoop(ctx, o.duration, o.clients, op)
		if o.cpuProfile != "" && p.profile == "sm2" {
			pprof.StopCPUProfile()
		}
		if closed.firstErr != nil && closed.ok == 0 {
			return closed.firstErr
		}
		ratio := rates.Ratio(closed.rate(), p.base)
		if p.profile == "sm2" {
			sm2Ratio = ratio
		}
		fmt.Fprintf(tw, "%s tokens/s (closed loop)\t%.0f/s\t%.2f of %s\t%s\t%s\t%d\n", p.profile, closed.rate(), ratio, p.base,
			ms(closed.percentile(0.5)), ms(closed.percentile(0.99)), closed.errs)
		paced := pacedLoop(ctx, o.duration, closed.rate()/2, o.clients, op)
		fmt.Fprintf(tw, "%s at half rate (%.0f/s offered)\t%.0f/s\t\t%s\t%s\t%d\n", p.profile, closed.rate()/2, paced.rate(),
			ms(paced.percentile(0.5)), ms(paced.percentile(0.99)), paced.errs)
	}
	tw.Flush()
	batches, tokens := svc.BatchStats()
	fmt.Fprintf(w, "\nrecording: %d tokens in %d transactions (%.1f per commit)\n", tokens, batches, float64(tokens)/math.Max(1, float64(batches)))
	if o.check && !(sm2Ratio >= minSM2Ratio) {
		return fmt.Errorf("SM2 ratio %.2f is below the target %.2f", sm2Ratio, minSM2Ratio)
	}
	return nil
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
}

func (r result) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
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
