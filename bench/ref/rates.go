package ref

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm2"
)

// Names of the four reference operations, as Ratio takes them and as Report and
// the JSON output of bench/rawcrypto show them.
const (
	SM2Sign    = "sm2-sign"
	SM2Verify  = "sm2-verify"
	P256Sign   = "p256-sign"
	P256Verify = "p256-verify"
)

// MessageSize is the size of the message every reference operation signs or
// verifies: big enough that hashing is part of the cost, as it is for a
// to-be-signed certificate or a TSTInfo, small enough that the curve
// arithmetic dominates.
const MessageSize = 1024

// Rates are the reference rates of this machine, in operations per second
// summed over all workers.
type Rates struct {
	SM2Sign    float64 `json:"sm2_sign"`    // SM2 sign with Z and SM3 (sm2.DefaultSM2SignerOpts), ops/s on all cores
	SM2Verify  float64 `json:"sm2_verify"`  // SM2 verify with Z and SM3, ops/s on all cores
	P256Sign   float64 `json:"p256_sign"`   // ECDSA P-256 sign over SHA-256 of the message, ops/s on all cores
	P256Verify float64 `json:"p256_verify"` // ECDSA P-256 verify over SHA-256 of the message, ops/s on all cores

	// The process CPU time (user + system) one operation cost while its
	// rate was measured: what a load program compares its own CPU per
	// request with when other work on the machine makes wall-clock rates
	// unreliable (CPUTime).
	SM2SignCPU    time.Duration `json:"sm2_sign_cpu_ns"`
	SM2VerifyCPU  time.Duration `json:"sm2_verify_cpu_ns"`
	P256SignCPU   time.Duration `json:"p256_sign_cpu_ns"`
	P256VerifyCPU time.Duration `json:"p256_verify_cpu_ns"`

	Cores    int           `json:"cores"`       // workers run in parallel (Workers)
	Duration time.Duration `json:"duration_ns"` // measuring time per operation
}

// Ratio returns opsPerSec divided by the reference rate named by base (SM2Sign,
// SM2Verify, P256Sign or P256Verify). It returns NaN when base names none of
// them or its rate was not measured, so that a wrong name shows in the report
// instead of a plausible number.
func (r Rates) Ratio(opsPerSec float64, base string) float64 {
	ref, ok := r.rate(base)
	if !ok || ref <= 0 {
		return math.NaN()
	}
	return opsPerSec / ref
}

func (r Rates) rate(name string) (float64, bool) {
	switch name {
	case SM2Sign:
		return r.SM2Sign, true
	case SM2Verify:
		return r.SM2Verify, true
	case P256Sign:
		return r.P256Sign, true
	case P256Verify:
		return r.P256Verify, true
	}
	return 0, false
}

// Report writes the rates as a table: total rate, rate per core and the time
// one core spends on one operation.
func (r Rates) Report(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "operation\tops/s (%d cores)\tops/s per core\tµs/op per core\tCPU µs/op\t\n", r.Cores)
	for _, name := range []string{SM2Sign, SM2Verify, P256Sign, P256Verify} {
		v, _ := r.rate(name)
		cpu := r.CPUPerOp(name)
		perCore, us := 0.0, 0.0
		if r.Cores > 0 {
			perCore = v / float64(r.Cores)
		}
		if perCore > 0 {
			us = 1e6 / perCore
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.1f\t%.1f\t\n", name, v, perCore, us, float64(cpu)/float64(time.Microsecond))
	}
	tw.Flush()
	fmt.Fprintf(w, "(%d-byte message, %s per operation; SM2 includes Z and SM3, P-256 includes SHA-256)\n",
		MessageSize, r.Duration)
}

// Measure runs each reference operation on Workers() workers for d and
// returns the rates. It takes about 4×d. Every signature made before the
// measurement is checked to verify, and every verification during it must
// succeed, so a broken library cannot produce a fast but meaningless rate.
func Measure(ctx context.Context, d time.Duration) (Rates, error) {
	if d <= 0 {
		return Rates{}, fmt.Errorf("ref: measuring time must be positive, got %s", d)
	}
	f, err := newFixture()
	if err != nil {
		return Rates{}, err
	}
	r := Rates{Cores: Workers(), Duration: d}
	for _, m := range []struct {
		name string
		dst  *float64
		cpu  *time.Duration
		op   func() error
	}{
		{SM2Sign, &r.SM2Sign, &r.SM2SignCPU, f.sm2Sign},
		{SM2Verify, &r.SM2Verify, &r.SM2VerifyCPU, f.sm2Verify},
		{P256Sign, &r.P256Sign, &r.P256SignCPU, f.p256Sign},
		{P256Verify, &r.P256Verify, &r.P256VerifyCPU, f.p256Verify},
	} {
		v, cpu, err := ThroughputCPU(ctx, d, r.Cores, m.op)
		if err != nil {
			return Rates{}, fmt.Errorf("ref: measure %s: %w", m.name, err)
		}
		*m.dst, *m.cpu = v, cpu
	}
	return r, nil
}

// CPUPerOp returns the CPU time one operation named by base cost, zero when
// it was not measured.
func (r Rates) CPUPerOp(base string) time.Duration {
	switch base {
	case SM2Sign:
		return r.SM2SignCPU
	case SM2Verify:
		return r.SM2VerifyCPU
	case P256Sign:
		return r.P256SignCPU
	case P256Verify:
		return r.P256VerifyCPU
	}
	return 0
}

// CPURatio returns the CPU time of one reference operation named by base
// divided by cpuPerOp: the throughput ratio the measured operation would
// reach if it had every core to itself and never waited (on a disk, a lock
// or the network). NaN when either is unknown.
func (r Rates) CPURatio(cpuPerOp time.Duration, base string) float64 {
	ref := r.CPUPerOp(base)
	if ref <= 0 || cpuPerOp <= 0 {
		return math.NaN()
	}
	return float64(ref) / float64(cpuPerOp)
}

// CPUTime returns the CPU time (user + system) this process has used so
// far (getrusage RUSAGE_SELF).
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ThroughputCPU is Throughput that also returns the process CPU time per
// completed call.
func ThroughputCPU(ctx context.Context, d time.Duration, workers int, op func() error) (float64, time.Duration, error) {
	before := CPUTime()
	start := time.Now()
	rate, err := Throughput(ctx, d, workers, op)
	elapsed := time.Since(start)
	cpu := CPUTime() - before
	if err != nil {
		return 0, 0, err
	}
	ops := rate * elapsed.Seconds()
	if ops < 1 {
		return rate, 0, nil
	}
	return rate, time.Duration(float64(cpu) / ops), nil
}

// Throughput calls op from workers goroutines until d has passed and
// returns the number of completed calls per second of wall time. Load
// programs measure their own operations with it, the same way the reference
// rates are measured, so the ratios compare like with like.
func Throughput(ctx context.Context, d time.Duration, workers int, op func() error) (float64, error) {
	var (
		stop  atomic.Bool
		total atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		opErr error
	)
	halt := func() { stop.Store(true) }
	timer := time.AfterFunc(d, halt)
	defer timer.Stop()
	unhook := context.AfterFunc(ctx, halt)
	defer unhook()

	start := time.Now()
	for range workers {
		wg.Go(func() {
			var n int64
			for !stop.Load() {
				if err := op(); err != nil {
					once.Do(func() { opErr = err })
					halt()
					break
				}
				n++
			}
			total.Add(n)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if opErr != nil {
		return 0, opErr
	}
	return float64(total.Load()) / elapsed.Seconds(), nil
}

// fixture holds the keys, the message and one signature of each kind for the
// verify operations. Keys and the message are shared read-only by all workers;
// both libraries' keys are safe for concurrent use.
type fixture struct {
	msg     []byte
	sm2Key  *sm2.PrivateKey
	sm2Sig  []byte
	p256Key *ecdsa.PrivateKey
	p256Sig []byte
}

func newFixture() (*fixture, error) {
	f := &fixture{msg: make([]byte, MessageSize)}
	if _, err := rand.Read(f.msg); err != nil {
		return nil, fmt.Errorf("ref: random message: %w", err)
	}
	var err error
	if f.sm2Key, err = sm2.GenerateKey(rand.Reader); err != nil {
		return nil, fmt.Errorf("ref: generate SM2 key: %w", err)
	}
	if f.p256Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("ref: generate P-256 key: %w", err)
	}
	if f.sm2Sig, err = f.signSM2(); err != nil {
		return nil, fmt.Errorf("ref: SM2 sign: %w", err)
	}
	if f.p256Sig, err = f.signP256(); err != nil {
		return nil, fmt.Errorf("ref: P-256 sign: %w", err)
	}
	// The signatures the sign loops make are not checked one by one (that would
	// measure sign+verify); these two checks make sure the code signs correctly.
	if err := f.sm2Verify(); err != nil {
		return nil, fmt.Errorf("ref: check: %w", err)
	}
	if err := f.p256Verify(); err != nil {
		return nil, fmt.Errorf("ref: check: %w", err)
	}
	return f, nil
}

// signSM2 signs the message as the platform does: sm2.DefaultSM2SignerOpts
// makes gmsm compute Z from the default user ID and e = SM3(Z || msg)
// (GB/T 32918.2 §6.1) inside Sign.
func (f *fixture) signSM2() ([]byte, error) {
	return f.sm2Key.Sign(rand.Reader, f.msg, sm2.DefaultSM2SignerOpts)
}

// signP256 signs SHA-256 of the message through crypto.Signer, the way a
// crypto/x509 or CMS caller uses an ECDSA key.
func (f *fixture) signP256() ([]byte, error) {
	h := sha256.Sum256(f.msg)
	return f.p256Key.Sign(rand.Reader, h[:], crypto.SHA256)
}

var errBadSignature = errors.New("signature does not verify")

func (f *fixture) sm2Sign() error {
	_, err := f.signSM2()
	return err
}

func (f *fixture) sm2Verify() error {
	// A nil uid selects the default user ID, matching DefaultSM2SignerOpts.
	if !sm2.VerifyASN1WithSM2(&f.sm2Key.PublicKey, nil, f.msg, f.sm2Sig) {
		return fmt.Errorf("SM2 %w", errBadSignature)
	}
	return nil
}

func (f *fixture) p256Sign() error {
	_, err := f.signP256()
	return err
}

func (f *fixture) p256Verify() error {
	h := sha256.Sum256(f.msg)
	if !ecdsa.VerifyASN1(&f.p256Key.PublicKey, h[:], f.p256Sig) {
		return fmt.Errorf("P-256 %w", errBadSignature)
	}
	return nil
}
