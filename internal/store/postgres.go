package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// errPasswordInURL is returned for a PostgreSQL URL that carries a password:
// config files are read by many people and tools, so the password must come
// from a secret reference (Config.Password) instead.
var errPasswordInURL = errors.New("store: postgres url must not contain a password; give it through a secret reference instead")

// checkNoPassword refuses a URL with a password in its user info or its
// query. Parse errors are reported without the URL text, which could hold a
// password.
func checkNoPassword(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return fmt.Errorf("store: parse postgres url: %w", err)
	}
	if _, ok := u.User.Password(); ok {
		return errPasswordInURL
	}
	if u.Query().Has("password") {
		return errPasswordInURL
	}
	return nil
}

func openPostgres(ctx context.Context, cfg Config) (*DB, error) {
	if err := checkNoPassword(cfg.URL); err != nil {
		return nil, err
	}
	maxConns := cfg.MaxConns
	switch {
	case maxConns == 0:
		maxConns = DefaultMaxConns
	case maxConns < 2:
		return nil, fmt.Errorf("store: postgres max conns %d: need at least 2", maxConns)
	}
	pcfg, err := pgx.ParseConfig(cfg.URL) // pgconn redacts passwords in its errors
	if err != nil {
		return nil, fmt.Errorf("store: parse postgres url: %w", err)
	}
	if cfg.Password != "" {
		// Set on the parsed config rather than spliced into the URL, so it
		// needs no escaping and cannot leak through a logged URL.
		pcfg.Password = cfg.Password
	}
	pool := stdlib.OpenDB(*pcfg)
	pool.SetMaxOpenConns(maxConns)
	pool.SetMaxIdleConns(maxConns)
	if err := pool.PingContext(ctx); err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("store: connect to postgres %s/%s: %w", pcfg.Host, pcfg.Database, err)
	}
	return &DB{driver: Postgres, writer: pool, reader: pool}, nil
}
