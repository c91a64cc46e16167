package soft

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/sm4"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/hkdf"

	"github.com/govtrust/govtrust/hsm"
)

const (
	masterKeyLen = 32
	kekLen       = 16 // SM4 key
	checkKeyLen  = 32 // HMAC-SM3 key
	saltLen      = 16 // RFC 9106 §3.1 recommends 128 bits
	nonceLen     = 12 // GCM standard nonce
	checkInput   = "govtrust/hsm/soft/v1 master-key check"
	sealMasterAD = "govtrust-soft-master|passphrase|v1"
	// MinPassphraseLen is the shortest passphrase Init accepts.
	MinPassphraseLen = 12
)

// subkey derives a per-purpose key from the master key with HKDF-SM3
// (RFC 5869; no salt: the master key is already uniformly random).
func subkey(master []byte, purpose string, n int) []byte {
	out := make([]byte, n)
	r := hkdf.New(sm3.New, master, nil, []byte("govtrust/hsm/soft/v1/"+purpose))
	if _, err := io.ReadFull(r, out); err != nil {
		// HKDF-SM3 can produce 255*32 bytes; we ask for at most 32.
		panic("hsm/soft: hkdf: " + err.Error())
	}
	return out
}

// checkValue is the key check value of a master key.
func checkValue(master []byte) []byte {
	k := subkey(master, "check", checkKeyLen)
	defer clear(k)
	m := hmac.New(sm3.New, k)
	m.Write([]byte(checkInput))
	return m.Sum(nil)
}

// newSM4GCM returns SM4-GCM (GB/T 32907 block cipher, NIST SP 800-38D mode).
func newSM4GCM(key []byte) (cipher.AEAD, error) {
	b, err := sm4.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("hsm/soft: sm4: %w", err)
	}
	return cipher.NewGCM(b)
}

// passphraseKey derives the key that seals the master key in passphrase mode.
func passphraseKey(pass []byte, p KDFParams) []byte {
	return argon2.IDKey(pass, p.Salt, p.Time, p.MemoryKiB, p.Threads, kekLen)
}

// InitRequest asks Init to create the master key of an empty keystore.
type InitRequest struct {
	Kind Kind
	// Passphrase (KindPassphrase), at least MinPassphraseLen bytes. Init does
	// not keep it; the caller clears it.
	Passphrase []byte
	// KDF overrides DefaultKDF (tests); the salt is always generated.
	KDF *KDFParams
	// Shares and Threshold (KindShamir): m-of-n, 2 <= m <= n <= 255.
	Shares, Threshold int
	Audit             AuditFunc
	Logger            *slog.Logger
	Now               func() time.Time
}

// InitResult is what Init hands back once.
type InitResult struct {
	Kind Kind
	// Shares are the shamir shares, share i for custodian i+1. They are not
	// stored anywhere: print or write them once and clear them.
	Shares []string
}

// AuditFunc receives the keystore's audit records: key creation and
// deletion, initialisation, unlocks and failed unlocks. details never carry
// secrets.
type AuditFunc func(ctx context.Context, action, object, outcome string, details map[string]any)

// Audit actions and outcomes.
const (
	ActionInit      = "hsm.soft.init"
	ActionUnlock    = "hsm.soft.unlock"
	ActionKeyCreate = "hsm.soft.key.create"
	ActionKeyDelete = "hsm.soft.key.delete"
	OutcomeSuccess  = "success"
	OutcomeFailure  = "failure"
	masterObject    = "hsm/soft master key"
)

// Init creates the master key of an empty keystore. For KindShamir the
// result carries the shares; they exist nowhere else.
func Init(ctx context.Context, st Store, req InitRequest) (*InitResult, error) {
	now := time.Now
	if req.Now != nil {
		now = req.Now
	}
	rec, master, res, err := newMaster(req, now().UTC())
	clear(master)
	if err != nil {
		return nil, err
	}
	if err := st.PutMaster(ctx, rec); err != nil {
		audit(ctx, req.Audit, ActionInit, masterObject, OutcomeFailure, map[string]any{"kind": string(req.Kind), "error": err.Error()})
		return nil, fmt.Errorf("hsm/soft: init: %w", err)
	}
	d := map[string]any{"kind": string(rec.Kind)}
	if rec.Kind == KindShamir {
		d["threshold"], d["shares"] = rec.Threshold, rec.Shares
	}
	audit(ctx, req.Audit, ActionInit, masterObject, OutcomeSuccess, d)
	if rec.Kind == KindDev && req.Logger != nil {
		req.Logger.Warn("hsm/soft: created a DEV master key stored in clear in the database; never use this keystore in production")
	}
	return res, nil
}

// newMaster generates a master key and its record. The caller clears master.
func newMaster(req InitRequest, now time.Time) (*MasterRecord, []byte, *InitResult, error) {
	master := make([]byte, masterKeyLen)
	if _, err := rand.Read(master); err != nil {
		return nil, master, nil, fmt.Errorf("hsm/soft: master key: %w", err)
	}
	rec := &MasterRecord{Kind: req.Kind, Check: checkValue(master), Created: now}
	res := &InitResult{Kind: req.Kind}
	switch req.Kind {
	case KindPassphrase:
		if len(req.Passphrase) < MinPassphraseLen {
			return nil, master, nil, fmt.Errorf("hsm/soft: init: passphrase shorter than %d bytes", MinPassphraseLen)
		}
		p := DefaultKDF
		if req.KDF != nil {
			p = *req.KDF
		}
		if p.Time < 1 || p.MemoryKiB < 8*uint32(p.Threads) || p.Threads < 1 {
			return nil, master, nil, errors.New("hsm/soft: init: invalid argon2id parameters")
		}
		p.Salt = make([]byte, saltLen)
		if _, err := rand.Read(p.Salt); err != nil {
			return nil, master, nil, fmt.Errorf("hsm/soft: salt: %w", err)
		}
		sealed, err := sealMaster(master, req.Passphrase, p)
		if err != nil {
			return nil, master, nil, err
		}
		rec.KDF, rec.Sealed = p, sealed
	case KindShamir:
		set := make([]byte, shareSetLen)
		if _, err := rand.Read(set); err != nil {
			return nil, master, nil, fmt.Errorf("hsm/soft: share set: %w", err)
		}
		ys, err := split(rand.Reader, master, req.Shares, req.Threshold)
		if err != nil {
			return nil, master, nil, err
		}
		for i, y := range ys {
			res.Shares = append(res.Shares, encodeShare(share{set: set, threshold: req.Threshold, shares: req.Shares, x: byte(i + 1), y: y}))
			clear(y)
		}
		rec.ShareSet, rec.Threshold, rec.Shares = set, req.Threshold, req.Shares
	case KindDev:
		rec.DevKey = append([]byte(nil), master...)
	default:
		return nil, master, nil, fmt.Errorf("hsm/soft: init: unknown master-key kind %q", req.Kind)
	}
	return rec, master, res, nil
}

func sealMaster(master, pass []byte, p KDFParams) ([]byte, error) {
	k := passphraseKey(pass, p)
	defer clear(k)
	aead, err := newSM4GCM(k)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, nonceLen, nonceLen+masterKeyLen+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("hsm/soft: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, master, []byte(sealMasterAD)), nil
}

// Credentials unlock a passphrase or shamir keystore.
type Credentials struct {
	Passphrase []byte
	Shares     []string
}

func (c Credentials) empty() bool { return len(c.Passphrase) == 0 && len(c.Shares) == 0 }

// recoverMaster returns the master key of rec from creds, checked against the
// key check value. Errors name what is wrong but never quote a secret.
func recoverMaster(rec *MasterRecord, creds Credentials, allowDev bool) ([]byte, error) {
	var master []byte
	switch rec.Kind {
	case KindDev:
		if !allowDev {
			return nil, fmt.Errorf("%w; dev mode is off", ErrDevMasterKey)
		}
		master = append([]byte(nil), rec.DevKey...)
	case KindPassphrase:
		if len(creds.Passphrase) == 0 {
			return nil, fmt.Errorf("%w: the master key is sealed by a passphrase and none was given", hsm.ErrPIN)
		}
		if len(rec.Sealed) != nonceLen+masterKeyLen+16 {
			return nil, errors.New("hsm/soft: master-key record damaged: sealed key has the wrong length")
		}
		k := passphraseKey(creds.Passphrase, rec.KDF)
		aead, err := newSM4GCM(k)
		clear(k)
		if err != nil {
			return nil, err
		}
		master, err = aead.Open(nil, rec.Sealed[:nonceLen], rec.Sealed[nonceLen:], []byte(sealMasterAD))
		if err != nil {
			return nil, fmt.Errorf("%w: wrong passphrase", hsm.ErrPIN)
		}
	case KindShamir:
		var err error
		if master, err = combineShares(rec, creds.Shares); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("hsm/soft: master-key record has unknown kind %q", rec.Kind)
	}
	if !hmac.Equal(checkValue(master), rec.Check) {
		clear(master)
		if rec.Kind == KindShamir {
			return nil, fmt.Errorf("%w: the shares do not reconstruct this keystore's master key", hsm.ErrPIN)
		}
		return nil, errors.New("hsm/soft: master key does not match its key check value (damaged record)")
	}
	return master, nil
}

func combineShares(rec *MasterRecord, texts []string) ([]byte, error) {
	if len(texts) == 0 {
		return nil, fmt.Errorf("%w: the master key is split into shares and none were given", hsm.ErrPIN)
	}
	var xs []byte
	var ys [][]byte
	defer func() {
		for _, y := range ys {
			clear(y)
		}
	}()
	for i, t := range texts {
		s, err := decodeShare(t)
		if err != nil {
			return nil, fmt.Errorf("share %d: %w", i+1, err)
		}
		if !hmac.Equal(s.set, rec.ShareSet) {
			clear(s.y)
			return nil, fmt.Errorf("share %d: %w: it belongs to another keystore", i+1, ErrBadShare)
		}
		if s.threshold != rec.Threshold || s.shares != rec.Shares {
			clear(s.y)
			return nil, fmt.Errorf("share %d: %w: it says %d of %d, the keystore says %d of %d", i+1, ErrBadShare, s.threshold, s.shares, rec.Threshold, rec.Shares)
		}
		xs, ys = append(xs, s.x), append(ys, s.y)
	}
	if len(xs) < rec.Threshold {
		return nil, fmt.Errorf("%w: %d shares needed, %d given", ErrBadShare, rec.Threshold, len(xs))
	}
	return combine(xs, ys)
}

func audit(ctx context.Context, f AuditFunc, action, object, outcome string, details map[string]any) {
	if f != nil {
		f(ctx, action, object, outcome, details)
	}
}
