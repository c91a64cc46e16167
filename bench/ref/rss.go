package ref

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// hwmReset records whether the last ResetPeakRSS worked.
var hwmReset atomic.Bool

// ResetPeakRSS resets the kernel's peak RSS (VmHWM) of this process
// (proc(5), /proc/pid/clear_refs, value 5), so that PeakRSS tells the peak
// of what ran since. Where that is not possible the peak is since the
// start, as PeakRSS then says.
func ResetPeakRSS() {
	err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	hwmReset.Store(err == nil)
}

// PeakRSS reads VmHWM from /proc/self/status, as "N MiB", "N MiB (since
// start)" when it could not be reset, or "unknown".
func PeakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return "unknown"
			}
			s := fmt.Sprintf("%.0f MiB", float64(kb)/1024)
			if !hwmReset.Load() {
				s += " (since start)"
			}
			return s
		}
	}
	return "unknown"
}
