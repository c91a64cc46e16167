// Package node runs a govtrust node: it opens the data directory, loads the
// configuration, opens and migrates the store, bootstraps a new installation,
// starts the registered services and the listeners, answers /healthz,
// /readyz and /metrics, and stops everything in order on SIGTERM or SIGINT.
//
// Services plug in through the small lifecycle interface Service (start,
// ready, stop) and the optional abilities Migrator, PublicRouter, APIRouter
// and TLSProvider (the HTTPS listener's certificate, tls.go), so later
// services are added in cmd/govtrust without touching the node's core.
package node

import (
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/store"
)

// Env is what a service receives when it starts.
type Env struct {
	Config  *config.Config
	DataDir string
	DB      *store.DB
	Audit   *audit.Log
	// Authz is the security middleware: accounts, tokens, decisions.
	Authz *authz.Service
	// Dual is the dual-control primitive for sensitive operations.
	Dual *dual.Store
	// Keys is the key manager. Services resolve their signers from it once,
	// at start, by key URI (ARCHITECTURE.md §1: hot paths hold a
	// crypto.Signer, not the key manager).
	Keys   *Keys
	Clock  clock.Clock
	Logger *slog.Logger
	// RestoredAt is when `govtrust restore` last put this database in place
	// from a backup (node_meta restored_at); zero if it never did. What was
	// published after the backup was taken is not in the database: a
	// service that publishes numbered objects (the CA's CRLs) publishes new
	// ones at start when its newest is older than this.
	RestoredAt time.Time
}

// Service is a part of the platform with a lifecycle.
type Service interface {
	// Name is a short lowercase identifier ("ca", "tsa").
	Name() string
	// Start prepares the service; it must not block.
	Start(ctx context.Context, env *Env) error
	// Ready returns nil when the service can do its work, or why it cannot;
	// /readyz reports it.
	Ready(ctx context.Context) error
	// Stop releases the service's resources after the listeners have drained.
	Stop(ctx context.Context) error
}

// Migrator is implemented by services with database tables.
type Migrator interface {
	Migrations() []store.Migrations
}

// PublicRouter is implemented by services that serve on the plain HTTP
// listener (signed public objects: certificates, CRLs, OCSP, TSA). Every
// route declares its authz.Rule.
type PublicRouter interface {
	PublicRoutes(mux *authz.Mux)
}

// APIRouter is implemented by services that serve on the HTTPS listener.
type APIRouter interface {
	APIRoutes(mux *authz.Mux)
}

// MetricsProvider is implemented by services with Prometheus metrics of
// their own (the CA's CRL alerts, for one); the node registers them on the
// registry behind /metrics.
type MetricsProvider interface {
	Collectors() []prometheus.Collector
}

// LDAPServer is implemented by the service that serves the directory on the
// LDAP listener (CONTRACT.md, --ldap). The node calls it once the HTTPS
// listener has its certificate, so that StartTLS and LDAPS present the same
// one (tlsConfig is nil when HTTPS is disabled: no TLS is offered then).
// ServeLDAP binds addr (port 0 picks a free port), serves in the background
// until the service stops, and returns the bound address for
// DIR/run/addresses.json.
type LDAPServer interface {
	ServeLDAP(ctx context.Context, addr string, tlsConfig *tls.Config) (string, error)
}
