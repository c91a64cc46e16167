package ref

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	r, err := Measure(t.Context(), 50*time.Millisecond)
	if err != nil {
		t.Fatalf("Measure: %v", err)
	}
	for _, name := range []string{SM2Sign, SM2Verify, P256Sign, P256Verify} {
		if v, _ := r.rate(name); !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("%s rate = %v, want a positive finite number", name, v)
		}
	}
	if want := runtime.GOMAXPROCS(0); r.Cores != want {
		t.Errorf("Cores = %d, want GOMAXPROCS %d", r.Cores, want)
	}
	if r.Duration != 50*time.Millisecond {
		t.Errorf("Duration = %s, want 50ms", r.Duration)
	}
	var buf bytes.Buffer
	r.Report(&buf)
	for _, name := range []string{SM2Sign, SM2Verify, P256Sign, P256Verify} {
		if !strings.Contains(buf.String(), name) {
			t.Errorf("Report lacks %s:\n%s", name, buf.String())
		}
	}
}

func TestMeasureErrors(t *testing.T) {
	if _, err := Measure(t.Context(), 0); err == nil {
		t.Error("Measure(0) succeeded, want an error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Measure(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Measure(cancelled) = %v, want context.Canceled", err)
	}
}

// TestRunStopsOnError checks that a failing operation (a verification that
// returns false) ends the measurement with its error instead of a rate.
func TestRunStopsOnError(t *testing.T) {
	_, err := Throughput(t.Context(), time.Hour, 2, func() error { return errBadSignature })
	if !errors.Is(err, errBadSignature) {
		t.Fatalf("run = %v, want %v", err, errBadSignature)
	}
}

func TestFixtureRejectsTamperedSignatures(t *testing.T) {
	f, err := newFixture()
	if err != nil {
		t.Fatal(err)
	}
	f.msg[0] ^= 1
	if err := f.sm2Verify(); !errors.Is(err, errBadSignature) {
		t.Errorf("SM2 verify of a changed message = %v, want %v", err, errBadSignature)
	}
	if err := f.p256Verify(); !errors.Is(err, errBadSignature) {
		t.Errorf("P-256 verify of a changed message = %v, want %v", err, errBadSignature)
	}
}

func TestRatio(t *testing.T) {
	r := Rates{SM2Sign: 2000, SM2Verify: 1000, P256Sign: 40000, P256Verify: 0, Cores: 2}
	tests := []struct {
		ops  float64
		base string
		want float64 // NaN: no ratio
	}{
		{1000, SM2Sign, 0.5},
		{3000, SM2Sign, 1.5},
		{250, SM2Verify, 0.25},
		{1000, P256Sign, 0.025},
		{0, SM2Sign, 0},
		{1000, P256Verify, math.NaN()}, // not measured
		{1000, "SM2Sign", math.NaN()},  // not one of the names
		{1000, "", math.NaN()},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%g %s", tt.ops, tt.base), func(t *testing.T) {
			got := r.Ratio(tt.ops, tt.base)
			if math.IsNaN(tt.want) {
				if !math.IsNaN(got) {
					t.Errorf("Ratio(%v, %q) = %v, want NaN", tt.ops, tt.base, got)
				}
				return
			}
			if math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("Ratio(%v, %q) = %v, want %v", tt.ops, tt.base, got, tt.want)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	var buf bytes.Buffer
	Header(&buf)
	out := buf.String()
	for _, want := range []string{"build:", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH, "cores", "reference box", "date:"} {
		if !strings.Contains(out, want) {
			t.Errorf("Header lacks %q:\n%s", want, out)
		}
	}
}

func TestReference(t *testing.T) {
	tests := []struct {
		name   string
		f      Facts
		differ bool
	}{
		{"reference box as a VM reports it", Facts{Cores: 2, GOMAXPROCS: 2, MemBytes: 24682416 << 10}, false},
		{"more cores", Facts{Cores: 8, GOMAXPROCS: 8, MemBytes: 24 << 30}, true},
		{"GOMAXPROCS lowered", Facts{Cores: 2, GOMAXPROCS: 1, MemBytes: 24 << 30}, true},
		{"pinned to one core of the reference box", Facts{Cores: 2, GOMAXPROCS: 1, Pinned: []int{0}, MemBytes: 24 << 30}, false},
		{"pinned to one core, two Ps (a node's minimum)", Facts{Cores: 2, GOMAXPROCS: 2, Pinned: []int{0}, MemBytes: 24 << 30}, false},
		{"pinned to two cores, one P", Facts{Cores: 2, GOMAXPROCS: 1, Pinned: []int{0, 1}, MemBytes: 24 << 30}, true},
		{"less memory", Facts{Cores: 2, GOMAXPROCS: 2, MemBytes: 8 << 30}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.f.reference()
			if strings.Contains(got, "DIFFERS") != tt.differ {
				t.Errorf("reference() = %q, want differs=%v", got, tt.differ)
			}
		})
	}
}
