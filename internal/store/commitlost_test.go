package store_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// TestCommitAnswerLostPostgres loses the connection at the worst moment:
// the server has received the COMMIT and committed, and its answer never
// reaches the client (a proxy in between closes the client's side once the
// server has answered). The transaction applied, so it must not run again:
// Tx and Batcher.Do say ErrUnavailable with the outcome unknown, and the
// row changed exactly once. (pgx reports this case as "conn closed", an
// error it calls safe to retry; the store ran such a transaction a second

// proxiedPostgres opens the test's PostgreSQL database, migrated with beta,
// through a commitDropper.
func proxiedPostgres(t *testing.T) (*store.DB, *commitDropper) {
	t.Helper()
	cfg := storetest.PostgresConfig(t)
	u, err := url.Parse(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCommitDropper(t, u.Host)
	u.Host = proxy.addr()
	cfg.URL = u.String()
	return storetest.OpenConfig(t, cfg, beta), proxy
}

// time, which applied it twice: found by ACCEPTANCE.md M-02.)
func TestCommitAnswerLostPostgres(t *testing.T) {
	db, proxy := proxiedPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	counter := func() int {
		t.Helper()
		var v int
		if err := db.ReadRow(ctx, "SELECT v FROM beta_counter WHERE id = 1").Scan(&v); err != nil {
			t.Fatalf("read the counter: %v", err)
		}
		return v
	}
	increment := func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE beta_counter SET v = v + 1 WHERE id = 1")
		return err
	}
	unknown := func(err error) bool {
		return errors.Is(err, store.ErrUnavailable) && strings.Contains(err.Error(), "outcome unknown")
	}

	t.Run("Tx", func(t *testing.T) {
		before, retries, dropped := counter(), db.TxRetries(), proxy.dropped.Load()
		attempts := 0
		proxy.armed.Store(true)
		err := db.Tx(ctx, func(tx *store.Tx) error {
			attempts++
			return increment(tx)
		})
		if proxy.dropped.Load() != dropped+1 {
			t.Fatalf("the proxy dropped %d answers to COMMIT, want 1 (the test proves nothing)", proxy.dropped.Load()-dropped)
		}
		if !unknown(err) {
			t.Errorf("Tx error = %v, want ErrUnavailable with the commit outcome unknown", err)
		}
		if attempts != 1 || db.TxRetries() != retries {
			t.Errorf("attempts = %d, retries %d: a COMMIT that applied was sent again", attempts, db.TxRetries()-retries)
		}
		if got := counter(); got != before+1 {
			t.Errorf("counter = %d, want %d (committed once, answer lost)", got, before+1)
		}
	})

	t.Run("Batcher", func(t *testing.T) {
		b := db.NewBatcher(0)
		defer b.Close()
		before, dropped := counter(), proxy.dropped.Load()
		proxy.armed.Store(true)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = b.Do(ctx, increment) })
		}
		wg.Wait()
		if proxy.dropped.Load() != dropped+1 {
			t.Fatalf("the proxy dropped %d answers to COMMIT, want 1", proxy.dropped.Load()-dropped)
		}
		// The callers in the batch whose answer was lost learn that the
		// outcome is unknown; any in a later batch committed normally.
		lost, ok := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case unknown(err):
				lost++
			default:
				t.Errorf("Do: %v", err)
			}
		}
		if lost == 0 {
			t.Error("no caller was told the outcome is unknown")
		}
		if got := counter(); got != before+lost+ok {
			t.Errorf("counter = %d, want %d: each of the %d callers' increments applied exactly once", got, before+lost+ok, len(errs))
		}
	})
}

// TestCommitContextEndsPostgres: the caller's context ends while COMMIT
// waits for its answer, which the server has received and applies. pgx
// gives up (an error with no SQLSTATE: no answer from the server), and the
// store must say the outcome is unknown, not run the transaction again,
// and not pass the error off as a plain failure that committed nothing.
// (Before, it returned "store: commit: timeout: context canceled", which
// is not ErrUnavailable, though the row had changed.)
func TestCommitContextEndsPostgres(t *testing.T) {
	db, proxy := proxiedPostgres(t)
	bg, cancelBG := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelBG()
	var before int
	if err := db.ReadRow(bg, "SELECT v FROM beta_counter WHERE id = 1").Scan(&before); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	proxy.stallArmed.Store(true)
	go func() {
		select {
		case <-proxy.stalled: // the server has the COMMIT; its answer is held
			cancel()
		case <-bg.Done():
		}
	}()
	attempts := 0
	err := db.Tx(ctx, func(tx *store.Tx) error {
		attempts++
		_, err := tx.Exec(ctx, "UPDATE beta_counter SET v = v + 1 WHERE id = 1")
		return err
	})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "outcome unknown") {
		t.Errorf("Tx whose context ended during COMMIT: %v, want ErrUnavailable with the commit outcome unknown", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Tx error = %v, want it to wrap context.Canceled (the test proves nothing otherwise)", err)
	}
	if attempts != 1 {
		t.Errorf("%d attempts: a COMMIT that may have applied ran again", attempts)
	}
	// The server answered the COMMIT (to the proxy): it committed.
	for proxy.held.Load() == 0 && bg.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	var after int
	if err := db.ReadRow(bg, "SELECT v FROM beta_counter WHERE id = 1").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Errorf("counter %d, want %d (committed once, answer never seen)", after, before+1)
	}
}

// commitDropper is a TCP proxy in front of PostgreSQL. Armed, it passes the
// next COMMIT (simple query protocol, as pgx sends it) to the server, reads
// the server's whole answer up to ReadyForQuery, and then closes the
// client's connection instead of passing the answer on. Armed to stall
// (stallArmed), it passes the next COMMIT on, signals stalled, and keeps
// the answer and every later message from the client, whose connection it
// leaves open; held counts the answers so kept.
type commitDropper struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int32

	stallArmed atomic.Bool
	stalled    chan struct{}
	held       atomic.Int32
}

func startCommitDropper(t *testing.T, target string) *commitDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitDropper{ln: ln, target: target, stalled: make(chan struct{}, 1)}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { p.handle(c) })
		}
	}()
	return p
}

func (p *commitDropper) addr() string { return p.ln.Addr().String() }

// sslRequestCode is the protocol code of an SSLRequest, which the server
// answers with one untyped byte.
const sslRequestCode = 80877103

func (p *commitDropper) handle(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	cr, sr := bufio.NewReader(client), bufio.NewReader(server)
	// The client's first messages have no type byte: an SSLRequest
	// (answered with one byte) and the startup message.
	for {
		msg, err := readMessage(cr, false)
		if err != nil {
			return
		}
		if _, err := server.Write(msg); err != nil {
			return
		}
		if len(msg) != 8 || binary.BigEndian.Uint32(msg[4:]) != sslRequestCode {
			break
		}
		b, err := sr.ReadByte()
		if err != nil {
			return
		}
		if _, err := client.Write([]byte{b}); err != nil {
			return
		}
	}
	var drop, stall atomic.Bool
	done := make(chan struct{})
	go func() { // server → client
		defer close(done)
		defer client.Close()
		for {
			msg, err := readMessage(sr, true)
			if err != nil {
				return
			}
			if stall.Load() {
				if msg[0] == 'Z' {
					p.held.Add(1)
				}
				continue
			}
			if drop.Load() {
				if msg[0] == 'Z' { // the COMMIT's answer is complete
					p.dropped.Add(1)
					return
				}
				continue
			}
			if _, err := client.Write(msg); err != nil {
				return
			}
		}
	}()
	for { // client → server
		msg, err := readMessage(cr, true)
		if err != nil {
			break
		}
		commit := msg[0] == 'Q' && strings.EqualFold(strings.TrimRight(string(msg[5:]), "\x00 ;"), "commit")
		if commit && p.armed.CompareAndSwap(true, false) {
			drop.Store(true)
		}
		stallNow := commit && p.stallArmed.CompareAndSwap(true, false)
		if stallNow {
			stall.Store(true)
		}
		if _, err := server.Write(msg); err != nil {
			break
		}
		if stallNow {
			p.stalled <- struct{}{}
		}
	}
	server.Close()
	<-done
}

// readMessage reads one protocol message, with its type byte when typed.
func readMessage(r *bufio.Reader, typed bool) ([]byte, error) {
	head := 4
	if typed {
		head = 5
	}
	msg := make([]byte, head)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(msg[head-4:]))
	if n < 4 || n > 64<<20 {
		return nil, errors.New("bad message length")
	}
	msg = append(msg, make([]byte, n-4)...)
	_, err := io.ReadFull(r, msg[head:])
	return msg, err
}
