package node

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/dual"
	"github.com/govtrust/govtrust/internal/fsx"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

func nodeMigrations() store.Migrations {
	return store.EmbeddedMigrations("node", migrations, "migrations")
}

// Options say how to run a node. Pointer fields are command-line flags: nil
// means "not given", so the configuration file and environment decide.
type Options struct {
	DataDir    string
	ConfigFile string // default DataDir/govtrust.yaml, written on first run
	Mode       *string
	HTTP       *string
	HTTPS      *string
	LDAP       *string
	DB         *string
	Environ    []string  // os.Environ() form; GOVTRUST_* overrides
	Progress   io.Writer // one line per start-up step; nil discards
	LogOutput  io.Writer // structured logs; default os.Stderr
	Clock      clock.Clock
}

// Addresses are the listeners' actual addresses, written to
// DIR/run/addresses.json once the node is ready (CONTRACT.md).
type Addresses struct {
	HTTP  string `json:"http"`
	HTTPS string `json:"https"`
	LDAP  string `json:"ldap"`
}

// Node is a running node.
type Node struct {
	opts      Options
	cfg       *config.Config
	env       *Env
	services  []Service
	started   []Service
	logger    *slog.Logger
	servers   []*http.Server
	addrs     Addresses
	errc      chan error
	draining  atomic.Bool
	stopOnce  sync.Once
	stopErr   error
	db        *store.DB
	keys      *Keys
	authz     *authz.Service
	dual      *dual.Store
	clientCAs *x509.CertPool
	public    *authz.Mux
	api       *authz.Mux
	cp        *audit.Checkpointer
	cpPublic  crypto.PublicKey
	cpStop    context.CancelFunc
	cpDone    chan struct{}
	tls       *tlsState
}

type progress struct {
	w     io.Writer
	total int
	n     int
}

func (p *progress) step(what string, fn func() (string, error)) error {
	p.n++
	start := time.Now()
	fmt.Fprintf(p.w, "govtrust: [%d/%d] %s ... ", p.n, p.total, what)
	detail, err := fn()
	if err != nil {
		fmt.Fprintf(p.w, "FAILED\n")
		return err
	}
	if detail != "" {
		detail = " (" + detail + ")"
	}
	fmt.Fprintf(p.w, "ok%s %s\n", detail, time.Since(start).Round(time.Millisecond))
	return nil
}

// Start brings a node up and returns once it is serving and ready, or fails
// having released what it had acquired.
func Start(ctx context.Context, opts Options, services ...Service) (_ *Node, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	if opts.Clock == nil {
		opts.Clock = clock.New()
	}
	if opts.DataDir == "" {
		opts.DataDir = "govtrust-data"
	}
	ensureProcs()
	n := &Node{opts: opts, services: services, errc: make(chan error, 4)}
	defer func() {
		if err != nil {
			n.release(context.Background())
		}
	}()
	p := &progress{w: opts.Progress, total: 9}
	dir := opts.DataDir
	if err := p.step("data directory "+dir, func() (string, error) { return n.prepareDir() }); err != nil {
		return nil, err
	}
	if err := p.step("configuration", func() (string, error) { return n.loadConfig() }); err != nil {
		return nil, err
	}
	if err := p.step("store", func() (string, error) { return n.openStore(ctx) }); err != nil {
		return nil, err
	}
	if err := p.step("migrations", func() (string, error) { return n.migrate(ctx) }); err != nil {
		return nil, err
	}
	if err := p.step("keys", func() (string, error) { return n.openKeys(ctx) }); err != nil {
		return nil, err
	}
	if err := p.step("bootstrap", func() (string, error) { return n.bootstrap(ctx) }); err != nil {
		return nil, err
	}
	if err := p.step("services", func() (string, error) { return n.startServices(ctx) }); err != nil {
		return nil, err
	}
	if err := p.step("listeners", func() (string, error) { return n.listen(ctx) }); err != nil {
		return nil, err
	}
	if err := p.step("ready", func() (string, error) { return n.awaitReady(ctx) }); err != nil {
		return nil, err
	}
	n.startCheckpoints()
	n.startTLSRefresh()
	state := "ready"
	if _, ok := n.checks(ctx); !ok {
		state = "serving but NOT READY (see /readyz)"
	}
	fmt.Fprintf(opts.Progress, "govtrust: %s (mode %s)\n  http:  http://%s\n  https: https://%s\n  ldap:  %s\n  bootstrap tokens and TLS chain in %s\n",
		state, n.cfg.Mode, n.addrs.HTTP, n.addrs.HTTPS, orNone(n.addrs.LDAP), filepath.Join(dir, "bootstrap"))
	return n, nil
}

func orNone(s string) string {
	if s == "" {
		return "(no directory service in this build)"
	}
	return "ldap://" + s
}

func (n *Node) prepareDir() (string, error) {
	for _, d := range []string{n.opts.DataDir, filepath.Join(n.opts.DataDir, "run"), filepath.Join(n.opts.DataDir, "bootstrap")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("data directory: %w", err)
		}
	}
	// A stale addresses.json from a previous run must not be mistaken for
	// this run's readiness signal.
	if err := os.Remove(filepath.Join(n.opts.DataDir, "run", "addresses.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("data directory: %w", err)
	}
	return "", nil
}

func (n *Node) loadConfig() (string, error) {
	path := n.opts.ConfigFile
	detail := ""
	if path == "" {
		path = filepath.Join(n.opts.DataDir, "govtrust.yaml")
		wrote, err := config.WriteDefault(path)
		if err != nil {
			return "", err
		}
		if wrote {
			detail = "wrote defaults to " + path
		}
	}
	cfg, err := config.Load(path, n.opts.Environ)
	if err != nil {
		return "", err
	}
	for _, f := range []struct {
		flag *string
		dst  *string
	}{{n.opts.Mode, &cfg.Mode}, {n.opts.HTTP, &cfg.Listen.HTTP}, {n.opts.HTTPS, &cfg.Listen.HTTPS}, {n.opts.LDAP, &cfg.Listen.LDAP}, {n.opts.DB, &cfg.Database.URL}} {
		if f.flag != nil {
			*f.dst = *f.flag
		}
	}
	if err := cfg.Validate(); err != nil {
		return "", fmt.Errorf("configuration %s: %w", path, err)
	}
	n.cfg = cfg
	n.logger = newLogger(cfg.Log, n.opts.LogOutput)
	// The collector's pace is process-wide; the operator's GOGC wins.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(cfg.Node.GCPercent)
	}
	if detail == "" {
		detail = path
	}
	return detail + ", mode " + cfg.Mode, nil
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	o := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

// StoreConfig turns the database section into a store configuration for the
// data directory dir (shared with the offline commands).
func StoreConfig(c *config.Config, dir string) (store.Config, error) {
	pw, err := c.Database.Password.Resolve()
	if err != nil {
		return store.Config{}, fmt.Errorf("database.password: %w", err)
	}
	url := c.Database.URL
	if url == "" {
		url = filepath.Join(dir, "govtrust.db")
	}
	return store.Config{
		URL: url, Password: string(pw), Synchronous: c.Database.SQLiteSynchronous,
		BusyTimeout: c.Database.BusyTimeout, Readers: c.Database.Readers, MaxConns: c.Database.MaxConns,
	}, nil
}

func (n *Node) openStore(ctx context.Context) (string, error) {
	sc, err := StoreConfig(n.cfg, n.opts.DataDir)
	if err != nil {
		return "", err
	}
	sc.Logger = n.logger
	db, err := store.Open(ctx, sc)
	if err != nil {
		return "", err
	}
	n.db = db
	settings, err := db.Durability(ctx)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, s := range settings {
		parts = append(parts, s.Name+"="+s.Value)
		if !s.Safe {
			n.logger.Warn("unsafe durability setting", "setting", s.Name, "value", s.Value, "why", s.Why)
		}
	}
	if n.cfg.Mode == config.ModeProduction {
		if err := db.CheckProduction(ctx); err != nil {
			return "", fmt.Errorf("production mode refuses to start: %w", err)
		}
	}
	return string(db.Driver()) + ", " + strings.Join(parts, ", "), nil
}

// BaseMigrations are the schemas every node has, whatever services run:
// node facts, audit log, tokens, software keystore.
func BaseMigrations() []store.Migrations {
	return []store.Migrations{nodeMigrations(), audit.Migrations, authz.Migrations, soft.Migrations, dual.Migrations}
}

func (n *Node) migrate(ctx context.Context) (string, error) {
	sets := BaseMigrations()
	for _, s := range n.services {
		if m, ok := s.(Migrator); ok {
			sets = append(sets, m.Migrations()...)
		}
	}
	if err := n.db.Migrate(ctx, sets...); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d sets", len(sets)), nil
}

func (n *Node) startServices(ctx context.Context) (string, error) {
	n.env = &Env{Config: n.cfg, DataDir: n.opts.DataDir, DB: n.db, Audit: audit.New(n.cfg.Node.Name, n.opts.Clock),
		Clock: n.opts.Clock, Logger: n.logger, Keys: n.keys}
	n.env.Authz = n.authz
	n.env.Dual = n.dual
	restored, err := RestoredAt(ctx, n.db)
	if err != nil {
		return "", err
	}
	n.env.RestoredAt = restored
	var names []string
	for _, s := range n.services {
		if err := s.Start(ctx, n.env); err != nil {
			return "", fmt.Errorf("start %s: %w", s.Name(), err)
		}
		n.started = append(n.started, s)
		names = append(names, s.Name())
	}
	if _, err := n.env.Audit.Write(ctx, n.db, audit.Record{Actor: "system", Action: "node.start", Object: "node/" + n.cfg.Node.Name,
		Outcome: audit.Success, Details: map[string]any{"mode": n.cfg.Mode, "services": names}}); err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "none registered", nil
	}
	return strings.Join(names, ", "), nil
}

// openKeys opens the key backends (software keystore, PKCS#11 tokens).
func (n *Node) openKeys(ctx context.Context) (string, error) {
	k, err := OpenKeys(ctx, n.cfg, KeysOptions{DB: n.db, Audit: audit.New(n.cfg.Node.Name, n.opts.Clock), Logger: n.logger, Clock: n.opts.Clock})
	if err != nil {
		return "", err
	}
	n.keys = k
	st, err := k.Soft.Status(ctx)
	if err != nil {
		return "", err
	}
	parts := []string{fmt.Sprintf("software keystore: %s master key, %d keys", st.Kind, st.Keys)}
	if !st.Unlocked {
		parts[0] += ", LOCKED"
	}
	for _, t := range k.Tokens {
		state := "ok"
		if err := t.Check(ctx); err != nil {
			state = "UNAVAILABLE: " + err.Error()
		}
		parts = append(parts, fmt.Sprintf("pkcs11 %s %s", t.Name(), state))
	}
	return strings.Join(parts, "; "), nil
}

// setupCheckpoints resolves (creating on first use) the key that signs audit
// checkpoints and writes its public key to DIR/bootstrap/audit-checkpoint.pem,
// the trust anchor `govtrust audit verify` uses.
func (n *Node) setupCheckpoints(ctx context.Context) (string, error) {
	uri := n.cfg.Audit.CheckpointKey
	const service = "audit"
	pub, err := n.keys.PublicKey(ctx, &hsm.PublicKeyRequest{URI: uri})
	if errors.Is(err, hsm.ErrNotFound) {
		var info *hsm.KeyInfo
		info, err = n.keys.CreateKey(audit.WithActor(ctx, "system"), &hsm.CreateKeyRequest{URI: uri, Algorithm: hsm.SM2, Usage: hsm.UsageSign, Service: service})
		if err == nil {
			uri, pub = info.URI, info.Public
		}
	}
	if err != nil {
		return "", fmt.Errorf("audit checkpoint key %s: %w", uri, err)
	}
	signer, err := n.keys.Signer(ctx, &hsm.SignerRequest{URI: uri, Service: service})
	if err != nil {
		return "", fmt.Errorf("audit checkpoint key %s: %w", uri, err)
	}
	pemBytes, err := audit.MarshalPublicKeyPEM(pub)
	if err != nil {
		return "", err
	}
	path := filepath.Join(n.opts.DataDir, "bootstrap", "audit-checkpoint.pem")
	switch old, err := os.ReadFile(path); {
	case errors.Is(err, fs.ErrNotExist):
		if err := writeFileAtomic(path, pemBytes, 0o644); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	case string(old) != string(pemBytes):
		// Never overwrite a trust anchor silently: the operator decides.
		n.logger.Error("DIR/bootstrap/audit-checkpoint.pem does not match the checkpoint key; checkpoints will not verify against it", "key", uri)
	}
	cp, err := audit.NewCheckpointer(n.db, audit.New(n.cfg.Node.Name, n.opts.Clock), signer, uri, n.opts.Clock)
	if err != nil {
		return "", err
	}
	cp.Logger = n.logger
	n.cp, n.cpPublic = cp, pub
	return "checkpoints signed by " + uri, nil
}

// startCheckpoints starts the periodic checkpoints.
func (n *Node) startCheckpoints() {
	if n.cp == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cpStop, n.cpDone = cancel, make(chan struct{})
	go func() {
		defer close(n.cpDone)
		n.cp.Run(ctx, n.cfg.Audit.CheckpointInterval)
	}()
}

// listen binds the listeners and starts serving.
func (n *Node) listen(ctx context.Context) (string, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "govtrust_http_requests_total", Help: "HTTP requests by listener, route and status."}, []string{"server", "method", "route", "code"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "govtrust_http_request_duration_seconds", Help: "HTTP request latency by listener and route.", Buckets: prometheus.DefBuckets}, []string{"server", "route"})
	reg.MustRegister(reqs, dur)
	for _, s := range n.services {
		if mp, ok := s.(MetricsProvider); ok {
			for _, c := range mp.Collectors() {
				if err := reg.Register(c); err != nil {
					return "", fmt.Errorf("metrics of %s: %w", s.Name(), err)
				}
			}
		}
	}
	// The metric children are kept by their labels: looking them up by
	// label values hashes the strings on every request.
	type reqKey struct {
		server, method, route string
		status                int
	}
	type durKey struct{ server, route string }
	var counters, observers sync.Map
	observe := func(server, method, route string, status int, d time.Duration) {
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		default:
			method = "OTHER" // a client's method must not mint label values
		}
		rk := reqKey{server, method, route, status}
		c, ok := counters.Load(rk)
		if !ok {
			c, _ = counters.LoadOrStore(rk, reqs.WithLabelValues(server, method, route, strconv.Itoa(status)))
		}
		c.(prometheus.Counter).Inc()
		dk := durKey{server, route}
		o, ok := observers.Load(dk)
		if !ok {
			o, _ = observers.LoadOrStore(dk, dur.WithLabelValues(server, route))
		}
		o.(prometheus.Observer).Observe(d.Seconds())
	}

	public := n.authz.NewMux()
	api := n.authz.NewMux()
	for _, m := range []*authz.Mux{public, api} {
		m.Handle("GET /healthz", authz.Rule{Public: "liveness probe for load balancers"}, n.healthz)
		m.Handle("GET /readyz", authz.Rule{Public: "readiness probe for load balancers; names failing checks, no secrets"}, n.readyz)
	}
	api.HandleHTTP("GET /metrics", authz.Rule{Action: "metrics.read"}, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	(&adminAPI{n: n, dual: n.dual}).routes(api)
	n.public, n.api = public, api
	for _, s := range n.started {
		if r, ok := s.(PublicRouter); ok {
			r.PublicRoutes(public)
		}
		if r, ok := s.(APIRouter); ok {
			r.APIRoutes(api)
		}
	}
	hc := n.cfg.HTTP
	so := httpx.ServerOptions{ReadHeaderTimeout: hc.ReadHeaderTimeout, ReadTimeout: hc.ReadTimeout,
		WriteTimeout: hc.WriteTimeout, IdleTimeout: hc.IdleTimeout, Logger: n.logger}

	if addr := n.cfg.Listen.HTTP; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("listen.http %s: %w", addr, err)
		}
		srv := httpx.NewServer(httpx.Edge(public, httpx.EdgeOptions{Server: "http", Logger: n.logger, MaxBodyBytes: hc.MaxBodyBytes, Observe: observe,
			OKLogPerSecond: n.cfg.Log.PublicOKPerSecond}), so)
		n.serve(srv, ln, false)
		n.addrs.HTTP = ln.Addr().String()
	}
	httpsDetail := ""
	if addr := n.cfg.Listen.HTTPS; addr != "" {
		tlsDetail, err := n.setupTLS(ctx)
		if err != nil {
			return "", fmt.Errorf("HTTPS certificate: %w", err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("listen.https %s: %w", addr, err)
		}
		tso := so
		tso.TLS = n.tls.serverConfig()
		if n.clientCAs != nil {
			// Client certificates are optional at the TLS layer (bearer tokens
			// work too); when one is sent it must chain to a trusted client CA,
			// and the security middleware checks revocation and the account.
			tso.TLS.ClientAuth = tls.VerifyClientCertIfGiven
			tso.TLS.ClientCAs = n.clientCAs
		}
		srv := httpx.NewServer(httpx.Edge(api, httpx.EdgeOptions{Server: "https", Logger: n.logger, MaxBodyBytes: hc.MaxBodyBytes, HSTS: true, Observe: observe}), tso)
		n.serve(srv, ln, true)
		n.addrs.HTTPS = ln.Addr().String()
		httpsDetail += " (" + tlsDetail + ")"
	}
	// The LDAP listener belongs to the directory service (an LDAPServer),
	// which binds listen.ldap itself; without one nothing listens there.
	ldapDetail := ""
	if addr := n.cfg.Listen.LDAP; addr != "" {
		for _, s := range n.started {
			l, ok := s.(LDAPServer)
			if !ok {
				continue
			}
			var tc *tls.Config
			if n.tls != nil {
				tc = n.tls.serverConfig()
			}
			got, err := l.ServeLDAP(ctx, addr, tc)
			if err != nil {
				return "", fmt.Errorf("listen.ldap %s: %w", addr, err)
			}
			n.addrs.LDAP = got
			ldapDetail = ", ldap " + got
			break
		}
	}
	return fmt.Sprintf("http %s, https %s%s%s", n.addrs.HTTP, n.addrs.HTTPS, httpsDetail, ldapDetail), nil
}

func (n *Node) serve(srv *http.Server, ln net.Listener, tls bool) {
	n.servers = append(n.servers, srv)
	go func() {
		var err error
		if tls {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.errc <- err
		}
	}()
}

// awaitReady checks readiness once the listeners are up and writes
// addresses.json atomically. A node that is serving but not ready (a token
// without its PIN, say) keeps running, so /readyz can say why and recover
// when the cause is fixed; the progress line says NOT READY and why.
func (n *Node) awaitReady(ctx context.Context) (string, error) {
	checks, ok := n.checks(ctx)
	b, err := json.MarshalIndent(n.addrs, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(n.opts.DataDir, "run", "addresses.json")
	if err := writeFileAtomic(path, append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	if !ok {
		var bad []string
		for name, state := range checks {
			if state != "ok" {
				bad = append(bad, name+": "+state)
			}
		}
		sort.Strings(bad)
		n.logger.Error("node serving but NOT READY", "checks", checks)
		return path + "; NOT READY: " + strings.Join(bad, "; "), nil
	}
	return path, nil
}

func (n *Node) checks(ctx context.Context) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out := map[string]string{}
	ok := true
	set := func(name string, err error) {
		if err != nil {
			out[name] = err.Error()
			ok = false
			return
		}
		out[name] = "ok"
	}
	set("store", n.db.Ping(ctx))
	set("keys", n.keys.Check(ctx))
	for _, s := range n.started {
		set(s.Name(), s.Ready(ctx))
	}
	if n.tls != nil && n.tls.provider != nil {
		set("https-certificate", n.tls.ready(n.opts.Clock.Now()))
	}
	if n.draining.Load() {
		out["node"] = "shutting down"
		ok = false
	}
	return out, ok
}

func (n *Node) healthz(w http.ResponseWriter, r *http.Request) error {
	return httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

func (n *Node) readyz(w http.ResponseWriter, r *http.Request) error {
	checks, ok := n.checks(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	status, word := http.StatusOK, "ready"
	if !ok {
		status, word = http.StatusServiceUnavailable, "not ready"
	}
	return httpx.WriteJSON(w, status, map[string]any{"status": word, "checks": checks})
}

// Routes returns the declared routes of the HTTP and HTTPS listeners.
func (n *Node) Routes() (public, api []authz.RouteInfo) { return n.public.Routes(), n.api.Routes() }

// Addresses returns the listeners' addresses.
func (n *Node) Addresses() Addresses { return n.addrs }

// Env returns what services were given (for tests and admin commands).
func (n *Node) Env() *Env { return n.env }

// Errors delivers fatal listener errors.
func (n *Node) Errors() <-chan error { return n.errc }

// Shutdown stops accepting connections, lets in-flight requests finish up to
// http.shutdown_timeout, stops the services in reverse order, records the
// stop in the audit log and closes the store. It is safe to call twice.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() { n.stopErr = n.release(ctx) })
	return n.stopErr
}

func (n *Node) release(ctx context.Context) error {
	n.draining.Store(true)
	// The renewal check calls a service; it ends before the services stop.
	n.stopTLSRefresh()
	timeout := 4 * time.Second
	if n.cfg != nil {
		timeout = n.cfg.HTTP.ShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var errs []error
	var wg sync.WaitGroup
	for _, srv := range n.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(sctx); err != nil {
				// Requests still running at the timeout are cut off; that is
				// the contract (CONTRACT.md: finish in-flight requests up to a
				// timeout, then exit 0), so it is logged, not returned.
				if n.logger != nil {
					n.logger.Warn("drain timeout: closing remaining connections", "error", err)
				}
				_ = srv.Close()
			}
		}()
	}
	wg.Wait()
	for i := len(n.started) - 1; i >= 0; i-- {
		if err := n.started[i].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", n.started[i].Name(), err))
		}
	}
	if n.db != nil && n.env != nil {
		if _, err := n.env.Audit.Write(ctx, n.db, audit.Record{Actor: "system", Action: "node.stop", Object: "node/" + n.cfg.Node.Name, Outcome: audit.Success}); err != nil {
			errs = append(errs, err)
		}
	}
	if n.cpStop != nil {
		// The final checkpoint covers node.stop; it needs the audit key, so
		// it runs before the key backends close.
		n.cpStop()
		<-n.cpDone
	}
	if n.keys != nil {
		if err := n.keys.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close keys: %w", err))
		}
	}
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	if n.logger != nil && len(errs) > 0 {
		n.logger.Error("shutdown", "error", errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes via a temporary file, fsync and rename, so readers
// never see a half-written file.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename is durable only once the directory is synced.
	return fsx.SyncPath(filepath.Dir(path))
}
