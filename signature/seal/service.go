package seal

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/httpx"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/revwatch"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/signature"
)

//go:embed migrations
var migrations embed.FS

// keyService owns the seal maker's key in the key manager (ARCHITECTURE.md
// §3: the CA key cannot sign seals, the maker key cannot sign anything
// through another service).
const keyService = "seal"

// MakeKind is the dual-control kind of seal applications.
const MakeKind = "seal.make"

// Errors of the service.
var (
	ErrNotFound = fmt.Errorf("seal: not found: %w", httpx.ErrNotFound)
	ErrRequest  = fmt.Errorf("seal: invalid request: %w", httpx.ErrBadRequest)
	ErrPolicy   = fmt.Errorf("seal: refused: %w", httpx.ErrPolicy)
	// ErrForbidden refuses a use of a seal by someone it is not for.
	ErrForbidden = fmt.Errorf("seal: refused: %w", httpx.ErrForbidden)
	ErrConflict  = fmt.Errorf("seal: conflict: %w", httpx.ErrConflict)
)

// Issuer issues the seal maker's certificate (ca.Service.IssueFor).
type Issuer interface {
	IssueFor(ctx context.Context, caID, profile string, csrDER []byte, record map[string]string, actor string) (der []byte, chain [][]byte, err error)
}

// Authorities lists the platform's CA certificates (trust anchors and
// intermediates for verification).
type Authorities interface {
	CACertificates() []*smx509.Certificate
}

// Seal statuses in the registry.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusRevoked   = "revoked"
	StatusExpired   = "expired" // derived from validEnd, never stored
)

// Service is the electronic seal service.
type Service struct {
	issuer  Issuer
	cas     Authorities
	stamper signature.Stamper
	env     *node.Env
	cfg     config.SealConfig
	font    *Font
	fetch   signature.Fetcher
	// makerAnchors are the issuers of foreign seal makers
	// (seal.maker_anchors), read at start.
	makerAnchors []*smx509.Certificate

	// makerMu serialises making and renewing the maker; maker is the
	// active one (nil until the first seal), replaced whole (maker.go).
	makerMu sync.Mutex
	maker   atomic.Pointer[maker]
	// renewErr is why the last renewal failed (nil once one succeeds);
	// stuck is set once it was logged that no CA can renew the maker.
	renewErr atomic.Pointer[string]
	stuck    atomic.Bool
	// revKick wakes the loop; revPoll is how often it runs (makerPass);
	// passErr is the last failure it logged (the loop's alone).
	revKick chan struct{}
	revPoll time.Duration
	passErr string
	stop    func()
	done    chan struct{}

	sessions sessions
}

var (
	_ node.Service      = (*Service)(nil)
	_ node.Migrator     = (*Service)(nil)
	_ node.APIRouter    = (*Service)(nil)
	_ node.PublicRouter = (*Service)(nil)
)

// New returns the service; issuer certifies the maker key, cas gives the
// trust anchors, stamper (may be nil) time-stamps seal signatures.
func New(issuer Issuer, cas Authorities, stamper signature.Stamper) *Service {
	return &Service{issuer: issuer, cas: cas, stamper: stamper, sessions: sessions{m: map[string]*session{}}}
}

// Name implements node.Service.
func (s *Service) Name() string { return "seal" }

// Migrations implements node.Migrator.
func (s *Service) Migrations() []store.Migrations {
	return []store.Migrations{store.EmbeddedMigrations("seal", migrations, "migrations")}
}

// Start implements node.Service.
func (s *Service) Start(ctx context.Context, env *node.Env) error {
	if s.issuer == nil || s.cas == nil {
		return errors.New("seal: no certificate issuer or CA list wired in")
	}
	s.env, s.cfg = env, env.Config.Seal
	if s.cfg.Font != "" {
		b, err := os.ReadFile(s.cfg.Font)
		if err != nil {
			return fmt.Errorf("seal: font: %w", err)
		}
		if s.font, err = ParseFont(b); err != nil {
			return err
		}
	}
	anchors, err := loadMakerAnchors(s.cfg.MakerAnchors, s.cas.CACertificates())
	if err != nil {
		return err
	}
	s.makerAnchors = anchors
	s.fetch = &signature.HTTPFetcher{Client: httpClient()}
	// A maker whose certificate chain was revoked (while the node was down,
	// say) makes no seal: the hook marks it on a revocation in this
	// process, the loop's poll on one in another, Make reads the CA's
	// record before each seal, and this pass before the first.
	s.revKick = make(chan struct{}, 1)
	if s.revPoll == 0 {
		s.revPoll = revocationPoll
	}
	if n, ok := s.issuer.(revwatch.Notifier); ok {
		n.OnRevoked(s.revokedHook)
	}
	s.makerPass(audit.WithActor(ctx, "system"))
	loopCtx, cancel := context.WithCancel(audit.WithActor(context.WithoutCancel(ctx), "system"))
	s.stop, s.done = cancel, make(chan struct{})
	go s.loop(loopCtx)
	return nil
}

// Ready implements node.Service: not ready while the seal maker cannot
// make seals (its certificate revoked or ended and not yet renewed).
func (s *Service) Ready(ctx context.Context) error {
	if s.env == nil {
		return errors.New("seal: not started")
	}
	return s.makerReady()
}

// Stop implements node.Service.
func (s *Service) Stop(ctx context.Context) error {
	if s.stop == nil {
		return nil
	}
	s.stop()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("seal: stop: %w", ctx.Err())
	}
}

// Verifier returns the signature verifier with the platform's anchors and
// online revocation checking.
func (s *Service) Verifier() *signature.Verifier {
	v := &signature.Verifier{Fetch: s.fetch, Now: s.env.Clock.Now}
	for _, c := range s.cas.CACertificates() {
		if string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			v.Roots = append(v.Roots, c)
		} else {
			v.Intermediates = append(v.Intermediates, c)
		}
	}
	return v
}

// joinDER and splitDER keep a list of DER certificates in one column:
// each is a complete TLV, so concatenation is unambiguous.
func joinDER(list [][]byte) []byte {
	var out []byte
	for _, d := range list {
		out = append(out, d...)
	}
	return out
}

func splitDER(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		c, err := smx509.ParseCertificate(b)
		if err == nil {
			out = append(out, c.Raw)
			b = b[len(c.Raw):]
			continue
		}
		// Find the first certificate's length from its header.
		n := derLen(b)
		if n <= 0 || n > len(b) {
			break
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// derLen returns the length of the DER element at the start of b.
func derLen(b []byte) int {
	if len(b) < 2 {
		return -1
	}
	l := int(b[1])
	if l < 0x80 {
		return 2 + l
	}
	n := l & 0x7f
	if n == 0 || n > 4 || len(b) < 2+n {
		return -1
	}
	l = 0
	for _, c := range b[2 : 2+n] {
		l = l<<8 | int(c)
	}
	return 2 + n + l
}

func newID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

// timeFormat writes times in the tables: fixed width, so that text order
// is time order (RFC3339Nano drops trailing zeros and would not be).
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"
