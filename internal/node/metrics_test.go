package node

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every request is counted in /metrics under its listener, method, route
// and status, a method outside HTTP's own as OTHER (a client must not mint
// label values); on the plain-HTTP listener successful requests are logged
// at most log.public_ok_per_second per second, errors always.
func TestRequestMetricsAndPublicLog(t *testing.T) {
	logs := &lockedBuffer{}
	o := testOptions(filepath.Join(t.TempDir(), "data"))
	o.LogOutput = logs
	o.Environ = append(o.Environ, "GOVTRUST_LOG_PUBLIC_OK_PER_SECOND=2")
	n, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	dir := n.Env().DataDir
	base := "http://" + n.Addresses().HTTP
	send := func(method, path string) int {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	first := time.Now().Unix()
	for range 30 {
		if code := send("GET", "/healthz"); code != 200 {
			t.Fatalf("/healthz: %d", code)
		}
	}
	for _, m := range []string{"BREW", "WHEN", "GET"} {
		send(m, "/no/such/thing")
	}
	// 2 lines in each wall-clock second the requests spanned, however slow
	// a loaded machine made them.
	seconds := int(time.Now().Unix()-first) + 1
	if got := strings.Count(logs.String(), `"route":"GET /healthz"`); got < 2 || got > 2*seconds {
		t.Errorf("%d of 30 successful public requests logged over %d second(s), want 2 per second", got, seconds)
	}
	if got := strings.Count(logs.String(), `"route":"unmatched"`); got != 3 {
		t.Errorf("%d of 3 failed requests logged, want all", got)
	}

	auditor, err := ReadBootstrapToken(dir, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	api := &apiClient{t: t, base: "https://" + n.Addresses().HTTPS, c: insecureClient()}
	code, out := api.do("GET", "/metrics", auditor, nil)
	body, _ := out["raw"].(string)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`govtrust_http_requests_total{code="200",method="GET",route="GET /healthz",server="http"} 30`,
		`govtrust_http_requests_total{code="404",method="OTHER",route="unmatched",server="http"} 2`,
		`govtrust_http_requests_total{code="404",method="GET",route="unmatched",server="http"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "BREW") || strings.Contains(body, "WHEN") {
		t.Error("a client's method became a label value")
	}
}
