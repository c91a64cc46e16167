package node

import (
	"os"
	"runtime"
)

// minProcs is the fewest Ps (GOMAXPROCS) a node runs with.
//
// A goroutine in a blocking system call keeps its P until the runtime's
// monitor thread takes it back, which it does only on its next wake-up: 20
// µs after its last useful one, then later and later, up to 10 ms, while it
// finds nothing to do (golang/go#18236; a call that would hand its P over
// at once was proposed and declined, golang/go#29734). With one P, as Go
// gives a process confined to one CPU or a container with a one-CPU quota,
// every fsync of a commit (a CA batch, a TSA batch, the audit log) stopped
// every other goroutine for up to that long: the one core stood idle 8 %
// of a TSA or CA load. A second P lets other goroutines run while the
// thread that holds the first waits in the kernel; the kernel shares the
// core between the two threads, so nothing runs twice as fast and nothing
// is lost when neither waits.
const minProcs = 2

// ensureProcs raises GOMAXPROCS to minProcs, unless the operator chose it
// with the GOMAXPROCS variable; it returns the value in force.
func ensureProcs() int {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	return runtime.GOMAXPROCS(0)
}
