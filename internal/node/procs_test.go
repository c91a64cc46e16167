package node

import (
	"runtime"
	"testing"
)

// TestEnsureProcs: one P becomes two, more are left alone, and a
// GOMAXPROCS the operator set is kept.
func TestEnsureProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	for _, tc := range []struct{ have, want int }{{1, 2}, {2, 2}, {3, 3}} {
		runtime.GOMAXPROCS(tc.have)
		if got := ensureProcs(); got != tc.want || runtime.GOMAXPROCS(0) != tc.want {
			t.Errorf("GOMAXPROCS %d: ensureProcs = %d (now %d), want %d", tc.have, got, runtime.GOMAXPROCS(0), tc.want)
		}
	}
	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	if got := ensureProcs(); got != 1 {
		t.Errorf("with GOMAXPROCS=1 set by the operator: ensureProcs = %d, want 1", got)
	}
}
