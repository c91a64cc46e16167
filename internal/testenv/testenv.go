// Package testenv lets tests that need a real external peer (PostgreSQL,
// SoftHSM2, OpenSSL, slapd, Chromium) find it, and decides what happens when
// it is missing: on a developer machine the test is skipped with the reason; in
// CI (CI set in the environment, as .ci/run has it) a missing peer fails the
// test, so an interop test can never silently not run where it counts. It
// also hands out loopback ports for listeners a test must name in advance
// (FreeAddr).
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI.
func InCI() bool { return os.Getenv("CI") != "" }

// Missing skips t, or fails it under CI, because what is not available.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required test dependency missing in CI: %s (make test installs it)", what)
	}
	t.Skipf("skipping: %s not available (make test installs it)", what)
}

// LookPath returns the path of an executable, or calls Missing.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name)
	}
	return p
}

// File returns path if it exists, or calls Missing naming what it is.
func File(t testing.TB, path, what string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, what+" ("+path+")")
	}
	return path
}

// Env returns the value of an environment variable set by make test, or calls
// Missing naming what it provides.
func Env(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, what+" ($"+name+")")
	}
	return v
}

// FreeAddr returns a loopback address ("127.0.0.1:PORT") whose port was
// free a moment ago, for a listener that must be named before it is
// started (a node's HTTP port goes into its certificates' URLs). The port
// is drawn below the kernel's ephemeral range (ip_local_port_range,
// 32768-60999 by default): a port from ":0", closed and bound again later,
// could meanwhile be handed to another ":0" listener or an outgoing
// connection, which never take one from below that range.
func FreeAddr(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if n, _ := fmt.Sscan(string(b), &lo, &hi); n == 2 && lo > 0 {
			low = lo
		}
	}
	const floor = 10000
	if low-floor < 1000 {
		// An unusual range: fall back to what the kernel hands out.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", floor+rand.IntN(low-floor))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatalf("no free port in 127.0.0.1:%d-%d after 100 tries", floor, low-1)
	return ""
}
