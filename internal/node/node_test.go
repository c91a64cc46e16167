package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// slowService registers a slow route and can be made unready.
type slowService struct {
	started, stopped bool
	notReady         error
	release          chan struct{}
	entered          chan struct{}
}

func (s *slowService) Name() string { return "slow" }
func (s *slowService) Start(ctx context.Context, env *Env) error {
	s.started = true
	return nil
}
func (s *slowService) Ready(ctx context.Context) error { return s.notReady }
func (s *slowService) Stop(ctx context.Context) error  { s.stopped = true; return nil }
func (s *slowService) PublicRoutes(mux *authz.Mux) {
	mux.Handle("GET /slow", authz.Rule{Public: "test route"}, func(w http.ResponseWriter, r *http.Request) error {
		close(s.entered)
		<-s.release
		return httpx.WriteJSON(w, 200, map[string]string{"done": "yes"})
	})
}

func ptr(s string) *string { return &s }

func testOptions(dir string) Options {
	return Options{DataDir: dir, HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""),
		LogOutput: io.Discard, Environ: []string{}}
}

func insecureClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func get(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestUpRestartAndDrain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	svc := &slowService{release: make(chan struct{}), entered: make(chan struct{})}
	n, err := Start(ctx, testOptions(dir), svc)
	if err != nil {
		t.Fatal(err)
	}
	var addrs Addresses
	b, err := os.ReadFile(filepath.Join(dir, "run", "addresses.json"))
	if err != nil || json.Unmarshal(b, &addrs) != nil || addrs != n.Addresses() || addrs.HTTP == "" || addrs.HTTPS == "" {
		t.Fatalf("addresses.json = %s (%v), node says %+v", b, err, n.Addresses())
	}
	c := insecureClient()
	if code, body := get(t, c, "http://"+addrs.HTTP+"/readyz", ""); code != 200 || !strings.Contains(body, `"slow":"ok"`) {
		t.Fatalf("readyz = %d %s", code, body)
	}
	if code, _ := get(t, c, "http://"+addrs.HTTP+"/healthz", ""); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	// Bootstrap tokens: mode 0600, and /metrics is for sysadmin and auditor only.
	tokens := map[string]string{}
	for _, role := range bootstrapRoles {
		path := filepath.Join(dir, "bootstrap", role+".token")
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v", path, err, fi.Mode())
		}
		tokens[role], _ = ReadBootstrapToken(dir, role)
	}
	for role, want := range map[string]int{"sysadmin": 200, "auditor": 200, "ra": 403, "secadmin": 403, "": 401} {
		if code, _ := get(t, c, "https://"+addrs.HTTPS+"/metrics", tokens[role]); code != want {
			t.Errorf("/metrics as %q = %d, want %d", role, code, want)
		}
	}
	// HTTPS answers carry HSTS.
	resp, err := c.Get("https://" + addrs.HTTPS + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Error("no HSTS on HTTPS")
	}
	// A service that is not ready makes the node not ready, with the reason.
	svc.notReady = errors.New("token not present")
	if code, body := get(t, c, "http://"+addrs.HTTP+"/readyz", ""); code != 503 || !strings.Contains(body, "token not present") {
		t.Fatalf("readyz with an unready service = %d %s", code, body)
	}
	svc.notReady = nil

	// An in-flight request finishes during shutdown.
	var wg sync.WaitGroup
	var slowCode int
	var slowErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := c.Get("http://" + addrs.HTTP + "/slow")
		if err != nil {
			slowErr = err
			return
		}
		defer resp.Body.Close()
		_, _ = io.ReadAll(resp.Body)
		slowCode = resp.StatusCode
	}()
	select {
	case <-svc.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("the slow request never reached its handler: %v", slowErr)
	}
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(ctx) }()
	// New connections are refused once draining has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := http.Get("http://" + addrs.HTTP + "/healthz")
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting during shutdown")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(svc.release)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	if slowErr != nil || slowCode != 200 {
		t.Fatalf("in-flight request lost: %d %v", slowCode, slowErr)
	}
	if !svc.started || !svc.stopped {
		t.Fatal("service lifecycle not run")
	}

	// Second start on the same directory keeps its state.
	n2, err := Start(ctx, testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Shutdown(ctx)
	again, _ := ReadBootstrapToken(dir, "sysadmin")
	if again != tokens["sysadmin"] {
		t.Fatal("bootstrap token rewritten on second start")
	}
	if code, _ := get(t, c, "https://"+n2.Addresses().HTTPS+"/metrics", again); code != 200 {
		t.Fatalf("old token refused after restart: %d", code)
	}
	rep, err := audit.Verify(ctx, n2.Env().DB)
	if err != nil || !rep.OK() || rep.Records < 7 {
		t.Fatalf("audit after restart: %+v %v", rep, err)
	}
	// The first run's shutdown wrote a signed checkpoint covering node.stop.
	var stopSeq, cpSeq int64
	db2 := n2.Env().DB
	if err := db2.QueryRow(ctx, "SELECT MIN(seq) FROM audit_log WHERE action = 'node.stop'").Scan(&stopSeq); err != nil {
		t.Fatal(err)
	}
	if err := db2.QueryRow(ctx, "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").Scan(&cpSeq); err != nil {
		t.Fatal(err)
	}
	if cpSeq < stopSeq {
		t.Fatalf("newest checkpoint covers seq %d, node.stop is seq %d: no shutdown checkpoint", cpSeq, stopSeq)
	}
	cps, err := audit.VerifyCheckpoints(ctx, db2, n2.cpPublic)
	if err != nil || !cps.OK() {
		t.Fatalf("checkpoints: %+v %v", cps, err)
	}
}

// productionKeystore configures a passphrase-unlocked software keystore and
// the CA's public URLs, as production requires.
func productionKeystore(t *testing.T) []string {
	t.Setenv("GT_TEST_MASTER_PASSPHRASE", "correct horse battery staple")
	return []string{"GOVTRUST_HSM_SOFT_UNLOCK=passphrase", "GOVTRUST_HSM_SOFT_PASSPHRASE=env:GT_TEST_MASTER_PASSPHRASE",
		"GOVTRUST_CA_PUBLIC_URL=http://pki.example.gov.cn", "GOVTRUST_CA_PUBLIC_LDAP_URL=ldap://ldap.example.gov.cn"}
}

func TestProductionRefusesUnsafeSQLite(t *testing.T) {
	for _, sync := range []string{"NORMAL", "OFF"} {
		o := testOptions(filepath.Join(t.TempDir(), "data"))
		o.Mode = ptr("production")
		o.Environ = append(productionKeystore(t), "GOVTRUST_DATABASE_SQLITE_SYNCHRONOUS="+sync)
		_, err := Start(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "synchronous") {
			t.Fatalf("production with synchronous=%s: %v", sync, err)
		}
	}
	// FULL is accepted in production.
	o := testOptions(filepath.Join(t.TempDir(), "data"))
	o.Mode = ptr("production")
	o.Environ = productionKeystore(t)
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("production with defaults: %v", err)
	}
	n.Shutdown(context.Background())
}

func TestProductionRefusesAsyncPostgres(t *testing.T) {
	url := storetest.PostgresURL(t)
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	var name string
	if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "ALTER DATABASE "+name+" SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	o := testOptions(filepath.Join(t.TempDir(), "data"))
	o.Mode = ptr("production")
	o.Environ = productionKeystore(t)
	o.DB = &url
	if _, err := Start(ctx, o); err == nil || !strings.Contains(err.Error(), "synchronous_commit") {
		t.Fatalf("production against synchronous_commit=off: %v", err)
	}
	// Dev mode starts, and says so in the store step.
	o.Mode = ptr("dev")
	n, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("dev mode against PostgreSQL: %v", err)
	}
	n.Shutdown(ctx)
}

func TestBadConfigFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "govtrust.yaml"), []byte("listen:\n  http: 127.0.0.1:0\n  colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), testOptions(dir))
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("bad config: %v", err)
	}
}

// A keystore whose master key was generated in dev mode is refused in
// production, even with a passphrase configured.
func TestProductionRefusesDevMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	n, err := Start(ctx, testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	n.Shutdown(ctx)
	o := testOptions(dir)
	o.Mode = ptr("production")
	o.Environ = productionKeystore(t)
	if _, err := Start(ctx, o); err == nil || !strings.Contains(err.Error(), "dev key") {
		t.Fatalf("production on a dev keystore: %v", err)
	}
}
