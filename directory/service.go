package directory

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/jimlambrt/gldap"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
)

// Source is what the publisher needs of the certificate authority: its
// outbox and the objects the events name. cmd/govtrust wires the CA's read
// API (package ca, outbox.go) in; the directory does not import the CA
// (ARCHITECTURE.md §1). Every method works in the caller's transaction, so
// that the directory's writes and the marking of the events it consumed
// commit together.
type Source interface {
	// Pending returns up to limit events not yet marked published, oldest
	// first.
	Pending(ctx context.Context, q store.Querier, limit int) ([]Event, error)
	// MarkPublished marks the events ids consumed.
	MarkPublished(ctx context.Context, tx *store.Tx, ids []int64, at time.Time) error
	// Certificate returns issuer/serial, or nil when the CA has no such
	// certificate.
	Certificate(ctx context.Context, q store.Querier, issuer, serial string) (*Certificate, error)
	// Authority returns the CA id with its newest CRLs, or nil.
	Authority(ctx context.Context, q store.Querier, id string) (*Authority, error)
}

// Outbox event kinds (the CA's ca_outbox.event).
const (
	EventIssued       = "issued"
	EventRevoked      = "revoked"
	EventCRLPublished = "crl_published"
	EventCAAdded      = "ca_added"
	EventCrossAdded   = "cross_added"
)

// Event is one outbox event.
type Event struct {
	ID     int64
	Kind   string
	Issuer string
	Serial string
}

// Certificate is an issued certificate.
type Certificate struct {
	DER     []byte
	Revoked bool
	// RequesterOrg is the organisation of the account that requested the
	// certificate (empty for the platform's own). The publisher files the
	// certificate under a person or application only of that
	// organisation: see holders.
	RequesterOrg string
}

// Authority is a CA: its certificate and newest CRLs, the bytes its HTTP
// distribution points serve.
type Authority struct {
	ID       string
	Cert     []byte
	CRL      []byte // newest full CRL, nil before the first
	DeltaCRL []byte // newest delta CRL, nil when none
	// Cross holds the cross-certificates other CAs issued to this one,
	// published as the forward elements of crossCertificatePair.
	Cross [][]byte
}

// Service is the directory: the embedded LDAP server, its store, and the
// publishers that keep it and external LDAP servers in step with the CA.
type Service struct {
	src Source

	env    *node.Env
	cfg    config.DirectoryConfig
	baseDN string
	base   string // normalised base DN
	tree   *tree
	public map[string]bool
	owner  string // this process's lease owner name

	// treeSync orders the changes to tree: the batches of this process's
	// writers and the reloads from the database (tree.mu only makes each
	// change atomic for the searches).
	treeSync sync.Mutex

	// loopbackOnly: listen.ldap is a loopback address, so every peer is
	// on this machine and a simple bind over plain LDAP exposes no token.
	loopbackOnly atomic.Bool

	sessMu   sync.Mutex
	sessions map[sessionKey]*session
	servers  []*gldap.Server

	stopLoops context.CancelFunc
	loops     sync.WaitGroup
	wake      chan struct{}
	pubErr    atomic.Pointer[string]
	targets   []*target

	// Published counts the outbox events consumed by this process (for
	// tests and the report).
	Published atomic.Int64
}

var (
	_ node.Service    = (*Service)(nil)
	_ node.Migrator   = (*Service)(nil)
	_ node.LDAPServer = (*Service)(nil)
	_ node.APIRouter  = (*Service)(nil)
)

// New returns the directory service fed by src (nil: no publisher, the
// directory holds only what is written to it).
func New(src Source) *Service {
	return &Service{src: src, tree: newTree(), sessions: map[sessionKey]*session{}, wake: make(chan struct{}, 1)}
}

// Name implements node.Service.
func (s *Service) Name() string { return "directory" }

// Migrations implements node.Migrator.
func (s *Service) Migrations() []store.Migrations { return []store.Migrations{Migrations} }

// BaseDN returns the directory's base DN.
func (s *Service) BaseDN() string { return s.baseDN }

// Start loads the entries, creates the skeleton of the tree on first run,
// and starts the publishers.
func (s *Service) Start(ctx context.Context, env *node.Env) error {
	s.env = env
	s.cfg = env.Config.Directory
	if !config.ValidBaseDN(s.cfg.BaseDN) {
		return fmt.Errorf("directory: base DN %q is not valid", s.cfg.BaseDN)
	}
	s.baseDN = s.cfg.BaseDN
	var err error
	if s.base, _, err = normalizeDN(s.baseDN); err != nil {
		return err
	}
	s.public = map[string]bool{}
	for _, a := range s.cfg.PublicAttributes {
		s.public[schemaName(a)] = true
	}
	// One LDAP message may not declare more than this (RFC 4511 §5.1
	// leaves the limit to the server); asn1-ber checks it before
	// allocating. The limit is process-wide in asn1-ber, so the
	// publisher's go-ldap client reads only small answers (attribute
	// types) from external servers.
	ber.MaxPacketLengthBytes = s.cfg.MaxRequestBytes
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	s.owner = env.Config.Node.Name + "/" + hex.EncodeToString(rnd[:])
	if err := s.reload(ctx); err != nil {
		return err
	}
	if err := s.indexExisting(ctx); err != nil {
		return err
	}
	if err := s.ensureSkeleton(ctx); err != nil {
		return err
	}
	for _, c := range s.cfg.External {
		t, err := newTarget(c, s)
		if err != nil {
			return err
		}
		s.targets = append(s.targets, t)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopLoops = cancel
	s.loops.Add(1)
	go func() { defer s.loops.Done(); s.publishLoop(lctx) }()
	for _, t := range s.targets {
		s.loops.Add(1)
		go func() { defer s.loops.Done(); t.loop(lctx) }()
	}
	return nil
}

// Ready implements node.Service: the publisher's last attempt must have
// worked (external servers being down does not make the node unready:
// their queues wait).
func (s *Service) Ready(ctx context.Context) error {
	if s.env == nil {
		return errors.New("directory: not started")
	}
	if e := s.pubErr.Load(); e != nil && *e != "" {
		return fmt.Errorf("directory: publisher: %s", *e)
	}
	return nil
}

// Stop implements node.Service: it stops the LDAP servers and the
// publishers. gldap's Stop waits for every connection to end, so the
// connections are closed meanwhile, those accepted during the wait too: an
// idle client no longer holds the node's shutdown for directory.idle_timeout.
func (s *Service) Stop(ctx context.Context) error {
	var errs []error
	for _, srv := range s.servers {
		done := make(chan error, 1)
		go func() { done <- srv.Stop() }()
		s.closeConns()
		tick := time.NewTicker(100 * time.Millisecond)
	wait:
		for {
			select {
			case err := <-done:
				if err != nil {
					errs = append(errs, err)
				}
				break wait
			case <-tick.C:
				s.closeConns()
			}
		}
		tick.Stop()
	}
	s.servers = nil
	if s.stopLoops != nil {
		s.stopLoops()
		s.loops.Wait()
		s.stopLoops = nil
	}
	return errors.Join(errs...)
}

// Wake makes the publisher look at the outbox now instead of at its next
// interval.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// reload replaces the in-memory tree with the stored entries.
func (s *Service) reload(ctx context.Context) error {
	s.treeSync.Lock()
	defer s.treeSync.Unlock()
	return s.reloadLocked(ctx)
}

// reloadLocked is reload with treeSync held. The snapshot it reads was
// taken after every batch the tree shows had committed (they are applied
// under treeSync, after their commit), so it never takes the tree back.
func (s *Service) reloadLocked(ctx context.Context) error {
	es, v, err := loadAll(ctx, s.env.DB)
	if err != nil {
		return err
	}
	s.tree.reset(es, v)
	return nil
}

// resync reloads the tree when another process changed the directory.
func (s *Service) resync(ctx context.Context) error {
	var v int64
	if err := s.env.DB.Read(ctx, func(q store.Querier) error {
		return q.QueryRow(ctx, "SELECT version FROM dir_meta WHERE id = 1").Scan(&v)
	}); err != nil {
		return fmt.Errorf("directory: version: %w", err)
	}
	s.treeSync.Lock()
	defer s.treeSync.Unlock()
	s.tree.mu.RLock()
	have := s.tree.version
	s.tree.mu.RUnlock()
	if v == have {
		return nil
	}
	return s.reloadLocked(ctx)
}

// write runs fn in a directory write transaction, appends rec to the audit
// log in the same transaction when rec.Action is set, and applies the
// changes to the in-memory tree once committed.
func (s *Service) write(ctx context.Context, rec audit.Record, fn func(b *batch) error) error {
	var b *batch
	err := s.env.DB.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if b, err = begin(ctx, tx, s.env.Clock.Now()); err != nil {
			return err
		}
		if err := fn(b); err != nil {
			return err
		}
		if err := indexHolders(ctx, b); err != nil {
			return err
		}
		if rec.Action != "" {
			if _, err := s.env.Audit.Append(ctx, tx, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.toTree(ctx, b)
	for _, t := range s.targets {
		t.poke()
	}
	return err
}

// toTree brings the in-memory tree up to committed batch b. Writers of
// this process commit one at a time but reach here in any order, so the
// tree's version decides, under treeSync: at b.version-1 the tree takes
// b's changes; at b.version or past it, it already shows them (a reload
// or a later batch's reload read them) and an older batch applied over it
// would bring back what a later one removed (a revoked certificate); further
// behind, it misses another writer's batch, of this process or another,
// and is reloaded.
func (s *Service) toTree(ctx context.Context, b *batch) error {
	ups := make([]*Entry, 0, len(b.upserts))
	for _, n := range b.order {
		if e, ok := b.upserts[n]; ok && !slices.Contains(ups, e) {
			ups = append(ups, e)
		}
	}
	dels := make([]string, 0, len(b.deletes))
	for n := range b.deletes {
		dels = append(dels, n)
	}
	s.treeSync.Lock()
	defer s.treeSync.Unlock()
	if have, ok := s.tree.applyNext(ups, dels, b.version); ok || have >= b.version {
		return nil
	}
	return s.reloadLocked(ctx)
}

// ensureSkeleton creates the base entry and ou=ca, ou=departments and
// ou=services when they are missing.
func (s *Service) ensureSkeleton(ctx context.Context) error {
	want := []string{s.baseDN, "ou=ca," + s.baseDN, "ou=departments," + s.baseDN, "ou=services," + s.baseDN}
	missing := false
	for _, dn := range want {
		n, _, _ := normalizeDN(dn)
		if s.tree.get(n) == nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	rec := audit.Record{Actor: "system", Action: "directory.init", Object: "ldap/" + s.baseDN, Outcome: audit.Success}
	return s.write(ctx, rec, func(b *batch) error {
		for i, dn := range want {
			n, _, _ := normalizeDN(dn)
			if e, err := b.get(ctx, n); err != nil || e != nil {
				if err != nil {
					return err
				}
				continue
			}
			var e *Entry
			if i == 0 {
				e = s.baseEntry()
			} else {
				var err error
				if e, err = newEntry(dn, KindContainer, "top", "organizationalUnit"); err != nil {
					return err
				}
				e.setStr("ou", strings.TrimPrefix(strings.SplitN(dn, ",", 2)[0], "ou="))
			}
			if err := b.put(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// baseEntry is the entry of the base DN, by the type of its first RDN.
func (s *Service) baseEntry() *Entry {
	first := strings.SplitN(s.baseDN, ",", 2)[0]
	attr, val, _ := strings.Cut(first, "=")
	var e *Entry
	switch strings.ToLower(attr) {
	case "dc":
		e, _ = newEntry(s.baseDN, KindContainer, "top", "dcObject", "organization")
		e.setStr("dc", val)
		e.setStr("o", val)
	case "o":
		e, _ = newEntry(s.baseDN, KindContainer, "top", "organization")
		e.setStr("o", val)
	default:
		e, _ = newEntry(s.baseDN, KindContainer, "top", "organizationalUnit")
		e.setStr("ou", val)
	}
	return e
}

// ServeLDAP implements node.LDAPServer: LDAP with StartTLS on addr, and
// LDAPS on directory.ldaps when configured.
func (s *Service) ServeLDAP(ctx context.Context, addr string, tlsConfig *tls.Config) (string, error) {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	s.loopbackOnly.Store(host == "localhost" || (ip != nil && ip.IsLoopback()))
	got, err := s.serve(ctx, 0, addr, tlsConfig, nil)
	if err != nil {
		return "", err
	}
	if s.cfg.LDAPS != "" && tlsConfig != nil {
		if _, err := s.serve(ctx, 1, s.cfg.LDAPS, tlsConfig, tlsConfig); err != nil {
			return "", fmt.Errorf("directory.ldaps %s: %w", s.cfg.LDAPS, err)
		}
	}
	return got, nil
}

// serve runs one gldap server on addr. gldap binds the address itself, so
// port 0 is resolved first by binding and releasing a free port.
func (s *Service) serve(ctx context.Context, idx int, addr string, startTLS, ldaps *tls.Config) (string, error) {
	if host, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", err
		}
		addr = net.JoinHostPort(host, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
		ln.Close()
	}
	srv, err := s.newServer(idx, startTLS, ldaps != nil)
	if err != nil {
		return "", err
	}
	errc := make(chan error, 1)
	go func() {
		var opts []gldap.Option
		if ldaps != nil {
			opts = append(opts, gldap.WithTLSConfig(ldaps))
		}
		errc <- srv.Run(addr, opts...)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-errc:
			if err == nil {
				err = errors.New("server stopped")
			}
			return "", err
		default:
		}
		if srv.Ready() {
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				s.servers = append(s.servers, srv)
				return addr, nil
			}
		}
		if time.Now().After(deadline) {
			_ = srv.Stop()
			return "", fmt.Errorf("LDAP listener %s did not come up", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closeConns closes the network connection of every LDAP session.
func (s *Service) closeConns() {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	for _, ss := range s.sessions {
		if ss.conn != nil {
			ss.conn.close()
		}
	}
}
