package node

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/pkcs11"
	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/store"
)

// Keys is the platform's key manager: the software keystore and every
// configured PKCS#11 token behind one hsm.Router that audits key creation and
// deletion.
type Keys struct {
	*hsm.Router
	Soft   *soft.KeyManager
	Tokens []*Token
}

// KeysOptions are what OpenKeys needs besides the configuration.
type KeysOptions struct {
	DB     *store.DB
	Audit  *audit.Log
	Logger *slog.Logger
	Clock  clock.Clock
}

// OpenKeys opens the software keystore and the PKCS#11 tokens of cfg. A
// token that cannot be opened does not stop the node: it stays mounted as
// unavailable, every use of its keys fails with the reason, and Check (so
// /readyz) reports it. Nothing ever falls back to software keys
// (ACCEPTANCE.md E-02).
func OpenKeys(ctx context.Context, cfg *config.Config, o KeysOptions) (*Keys, error) {
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	write := func(ctx context.Context, action, object, outcome string, details map[string]any) error {
		_, err := o.Audit.Write(ctx, o.DB, audit.Record{Actor: audit.ActorFrom(ctx), Action: action, Object: object, Outcome: outcome, Details: details})
		return err
	}
	softAudit := func(ctx context.Context, action, object, outcome string, details map[string]any) {
		switch action {
		case soft.ActionKeyCreate, soft.ActionKeyDelete:
			return // the router records these, and undoes what it cannot record
		}
		if err := write(ctx, action, object, outcome, details); err != nil {
			o.Logger.Error("audit write failed", "action", action, "error", err)
		}
	}
	sc := cfg.HSM.Soft
	creds := soft.Config{
		AllowDev:   sc.Unlock == config.UnlockDev && cfg.Mode == config.ModeDev,
		Production: cfg.Mode == config.ModeProduction,
		Audit:      softAudit, Logger: o.Logger, Now: o.Clock.Now,
	}
	switch sc.Unlock {
	case config.UnlockPassphrase:
		p, err := sc.Passphrase.Resolve()
		if err != nil {
			return nil, fmt.Errorf("hsm.soft.passphrase: %w", err)
		}
		creds.Passphrase = p
		defer clear(p)
	case config.UnlockShares:
		for i, ref := range sc.Shares {
			s, err := ref.Resolve()
			if err != nil {
				return nil, fmt.Errorf("hsm.soft.shares[%d]: %w", i, err)
			}
			creds.Shares = append(creds.Shares, strings.TrimSpace(string(s)))
		}
	}
	st := soft.NewSQLStore(o.DB)
	if sc.Unlock == config.UnlockPassphrase {
		// First run with a passphrase: create the keystore under it, so a
		// production node needs no separate ceremony for this mode. (Shamir
		// shares must come from `govtrust hsm init`, which prints them once.)
		status, err := soft.ReadStatus(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("software keystore: %w", err)
		}
		if !status.Initialized {
			if _, err := soft.Init(ctx, st, soft.InitRequest{Kind: soft.KindPassphrase, Passphrase: creds.Passphrase,
				Audit: softAudit, Logger: o.Logger, Now: o.Clock.Now}); err != nil && !errors.Is(err, soft.ErrInitialized) {
				return nil, fmt.Errorf("software keystore: %w", err)
			}
		}
	}
	sk, err := soft.Open(ctx, st, creds)
	if err != nil {
		return nil, fmt.Errorf("software keystore: %w", err)
	}
	k := &Keys{Router: hsm.NewRouter(), Soft: sk}
	k.Router.Audit = write
	k.Router.Mount(soft.Scheme, "", sk)
	for _, tc := range cfg.HSM.PKCS11 {
		t := &Token{cfg: tc, logger: o.Logger, audit: write}
		t.open(ctx)
		k.Tokens = append(k.Tokens, t)
		k.Router.Mount("pkcs11", tc.Token, t)
	}
	return k, nil
}

// Token is one configured PKCS#11 token. Until it opens it answers every
// call with the reason it could not; a missing module or token is retried
// at most every TokenRetry by Check, a wrong PIN never (retrying a wrong PIN
// would run down the token's PIN counter and lock it).
type Token struct {
	cfg    config.PKCS11Config
	logger *slog.Logger
	audit  hsm.AuditFunc

	mu      sync.Mutex
	km      *pkcs11.KeyManager
	err     error
	tried   time.Time
	lockout bool
}

// TokenRetry is how often an unavailable token is tried again.
const TokenRetry = 10 * time.Second

var (
	_ hsm.KeyManager = (*Token)(nil)
	_ hsm.Decrypter  = (*Token)(nil)
	_ hsm.KeyWrapper = (*Token)(nil)
	_ hsm.Checker    = (*Token)(nil)
)

// Name returns the token label.
func (t *Token) Name() string { return t.cfg.Token }

// Module returns the module path.
func (t *Token) Module() string { return t.cfg.Module }

func (t *Token) open(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.openLocked(ctx)
}

func (t *Token) openLocked(ctx context.Context) {
	t.tried = time.Now()
	pin, err := t.cfg.PIN.Resolve()
	if err != nil {
		t.err = fmt.Errorf("%w: token %s: PIN reference: %v", hsm.ErrUnavailable, t.cfg.Token, err)
		t.lockout = true
		return
	}
	km, err := pkcs11.New(ctx, pkcs11.Config{Module: t.cfg.Module, Token: t.cfg.Token, PIN: string(pin), Vendor: t.cfg.Vendor, MaxSessions: t.cfg.MaxSessions, CallTimeout: t.cfg.CallTimeout})
	clear(pin)
	if err != nil {
		t.err = fmt.Errorf("token %s: %w", t.cfg.Token, err)
		t.lockout = errors.Is(err, hsm.ErrPIN)
		outcome := audit.Failure
		_ = t.audit(ctx, "hsm.pkcs11.open", "pkcs11:token="+t.cfg.Token, outcome, map[string]any{"module": t.cfg.Module, "error": err.Error()})
		t.logger.Error("PKCS#11 token unavailable; services using its keys are not ready", "token", t.cfg.Token, "module", t.cfg.Module, "error", err)
		return
	}
	t.km, t.err = km, nil
	_ = t.audit(ctx, "hsm.pkcs11.open", "pkcs11:token="+t.cfg.Token, audit.Success, map[string]any{"module": t.cfg.Module})
}

// get returns the open key manager or why there is none.
func (t *Token) get() (*pkcs11.KeyManager, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.km == nil {
		return nil, t.err
	}
	return t.km, nil
}

// Check implements hsm.Checker, retrying an unavailable token now and then.
func (t *Token) Check(ctx context.Context) error {
	t.mu.Lock()
	if t.km == nil && !t.lockout && time.Since(t.tried) >= TokenRetry {
		t.openLocked(ctx)
	}
	km, err, lockout := t.km, t.err, t.lockout
	t.mu.Unlock()
	if km == nil {
		if lockout {
			return fmt.Errorf("%w (not retried: fix the PIN and restart)", err)
		}
		return err
	}
	return km.Check(ctx)
}

// CreateKey implements hsm.KeyManager.
func (t *Token) CreateKey(ctx context.Context, req *hsm.CreateKeyRequest) (*hsm.KeyInfo, error) {
	km, err := t.get()
	if err != nil {
		return nil, err
	}
	return km.CreateKey(ctx, req)
}

// PublicKey implements hsm.KeyManager.
func (t *Token) PublicKey(ctx context.Context, req *hsm.PublicKeyRequest) (crypto.PublicKey, error) {
	km, err := t.get()
	if err != nil {
		return nil, err
	}
	return km.PublicKey(ctx, req)
}

// Signer implements hsm.KeyManager.
func (t *Token) Signer(ctx context.Context, req *hsm.SignerRequest) (crypto.Signer, error) {
	km, err := t.get()
	if err != nil {
		return nil, err
	}
	return km.Signer(ctx, req)
}

// Decrypter implements hsm.Decrypter.
func (t *Token) Decrypter(ctx context.Context, req *hsm.DecrypterRequest) (crypto.Decrypter, error) {
	km, err := t.get()
	if err != nil {
		return nil, err
	}
	return km.Decrypter(ctx, req)
}

// Wrap implements hsm.KeyWrapper.
func (t *Token) Wrap(ctx context.Context, req *hsm.WrapRequest) ([]byte, error) {
	km, err := t.get()
	if err != nil {
		return nil, err
	}
	return km.Wrap(ctx, req)
}

// Unwrap implements hsm.KeyWrapper.
func (t *Token) Unwrap(ctx context.Context, req *hsm.WrapRequest) ([]byte, error) {
	km, err := t.get()
	if err != nil {
		return nil, err
	}
	return km.Unwrap(ctx, req)
}

// ListKeys implements hsm.KeyManager; an unavailable token lists nothing
// and says why.
func (t *Token) ListKeys(ctx context.Context, req *hsm.ListKeysRequest) ([]*hsm.KeyInfo, error) {
	km, err := t.get()
	if err != nil {
		return nil, err
	}
	return km.ListKeys(ctx, req)
}

// DeleteKey implements hsm.KeyManager.
func (t *Token) DeleteKey(ctx context.Context, req *hsm.DeleteKeyRequest) error {
	km, err := t.get()
	if err != nil {
		return err
	}
	return km.DeleteKey(ctx, req)
}

// Close implements hsm.KeyManager.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.km == nil {
		return nil
	}
	err := t.km.Close()
	t.km, t.err = nil, fmt.Errorf("%w: token %s closed", hsm.ErrUnavailable, t.cfg.Token)
	t.lockout = true
	return err
}
