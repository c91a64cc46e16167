package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/go-ldap/ldap/v3"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/ca/ocsp"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
)

// Crash and concurrency acceptance tests of the certificate authority
// (ACCEPTANCE.md M-01, M-03, B-02), run against the govtrust binary as a
// process: clients keep a ledger of every answer they received, the node is
// killed with SIGKILL, and the ledger is reconciled with what the restarted
// node serves (API, OCSP checked by openssl, CRL, audit export) and with the
// database itself.
//
// `make test` runs reduced counts; `make soak` (GTTEST_SOAK=1) the full
// ones of ACCEPTANCE.md.

// m01Ledger is what the M-01 clients were told, and what they could not
// learn because the node died under them.
type m01Ledger struct {
	mu sync.Mutex
	// issued: Idempotency-Key → the certificate answered (201).
	issued map[string]*m01Cert
	// revoked: serial → the reason of an acknowledged (200) revocation.
	revoked map[string]string
	// maybeRevoked: serial → the reason of a revocation whose answer was
	// lost; it may or may not have happened.
	maybeRevoked map[string]string
	// uncertain: Idempotency-Key → the request body of an issuance whose
	// answer was lost.
	uncertain map[string][]byte
	// refused counts requests whose connection was refused (node down:
	// never sent); lost counts requests whose answer was lost; status5xx
	// counts answers 503 (the node up, its database not).
	refused, lost, status5xx int
	problems                 []error
	// sentOK and answeredOK are when (UnixNano) the request of the latest
	// certificate answered was sent, and when it was answered.
	sentOK, answeredOK atomic.Int64
}

type m01Cert struct {
	key, serial string
	der         []byte
}

func (l *m01Ledger) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Errorf(format, args...))
}

// TestM01IssuanceUnderKill is ACCEPTANCE.md M-01 on SQLite: clients issue
// (each request with its own Idempotency-Key) and revoke while the node is
// killed with SIGKILL at random moments and restarted; then every
// certificate a client received must be served by the API with the same
// bytes, answered by OCSP (checked by openssl) with the right status and
// carry an audit event; every acknowledged revocation must be revoked, in
// OCSP and on the CRL; every issuance whose answer was lost must, retried
// with its key, give exactly one certificate; the database must hold
// exactly the ledger's certificates, no serial twice, and pass PRAGMA
// integrity_check; `govtrust audit verify` must pass; after catch-up the
// directory serves every certificate still good, byte for byte, and no
// revoked one.
func TestM01IssuanceUnderKill(t *testing.T) {
	runM01(t, m01Run{name: "M-01", kills: scale(8, 50)})
}

// TestM02IssuanceUnderKillPostgres is ACCEPTANCE.md M-02: M-01 on
// PostgreSQL, with the database killed as well. The kills take turns: the
// node (SIGKILL, restarted), one of PostgreSQL's backends (SIGKILL: the
// postmaster ends every other session and recovers, as after a backend's
// crash) and the whole server (the postmaster frozen, then it and all its
// processes SIGKILLed at once, as a power cut would end them, and started
// again: WAL replay). After a database kill the node stays up and answers
// 503 until the server is back; every answer other than a certificate, a
// revocation or a 503 with Retry-After is an error. Checked afterwards as
// in M-01, with amcheck over every B-tree index (every heap row in its
// indexes, the unique (issuer, serial) index among them) and
// verify_heapam over every table in place of PRAGMA integrity_check, after
// a last crash of the server.
func TestM02IssuanceUnderKillPostgres(t *testing.T) {
	pg := startPrivatePostgres(t)
	runM01(t, m01Run{name: "M-02", pg: pg, kills: scale(9, 75)})
}

// m01Run is what differs between M-01 and M-02.
type m01Run struct {
	name  string
	kills int
	// pg is M-02's server: the node stores in it, and it is killed too.
	pg *privatePostgres
}

// kind is what the k-th kill of the run kills: "node", "backend" or
// "server".
func (r m01Run) kind(k int) string {
	if r.pg == nil {
		return "node"
	}
	return [...]string{"node", "backend", "server"}[k%3]
}

// upArgs are the node's flags.
func (r m01Run) upArgs() []string {
	if r.pg == nil {
		return m01LDAP
	}
	return append([]string{"--db", r.pg.url}, m01LDAP...)
}

// storeArgs are the flags of an offline command on the node's store.
func (r m01Run) storeArgs(dir string) []string {
	if r.pg == nil {
		return []string{"--data", dir}
	}
	return []string{"--db", r.pg.url, "--data", dir}
}

// integrity checks the stopped or killed node's database.
func (r m01Run) integrity(t *testing.T, dir string) {
	t.Helper()
	if r.pg == nil {
		sqliteIntegrity(t, dir)
		return
	}
	r.pg.amcheck(t)
}

// openDB opens the node's database for the reconciliation.
func (r m01Run) openDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", "file:"+filepath.Join(dir, "govtrust.db")+"?mode=ro"
	if r.pg != nil {
		driver, dsn = "pgx", r.pg.url
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func runM01(t *testing.T, r m01Run) {
	opensslBin := testenv.LookPath(t, "openssl")
	clients := scale(8, 32)
	seed := uint64(time.Now().UnixNano())
	t.Logf("%s: %d clients, %d kills, seed %d", r.name, clients, r.kills, seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))

	dir := filepath.Join(t.TempDir(), "data")
	writeNodeConfig(t, dir, quietConfig)
	p := up(t, dir, r.upArgs()...)
	api := newAPIClient(t, readToken(t, dir, "ra"), dir)
	var addr atomic.Pointer[string]
	setAddr := func(p *proc) { a := p.addrs["https"]; addr.Store(&a) }
	setAddr(p)

	L := &m01Ledger{issued: map[string]*m01Cert{}, revoked: map[string]string{}, maybeRevoked: map[string]string{}, uncertain: map[string][]byte{}}
	reasons := []string{"keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation"}
	var stop atomic.Bool
	defer stop.Store(true) // a failed restart ends the test: end the clients too
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		mc := &m01Client{id: c, api: api, L: L, reasons: reasons, rng: mrand.New(mrand.NewPCG(seed, uint64(c)+1))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				if mc.step(*addr.Load(), n) {
					// The node is down or its database is: wait a little
					// rather than spin on refusals while it comes back.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	// Each kill lands at a random moment of a random uptime, while every
	// client has a request in flight or about to be. After each kill the
	// run waits for a certificate requested after it before it goes on, and
	// reports how long after the kill that certificate was answered.
	recovery := map[string][]time.Duration{}
	// pgStart: pg_ctl start after a server kill, until ready; afterBack:
	// from then to the answer of a certificate requested after it.
	var pgStart, afterBack []time.Duration
	// dropped counts, by the kind of the latest kill, the requests whose
	// answer was lost (a dropped connection): only killing the node may
	// cost any.
	dropped := map[string]int{}
	lostSince := func(kind string, mark *int) {
		L.mu.Lock()
		dropped[kind] += L.lost - *mark
		*mark = L.lost
		L.mu.Unlock()
	}
	var lostMark int
	prev := "none"
	for k := 0; k < r.kills; k++ {
		time.Sleep(time.Duration(50+rng.IntN(1200)) * time.Millisecond)
		kind := r.kind(k)
		lostSince(prev, &lostMark)
		prev = kind
		killed := time.Now()
		switch kind {
		case "node":
			p.kill9(t, dir)
			p = up(t, dir, r.upArgs()...)
			setAddr(p)
		case "backend":
			r.pg.killBackend(t)
		case "server":
			r.pg.crash(t)
			started := time.Now()
			r.pg.run(t, "start")
			back := time.Now()
			pgStart = append(pgStart, back.Sub(started))
			for L.sentOK.Load() < back.UnixNano() && time.Since(back) < time.Minute {
				time.Sleep(5 * time.Millisecond)
			}
			if L.sentOK.Load() < back.UnixNano() {
				t.Fatalf("%s: no certificate answered within a minute of PostgreSQL being back (kill %d)", r.name, k+1)
			}
			afterBack = append(afterBack, time.Duration(L.answeredOK.Load()-back.UnixNano()))
		}
		for L.sentOK.Load() < killed.UnixNano() && time.Since(killed) < time.Minute {
			time.Sleep(5 * time.Millisecond)
		}
		if L.sentOK.Load() < killed.UnixNano() {
			t.Fatalf("%s: no certificate answered within a minute of kill %d (%s)", r.name, k+1, kind)
		}
		if kind != "server" { // the wait for the killed server's processes to be reaped is the test's own
			recovery[kind] = append(recovery[kind], time.Duration(L.answeredOK.Load()-killed.UnixNano()))
		}
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	lostSince(prev, &lostMark)
	load := time.Since(start)
	for kind, n := range dropped {
		if kind != "node" && n > 0 {
			t.Errorf("%s: %d answers lost (connection dropped) after killing the %s: the node must answer 503, not drop", r.name, n, kind)
		}
	}
	reportErrors(t, "client", L.problems)
	if t.Failed() {
		return
	}
	t.Logf("%s load: %s, %d kills; %d certificates answered, %d revocations acknowledged; answers lost: %d issuances, %d revocations (%d transport errors, %d answers 503); %d requests refused while down",
		r.name, load.Round(time.Millisecond), r.kills, len(L.issued), len(L.revoked), len(L.uncertain), len(L.maybeRevoked), L.lost, L.status5xx, L.refused)
	for _, kind := range []string{"node", "backend", "server"} {
		if d := recovery[kind]; len(d) > 0 {
			slices.Sort(d)
			t.Logf("%s: %d kills of the %s; from the kill to the next certificate answered: median %s, max %s",
				r.name, len(d), kind, d[(len(d)-1)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
		}
	}
	if d, b := pgStart, afterBack; len(d) > 0 {
		slices.Sort(d)
		slices.Sort(b)
		t.Logf("%s: after a server kill, PostgreSQL's start (pg_ctl start -w, WAL replay included): median %s, max %s; "+
			"from then to a certificate requested after it: median %s, max %s",
			r.name, d[(len(d)-1)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond),
			b[(len(b)-1)/2].Round(time.Millisecond), b[len(b)-1].Round(time.Millisecond))
	}
	if len(L.issued) == 0 || len(L.revoked) == 0 {
		t.Fatal("the clients got no certificate or no revocation through")
	}
	if L.lost+L.status5xx == 0 {
		t.Fatal("no answer was lost: no kill landed while a request was in flight")
	}

	// Issuances whose answer was lost are retried with their key, twice:
	// both answers must name one certificate, 200 if the lost request had
	// been committed (a replay), 201 if not.
	https := "https://" + p.addrs["https"] + "/api/v1/ca/ecdsa-issuing"
	keys := make([]string, 0, len(L.uncertain))
	for k := range L.uncertain {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var committed, notCommitted int
	for _, k := range keys {
		var first *m01Cert
		for try := 0; try < 2; try++ {
			status, raw, err := api.post(https+"/certificates", L.uncertain[k], map[string]string{"Idempotency-Key": k})
			if err != nil || (status != http.StatusOK && status != http.StatusCreated) || (try == 1 && status != http.StatusOK) {
				t.Fatalf("retry %s (try %d): %d %v %s", k, try+1, status, err, raw)
			}
			serial, der, err := decodeIssued(raw)
			if err != nil {
				t.Fatal(err)
			}
			if try == 0 {
				first = &m01Cert{key: k, serial: serial, der: der}
				if status == http.StatusOK {
					committed++
				} else {
					notCommitted++
				}
			} else if serial != first.serial || string(der) != string(first.der) {
				t.Errorf("retry %s: two certificates for one key: %s and %s", k, first.serial, serial)
			}
		}
		L.issued[k] = first
	}
	t.Logf("%s retries after restart: %d lost issuances had been committed (200 replay), %d had not (201 on retry)", r.name, committed, notCommitted)

	// The database as the last kill left it (on PostgreSQL, the server
	// crashed too and recovered).
	p.kill9(t, dir)
	if r.pg != nil {
		r.pg.crash(t)
		r.pg.run(t, "start")
	}
	r.integrity(t, dir)
	p = up(t, dir, r.upArgs()...)

	// Reconcile: API, OCSP (openssl), CRL.
	bySerial := map[string]*m01Cert{}
	for _, c := range L.issued {
		if prev := bySerial[c.serial]; prev != nil {
			t.Errorf("serial %s answered for two keys, %s and %s", c.serial, prev.key, c.key)
		}
		bySerial[c.serial] = c
	}
	for s := range L.revoked {
		if bySerial[s] == nil {
			t.Errorf("revocation acknowledged for %s, which no client holds", s)
		}
	}
	certs := make([]*m01Cert, 0, len(bySerial))
	for _, c := range bySerial {
		certs = append(certs, c)
	}
	sort.Slice(certs, func(i, j int) bool { return certs[i].key < certs[j].key })
	https = "https://" + p.addrs["https"] + "/api/v1/ca/ecdsa-issuing"
	// status is what the restarted node must say of each serial: "good",
	// or "revoked:<reason>"; a revocation whose answer was lost may have
	// gone either way, and the API decides which, for OCSP and the CRL to
	// agree with.
	status := map[string]string{}
	var appliedLost int
	errs := parallel(len(certs), 4, func(i int) error {
		c := certs[i]
		code, raw, err := api.get(https + "/certificates/" + c.serial)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("GET %s (%s): %d %v %s", c.serial, c.key, code, err, raw)
		}
		var got ca.CertificateResponse
		if err := json.Unmarshal(raw, &got); err != nil {
			return err
		}
		if b, _ := pem.Decode([]byte(got.Certificate)); b == nil || string(b.Bytes) != string(c.der) {
			return fmt.Errorf("API serves other bytes for %s than the client received", c.serial)
		}
		L.mu.Lock()
		defer L.mu.Unlock()
		want, acked := L.revoked[c.serial]
		sent, maybe := L.maybeRevoked[c.serial]
		switch {
		case acked && (got.Status != "revoked" || got.Reason != want):
			return fmt.Errorf("acknowledged revocation of %s (%s) lost: API says %s %s", c.serial, want, got.Status, got.Reason)
		case acked:
			status[c.serial] = "revoked:" + want
		case maybe && got.Status == "revoked":
			if got.Reason != sent {
				return fmt.Errorf("%s revoked with %s, the client asked %s", c.serial, got.Reason, sent)
			}
			appliedLost++
			status[c.serial] = "revoked:" + sent
		case got.Status != "good":
			return fmt.Errorf("%s is %s %s; no client revoked it", c.serial, got.Status, got.Reason)
		default:
			status[c.serial] = "good"
		}
		return nil
	})
	reportErrors(t, "API", errs)
	t.Logf("%s: %d of %d revocations with a lost answer had been applied", r.name, appliedLost, len(L.maybeRevoked))

	work := t.TempDir()
	files := fetchCA(t, p.addrs["http"], "ecdsa-issuing", "ecdsa-root", work)
	ocspStart := time.Now()
	errs = parallel(len(certs), 4, func(i int) error {
		c := certs[i]
		L.mu.Lock()
		want, ok := status[c.serial]
		L.mu.Unlock()
		if !ok {
			return nil // the API check failed already
		}
		leaf := filepath.Join(work, c.serial+".pem")
		if err := os.WriteFile(leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.der}), 0o600); err != nil {
			return err
		}
		r, err := opensslOCSP(opensslBin, p.addrs["http"], "ecdsa-issuing", files, leaf, false)
		if err != nil {
			return err
		}
		got := r.status
		if r.status == "revoked" {
			got += ":" + reasonNames[r.reason]
		}
		if !r.verified || got != want {
			return fmt.Errorf("OCSP for %s: %s (verified %v), want %s\n%s", c.serial, got, r.verified, want, r.out)
		}
		return nil
	})
	reportErrors(t, "OCSP", errs)
	t.Logf("%s: %d OCSP answers checked by openssl in %s", r.name, len(certs), time.Since(ocspStart).Round(time.Millisecond))

	_, onCRL, crlDER := crlEntries(t, p.addrs["http"], "ecdsa-issuing", files.issuer)
	opensslVerifyCRL(t, opensslBin, crlDER, files, work)
	for s, want := range status {
		reason, listed := onCRL[s]
		switch {
		case want == "good" && listed:
			t.Errorf("CRL lists %s, which is good", s)
		case want != "good" && !listed:
			t.Errorf("CRL lacks %s (%s)", s, want)
		case want != "good" && reason != reasonCodes[strings.TrimPrefix(want, "revoked:")]:
			t.Errorf("CRL gives %s reason %d, want %s", s, reason, want)
		}
	}
	inLDAP := m01ReconcileLDAP(t, p.addrs["ldap"], bySerial, status)
	p.stop(t)

	// The database: exactly the ledger's certificates under the clients'
	// keys, no serial twice (issued or reserved), integrity ok.
	r.integrity(t, dir)
	db := r.openDB(t, dir)
	defer db.Close()
	rows, err := db.Query("SELECT idempotency_key, serial FROM ca_certificates WHERE issuer_id = 'ecdsa-issuing' AND idempotency_key LIKE 'm01-%'")
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for rows.Next() {
		var k, s string
		if err := rows.Scan(&k, &s); err != nil {
			t.Fatal(err)
		}
		stored++
		if c := L.issued[k]; c == nil || c.serial != s {
			t.Errorf("database holds %s for key %s, which no client was answered", s, k)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if stored != len(L.issued) {
		t.Errorf("database holds %d certificates under the clients' keys, the ledger %d", stored, len(L.issued))
	}
	var dups, orphans int
	for q, dst := range map[string]*int{
		"SELECT COUNT(*) FROM (SELECT issuer_id, serial FROM ca_certificates GROUP BY issuer_id, serial HAVING COUNT(*) > 1) AS d": &dups,
		// A reserved serial without a certificate: the signature may have
		// been made, and was never stored or answered.
		"SELECT COUNT(*) FROM ca_serials s WHERE NOT EXISTS (SELECT 1 FROM ca_certificates c WHERE c.issuer_id = s.issuer_id AND c.serial = s.serial)": &orphans,
	} {
		if err := db.QueryRow(q).Scan(dst); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if dups != 0 {
		t.Errorf("%d duplicate (issuer, serial) in ca_certificates", dups)
	}
	db.Close()

	// Audit: one issuance event per certificate, one revocation event per
	// revoked one; the chain verifies.
	events := auditEvents(t, r.storeArgs(dir)...)
	for s, want := range status {
		obj := "cert/ecdsa-issuing/" + s
		if n := events[[2]string{"ca.certificate.issue", obj}]; n != 1 {
			t.Errorf("%d issuance audit events for %s, want 1", n, s)
		}
		revs := events[[2]string{"ca.certificate.revoke", obj}]
		if (want != "good") != (revs == 1) || revs > 1 {
			t.Errorf("%d revocation audit events for %s (%s)", revs, s, want)
		}
	}
	auditVerify(t, r.storeArgs(dir)...)
	t.Logf("%s ledger: %d certificates (%d from retries), %d revoked; database: %d under the clients' keys, 0 duplicate serials, %d reserved serials never stored; integrity checked; audit verified; LDAP: %d good certificates served byte for byte, no revoked one.",
		r.name, len(L.issued), committed+notCommitted, len(L.revoked)+appliedLost, stored, orphans, inLDAP)
}

// m01LDAP starts the directory's LDAP listener on a free port in M-01.
var m01LDAP = []string{"--ldap", "127.0.0.1:0"}

// m01ReconcileLDAP waits (up to a minute, the publisher catching up after
// the last restart) until the directory at addr serves each certificate
// whose status is "good" with the bytes its client received, as
// userCertificate;binary of uid=<serial>,cn=ecdsa-issuing,ou=ca,<base>, and
// no entry for a revoked one. It returns how many good ones it found.
func m01ReconcileLDAP(t *testing.T, addr string, bySerial map[string]*m01Cert, status map[string]string) int {
	t.Helper()
	conn, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatalf("LDAP %s: %v", addr, err)
	}
	defer conn.Close()
	var missing []string
	good := 0
	for deadline := time.Now().Add(time.Minute); ; {
		missing, good = missing[:0], 0
		for serial, st := range status {
			dn := "uid=" + serial + ",cn=ecdsa-issuing,ou=ca,dc=govtrust,dc=local"
			res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 10, false,
				"(objectClass=*)", []string{"userCertificate;binary"}, nil))
			found := err == nil && len(res.Entries) == 1
			if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				t.Fatalf("LDAP search %s: %v", dn, err)
			}
			switch {
			case st == "good" && !found:
				missing = append(missing, serial+" (absent)")
			case st == "good" && string(res.Entries[0].GetRawAttributeValue("userCertificate;binary")) != string(bySerial[serial].der):
				missing = append(missing, serial+" (other bytes)")
			case st == "good":
				good++
			case found:
				missing = append(missing, serial+" (revoked, still published)")
			}
		}
		if len(missing) == 0 {
			return good
		}
		if time.Now().After(deadline) {
			t.Fatalf("LDAP after a minute of catch-up: %d of %d certificates wrong, e.g. %v", len(missing), len(status), missing[:min(5, len(missing))])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// m01Client is one M-01 client: it issues under fresh Idempotency-Keys and
// now and then revokes one of its certificates.
type m01Client struct {
	id      int
	api     *apiClient
	L       *m01Ledger
	reasons []string
	rng     *mrand.Rand
	mine    []string // serials answered to this client, not yet sent for revocation
}

// step makes one request to the node at addr and records its outcome; it
// reports whether the connection was refused.
func (c *m01Client) step(addr string, n int) bool {
	base := "https://" + addr + "/api/v1/ca/ecdsa-issuing"
	L := c.L
	if len(c.mine) > 0 && c.rng.IntN(4) == 0 {
		j := c.rng.IntN(len(c.mine))
		serial := c.mine[j]
		c.mine[j] = c.mine[len(c.mine)-1]
		c.mine = c.mine[:len(c.mine)-1]
		reason := c.reasons[c.rng.IntN(len(c.reasons))]
		body, _ := json.Marshal(ca.RevokeRequest{Serial: serial, Reason: reason})
		status, hdr, raw, err := c.api.postFull(base+"/revocations", body, nil)
		L.mu.Lock()
		defer L.mu.Unlock()
		switch {
		case err != nil && refused(err):
			L.refused++
			c.mine = append(c.mine, serial) // never sent: again later
			return true
		case err == nil && status >= 500 && !unavailable(status, hdr):
			L.problems = append(L.problems, fmt.Errorf("revoke %s: %d %s", serial, status, raw))
		case err != nil || status >= 500:
			L.maybeRevoked[serial] = reason
			if err == nil {
				L.status5xx++
				return true
			}
			L.lost++
		case status == http.StatusOK:
			var out ca.RevokeResponse
			if err := json.Unmarshal(raw, &out); err != nil || out.Serial != serial || out.Reason != reason {
				L.problems = append(L.problems, fmt.Errorf("revocation answer %s for %s %s", raw, serial, reason))
			}
			L.revoked[serial] = reason
		default:
			L.problems = append(L.problems, fmt.Errorf("revoke %s: %d %s", serial, status, raw))
		}
		return false
	}
	idem := fmt.Sprintf("m01-c%02d-%06d", c.id, n)
	// A key per certificate: revoking one for keyCompromise blocks its key
	// for good (ca_blocked_keys), which must not refuse the client's next
	// request, nor the retry of a request whose answer was lost.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		L.problem("client %d: %v", c.id, err)
		return false
	}
	body, err := issueBody(key, fmt.Sprintf("c%d-%d.m01.example.gov.cn", c.id, n))
	if err != nil {
		L.problem("client %d: %v", c.id, err)
		return false
	}
	sent := time.Now()
	status, hdr, raw, err := c.api.postFull(base+"/certificates", body, map[string]string{"Idempotency-Key": idem})
	L.mu.Lock()
	defer L.mu.Unlock()
	switch {
	case err != nil && refused(err):
		L.refused++
		return true
	case err == nil && status >= 500 && !unavailable(status, hdr):
		L.problems = append(L.problems, fmt.Errorf("issue %s: %d %s", idem, status, raw))
	case err != nil || status >= 500:
		L.uncertain[idem] = body
		if err == nil {
			L.status5xx++
			return true
		}
		L.lost++
	case status == http.StatusCreated:
		serial, der, err := decodeIssued(raw)
		if err != nil {
			L.problems = append(L.problems, err)
			break
		}
		L.issued[idem] = &m01Cert{key: idem, serial: serial, der: der}
		if sent.UnixNano() > L.sentOK.Load() {
			L.sentOK.Store(sent.UnixNano())
			L.answeredOK.Store(time.Now().UnixNano())
		}
		c.mine = append(c.mine, serial)
	default:
		// Even 200 is wrong here: it replays a key never sent before.
		L.problems = append(L.problems, fmt.Errorf("issue %s: %d %s", idem, status, raw))
	}
	return false
}

// unavailable reports whether an answer is the node's 503 with
// Retry-After: its store (or key store) cannot serve for now.
func unavailable(status int, hdr http.Header) bool {
	return status == http.StatusServiceUnavailable && hdr.Get("Retry-After") != ""
}

// TestM03RevocationAckSurvivesKill is ACCEPTANCE.md M-03: revoke, and kill
// the node with SIGKILL the moment the 200 arrives (before its body is
// read); restart; repeat. After the restarts every acknowledged revocation
// must be revoked in OCSP (openssl for ECDSA; ca/ocsp, and openssl without
// signature check, for SM2, whose OCSP signatures OpenSSL 3.0 checks with
// the wrong user ID) and on the next CRL, with its reason.
func TestM03RevocationAckSurvivesKill(t *testing.T) {
	opensslBin := testenv.LookPath(t, "openssl")
	reps := scale(10, 100)
	dir := filepath.Join(t.TempDir(), "data")
	writeNodeConfig(t, dir, quietConfig)
	up(t, dir).stop(t)
	// A CA operator has the next CRL made after the last restart.
	opToken, err := os.ReadFile(addOperator(t, dir, "m03-operator"))
	if err != nil {
		t.Fatal(err)
	}
	p := up(t, dir)
	api := newAPIClient(t, readToken(t, dir, "ra"), dir)
	operator := newAPIClient(t, strings.TrimSpace(string(opToken)), dir)
	work := t.TempDir()

	// The certificates, half SM2 and half ECDSA, issued before the kills.
	type target struct {
		ca, serial, reason, leaf string
		cert                     *smx509.Certificate
	}
	cas := []string{"ecdsa-issuing", "sm2-issuing"}
	reasons := []string{"keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation", "privilegeWithdrawn"}
	crlBefore := map[string]*big.Int{}
	files := map[string]*caFiles{
		"ecdsa-issuing": fetchCA(t, p.addrs["http"], "ecdsa-issuing", "ecdsa-root", work),
		"sm2-issuing":   fetchCA(t, p.addrs["http"], "sm2-issuing", "sm2-root", work),
	}
	for _, id := range cas {
		crlBefore[id], _, _ = crlEntries(t, p.addrs["http"], id, files[id].issuer)
	}
	targets := make([]*target, reps)
	for i := range targets {
		tg := &target{ca: cas[i%2], reason: reasons[i%len(reasons)]}
		// A key per certificate: a keyCompromise revocation revokes every
		// certificate of its key with it (ca/keysweep.go).
		var key crypto.Signer
		var err error
		if tg.ca == "sm2-issuing" {
			key, err = sm2.GenerateKey(rand.Reader)
		} else {
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := issueBody(key, fmt.Sprintf("r%d.m03.example.gov.cn", i))
		if err != nil {
			t.Fatal(err)
		}
		status, raw, err := api.post("https://"+p.addrs["https"]+"/api/v1/ca/"+tg.ca+"/certificates", body, nil)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("issue: %d %v %s", status, err, raw)
		}
		var der []byte
		if tg.serial, der, err = decodeIssued(raw); err != nil {
			t.Fatal(err)
		}
		if tg.cert, err = smx509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
		tg.leaf = filepath.Join(work, tg.serial+".pem")
		if err := os.WriteFile(tg.leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		targets[i] = tg
	}

	start := time.Now()
	var bodyLost int
	for _, tg := range targets {
		body, _ := json.Marshal(ca.RevokeRequest{Serial: tg.serial, Reason: tg.reason})
		req, err := http.NewRequest(http.MethodPost, "https://"+p.addrs["https"]+"/api/v1/ca/"+tg.ca+"/revocations", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+api.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := api.hc.Do(req)
		if err != nil {
			t.Fatalf("revoke %s: %v", tg.serial, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke %s: %d", tg.serial, resp.StatusCode)
		}
		// The 200 is in: kill before reading on.
		p.kill9(t, dir)
		var out ca.RevokeResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			bodyLost++ // the acknowledgement is the status line
		} else if out.Serial != tg.serial || out.Reason != tg.reason {
			t.Errorf("revocation answer %+v for %s %s", out, tg.serial, tg.reason)
		}
		resp.Body.Close()
		p = up(t, dir)
		code, raw, err := api.get("https://" + p.addrs["https"] + "/api/v1/ca/" + tg.ca + "/certificates/" + tg.serial)
		var got ca.CertificateResponse
		if err != nil || code != http.StatusOK || json.Unmarshal(raw, &got) != nil {
			t.Fatalf("GET %s after restart: %d %v %s", tg.serial, code, err, raw)
		}
		if got.Status != "revoked" || got.Reason != tg.reason {
			t.Errorf("acknowledged revocation of %s/%s (%s) lost across kill -9: %s %s", tg.ca, tg.serial, tg.reason, got.Status, got.Reason)
		}
	}
	t.Logf("M-03: %d revocations, each followed by kill -9 on its 200, in %s (%d answer bodies cut off by the kill)", reps, time.Since(start).Round(time.Millisecond), bodyLost)

	// OCSP after the last restart.
	errs := parallel(len(targets), 4, func(i int) error {
		tg := targets[i]
		sm := tg.ca == "sm2-issuing"
		r, err := opensslOCSP(opensslBin, p.addrs["http"], tg.ca, files[tg.ca], tg.leaf, sm)
		if err != nil {
			return err
		}
		if r.status != "revoked" || r.reason != reasonCodes[tg.reason] || (!sm && !r.verified) {
			return fmt.Errorf("openssl ocsp %s/%s: %s reason %d verified %v, want revoked %s\n%s", tg.ca, tg.serial, r.status, r.reason, r.verified, tg.reason, r.out)
		}
		if !sm {
			return nil
		}
		der, err := ocsp.CreateRequest(tg.cert, files[tg.ca].issuer, nil)
		if err != nil {
			return err
		}
		resp, err := http.Post("http://"+p.addrs["http"]+"/ocsp/"+tg.ca, "application/ocsp-request", strings.NewReader(string(der)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var buf strings.Builder
		if _, err := io.Copy(&buf, resp.Body); err != nil {
			return err
		}
		got, err := ocsp.ParseResponseForCert([]byte(buf.String()), tg.cert, files[tg.ca].issuer)
		if err != nil {
			return fmt.Errorf("ca/ocsp %s: %w", tg.serial, err)
		}
		if got.Status != ocsp.Revoked || got.RevocationReason != reasonCodes[tg.reason] {
			return fmt.Errorf("ca/ocsp %s: status %v reason %d, want revoked %s", tg.serial, got.Status, got.RevocationReason, tg.reason)
		}
		return nil
	})
	reportErrors(t, "OCSP", errs)

	// The next CRL: made from the database after the last restart, at a CA
	// operator's request; served on the distribution point; holding every
	// revocation with its reason.
	for _, id := range cas {
		code, raw, err := operator.post("https://"+p.addrs["https"]+"/api/v1/ca/"+id+"/crls", nil, nil)
		var made ca.CRLInfo
		if err != nil || code != http.StatusCreated || json.Unmarshal(raw, &made) != nil {
			t.Fatalf("generate the %s CRL: %d %v %s", id, code, err, raw)
		}
		number, entries, der := crlEntries(t, p.addrs["http"], id, files[id].issuer)
		if number.Cmp(crlBefore[id]) <= 0 || number.Int64() != made.Number {
			t.Errorf("%s CRL served: number %v; before the revocations %v, made after the restart %d", id, number, crlBefore[id], made.Number)
		}
		if id == "ecdsa-issuing" {
			opensslVerifyCRL(t, opensslBin, der, files[id], work)
		}
		n, listed := 0, 0
		for _, tg := range targets {
			if tg.ca != id {
				continue
			}
			n++
			if got, ok := entries[tg.serial]; !ok || got != reasonCodes[tg.reason] {
				t.Errorf("%s CRL %v: %s listed %v with reason %d, want %s", id, number, tg.serial, ok, got, tg.reason)
			} else {
				listed++
			}
		}
		t.Logf("M-03: %s CRL number %v (%v before the revocations), made after the last restart, lists %d of the %d revoked certificates with their reasons", id, number, crlBefore[id], listed, n)
	}
	p.stop(t)
	sqliteIntegrity(t, dir)
	auditVerify(t, "--data", dir)
}

// TestB02UniqueSerialsTwoCAProcesses is ACCEPTANCE.md B-02: two CA
// processes on one PostgreSQL database, sharing the CA keys through the
// software keystore in that database (its master key unlocked in both from
// one passphrase), serve parallel clients; no (issuer, serial) is answered
// or stored twice, and the schema enforces uniqueness: the constraint is
// there, and a duplicate row is refused.
func TestB02UniqueSerialsTwoCAProcesses(t *testing.T) {
	url := storetest.PostgresURL(t)
	clients, total := scale(16, 64), scale(2000, 50000)
	// The passphrase reaches both processes through the environment they
	// inherit; the configuration names only the variable.
	t.Setenv("GTTEST_B02_PASSPHRASE", "b02 shared master passphrase "+fmt.Sprint(time.Now().UnixNano()))
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	procs := make([]*proc, 2)
	for i, d := range dirs {
		writeNodeConfig(t, d, fmt.Sprintf("node:\n  name: b02-%c\n%shsm:\n  soft:\n    unlock: passphrase\n    passphrase: env:GTTEST_B02_PASSPHRASE\n", 'a'+i, quietConfig))
		procs[i] = up(t, d, "--db", url)
	}
	if strings.Contains(procs[1].out.String(), "first run") {
		t.Fatalf("the second process initialised the shared database again:\n%s", procs[1].out)
	}
	// Bootstrap tokens live in the database; the first process wrote them out.
	api := newAPIClient(t, readToken(t, dirs[0], "ra"), dirs...)

	cas := []string{"sm2-issuing", "ecdsa-issuing"}
	type answer struct {
		node   int
		ca     string
		serial string
	}
	var (
		mu       sync.Mutex
		seen     = map[[2]string]int{} // (issuer, serial) → answers
		perNode  [2]int
		problems []error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for c := 0; c < clients; c++ {
		node, caID := c%2, cas[(c/2)%2]
		var key crypto.Signer
		var err error
		if caID == "sm2-issuing" {
			key, err = sm2.GenerateKey(rand.Reader)
		} else {
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			t.Fatal(err)
		}
		url := "https://" + procs[node].addrs["https"] + "/api/v1/ca/" + caID + "/certificates"
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(total) {
					return
				}
				body, err := issueBody(key, fmt.Sprintf("n%d.b02.example.gov.cn", n))
				if err == nil {
					var status int
					var raw []byte
					status, raw, err = api.post(url, body, nil)
					if err == nil && status != http.StatusCreated {
						err = fmt.Errorf("node %d %s: %d %s", node, caID, status, raw)
					}
					if err == nil {
						var a answer
						a.node, a.ca = node, caID
						a.serial, _, err = decodeIssued(raw)
						if err == nil {
							mu.Lock()
							seen[[2]string{a.ca, a.serial}]++
							perNode[a.node]++
							mu.Unlock()
						}
					}
				}
				if err != nil {
					mu.Lock()
					problems = append(problems, err)
					stop := len(problems) > 20
					mu.Unlock()
					if stop {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	reportErrors(t, "issue", problems)
	answered := 0
	for k, n := range seen {
		answered += n
		if n > 1 {
			t.Errorf("(%s, %s) answered %d times", k[0], k[1], n)
		}
	}
	t.Logf("B-02: %d clients, 2 processes on one PostgreSQL: %d issuances in %s (%.0f/s); process a answered %d, process b %d",
		clients, answered, elapsed.Round(time.Millisecond), float64(answered)/elapsed.Seconds(), perNode[0], perNode[1])
	if perNode[0] == 0 || perNode[1] == 0 {
		t.Error("one of the processes answered nothing")
	}
	for _, p := range procs {
		p.stop(t)
	}

	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stored, dups, serialDups int
	for q, dst := range map[string]*int{
		"SELECT COUNT(*) FROM ca_certificates WHERE profile = 'server-tls'":                                                     &stored,
		"SELECT COUNT(*) FROM (SELECT issuer_id, serial FROM ca_certificates GROUP BY issuer_id, serial HAVING COUNT(*) > 1) d": &dups,
		"SELECT COUNT(*) FROM (SELECT issuer_id, serial FROM ca_serials GROUP BY issuer_id, serial HAVING COUNT(*) > 1) d":      &serialDups,
	} {
		if err := db.QueryRow(q).Scan(dst); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if stored != total || answered != total {
		t.Errorf("%d certificates stored, %d answered, want %d", stored, answered, total)
	}
	if dups != 0 || serialDups != 0 {
		t.Errorf("duplicate (issuer, serial): %d in ca_certificates, %d in ca_serials", dups, serialDups)
	}
	for _, table := range []string{"ca_certificates", "ca_serials"} {
		// What psql's \d shows: the primary key or unique constraint on
		// exactly (issuer_id, serial).
		var def string
		err := db.QueryRow(`SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
			WHERE r.relname = $1 AND c.contype IN ('p', 'u')
			AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a WHERE a.attrelid = r.oid AND a.attnum = ANY (c.conkey)) = ARRAY['issuer_id', 'serial']`,
			table).Scan(&def)
		if err != nil {
			t.Errorf("%s: no unique constraint on (issuer_id, serial): %v", table, err)
			continue
		}
		// And it holds: a copy of a stored row is refused.
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec("INSERT INTO " + table + " SELECT * FROM " + table + " LIMIT 1")
		_ = tx.Rollback()
		if !store.IsUniqueViolation(err) {
			t.Errorf("%s: a duplicate (issuer_id, serial) row was not refused as a unique violation: %v", table, err)
		}
		t.Logf("B-02: %s: %s; a duplicate row is refused (%v)", table, def, err)
	}
	auditVerify(t, "--db", url, "--data", dirs[0])
	if t.Failed() {
		return
	}
	t.Logf("B-02: %d stored, 0 duplicate (issuer, serial), audit chain of both processes verified", stored)
}
