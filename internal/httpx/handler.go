package httpx

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/govtrust/govtrust/internal/store"
)

// HandlerFunc is an HTTP handler that returns an error instead of writing one.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP runs h and answers its error as a problem.
func (h HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		WriteError(w, r, err)
	}
}

// WriteError answers err as a problem and records it for the request log.
// If the handler already started its answer, only the log learns of err.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	if st != nil {
		st.err = err
	}
	if Wrote(w) {
		return // the answer has started; only the log (and audit) learn of err
	}
	p := problemFor(err, RequestID(r.Context()))
	switch {
	case p.Status != http.StatusServiceUnavailable:
	case store.IsUnavailable(err):
		w.Header().Set("Retry-After", RetryAfterUnavailable)
	case keysUnavailable(err):
		w.Header().Set("Retry-After", RetryAfterKeysUnavailable)
	}
	WriteProblem(w, p)
}

// Wrote reports whether an answer was started on w, looking through
// wrappers that implement Unwrap() http.ResponseWriter down to the edge's
// own writer.
func Wrote(w http.ResponseWriter) bool {
	for w != nil {
		if rw, ok := w.(*responseWriter); ok {
			return rw.wrote
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
	return false
}

// Err returns the error a handler of this request returned, if any (also
// when the answer had already started and only the log learnt of it).
func Err(ctx context.Context) error {
	if st := stateOf(ctx); st != nil {
		return st.err
	}
	return nil
}

type ctxKey struct{}

// reqState is what the edge middleware knows about one request.
type reqState struct {
	id  string
	err error
}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(ctxKey{}).(*reqState)
	return st
}

// RequestID returns the request ID of ctx, or "".
func RequestID(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.id
	}
	return ""
}

// newRequestID returns this process's random prefix and the next count, 16
// bytes in hex.
func newRequestID() string {
	var b [16]byte
	copy(b[:8], requestIDPrefix[:])
	binary.BigEndian.PutUint64(b[8:], requestIDSeq.Add(1))
	return hex.EncodeToString(b[:])
}

// Request IDs correlate, they authorise nothing: 64 random bits per process
// and a counter make them unique without reading the random source on
// every request.
var (
	requestIDPrefix = func() (b [8]byte) {
		_, _ = rand.Read(b[:])
		return b
	}()
	requestIDSeq atomic.Uint64
)

// validRequestID accepts a caller's X-Request-ID only when it is short and
// plain, so it can be logged and echoed safely.
func validRequestID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// responseWriter records the status and size of an answer.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Observer receives one call per finished request (metrics).
type Observer func(server, method, route string, status int, d time.Duration)

// EdgeOptions configures Edge.
type EdgeOptions struct {
	Server       string // "http" or "https": a log and metrics label
	Logger       *slog.Logger
	MaxBodyBytes int64
	// HSTS adds Strict-Transport-Security (HTTPS listeners only).
	HSTS    bool
	Observe Observer
	// OKLogPerSecond, when positive, logs at most this many requests per
	// second that ended 2xx or 3xx in under a second; the others are still
	// observed (metrics). Errors and slow requests are always logged. The
	// next line logged says how many were left out before it
	// ("unlogged"). Zero logs every request.
	OKLogPerSecond int
}

// The values of Edge's fixed headers.
var (
	hdrNosniff    = []string{"nosniff"}
	hdrNoReferrer = []string{"no-referrer"}
	hdrHSTS       = []string{"max-age=63072000; includeSubDomains"}
	hdrCSP        = []string{"frame-ancestors 'none'"}
	hdrDeny       = []string{"DENY"}
)

// logSampler lets through at most limit events per wall-clock second.
type logSampler struct {
	limit    int64
	sec      atomic.Int64
	n        atomic.Int64
	unlogged atomic.Int64
}

// allow reports whether this event may be logged, counting the ones that
// may not.
func (l *logSampler) allow(now time.Time) bool {
	sec := now.Unix()
	if cur := l.sec.Load(); cur != sec && l.sec.CompareAndSwap(cur, sec) {
		l.n.Store(0)
	}
	if l.n.Add(1) <= l.limit {
		return true
	}
	l.unlogged.Add(1)
	return false
}

// Edge wraps next with the request ID, body limit, panic recovery, security
// headers and one log event per request (at most OKLogPerSecond a second for
// fast successes, when set).
func Edge(next http.Handler, o EdgeOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var sampler *logSampler
	if o.OKLogPerSecond > 0 {
		sampler = &logSampler{limit: int64(o.OKLogPerSecond)}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The canonical key (Header.Get would canonicalise "X-Request-ID"
		// into a new string on every request).
		var id string
		if v := r.Header["X-Request-Id"]; len(v) > 0 {
			id = v[0]
		}
		if !validRequestID(id) {
			id = newRequestID()
		}
		// One allocation for the request's state and its writer.
		both := &struct {
			st reqState
			rw responseWriter
		}{st: reqState{id: id}, rw: responseWriter{ResponseWriter: w}}
		st, rw := &both.st, &both.rw
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, st))
		// Canonical keys and shared values for the fixed headers: Set
		// would canonicalise each key and allocate each value on every
		// request. (Adding to a shared value copies it, append on a full
		// slice: nothing can change the shared one.)
		h := rw.Header()
		h["X-Request-Id"] = []string{id}
		h["X-Content-Type-Options"] = hdrNosniff
		h["Referrer-Policy"] = hdrNoReferrer
		if o.HSTS {
			h["Strict-Transport-Security"] = hdrHSTS
			h["Content-Security-Policy"] = hdrCSP
			h["X-Frame-Options"] = hdrDeny
		}
		if o.MaxBodyBytes > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, o.MaxBodyBytes)
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				st.err = fmt.Errorf("panic: %v", v)
				o.Logger.Error("handler panic", "request_id", id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !rw.wrote {
					WriteProblem(rw, problemFor(errors.New("panic"), id))
				}
			}
			d := time.Since(start)
			if !rw.wrote {
				rw.status = http.StatusOK // the handler wrote nothing: net/http answers 200
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			if o.Observe != nil {
				o.Observe(o.Server, r.Method, route, rw.status, d)
			}
			if sampler != nil && st.err == nil && rw.status < 400 && d < time.Second && !sampler.allow(start) {
				return
			}
			attrs := []slog.Attr{
				slog.String("server", o.Server), slog.String("request_id", id),
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("route", route), slog.Int("status", rw.status),
				slog.Int64("bytes", rw.bytes), slog.Duration("duration", d),
				slog.String("remote", r.RemoteAddr),
			}
			level := slog.LevelInfo
			if st.err != nil {
				attrs = append(attrs, slog.String("error", st.err.Error()))
				if rw.status >= 500 {
					level = slog.LevelError
				}
			}
			if sampler != nil {
				if n := sampler.unlogged.Swap(0); n > 0 {
					attrs = append(attrs, slog.Int64("unlogged", n))
				}
			}
			o.Logger.LogAttrs(r.Context(), level, "http request", attrs...)
		}()
		next.ServeHTTP(rw, r)
	})
}

// Mux is a net/http ServeMux whose own 404 and 405 answers are problems.
type Mux struct {
	*http.ServeMux
	opaque []opaqueTail
}

// opaqueTail is a path prefix whose tail, after some fixed segments, is one
// opaque value that may itself contain "/" and "//" (RFC 6960 Appendix A.1:
// GET /ocsp/{ca}/{base64 request}).
type opaqueTail struct {
	prefix string
	fixed  int
}

// OpaqueTail declares that under prefix, everything after fixed further
// path segments is one value: its slashes are escaped (%2F) before routing,
// so ServeMux neither merges "//" nor redirects to a cleaned path. Handlers
// read the value from r.URL.EscapedPath() or a {name...} wildcard.
func (m *Mux) OpaqueTail(prefix string, fixed int) {
	m.opaque = append(m.opaque, opaqueTail{prefix: prefix, fixed: fixed})
}

// protectTail rewrites r's escaped path as OpaqueTail says, or returns r.
func (m *Mux) protectTail(r *http.Request) *http.Request {
	// Most requests are under no opaque prefix, or have no "/" in the tail
	// (POST /ocsp/{ca}): decided on the decoded path, which has a "/"
	// wherever the escaped one has "/" or "%2F", without building the
	// escaped path.
	if !m.tailHasSlash(r.URL.Path) {
		return r
	}
	esc := r.URL.EscapedPath()
	for _, o := range m.opaque {
		rest, ok := strings.CutPrefix(esc, o.prefix)
		if !ok {
			continue
		}
		head := ""
		for i := 0; i < o.fixed; i++ {
			seg, tail, found := strings.Cut(rest, "/")
			if !found {
				return r
			}
			head, rest = head+seg+"/", tail
		}
		if !strings.Contains(rest, "/") {
			return r
		}
		raw := o.prefix + head + strings.ReplaceAll(rest, "/", "%2F")
		path, err := url.PathUnescape(raw)
		if err != nil {
			return r
		}
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path, u.RawPath = path, raw
		r2.URL = &u
		return r2
	}
	return r
}

// tailHasSlash reports whether path is under an opaque prefix and its tail,
// after the fixed segments, holds a "/".
func (m *Mux) tailHasSlash(path string) bool {
	for _, o := range m.opaque {
		rest, ok := strings.CutPrefix(path, o.prefix)
		if !ok {
			continue
		}
		for i := 0; i < o.fixed; i++ {
			_, tail, found := strings.Cut(rest, "/")
			if !found {
				return false
			}
			rest = tail
		}
		return strings.Contains(rest, "/")
	}
	return false
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{ServeMux: http.NewServeMux()} }

// HandleFunc registers an error-returning handler for pattern.
func (m *Mux) HandleFunc(pattern string, h HandlerFunc) { m.ServeMux.Handle(pattern, h) }

// ServeHTTP dispatches r, turning the mux's plain-text 404/405 into problems.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(m.opaque) > 0 {
		r = m.protectTail(r)
	}
	if r.Method == http.MethodConnect {
		m.ServeMux.ServeHTTP(w, r)
		return
	}
	// One route match per request: ServeMux answers itself, and leaves
	// r.Pattern empty, only when no pattern matched. Its own 404 and 405
	// are caught and answered as problems (405 with the Allow header it
	// set, RFC 9110 §15.5.6); its redirects for path cleaning and its 400
	// for "*" pass through.
	u := &unmatchedWriter{ResponseWriter: w, r: r}
	m.ServeMux.ServeHTTP(u, r)
	switch u.status {
	case 0:
	case http.StatusMethodNotAllowed:
		WriteError(w, r, fmt.Errorf("method %s not allowed on %s: %w", r.Method, r.URL.Path, ErrMethodNotAllowed))
	default:
		WriteError(w, r, fmt.Errorf("no resource at %s: %w", r.URL.Path, ErrNotFound))
	}
}

// unmatchedWriter passes a matched handler's answer through and holds back
// ServeMux's own 404 or 405 (when r.Pattern is empty), for Mux to answer.
type unmatchedWriter struct {
	http.ResponseWriter
	r      *http.Request
	status int
}

func (u *unmatchedWriter) WriteHeader(code int) {
	if u.r.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		u.status = code
		return
	}
	u.ResponseWriter.WriteHeader(code)
}

func (u *unmatchedWriter) Write(b []byte) (int, error) {
	if u.status != 0 {
		return len(b), nil // ServeMux's plain-text body; Mux writes a problem
	}
	return u.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (u *unmatchedWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// Validator is implemented by request structs that check themselves.
type Validator interface {
	Validate() error
}

// DecodeJSON decodes the request body into v strictly: the content type must
// be JSON, unknown fields and trailing data are errors, and v.Validate runs when
// v has it. Size limits come from Edge's MaxBytesReader.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("content type %q: want application/json: %w", ct, ErrUnsupportedMediaType)
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("empty request body: %w", ErrBadRequest)
		}
		return fmt.Errorf("malformed JSON: %s: %w", jsonErrText(err), ErrBadRequest)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("malformed JSON: data after the JSON value: %w", ErrBadRequest)
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return &Problem{Type: TypeURI("invalid-request"), Title: "Invalid request", Status: http.StatusBadRequest, Detail: err.Error()}
		}
	}
	return nil
}

// jsonErrText keeps decoder messages short and free of Go type names.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
