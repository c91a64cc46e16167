package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/govtrust/govtrust/internal/store/storetest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "govtrust-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "govtrust")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build govtrust: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd    *exec.Cmd
	out    *syncBuilder
	addrs  map[string]string
	waited chan error
}

// up starts `govtrust up` on dir and waits (up to 15 s, the acceptance bound)
// for addresses.json.
func up(t *testing.T, dir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"up", "--data", dir, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--ldap", ""}, extra...)
	cmd := exec.Command(binary, args...)
	out := &syncBuilder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out, waited: make(chan error, 1)}
	go func() { p.waited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "run", "addresses.json")); err == nil && json.Unmarshal(b, &p.addrs) == nil {
			resp, err := http.Get("http://" + p.addrs["http"] + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return p
				}
			}
		}
		select {
		case err := <-p.waited:
			t.Fatalf("govtrust up exited early: %v\n%s", err, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("not ready within 15 s:\n%s", out)
	return nil
}

// stop sends SIGTERM and requires exit 0 within 5 s.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.waited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM\n%s", p.out)
	}
}

func govtrust(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%v: %v", args, err)
	return "", -1
}

// TestUpLifecycle: ready within 15 s, SIGTERM exits 0 within 5 s while
// clients are busy and no accepted request is lost, a second start keeps its
// state, and the audit chain verifies.
func TestUpLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := up(t, dir)
	// Clients keep requesting while the node is told to stop. Every request
	// that got an answer must have got a whole, correct one.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		ok, refused, bad int
	}
	results := make(chan result, 4)
	for i := 0; i < 4; i++ {
		go func() {
			var r result
			c := &http.Client{Timeout: 5 * time.Second}
			for ctx.Err() == nil {
				resp, err := c.Get("http://" + p.addrs["http"] + "/healthz")
				if err != nil {
					r.refused++
					time.Sleep(5 * time.Millisecond)
					continue
				}
				var body map[string]string
				derr := json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode == 200 && derr == nil && body["status"] == "alive" {
					r.ok++
				} else {
					r.bad++
				}
			}
			results <- r
		}()
	}
	time.Sleep(300 * time.Millisecond)
	p.stop(t)
	cancel()
	var total result
	for i := 0; i < 4; i++ {
		r := <-results
		total.ok += r.ok
		total.refused += r.refused
		total.bad += r.bad
	}
	if total.ok == 0 || total.bad != 0 {
		t.Fatalf("during shutdown: %d whole answers, %d broken", total.ok, total.bad)
	}
	// Read once the process has exited and its output is all copied: the
	// node writes addresses.json (which up waits for) before it prints
	// that it is ready.
	if !strings.Contains(p.out.String(), "/9] ready ... ok") {
		t.Errorf("no progress lines:\n%s", p.out)
	}
	if !strings.Contains(p.out.String(), "stopped") {
		t.Errorf("no stop line:\n%s", p.out)
	}

	token, err := os.ReadFile(filepath.Join(dir, "bootstrap", "auditor.token"))
	if err != nil {
		t.Fatal(err)
	}
	p2 := up(t, dir)
	if strings.Contains(p2.out.String(), "first run") {
		t.Error("second start re-initialised the data directory")
	}
	again, _ := os.ReadFile(filepath.Join(dir, "bootstrap", "auditor.token"))
	if string(again) != string(token) {
		t.Fatal("bootstrap token changed on restart")
	}
	p2.stop(t)

	out, code := govtrust(t, "audit", "verify", "--data", dir)
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("audit verify = %d\n%s", code, out)
	}
	out, code = govtrust(t, "audit", "export", "--data", dir)
	if code != 0 || strings.Count(out, "\n") < 6 || !strings.Contains(out, `"action":"node.start"`) || !strings.Contains(out, `"action":"node.stop"`) {
		t.Fatalf("audit export = %d\n%s", code, out)
	}
}

// TestAuditVerifyNamesTampering edits, deletes and truncates rows in the
// database file directly and expects `govtrust audit verify` to name each.
func TestAuditVerifyNamesTampering(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// Three start/stop cycles give a chain of a dozen records or so.
	for i := 0; i < 3; i++ {
		up(t, dir).stop(t)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "govtrust.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var last int64
	if err := db.QueryRow("SELECT MAX(seq) FROM audit_log").Scan(&last); err != nil || last < 9 {
		t.Fatalf("chain too short: %d %v", last, err)
	}
	for _, q := range []string{
		"UPDATE audit_log SET outcome = 'failure' WHERE seq = 3",
		"DELETE FROM audit_log WHERE seq = 5",
		fmt.Sprintf("DELETE FROM audit_log WHERE seq >= %d", last-1),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	out, code := govtrust(t, "audit", "verify", "--data", dir)
	if code != 2 {
		t.Fatalf("audit verify exit %d, want 2\n%s", code, out)
	}
	for _, want := range []string{"seq 3: edited", "seq 5: deleted", fmt.Sprintf("seq %d: truncated", last-1), "FAILED"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
}

func TestProductionRefusesLoweredSynchronous(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(binary, "up", "--data", dir, "--mode", "production", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "GOVTRUST_DATABASE_SQLITE_SYNCHRONOUS=NORMAL", "GOVTRUST_HSM_SOFT_UNLOCK=passphrase",
		"GOVTRUST_HSM_SOFT_PASSPHRASE=env:GT_TEST_PASSPHRASE", "GT_TEST_PASSPHRASE=correct horse battery staple",
		"GOVTRUST_CA_PUBLIC_URL=http://pki.example.gov.cn", "GOVTRUST_CA_PUBLIC_LDAP_URL=ldap://ldap.example.gov.cn")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("production started with synchronous=NORMAL:\n%s", out)
	}
	if !strings.Contains(string(out), "synchronous=NORMAL") || !strings.Contains(string(out), "production") {
		t.Fatalf("refusal does not name the setting:\n%s", out)
	}
}

// The same on PostgreSQL: `govtrust up --db URL`, then `audit verify --db URL`
// names an edited row.
func TestAuditVerifyPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	dir := filepath.Join(t.TempDir(), "data")
	up(t, dir, "--db", url).stop(t)
	out, code := govtrust(t, "audit", "verify", "--db", url)
	if code != 0 || !strings.Contains(out, "audit chain OK") {
		t.Fatalf("verify = %d\n%s", code, out)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"); err != nil {
		t.Fatal(err)
	}
	out, code = govtrust(t, "audit", "verify", "--db", url)
	if code != 2 || !strings.Contains(out, "seq 2: edited") {
		t.Fatalf("verify after an edit = %d\n%s", code, out)
	}
}
