package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/govtrust/govtrust/hsm"
	"github.com/govtrust/govtrust/hsm/pkcs11"
	"github.com/govtrust/govtrust/hsm/soft"
	"github.com/govtrust/govtrust/internal/store"
)

// errNotAvailable marks a backend this machine does not have; the report
// names it as skipped.
var errNotAvailable = errors.New("not available")

// Throw-away PINs of the temporary tokens, which are deleted at exit.
const (
	tokenLabel = "hsmsign"
	tokenPIN   = "1234"
	tokenSOPIN = "12345678"
)

// openSoft opens a software keystore on SQLite in dir, with a dev master
// key.
func openSoft(ctx context.Context, dir string) (*backend, error) {
	db, err := store.Open(ctx, store.Config{URL: filepath.Join(dir, "soft.db")})
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, soft.Migrations); err != nil {
		db.Close()
		return nil, err
	}
	// The dev master key's warning goes nowhere: the report says what the
	// keystore is.
	km, err := soft.Open(ctx, soft.NewSQLStore(db), soft.Config{AllowDev: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &backend{
		name: "soft", km: km,
		uri:  func(name string) string { return "soft:" + name },
		algs: []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256},
		note: "software keystore, dev master key (keys decrypted once, then signed with in memory)",
		close: func() error {
			return errors.Join(km.Close(), db.Close())
		},
	}, nil
}

// openSoftHSM makes a SoftHSM2 token in dir with softhsm2-util and opens it.
func openSoftHSM(ctx context.Context, dir, module string) (*backend, error) {
	if module == "" {
		return nil, fmt.Errorf("%w: -softhsm is empty", errNotAvailable)
	}
	if !cgoEnabled {
		return nil, fmt.Errorf("%w: built without cgo", errNotAvailable)
	}
	if _, err := os.Stat(module); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotAvailable, err)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotAvailable, err)
	}
	dir = filepath.Join(dir, "softhsm")
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\nslots.mechanisms = ALL\n",
		filepath.Join(dir, "tokens"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	// SoftHSM2 reads SOFTHSM2_CONF at C_Initialize (INTEROP.md §3).
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, util, "--init-token", "--free", "--label", tokenLabel,
		"--so-pin", tokenSOPIN, "--pin", tokenPIN).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %w\n%s", err, out)
	}
	km, err := pkcs11.New(ctx, pkcs11.Config{Module: module, Token: tokenLabel, PIN: tokenPIN})
	if err != nil {
		return nil, err
	}
	return &backend{
		name: "softhsm2", km: km,
		uri:   func(name string) string { return "pkcs11:token=" + tokenLabel + ";object=" + name },
		algs:  []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256},
		note:  "SoftHSM2 token (P-256 on the token; SM2 generated in software, wrapped by the token, unwrapped for use)",
		close: km.Close,
	}, nil
}

// openSM2Token initialises a govtrust-p11 token in dir and opens it with the
// "tass" SM2 mechanisms.
func openSM2Token(ctx context.Context, dir string) (*backend, error) {
	module := os.Getenv("GTTEST_P11_MODULE")
	if module == "" {
		return nil, fmt.Errorf("%w: GTTEST_P11_MODULE is not set (make p11 builds .cache/libgovtrust-p11.so)", errNotAvailable)
	}
	if !cgoEnabled {
		return nil, fmt.Errorf("%w: built without cgo", errNotAvailable)
	}
	dir = filepath.Join(dir, "govtrust-p11")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// The module reads its directory with getenv(3) at C_Initialize.
	if err := os.Unsetenv("GOVTRUST_P11_CONF"); err != nil {
		return nil, err
	}
	if err := os.Setenv("GOVTRUST_P11_DIR", dir); err != nil {
		return nil, err
	}
	if err := initToken(module); err != nil {
		return nil, err
	}
	km, err := pkcs11.New(ctx, pkcs11.Config{Module: module, Token: tokenLabel, PIN: tokenPIN, Vendor: "tass"})
	if err != nil {
		return nil, err
	}
	return &backend{
		name: "govtrust-p11", km: km,
		uri:   func(name string) string { return "pkcs11:token=" + tokenLabel + ";object=" + name },
		algs:  []hsm.Algorithm{hsm.SM2, hsm.ECDSAP256},
		note:  "govtrust-p11 software token (SM2 and P-256 computed inside the module, tass mechanisms)",
		close: km.Close,
	}, nil
}
