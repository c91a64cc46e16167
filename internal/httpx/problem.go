package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/store"
)

// ProblemContentType is the media type of RFC 9457 problem details.
const ProblemContentType = "application/problem+json"

// Sentinel errors for the HTTP status classes services need. A service defines
// its own sentinels wrapping these (fmt.Errorf("ca: certificate not found: %w",
// httpx.ErrNotFound)); statusOf maps them, in this one place.
var (
	ErrBadRequest           = errors.New("bad request")
	ErrUnauthorized         = errors.New("unauthorized")
	ErrForbidden            = errors.New("forbidden")
	ErrNotFound             = errors.New("not found")
	ErrMethodNotAllowed     = errors.New("method not allowed")
	ErrConflict             = errors.New("conflict")
	ErrTooLarge             = errors.New("request body too large")
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	ErrPolicy               = errors.New("refused by policy")
	ErrTooManyRequests      = errors.New("too many requests")
	ErrUnavailable          = errors.New("service unavailable")
)

var statusTable = []struct {
	err    error
	status int
	slug   string
}{
	{ErrBadRequest, http.StatusBadRequest, "bad-request"},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrNotFound, http.StatusNotFound, "not-found"},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "method-not-allowed"},
	{ErrConflict, http.StatusConflict, "conflict"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "too-large"},
	{ErrUnsupportedMediaType, http.StatusUnsupportedMediaType, "unsupported-media-type"},
	{ErrPolicy, http.StatusUnprocessableEntity, "policy"},
	{ErrTooManyRequests, http.StatusTooManyRequests, "too-many-requests"},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
}

// Problem is an RFC 9457 problem detail. It is also an error, for handlers that
// want to choose every field.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id"`
	// Errors lists field-level problems of a request (for Validate failures).
	Errors []string `json:"errors,omitempty"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

// TypeURI returns the problem type URI for a slug.
func TypeURI(slug string) string { return "urn:govtrust:problem:" + slug }

// Errorf returns an error for status with a caller-safe detail.
func Errorf(status int, format string, args ...any) error {
	return &Problem{Type: TypeURI(slugOf(status)), Title: http.StatusText(status), Status: status, Detail: fmt.Sprintf(format, args...)}
}

func slugOf(status int) string {
	for _, s := range statusTable {
		if s.status == status {
			return s.slug
		}
	}
	if status >= 500 {
		return "internal"
	}
	return "about-blank"
}

// StatusOf returns the HTTP status for err: 500 unless err is a *Problem, a
// body-size error, wraps one of the sentinels above, or is an error of a
// database or a key store that cannot serve now (store.IsUnavailable,
// keysUnavailable: 503).
func StatusOf(err error) int {
	var p *Problem
	if errors.As(err, &p) {
		return p.Status
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	for _, s := range statusTable {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	if store.IsUnavailable(err) || keysUnavailable(err) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// keysUnavailable reports whether err says that a key store cannot serve
// now: a PKCS#11 module or token gone or not open (hsm.ErrUnavailable), its
// login failed (hsm.ErrPIN: the node's PIN, never a client's), or the
// software keystore locked (hsm.ErrLocked). None is the request's fault.
func keysUnavailable(err error) bool {
	return errors.Is(err, hsm.ErrUnavailable) || errors.Is(err, hsm.ErrPIN) || errors.Is(err, hsm.ErrLocked)
}

// databaseUnavailable is the detail of a 503 for store.IsUnavailable: the
// driver's text names hosts, ports and SQL states, which are the
// operator's to read in the log.
const databaseUnavailable = "the database cannot serve now; try again shortly"

// RetryAfterUnavailable is the Retry-After (seconds) of a 503 for a
// database that cannot serve now: a transaction has already been tried for
// about a second on fresh connections before the answer.
const RetryAfterUnavailable = "1"

// keysUnavailableDetail is the detail of a 503 for keysUnavailable: the
// error names modules, tokens and key labels, which are the operator's.
const keysUnavailableDetail = "a key store cannot serve now; try again later"

// RetryAfterKeysUnavailable is the Retry-After (seconds) of a 503 for a key
// store that cannot serve now: the node tries a missing token again every
// 10 s (node.TokenRetry).
const RetryAfterKeysUnavailable = "10"

// problemFor builds the problem answered for err.
func problemFor(err error, requestID string) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		out := *p
		out.RequestID = requestID
		if out.Type == "" {
			out.Type = TypeURI(slugOf(out.Status))
		}
		if out.Title == "" {
			out.Title = http.StatusText(out.Status)
		}
		if out.Status >= 500 {
			out.Detail = "internal error; quote the request ID to the operator"
		}
		return &out
	}
	status := StatusOf(err)
	out := &Problem{Type: TypeURI(slugOf(status)), Title: http.StatusText(status), Status: status, RequestID: requestID}
	switch {
	case status == http.StatusServiceUnavailable && store.IsUnavailable(err):
		out.Detail = databaseUnavailable
	case status == http.StatusServiceUnavailable && keysUnavailable(err):
		out.Detail = keysUnavailableDetail
	case status >= 500 && status != http.StatusServiceUnavailable:
		out.Detail = "internal error; quote the request ID to the operator"
	case status == http.StatusRequestEntityTooLarge:
		out.Detail = "request body exceeds the size limit"
	default:
		out.Detail = err.Error()
	}
	return out
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
