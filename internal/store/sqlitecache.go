package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"reflect"

	"modernc.org/sqlite"
)

// maxCachedStatements bounds each SQLite connection's statement cache.
// Services write their SQL as constants, so a few dozen entries cover
// them; a query built at run time beyond the bound is prepared per use.
const maxCachedStatements = 256

// openCachedSQLite opens a pool on dsn whose connections keep their
// prepared statements.
//
// modernc's driver prepares (parses and plans) a statement on every Exec
// and Query and finalizes it after; database/sql caches nothing on its own
// either. Parsing was a tenth of the CPU of a certificate issuance. A
// statement prepared once per connection and reset after each use (which
// modernc's prepared statements do: exec resets, rows.Close resets) saves
// that. A *sql.Stmt prepared on the pool cannot do it here: preparing takes
// a connection, and the writer pool has one, held by the transaction that
// wants the statement.
func openCachedSQLite(dsn string) (*sql.DB, error) {
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(&cachingConnector{inner: c}), nil
}

type cachingConnector struct{ inner driver.Connector }

func (c *cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &cachingConn{conn: conn, stmts: map[string]*cachedStmt{}}, nil
}

func (c *cachingConnector) Driver() driver.Driver { return c.inner.Driver() }

// The interfaces of modernc's connection that database/sql uses.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// cachingConn is a connection with a statement cache. database/sql uses a
// connection from one goroutine at a time, so the cache needs no lock.
type cachingConn struct {
	conn  driver.Conn
	stmts map[string]*cachedStmt
}

// cachedStmt is a prepared statement and whether an open Rows still reads
// from it (a second query with the same text while the first is open, as
// a nested loop would do, gets a statement of its own).
type cachedStmt struct {
	stmt  driver.Stmt
	inUse bool
}

var (
	_ sqliteConn           = (*cachingConn)(nil)
	_ driver.Connector     = (*cachingConnector)(nil)
	_ driver.ExecerContext = (*cachingConn)(nil)
)

func (c *cachingConn) inner() sqliteConn { return c.conn.(sqliteConn) }

func (c *cachingConn) Prepare(query string) (driver.Stmt, error) { return c.conn.Prepare(query) }

func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.inner().PrepareContext(ctx, query)
}

func (c *cachingConn) Begin() (driver.Tx, error) {
	return c.inner().BeginTx(context.Background(), driver.TxOptions{})
}

func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner().BeginTx(ctx, opts)
}

func (c *cachingConn) Ping(ctx context.Context) error { return c.inner().Ping(ctx) }

func (c *cachingConn) ResetSession(ctx context.Context) error { return c.inner().ResetSession(ctx) }

func (c *cachingConn) IsValid() bool { return c.inner().IsValid() }

func (c *cachingConn) Close() error {
	var errs []error
	for q, s := range c.stmts {
		errs = append(errs, s.stmt.Close())
		delete(c.stmts, q)
	}
	return errors.Join(append(errs, c.conn.Close())...)
}

// cached returns the connection's statement for query, preparing it on
// first use; nil when it is busy or the cache is full (the caller then
// runs the query the uncached way).
func (c *cachingConn) cached(ctx context.Context, query string) (*cachedStmt, error) {
	if s := c.stmts[query]; s != nil {
		if s.inUse {
			return nil, nil
		}
		return s, nil
	}
	if len(c.stmts) >= maxCachedStatements {
		return nil, nil
	}
	st, err := c.inner().PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s := &cachedStmt{stmt: st}
	c.stmts[query] = s
	return s, nil
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s, err := c.cached(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.inner().ExecContext(ctx, query, args)
	}
	return s.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s, err := c.cached(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.inner().QueryContext(ctx, query, args)
	}
	rows, err := s.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.inUse = true
	return &cachedRows{Rows: rows, s: s}, nil
}

// cachedRows frees its statement for the next query when closed (modernc
// resets the statement in rows.Close).
type cachedRows struct {
	driver.Rows
	s *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.s.inUse = false
	return err
}

// ColumnTypeDatabaseTypeName passes modernc's column type through, for
// rows.ColumnTypes.
func (r *cachedRows) ColumnTypeDatabaseTypeName(index int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(index)
	}
	return ""
}

// ColumnTypeScanType passes modernc's scan type through.
func (r *cachedRows) ColumnTypeScanType(index int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(index)
	}
	return reflect.TypeFor[any]()
}
