package tsa

import (
	"context"
	"embed"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/revwatch"
	"github.com/govtrust/govtrust/internal/store"
)

//go:embed migrations
var migrations embed.FS

// keyService owns the TSA keys in the key manager (key separation).
const keyService = "tsa"

// Errors of the TSA's HTTP API.
var (
	ErrNotFound = fmt.Errorf("tsa: not found: %w", httpx.ErrNotFound)
	ErrRequest  = fmt.Errorf("tsa: invalid request: %w", httpx.ErrBadRequest)
)

// Issuer issues certificates for the TSA's units. cmd/govtrust wires the
// CA service (ca.Service.IssueFor) in; the TSA never imports the CA.
type Issuer interface {
	IssueFor(ctx context.Context, caID, profile string, csrDER []byte, record map[string]string, actor string) (der []byte, chain [][]byte, err error)
}

// spec is one token profile.
type spec struct {
	name string
	// ca is the issuing CA of the unit certificates.
	ca  string
	alg hsm.Algorithm
	cn  string
}

// DefaultProfile answers POST /tsa.
const DefaultProfile = "sm2"

var specs = []spec{
	{name: "sm2", ca: "sm2-issuing", alg: hsm.SM2, cn: "govtrust TSA SM2"},
	{name: "ecdsa", ca: "ecdsa-issuing", alg: hsm.ECDSAP256, cn: "govtrust TSA ECDSA"},
}

func specByName(name string) *spec {
	for i := range specs {
		if specs[i].name == name {
			return &specs[i]
		}
	}
	return nil
}

// Service is the time-stamping authority.
type Service struct {
	issuer Issuer
	env    *node.Env
	cfg    config.TSAConfig

	policies []asn1.ObjectIdentifier
	units    atomic.Pointer[unitSet]
	rollMu   sync.Mutex
	rec      *recorder
	clock    *timeWatch

	// revKick wakes the loop to roll over a unit marked revoked;
	// revPoll is how often the loop reads the units' revocation status.
	revKick chan struct{}
	revPoll time.Duration
	// revFailing is set while the status cannot be read (revocationPass,
	// which only Start and then the loop run).
	revFailing bool
	// pubMu orders the CA's revocation hook and the publication of a
	// unit that may sign (publish): each revocation is seen by one or
	// the other.
	pubMu sync.Mutex

	stop func()
	done chan struct{}
}

var (
	_ node.Service      = (*Service)(nil)
	_ node.Migrator     = (*Service)(nil)
	_ node.APIRouter    = (*Service)(nil)
	_ node.PublicRouter = (*Service)(nil)
)

// New returns the TSA; issuer makes its certificates (the CA service).
func New(issuer Issuer) *Service { return &Service{issuer: issuer} }

// Name implements node.Service.
func (s *Service) Name() string { return "tsa" }

// Migrations implements node.Migrator.
func (s *Service) Migrations() []store.Migrations {
	return []store.Migrations{store.EmbeddedMigrations("tsa", migrations, "migrations")}
}

// Start loads or creates the units (rolling over those due), checks the
// clock once and starts the watch loop.
func (s *Service) Start(ctx context.Context, env *node.Env) error {
	s.env = env
	s.cfg = config.Defaults().TSA
	mode := config.ModeDev
	if env.Config != nil {
		s.cfg, mode = env.Config.TSA, env.Config.Mode
	}
	for _, p := range s.cfg.Policies {
		oid, err := parseOID(p)
		if err != nil {
			return fmt.Errorf("tsa.policies: %w", err)
		}
		// Every token encodes its policy: one DER cannot encode would
		// fail every request while the node said it was ready.
		if _, err := asn1.Marshal(oid); err != nil {
			return fmt.Errorf("tsa.policies: %s cannot be encoded (the first arc 0, 1 or 2, the second below 40 under 0 or 1: X.690 §8.19.4): %w", p, err)
		}
		if mode == config.ModeProduction && exampleArc(oid) {
			// Tokens name their policy for ever: one from the example arc
			// would say nothing about whose rules they were issued under.
			return fmt.Errorf("tsa.policies: %s is under the example arc 2.999 (ITU-T X.660); production needs the organisation's own TSA policy OID", oid)
		}
		s.policies = append(s.policies, oid)
	}
	if s.issuer == nil {
		return errors.New("tsa: no certificate issuer wired in")
	}
	ctx = audit.WithActor(ctx, "system")
	s.revKick = make(chan struct{}, 1)
	if s.revPoll == 0 {
		s.revPoll = revocationPoll
	}
	if err := s.loadUnits(ctx); err != nil {
		return err
	}
	// A unit whose certificate was revoked (while the node was down, say)
	// never signs: the hook marks it on a revocation in this process, the
	// loop's poll on one in another, and this check before the first token.
	if n, ok := s.issuer.(revwatch.Notifier); ok {
		n.OnRevoked(s.revokedHook)
	}
	s.revocationPass(ctx)
	s.rollRevoked(ctx)
	s.rec = newRecorder(env.DB)
	s.clock = &timeWatch{servers: s.cfg.NTPServers, accuracy: s.cfg.Accuracy, interval: s.cfg.NTPInterval,
		now: env.Clock.Now, kick: make(chan struct{}, 1)}
	if len(s.cfg.NTPServers) == 0 {
		if mode == config.ModeDev {
			s.clock.trustSystem = true
			env.Logger.Warn("tsa: no NTP servers configured (tsa.ntp_servers); the system clock is trusted as it is (dev mode only)")
		} else {
			s.clock.noSource = "no time reference: tsa.ntp_servers is empty, which only dev mode accepts"
		}
	}
	if st := s.clock.poll(ctx); !st.ok {
		env.Logger.Error("tsa: time not available; requests get timeNotAvailable", "reason", st.reason)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop, s.done = cancel, make(chan struct{})
	go s.loop(loopCtx)
	return nil
}

// loop re-checks the clock every tsa.ntp_interval, sooner after a failed
// poll (timeWatch.retry: after 1 s, doubling up to the interval), and at
// once when a request saw the clock step (timeWatch.check); it rolls units
// over when they are due (rollReason) every tsa.ntp_interval, and reads
// the units' revocation status every revPoll and rolls a revoked unit over
// at once.
func (s *Service) loop(ctx context.Context) {
	defer close(s.done)
	prev := s.clock.get().ok
	wait, retrying := s.clock.retry(prev, 0)
	pt := time.NewTimer(wait)
	defer pt.Stop()
	t := time.NewTicker(s.cfg.NTPInterval)
	defer t.Stop()
	rt := time.NewTicker(s.revPoll)
	defer rt.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rt.C:
			s.revocationPass(ctx)
			continue
		case <-s.revKick:
			s.rollRevoked(ctx)
			continue
		case <-t.C:
			if err := s.rollDue(ctx); err != nil {
				s.env.Logger.Error("tsa: scheduled rollover failed; a unit keeps signing while its certificate is valid and its chain not revoked", "error", err)
			}
			continue
		case <-pt.C:
		case <-s.clock.kick:
		}
		st := s.clock.poll(ctx)
		if st.ok != prev {
			if st.ok {
				s.env.Logger.Info("tsa: time available again", "offset", st.offset)
			} else {
				s.env.Logger.Error("tsa: time not available; requests get timeNotAvailable", "reason", st.reason)
			}
			prev = st.ok
		}
		// The next poll is timed from this one, kicked or not: the
		// interval after a good poll, the next backoff after a failed one.
		if !retrying {
			wait = 0
		}
		wait, retrying = s.clock.retry(st.ok, wait)
		pt.Reset(wait)
	}
}

// Ready implements node.Service: every profile has a unit whose key
// resolves and whose certificate is valid now, and the time is trusted.
func (s *Service) Ready(ctx context.Context) error {
	set := s.units.Load()
	if set == nil || s.clock == nil {
		return errors.New("tsa: not started")
	}
	now := s.env.Clock.Now()
	for _, sp := range specs {
		u := set.active[sp.name]
		if u == nil {
			return fmt.Errorf("tsa %s: no active unit", sp.name)
		}
		if _, err := s.env.Keys.Signer(ctx, &hsm.SignerRequest{URI: u.keyURI, Service: keyService}); err != nil {
			return fmt.Errorf("tsa %s: key %s: %w", sp.name, u.keyURI, err)
		}
		if err := u.validAt(now); err != nil {
			return fmt.Errorf("%w; requests get systemFailure", err)
		}
		if why := u.revoked.Load(); why != nil {
			return errors.New(*why + "; requests get systemFailure until a rollover succeeds")
		}
	}
	if st := s.clock.check(); !st.ok {
		return errors.New("tsa: " + st.reason)
	}
	return nil
}

// Stop implements node.Service.
func (s *Service) Stop(ctx context.Context) error {
	if s.rec != nil {
		defer s.rec.close()
	}
	if s.stop == nil {
		return nil
	}
	s.stop()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tsa: stop: %w", ctx.Err())
	}
}

// parseOID parses a dotted OID (config validated its form).
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a dotted OID", s)
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("%q is not a dotted OID", s)
	}
	return oid, nil
}

// exampleArc reports whether oid is under joint-iso-itu-t(2) example(999),
// the arc X.660 sets aside for examples, as the shipped default policy is.
func exampleArc(oid asn1.ObjectIdentifier) bool {
	return len(oid) >= 2 && oid[0] == 2 && oid[1] == 999
}
