// Hsmsign measures signatures per second through the hsm key-manager SPI
// (KeyManager.Signer, then crypto.Signer.Sign) for every backend available
// on this machine, and prints each rate as a ratio to raw signing measured in
// the same run (bench/README.md): SM2 against gmsm's SM2 signing, P-256
// against crypto/ecdsa's.
//
// The backends are
//
//   - soft: the software keystore (hsm/soft) on SQLite in a temporary
//     directory, with a dev master key; always measured;
//   - softhsm2: SoftHSM2 (ECDSA on the token, SM2 wrapped by it), when
//     -softhsm names the module and softhsm2-util is on PATH; a temporary
//     token is made with softhsm2-util;
//   - govtrust-p11: the SM2 software token (cmd/govtrust-p11) when
//     GTTEST_P11_MODULE names libgovtrust-p11.so (make p11); a temporary
//     token is initialised with C_InitToken.
//
// Each measurement signs one random 1 KiB message (ref.MessageSize) from
// GOMAXPROCS goroutines for -duration: SM2 with sm2.DefaultSM2SignerOpts (Z
// and SM3 computed inside, as the platform signs), P-256 over SHA-256 of the
// message, hashing included, as bench/ref does. One signature of each key is
// verified before its measurement, so a broken signer cannot report a fast
// rate.
//
// The software keystore decrypts a key once and then signs with it in
// memory, so its SM2 rate must stay at 0.9 of raw gmsm signing or better
// (the target); -check makes the program exit 1 when it does not.
//
// Usage:
//
//	go run ./bench/hsmsign [-duration 3s] [-check] [-softhsm /usr/lib/softhsm/libsofthsm2.so]
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/govtrust/govtrust/bench/ref"
	"github.com/govtrust/govtrust/hsm"
)

// minSoftRatio is the least SM2 rate of the software keystore, as a ratio to
// raw gmsm signing, that -check accepts.
const minSoftRatio = 0.9

func main() {
	duration := flag.Duration("duration", 3*time.Second, "measuring time per rate")
	check := flag.Bool("check", false, fmt.Sprintf("exit 1 when the soft keystore's SM2 ratio is below %.1f", minSoftRatio))
	softhsm := flag.String("softhsm", "/usr/lib/softhsm/libsofthsm2.so", "SoftHSM2 PKCS#11 module; empty to skip")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *duration, *check, *softhsm); err != nil {
		fmt.Fprintln(os.Stderr, "hsmsign:", err)
		os.Exit(1)
	}
}

// backend is one key manager to measure.
type backend struct {
	name string
	km   hsm.KeyManager
	uri  func(name string) string
	// algs are the algorithms measured on it.
	algs  []hsm.Algorithm
	note  string       // what it is, for the report header
	close func() error // closes km and what it needs
}

// result is one measured rate.
type result struct {
	backend  string
	alg      hsm.Algorithm
	location hsm.Location
	rate     float64
	base     string // the ref operation the ratio is taken to
}

func run(ctx context.Context, w io.Writer, d time.Duration, check bool, softhsm string) error {
	if d <= 0 {
		return fmt.Errorf("-duration must be positive, got %s", d)
	}
	tmp, err := os.MkdirTemp("", "hsmsign-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The facts are collected before measuring so the date is the start of
	// the run.
	facts := ref.Collect(ctx)
	var (
		backends []*backend
		skipped  []string
	)
	defer func() {
		for _, b := range backends {
			_ = b.close()
		}
	}()
	for _, o := range []struct {
		name string
		open func() (*backend, error)
	}{
		{"soft", func() (*backend, error) { return openSoft(ctx, tmp) }},
		{"softhsm2", func() (*backend, error) { return openSoftHSM(ctx, tmp, softhsm) }},
		{"govtrust-p11", func() (*backend, error) { return openSM2Token(ctx, tmp) }},
	} {
		b, err := o.open()
		switch {
		case err == nil:
			backends = append(backends, b)
		case errors.Is(err, errNotAvailable):
			skipped = append(skipped, fmt.Sprintf("%s: %v", o.name, err))
		default:
			return fmt.Errorf("%s: %w", o.name, err)
		}
	}

	facts.Print(w)
	// The per-run facts of ACCEPTANCE.md §3.
	fmt.Fprintf(w, "storage:  SQLite in a temporary directory (soft keystore; not on the signing path)\n")
	for i, b := range backends {
		label := "keys:     "
		if i > 0 {
			label = "          "
		}
		fmt.Fprintf(w, "%s%s: %s\n", label, b.name, b.note)
	}
	for _, s := range skipped {
		fmt.Fprintf(w, "skipped:  %s\n", s)
	}
	fmt.Fprintf(w, "durability: not applicable (signing writes nothing)\n")
	fmt.Fprintf(w, "duration: %s per rate, %d workers, %d-byte message\n\n", d, runtime.GOMAXPROCS(0), ref.MessageSize)

	// The reference first, so that the load does not disturb it.
	rates, err := ref.Measure(ctx, d)
	if err != nil {
		return err
	}
	rates.Report(w)
	fmt.Fprintln(w)

	msg := make([]byte, ref.MessageSize)
	if _, err := rand.Read(msg); err != nil {
		return err
	}
	var results []result
	for _, b := range backends {
		for _, alg := range b.algs {
			r, err := measureBackend(ctx, b, alg, msg, d)
			if err != nil {
				return fmt.Errorf("%s %s: %w", b.name, alg, err)
			}
			results = append(results, r)
		}
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "backend\talgorithm\tlocation\tsign/s\tratio\tto")
	softRatio := math.NaN()
	for _, r := range results {
		ratio := rates.Ratio(r.rate, r.base)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.3f\t%s\n", r.backend, r.alg, r.location, r.rate, ratio, r.base)
		if r.backend == "soft" && r.alg == hsm.SM2 {
			softRatio = ratio
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "(ratio = rate through the SPI / raw rate of the same algorithm on this machine, this run)\n")

	if check {
		if !(softRatio >= minSoftRatio) { // NaN fails too
			return fmt.Errorf("soft keystore SM2 signing at %.3f of raw gmsm signing, below %.1f", softRatio, minSoftRatio)
		}
		fmt.Fprintf(w, "check:    soft SM2 ratio %.3f >= %.1f: ok\n", softRatio, minSoftRatio)
	}
	return nil
}

// measureBackend creates a key of alg, checks one signature and measures
// the signing rate through the SPI.
func measureBackend(ctx context.Context, b *backend, alg hsm.Algorithm, msg []byte, d time.Duration) (result, error) {
	const service = "bench"
	info, err := b.km.CreateKey(ctx, &hsm.CreateKeyRequest{
		URI: b.uri("hsmsign-" + string(alg)), Algorithm: alg, Usage: hsm.UsageSign, Service: service,
	})
	if err != nil {
		return result{}, err
	}
	s, err := b.km.Signer(ctx, &hsm.SignerRequest{URI: info.URI, Service: service})
	if err != nil {
		return result{}, err
	}
	var (
		op     func() ([]byte, error)
		verify func([]byte) bool
		base   string
	)
	pub, ok := info.Public.(*ecdsa.PublicKey)
	if !ok {
		return result{}, fmt.Errorf("public key is a %T", info.Public)
	}
	switch alg {
	case hsm.SM2:
		op = func() ([]byte, error) { return s.Sign(rand.Reader, msg, sm2.DefaultSM2SignerOpts) }
		verify = func(sig []byte) bool { return sm2.VerifyASN1WithSM2(pub, nil, msg, sig) }
		base = ref.SM2Sign
	case hsm.ECDSAP256:
		op = func() ([]byte, error) {
			h := sha256.Sum256(msg)
			return s.Sign(rand.Reader, h[:], crypto.SHA256)
		}
		verify = func(sig []byte) bool {
			h := sha256.Sum256(msg)
			return ecdsa.VerifyASN1(pub, h[:], sig)
		}
		base = ref.P256Sign
	default:
		return result{}, fmt.Errorf("no measurement for %s", alg)
	}
	sig, err := op()
	if err != nil {
		return result{}, err
	}
	if !verify(sig) {
		return result{}, errors.New("signature does not verify")
	}
	rate, err := ref.Throughput(ctx, d, runtime.GOMAXPROCS(0), func() error {
		_, err := op()
		return err
	})
	if err != nil {
		return result{}, err
	}
	return result{backend: b.name, alg: alg, location: info.Location, rate: rate, base: base}, nil
}
