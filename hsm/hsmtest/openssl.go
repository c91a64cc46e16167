package hsmtest

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/testenv"
)

// opensslChecks returns how many of n signatures of alg OpenSSL checks: all
// for SM2 (ACCEPTANCE.md O-02) and P-256, Sample for the others.
func opensslChecks(alg hsm.Algorithm, n int) int {
	if alg == hsm.SM2 || alg == hsm.ECDSAP256 {
		return n
	}
	return min(n, Sample)
}

// opensslVerify has OpenSSL check the signatures of cases (see
// opensslChecks) and one corrupted signature, which it must refuse. The
// checks run in one bash script, split over the CPUs.
func opensslVerify(t *testing.T, alg hsm.Algorithm, pub crypto.PublicKey, cases []*sigCase) {
	openssl := testenv.LookPath(t, "openssl")
	bash := testenv.LookPath(t, "bash")
	dir := t.TempDir()
	der, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pub.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	checked := append(cases[:opensslChecks(alg, len(cases)):opensslChecks(alg, len(cases))], cases[1].corrupt())
	corrupted := len(checked) - 1

	shards := min(max(runtime.NumCPU(), 1), 4)
	bodies := make([]strings.Builder, shards)
	for i, c := range checked {
		m, s := "m"+strconv.Itoa(i), "s"+strconv.Itoa(i)
		if err := os.WriteFile(filepath.Join(dir, m), c.msg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s), c.sig, 0o600); err != nil {
			t.Fatal(err)
		}
		b := &bodies[i%shards]
		fmt.Fprintf(b, "c %d %s", i, shellQuote(openssl))
		for _, a := range opensslArgs(c, m, s) {
			b.WriteString(" " + shellQuote(a))
		}
		b.WriteByte('\n')
	}
	var script strings.Builder
	// c runs one check and reports it by index; openssl pkeyutl and dgst
	// exit 1 on "Signature Verification Failure" / "Verification failure".
	script.WriteString("set -u\nc() { i=$1; shift; if \"$@\" >/dev/null 2>&1; then echo \"$i ok\"; else echo \"$i bad\"; fi; }\n")
	for k := range bodies {
		fmt.Fprintf(&script, "{\n%s} > out%d &\n", bodies[k].String(), k)
	}
	script.WriteString("wait\ncat")
	for k := range bodies {
		fmt.Fprintf(&script, " out%d", k)
	}
	script.WriteString("\n")
	if err := os.WriteFile(filepath.Join(dir, "verify.sh"), []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bash, "verify.sh")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash verify.sh: %v", err)
	}

	seen := make([]string, len(checked))
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var (
			i int
			r string
		)
		if n, err := fmt.Sscanf(sc.Text(), "%d %s", &i, &r); n != 2 || err != nil || i < 0 || i >= len(seen) || seen[i] != "" {
			t.Fatalf("unexpected line from verify.sh: %q", sc.Text())
		}
		seen[i] = r
	}
	ok, failed := 0, []int{}
	for i, r := range seen {
		switch {
		case r == "":
			t.Errorf("check %d did not run", i)
		case i == corrupted && r == "ok":
			t.Error("OpenSSL accepts a corrupted signature")
		case i == corrupted:
		case r == "ok":
			ok++
		default:
			failed = append(failed, i)
		}
	}
	if len(failed) > 0 {
		c := checked[failed[0]]
		o, _ := exec.CommandContext(t.Context(), openssl, opensslArgs(c, "m"+strconv.Itoa(failed[0]), "s"+strconv.Itoa(failed[0]))...).CombinedOutput()
		t.Errorf("OpenSSL verified %d of %d signatures; first failure, case %d (%s):\n%s", ok, corrupted, failed[0], c, o)
	}
	if ok != corrupted {
		t.Errorf("OpenSSL verified %d of %d signatures", ok, corrupted)
	}
}

// opensslArgs are the arguments that verify case c, its message and
// signature in files m and s, against pub.pem. SM2 needs the user ID as
// distid (INTEROP.md §2: OpenSSL 3.0 defaults to an empty ID).
func opensslArgs(c *sigCase, m, s string) []string {
	switch c.alg {
	case hsm.SM2:
		return []string{"pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
			"-pkeyopt", "distid:" + string(c.verifyUID()), "-in", m, "-sigfile", s}
	case hsm.ECDSAP384:
		return []string{"dgst", "-sha384", "-verify", "pub.pem", "-signature", s, m}
	}
	if c.pss {
		return []string{"dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest",
			"-verify", "pub.pem", "-signature", s, m}
	}
	return []string{"dgst", "-sha256", "-verify", "pub.pem", "-signature", s, m}
}

// shellQuote quotes s for bash.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
