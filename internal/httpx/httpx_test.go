package httpx

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/store"
)

type echoReq struct {
	Name string `json:"name"`
}

func (e *echoReq) Validate() error {
	if e.Name == "" {
		return errors.New("name is required")
	}
	return nil
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestServer(t *testing.T, hsts bool) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	mux := NewMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) error {
		var req echoReq
		if err := DecodeJSON(r, &req); err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, req)
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) error {
		panic("boom: secret internal state")
	})
	mux.HandleFunc("GET /conflict", func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("serial 01 already issued: %w", ErrConflict)
	})
	mux.HandleFunc("GET /internal", func(w http.ResponseWriter, r *http.Request) error {
		return errors.New("pq: connection refused to 10.0.0.5")
	})
	// A real driver error: a PostgreSQL server that nothing answers for.
	mux.HandleFunc("GET /database", func(w http.ResponseWriter, r *http.Request) error {
		_, err := store.Open(r.Context(), store.Config{URL: "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5"})
		if err == nil {
			return errors.New("opened a database on port 1")
		}
		return fmt.Errorf("ca: issue: %w", err)
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) error {
		// A key on a token the node has no backend for: the router's own
		// error, naming the key URI.
		_, err := hsm.NewRouter().Signer(r.Context(), &hsm.SignerRequest{URI: "pkcs11:token=secret-token;object=ca-key", Service: "ca"})
		if err == nil {
			return errors.New("a signer from an empty router")
		}
		return fmt.Errorf("ca: sign: %w", err)
	})
	srv := httptest.NewUnstartedServer(Edge(mux, EdgeOptions{Server: "test", Logger: logger, MaxBodyBytes: 1024, HSTS: hsts}))
	srv.Config = NewServer(srv.Config.Handler, ServerOptions{
		ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Logger: logger,
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, logs
}

func decodeProblem(t *testing.T, resp *http.Response) Problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type = %q, want %q", ct, ProblemContentType)
	}
	var p Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("problem body: %v", err)
	}
	if p.Status != resp.StatusCode || p.Type == "" || p.Title == "" || p.RequestID == "" {
		t.Fatalf("incomplete problem %+v for status %d", p, resp.StatusCode)
	}
	if p.RequestID != resp.Header.Get("X-Request-ID") {
		t.Fatalf("problem request_id %q != header %q", p.RequestID, resp.Header.Get("X-Request-ID"))
	}
	return p
}

func TestProblems(t *testing.T) {
	srv, logs := newTestServer(t, false)
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		detail                          string
	}{
		{"oversize body", "POST", "/echo", "application/json", `{"name":"` + strings.Repeat("a", 2000) + `"}`, 413, "size limit"},
		{"malformed JSON", "POST", "/echo", "application/json", `{"name":`, 400, "malformed JSON"},
		{"trailing data", "POST", "/echo", "application/json", `{"name":"a"} {}`, 400, "after the JSON value"},
		{"unknown field", "POST", "/echo", "application/json", `{"name":"a","admin":true}`, 400, "unknown field"},
		{"empty body", "POST", "/echo", "application/json", ``, 400, "empty request body"},
		{"wrong content type", "POST", "/echo", "text/plain", `{"name":"a"}`, 415, "want application/json"},
		{"validation", "POST", "/echo", "application/json", `{"name":""}`, 400, "name is required"},
		{"unknown route", "GET", "/nowhere", "", "", 404, "no resource"},
		{"wrong method", "DELETE", "/echo", "", "", 405, "not allowed"},
		{"panic", "GET", "/panic", "", "", 500, "internal error"},
		{"sentinel", "GET", "/conflict", "", "", 409, "already issued"},
		{"internal error hides detail", "GET", "/internal", "", "", 500, "internal error"},
		{"database unavailable", "GET", "/database", "", "", 503, "try again shortly"},
		{"key store unavailable", "GET", "/keys", "", "", 503, "key store cannot serve now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			p := decodeProblem(t, resp)
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.detail)
			}
			if strings.Contains(p.Detail, "secret internal state") || strings.Contains(p.Detail, "10.0.0.5") {
				t.Errorf("detail leaks internals: %q", p.Detail)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
			if tt.status == 503 {
				retry := map[string]string{"/database": RetryAfterUnavailable, "/keys": RetryAfterKeysUnavailable}[tt.path]
				if resp.Header.Get("Retry-After") != retry || p.Type != TypeURI("unavailable") {
					t.Errorf("503: Retry-After %q, type %q; want %q", resp.Header.Get("Retry-After"), p.Type, retry)
				}
				if strings.Contains(p.Detail, "127.0.0.1") || strings.Contains(p.Detail, "postgres") || strings.Contains(p.Detail, "secret-token") {
					t.Errorf("detail leaks the database address or the token: %q", p.Detail)
				}
			}
		})
	}
	// The panic was logged with its request ID and stack; every request got one log event.
	out := logs.String()
	if !strings.Contains(out, `"msg":"handler panic"`) || !strings.Contains(out, "secret internal state") {
		t.Error("panic not logged with its detail")
	}
	if n := strings.Count(out, `"msg":"http request"`); n != len(tests) {
		t.Errorf("%d request log events for %d requests", n, len(tests))
	}
	if !strings.Contains(out, `"route":"POST /echo"`) {
		t.Error("request log lacks the matched route")
	}
}

func TestRequestIDAndHeaders(t *testing.T) {
	srv, _ := newTestServer(t, true)
	req, _ := http.NewRequest("POST", srv.URL+"/echo", strings.NewReader(`{"name":"张三"}`))
	req.Header.Set("X-Request-ID", "client-chosen-id-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "张三") {
		t.Fatalf("echo = %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Request-ID"); got != "client-chosen-id-123" {
		t.Errorf("request ID %q not echoed", got)
	}
	for h, want := range map[string]string{
		"Strict-Transport-Security": "max-age=63072000",
		"X-Content-Type-Options":    "nosniff",
		"Content-Security-Policy":   "frame-ancestors 'none'",
	} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("%s = %q, want %q", h, resp.Header.Get(h), want)
		}
	}
	// A hostile request ID is replaced, not echoed.
	req, _ = http.NewRequest("GET", srv.URL+"/nowhere", nil)
	req.Header.Set("X-Request-ID", "bad id\" with <html>")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if got := resp2.Header.Get("X-Request-ID"); got == "" || strings.ContainsAny(got, " <\"") {
		t.Errorf("unsafe request ID echoed: %q", got)
	}
}

// A client that sends headers too slowly is cut off by ReadHeaderTimeout.
func TestSlowHeadersCutOff(t *testing.T) {
	srv, _ := newTestServer(t, false)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /nowhere HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	// Never finish the header block. The server must close the connection; the
	// deadline here only bounds the test, it is not the property under test.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = bufio.NewReader(conn).ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server kept a slow-header connection open")
	}
	if err == nil {
		// Go answers 408 on a header timeout in some versions; then it must close.
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("connection not closed: %v", err)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for err, want := range map[error]int{
		fmt.Errorf("x: %w", ErrNotFound):                    404,
		fmt.Errorf("x: %w", fmt.Errorf("y: %w", ErrPolicy)): 422,
		Errorf(418, "teapot"):                               418,
		errors.New("plain"):                                 500,
		&http.MaxBytesError{Limit: 1}:                       413,
	} {
		if got := StatusOf(err); got != want {
			t.Errorf("StatusOf(%v) = %d, want %d", err, got, want)
		}
	}
}

// With OKLogPerSecond, successful requests beyond the rate are counted in
// the metrics but not logged, errors always are, and the next line logged
// says how many were left out.
func TestEdgeSampledAccessLog(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	mux := NewMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write([]byte("ok"))
		return err
	})
	mux.HandleFunc("GET /conflict", func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("taken: %w", ErrConflict)
	})
	var mu sync.Mutex
	observed := map[int]int{}
	observe := func(server, method, route string, status int, d time.Duration) {
		mu.Lock()
		observed[status]++
		mu.Unlock()
	}
	// Within one wall-clock second (the test retries if it straddles one).
	for attempt := 0; ; attempt++ {
		logs.Reset()
		clear(observed)
		h := Edge(mux, EdgeOptions{Server: "http", Logger: logger, Observe: observe, OKLogPerSecond: 3})
		get := func(path string) { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil)) }
		start := time.Now().Unix()
		for range 20 {
			get("/ok")
		}
		get("/conflict")
		if time.Now().Unix() == start || attempt == 5 {
			break
		}
	}
	out := logs.String()
	if n := strings.Count(out, `"route":"GET /ok"`); n != 3 {
		t.Errorf("%d successful requests logged, want 3 (the limit):\n%s", n, out)
	}
	if !strings.Contains(out, `"route":"GET /conflict"`) || !strings.Contains(out, `"unlogged":17`) {
		t.Errorf("the error is not logged with the 17 left out before it:\n%s", out)
	}
	if observed[200] != 20 || observed[409] != 1 {
		t.Errorf("observed %v, want every request", observed)
	}
	// Zero logs every request.
	logs.Reset()
	all := Edge(mux, EdgeOptions{Server: "http", Logger: logger})
	for range 20 {
		all.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/ok", nil))
	}
	if n := strings.Count(logs.String(), `"msg":"http request"`); n != 20 {
		t.Errorf("%d of 20 requests logged without a limit", n)
	}
}

// The mux matches once: a handler's own 404 reaches the client as the
// handler wrote it, ServeMux's own 404 and 405 become problems, and its
// path-cleaning redirect passes through.
func TestMuxOwnAnswers(t *testing.T) {
	mux := NewMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("thing %s: %w", r.PathValue("id"), ErrNotFound)
	})
	h := Edge(mux, EdgeOptions{Server: "test", Logger: slog.New(slog.DiscardHandler)})
	do := func(method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec
	}
	if rec := do("GET", "/things/42"); rec.Code != 404 || !strings.Contains(rec.Body.String(), "thing 42") {
		t.Errorf("handler's 404: %d %s", rec.Code, rec.Body)
	}
	rec := do("GET", "/nothing")
	if rec.Code != 404 || rec.Header().Get("Content-Type") != ProblemContentType || !strings.Contains(rec.Body.String(), "no resource") {
		t.Errorf("unmatched: %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	rec = do("DELETE", "/things/42")
	if rec.Code != 405 || rec.Header().Get("Allow") == "" || rec.Header().Get("Content-Type") != ProblemContentType {
		t.Errorf("wrong method: %d Allow %q %q %s", rec.Code, rec.Header().Get("Allow"), rec.Header().Get("Content-Type"), rec.Body)
	}
	if strings.Contains(rec.Body.String(), "Method Not Allowed\n") {
		t.Error("ServeMux's plain-text body leaked into the problem")
	}
	rec = do("GET", "/things/../things/7")
	if (rec.Code != http.StatusMovedPermanently && rec.Code != http.StatusTemporaryRedirect) || rec.Header().Get("Location") != "/things/7" {
		t.Errorf("path cleaning: %d Location %q", rec.Code, rec.Header().Get("Location"))
	}
}

// Generated request IDs are distinct and pass the edge's own check.
func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if seen[id] || !validRequestID(id) || len(id) != 32 {
			t.Fatalf("request ID %q: repeated %v, valid %v", id, seen[id], validRequestID(id))
		}
		seen[id] = true
	}
}

// TestMuxOpaqueTail checks that the tail under an OpaqueTail prefix reaches
// the handler's wildcard whole, "//" included, and that requests without a
// "/" in the tail are routed untouched.
func TestMuxOpaqueTail(t *testing.T) {
	mux := NewMux()
	mux.OpaqueTail("/o/", 1)
	var got, gotEsc string
	mux.HandleFunc("GET /o/{id}/{rest...}", func(w http.ResponseWriter, r *http.Request) error {
		got, gotEsc = r.PathValue("rest"), r.URL.EscapedPath()
		return nil
	})
	mux.HandleFunc("POST /o/{id}", func(w http.ResponseWriter, r *http.Request) error {
		got, gotEsc = r.PathValue("id"), r.URL.EscapedPath()
		return nil
	})
	for _, c := range []struct{ method, target, rest, esc string }{
		{"GET", "/o/ca/abc", "abc", "/o/ca/abc"},
		{"GET", "/o/ca/a//b/c", "a//b/c", "/o/ca/a%2F%2Fb%2Fc"},
		{"GET", "/o/ca/a%2Fb", "a/b", "/o/ca/a%2Fb"},
		{"GET", "/o/ca/a%2F/b+c", "a//b+c", "/o/ca/a%2F%2Fb+c"},
		{"POST", "/o/ca", "ca", "/o/ca"},
	} {
		got, gotEsc = "", ""
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(c.method, c.target, nil))
		if rec.Code != http.StatusOK || got != c.rest || gotEsc != c.esc {
			t.Errorf("%s %s: HTTP %d, value %q, escaped path %q; want %q, %q", c.method, c.target, rec.Code, got, gotEsc, c.rest, c.esc)
		}
	}
	// Paths outside the prefix are left to ServeMux's cleaning.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/x//y", nil))
	if rec.Code != http.StatusMovedPermanently && rec.Code != http.StatusTemporaryRedirect {
		t.Errorf("GET /x//y: HTTP %d, want a redirect to the cleaned path", rec.Code)
	}
}
