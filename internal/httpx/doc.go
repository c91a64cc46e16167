// Package httpx is govtrust's HTTP edge: server set-up with timeouts and size
// limits, request IDs, one structured log event per request (successes may be
// sampled per second, EdgeOptions.OKLogPerSecond), panic recovery,
// security headers, and the single place where errors become HTTP answers.
//
// Handlers are methods returning error (HandlerFunc). Every error, including
// the mux's own 404 and 405, a body over the limit and a recovered panic, is
// answered as application/problem+json (RFC 9457) with type, title, status,
// detail and request_id. Users see safe text: 5xx answers never carry the
// error's text, which goes to the log with the request ID instead. 4xx answers
// carry the error's text, so errors meant for callers must be written for them.
package httpx
