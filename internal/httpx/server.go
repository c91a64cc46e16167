package httpx

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// ServerOptions are the limits of an HTTP server.
type ServerOptions struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	TLS               *tls.Config
	Logger            *slog.Logger
}

// NewServer returns an http.Server with every timeout set, so a slow or idle
// client cannot hold a connection (slowloris: ACCEPTANCE.md N-02).
func NewServer(h http.Handler, o ServerOptions) *http.Server {
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		TLSConfig:         o.TLS,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
}
