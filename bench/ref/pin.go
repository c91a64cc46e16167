package ref

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pin confines this process to one CPU: every thread it has now (and so
// every thread they start later, which inherits the mask) runs on cpu only,
// and GOMAXPROCS becomes 1 (a node started later raises it to its minimum
// of 2, internal/node/procs.go; Workers stays 1). A load program pins its server to one core and
// its clients to another so that the clients' work is not charged to the
// server and the reference rate is measured on the very core the service
// runs on ("split cores" in bench/README.md).
func Pin(cpu int) error {
	if cpu < 0 || cpu >= machineCores() {
		return fmt.Errorf("ref: pin: no CPU %d (this machine has %d)", cpu, machineCores())
	}
	var set unix.CPUSet
	set.Set(cpu)
	// Hold this goroutine's thread while the others are moved, then move it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// A thread started during a pass by one not yet moved keeps the old
	// mask: pass again until a pass moves nothing.
	done := map[int]bool{}
	for pass := 0; ; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("ref: pin: %w", err)
		}
		moved := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("ref: pin thread %d to CPU %d: %w", tid, cpu, err)
			}
			done[tid] = true
			moved++
		}
		if moved == 0 {
			break
		}
		if pass == 10 {
			return fmt.Errorf("ref: pin: threads keep appearing")
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// Workers is the number of cores this process may run Go code on at once:
// GOMAXPROCS, but no more than the CPUs it is pinned to (a pinned node
// runs two Ps on one core). Reference rates run this many workers.
func Workers() int {
	if p := len(Pinned()); p > 0 {
		return min(p, runtime.GOMAXPROCS(0))
	}
	return runtime.GOMAXPROCS(0)
}

// Pinned reports the CPUs this process may run on.
func Pinned() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for i := range runtime.NumCPU() {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// machineCores is the number of CPUs the machine has online, whatever this
// process's affinity (runtime.NumCPU counts only the CPUs a pinned process,
// or the child of one, may use).
func machineCores() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if found {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || z < a {
			return runtime.NumCPU()
		}
		n += z - a + 1
	}
	return n
}
