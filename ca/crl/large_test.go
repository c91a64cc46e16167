package crl

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"errors"
	"io"
	"iter"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// heapBound is the documented bound on the heap Build adds while it builds a
// CRL of any size (the package comment; the README's "stream").
const heapBound = 16 << 20

// heapSampler records the largest HeapInuse seen.
type heapSampler struct{ peak uint64 }

func (h *heapSampler) sample() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapInuse)
}

// generated yields n entries the way a database cursor would: one reused
// *big.Int, 18-octet serials (a prefix byte and 136 bits, as Boulder makes
// them) strictly increasing, every allowed reason, revoked before at. It
// samples the heap every 16384 entries.
func generated(n int, at time.Time, h *heapSampler) iter.Seq2[Entry, error] {
	reasons := []int{ReasonKeyCompromise, ReasonUnspecified, ReasonSuperseded, ReasonAffiliationChanged,
		ReasonCessationOfOperation, ReasonPrivilegeWithdrawn, ReasonCACompromise}
	base := new(big.Int).Lsh(big.NewInt(1), 136)
	stride := new(big.Int).Lsh(big.NewInt(0x9e3779b97f4a7c15>>1), 64) // spreads serials over the 136 bits
	return func(yield func(Entry, error) bool) {
		s, step := new(big.Int).Set(base), new(big.Int)
		for i := range n {
			step.SetInt64(int64(i*7919%65521) + 1)
			s.Add(s, step.Add(step, stride))
			if i&16383 == 0 && h != nil {
				h.sample()
			}
			e := Entry{Serial: s, RevokedAt: at.Add(-time.Duration(i) * time.Second), Reason: reasons[i%len(reasons)]}
			if !yield(e, nil) {
				return
			}
		}
	}
}

// countWriter counts bytes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestLargeCRL builds a CRL of 10^5 entries to a file and checks that
// Build's heap stays within heapBound while it writes ~5 MB, then checks the
// file: signature, entry count and order. The 10^6-entry figures come from
// the load program bench/crl, kept out of go test for time.
func TestLargeCRL(t *testing.T) {
	const n = 100_000
	now := time.Now().Truncate(time.Second)
	ca := newSub(t, newRoot(t, algSM2), algSM2)
	path := filepath.Join(t.TempDir(), "big.crl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<16)

	runtime.GC()
	var h heapSampler
	h.sample()
	baseline := h.peak
	if err := Build(context.Background(), w, baseTemplate(ca, now, 1), generated(n, now, &h), n, ca.signer); err != nil {
		t.Fatalf("Build: %v", err)
	}
	h.sample()
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		t.Fatal(err)
	}
	growth := int64(h.peak) - int64(baseline)
	t.Logf("heap in use: baseline %d KiB, peak %d KiB, growth %d KiB", baseline>>10, h.peak>>10, growth>>10)
	if growth > heapBound {
		t.Errorf("heap grew by %d MiB while building, bound %d MiB", growth>>20, heapBound>>20)
	}

	der, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CRL of %d entries: %d bytes", n, len(der))
	// Check without materialising a million entries: signature over the
	// TBS, then a walk of revokedCertificates.
	s := cryptobyte.String(der)
	var list, tbs, tbsBody, sigAlg cryptobyte.String
	var sig []byte
	if !s.ReadASN1(&list, cbasn1.SEQUENCE) || !s.Empty() || !list.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!list.ReadASN1(&sigAlg, cbasn1.SEQUENCE) || !list.ReadASN1BitStringAsBytes(&sig) || !list.Empty() {
		t.Fatal("malformed CertificateList")
	}
	if !sm2.VerifyASN1WithSM2(ca.cert.PublicKey.(*ecdsa.PublicKey), nil, tbs, sig) {
		t.Fatal("SM2 signature of the large CRL does not verify")
	}
	var revoked cryptobyte.String
	if !tbs.ReadASN1(&tbsBody, cbasn1.SEQUENCE) || !tbsBody.SkipASN1(cbasn1.INTEGER) || !tbsBody.SkipASN1(cbasn1.SEQUENCE) ||
		!tbsBody.SkipASN1(cbasn1.SEQUENCE) || !tbsBody.SkipASN1(cbasn1.UTCTime) || !tbsBody.SkipASN1(cbasn1.UTCTime) ||
		!tbsBody.ReadASN1(&revoked, cbasn1.SEQUENCE) {
		t.Fatal("malformed TBSCertList")
	}
	var prev, serial big.Int
	count := 0
	for !revoked.Empty() {
		var e cryptobyte.String
		if !revoked.ReadASN1(&e, cbasn1.SEQUENCE) || !e.ReadASN1Integer(&serial) {
			t.Fatalf("malformed entry %d", count)
		}
		if serial.Cmp(&prev) <= 0 {
			t.Fatalf("entry %d: serial %x not after %x", count, &serial, &prev)
		}
		prev.Set(&serial)
		count++
	}
	if count != n {
		t.Errorf("%d entries in the file, want %d", count, n)
	}
}

func benchmarkBuild(b *testing.B, n int) {
	for _, alg := range []string{algSM2, algP256} {
		b.Run(alg, func(b *testing.B) {
			now := time.Now().Truncate(time.Second)
			ca := newRoot(b, alg)
			tmpl := baseTemplate(ca, now, 1)
			var h heapSampler
			var size int64
			b.ReportAllocs()
			runtime.GC()
			h.sample()
			baseline := h.peak
			for b.Loop() {
				cw := &countWriter{}
				if err := Build(context.Background(), io.MultiWriter(cw, io.Discard), tmpl, generated(n, now, &h), int64(n), ca.signer); err != nil {
					b.Fatal(err)
				}
				size = cw.n
			}
			h.sample()
			b.ReportMetric(float64(size), "crl-bytes")
			b.ReportMetric(float64(h.peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(int64(h.peak)-int64(baseline))/(1<<20), "heap-growth-MiB")
		})
	}
}

// The figures of ACCEPTANCE.md §3.1 "CRL generation": time and bytes (and
// peak heap) for 10^4, 10^5 and 10^6 entries.
func BenchmarkBuild10k(b *testing.B)  { benchmarkBuild(b, 10_000) }
func BenchmarkBuild100k(b *testing.B) { benchmarkBuild(b, 100_000) }
func BenchmarkBuild1M(b *testing.B)   { benchmarkBuild(b, 1_000_000) }
