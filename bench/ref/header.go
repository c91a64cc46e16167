package ref

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// The reference box of ACCEPTANCE.md §3: reports from another machine must
// say that they differ.
const (
	referenceCores    = 2
	referenceMemBytes = 24 << 30
)

// Facts are the build and machine facts that ACCEPTANCE.md §3 requires every
// report to state. Storage backend, key location, durability settings and test
// duration belong to each load program and are printed by it.
type Facts struct {
	Commit     string    `json:"commit"`     // short commit hash, "unknown" outside a git checkout
	Modified   bool      `json:"modified"`   // the working tree differs from Commit
	GoVersion  string    `json:"go_version"` // runtime.Version()
	GOOS       string    `json:"goos"`
	GOARCH     string    `json:"goarch"`
	CPU        string    `json:"cpu,omitempty"`       // CPU model, where the OS tells it
	Cores      int       `json:"cores"`               // runtime.NumCPU()
	GOMAXPROCS int       `json:"gomaxprocs"`          // workers the benchmarks run
	Pinned     []int     `json:"pinned,omitempty"`    // the CPUs this process may use, when not all (Pin)
	MemBytes   uint64    `json:"mem_bytes,omitempty"` // physical memory, where the OS tells it
	Date       time.Time `json:"date"`                // when the facts were collected (UTC)
}

// Collect gathers the facts of this build and machine. The commit comes from
// `git rev-parse --short HEAD` run in the current directory, falling back to the
// VCS stamp of the binary.
func Collect(ctx context.Context) Facts {
	f := Facts{
		Commit:     "unknown",
		GoVersion:  runtime.Version(),
		GOOS:       runtime.GOOS,
		GOARCH:     runtime.GOARCH,
		Cores:      machineCores(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		Date:       time.Now().UTC().Truncate(time.Second),
	}
	if cpus := Pinned(); len(cpus) > 0 && len(cpus) < f.Cores {
		f.Pinned = cpus
	}
	if c, ok := gitCommit(ctx); ok {
		f.Commit = c
		f.Modified = gitModified(ctx)
	} else if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				f.Commit = s.Value[:min(len(s.Value), 7)]
			case "vcs.modified":
				f.Modified = s.Value == "true"
			}
		}
	}
	f.CPU = cpuModel()
	f.MemBytes = memTotal()
	return f
}

func gitCommit(ctx context.Context) (string, bool) {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "", false
	}
	c := strings.TrimSpace(string(out))
	return c, c != ""
}

// gitModified reports whether the working tree has changed or untracked files,
// which make the numbers not that commit's. GIT_OPTIONAL_LOCKS=0 keeps
// `git status` from refreshing the index, so a benchmark never takes the
// index lock from under someone committing in the same checkout.
func gitModified(ctx context.Context) bool {
	cmd := exec.CommandContext(ctx, "git", "status", "--porcelain")
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
	out, err := cmd.Output()
	return err != nil || len(bytes.TrimSpace(out)) > 0
}

// Print writes the facts as the header of a report.
func (f Facts) Print(w io.Writer) {
	build := f.Commit
	if f.Modified {
		build += " (working tree modified: not exactly this commit)"
	}
	cpu := f.CPU
	if cpu == "" {
		cpu = "CPU model unknown"
	}
	mem := "memory unknown"
	if f.MemBytes > 0 {
		mem = fmt.Sprintf("%.1f GiB", float64(f.MemBytes)/(1<<30))
	}
	fmt.Fprintf(w, "build:    %s\n", build)
	fmt.Fprintf(w, "go:       %s %s/%s\n", f.GoVersion, f.GOOS, f.GOARCH)
	pinned := ""
	if len(f.Pinned) > 0 {
		pinned = fmt.Sprintf(" (this process pinned to CPU %v)", f.Pinned)
	}
	fmt.Fprintf(w, "machine:  %s, %d cores, GOMAXPROCS %d%s, %s (%s)\n", cpu, f.Cores, f.GOMAXPROCS, pinned, mem, f.reference())
	fmt.Fprintf(w, "date:     %s\n", f.Date.Format(time.RFC3339))
}

// reference compares the machine with the reference box. Memory is compared
// within 10%: a "24 GiB" virtual machine reports a little less to the OS.
func (f Facts) reference() string {
	const ref = "reference box: 2 cores / 24 GiB"
	mem := float64(f.MemBytes) / referenceMemBytes
	switch {
	case f.Cores != referenceCores:
		return "DIFFERS from the " + ref
	case len(f.Pinned) == 0 && f.GOMAXPROCS != f.Cores,
		// A process pinned to part of the box (a split-cores run) must
		// have a worker per core it may use (a node has at least two).
		len(f.Pinned) > 0 && f.GOMAXPROCS < len(f.Pinned):
		return "DIFFERS from the " + ref
	case f.MemBytes == 0:
		return "memory unknown; " + ref
	case mem < 0.9 || mem > 1.1:
		return "DIFFERS from the " + ref
	}
	return "matches the " + ref
}

// Header writes the facts of this build and machine, as every benchmark report
// must start.
func Header(w io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	Collect(ctx).Print(w)
}

// cpuModel returns the CPU model name on Linux and "" elsewhere.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// memTotal returns physical memory in bytes on Linux and 0 elsewhere.
func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 3 && fields[0] == "MemTotal:" && fields[2] == "kB" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
