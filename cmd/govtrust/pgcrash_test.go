package main

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Crashes of a test's private PostgreSQL server (ACCEPTANCE.md M-02), made
// with signals to its processes: the test runs on Linux, as root (the
// server's processes then belong to the postgres user) or as the server's
// owner.

// admin opens a connection pool to the server as its superuser.
func (p *privatePostgres) admin(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", p.url)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// killBackend sends SIGKILL to one client backend other than its own (one
// of the node's sessions) and returns its pid. The postmaster, seeing a
// child end abnormally, ends every other session and re-initialises after
// crash recovery (restart_after_crash, on by default), as after a backend's
// segfault.
func (p *privatePostgres) killBackend(t *testing.T) int {
	t.Helper()
	pid := p.backendPID(t, `SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
		ORDER BY random() LIMIT 1`)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 backend %d: %v", pid, err)
	}
	return pid
}

// backendPID returns the pid of a server process that query selects,
// waiting up to 30 s for a server that is still recovering from an earlier
// kill to accept connections.
func (p *privatePostgres) backendPID(t *testing.T, q string) int {
	t.Helper()
	db := p.admin(t)
	defer db.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		var pid int
		err := db.QueryRow(q).Scan(&pid)
		if err == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL: %s: %v", q, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crash ends the whole server the way a power cut would: the postmaster is
// stopped (SIGSTOP, so that it starts nothing more), then it and every
// process it had started get SIGKILL together, and crash waits until all
// are gone (reaped by init). Nothing is shut down cleanly: run(t, "start") afterwards finds
// the stale postmaster.pid and replays the WAL. (The page cache survives,
// unlike a real power cut; RELIABILITY.md §1.9.)
func (p *privatePostgres) crash(t *testing.T) {
	t.Helper()
	// The checkpointer lives as long as the postmaster, its parent.
	checkpointer := p.backendPID(t, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`)
	postmaster, _, err := procParent(checkpointer)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(postmaster, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP postmaster %d: %v", postmaster, err)
	}
	pids, err := childrenOf(postmaster)
	if err != nil {
		t.Fatal(err)
	}
	pids = append(pids, postmaster)
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
	}
	for _, pid := range pids {
		for deadline := time.Now().Add(10 * time.Second); ; {
			_, state, err := procParent(pid)
			// Gone means reaped, not a zombie: the next postmaster refuses
			// to start while the pid in postmaster.pid answers kill(pid, 0).
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("PostgreSQL process %d still there 10 s after SIGKILL (state %c, %v)", pid, state, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// amcheck checks the server's data as the node left it, in place of
// SQLite's integrity_check: amcheck's bt_index_check with heapallindexed
// over every B-tree index of the public schema (each index well formed,
// and every row of its table in it; the unique (issuer, serial) index
// among them) and verify_heapam over every table. It creates the amcheck
// extension in the node's database, which is a test's own.
func (p *privatePostgres) amcheck(t *testing.T) {
	t.Helper()
	db := p.admin(t)
	defer db.Close()
	if _, err := db.Exec(`CREATE EXTENSION IF NOT EXISTS amcheck`); err != nil {
		t.Fatalf("amcheck: %v", err)
	}
	var indexes int
	err := db.QueryRow(`SELECT count(bt_index_check(index => c.oid, heapallindexed => true))
		FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_am am ON am.oid = c.relam
		WHERE n.nspname = 'public' AND am.amname = 'btree' AND c.relpersistence <> 't'`).Scan(&indexes)
	if err != nil {
		t.Fatalf("amcheck bt_index_check: %v", err)
	}
	var unique int
	if err := db.QueryRow(`SELECT count(*) FROM pg_indexes
		WHERE schemaname = 'public' AND tablename = 'ca_certificates' AND indexdef LIKE 'CREATE UNIQUE INDEX%(issuer_id, serial)%'`).Scan(&unique); err != nil {
		t.Fatal(err)
	}
	if indexes == 0 || unique == 0 {
		t.Fatalf("amcheck: %d B-tree indexes checked, %d unique (issuer_id, serial) index on ca_certificates", indexes, unique)
	}
	rows, err := db.Query(`SELECT c.relname, v.blkno, v.offnum, v.msg
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace,
		LATERAL verify_heapam(c.oid) v
		WHERE n.nspname = 'public' AND c.relkind = 'r'`)
	if err != nil {
		t.Fatalf("amcheck verify_heapam: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rel, msg string
		var blk, off sql.NullInt64
		if err := rows.Scan(&rel, &blk, &off, &msg); err != nil {
			t.Fatal(err)
		}
		t.Errorf("verify_heapam: %s block %v offset %v: %s", rel, blk.Int64, off.Int64, msg)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("amcheck: %d B-tree indexes and every table of the public schema verified", indexes)
}

// procParent reads /proc/PID/stat: the parent's pid and the state letter.
func procParent(pid int) (ppid int, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procParent(n); err == nil && ppid == pid {
			kids = append(kids, n)
		}
	}
	return kids, nil
}
