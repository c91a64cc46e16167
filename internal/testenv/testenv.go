// Package testenv lets tests that need a real external peer (PostgreSQL,
// SoftHSM2, OpenSSL, slapd, Chromium) find it, and decides what happens when
// it is missing: on a developer machine the test is skipped with the reason; in
// CI (CI set in the environment, as .ci/run has it) a missing peer fails the
// test, so an interop test can never silently not run where it counts.
package testenv

import (
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
