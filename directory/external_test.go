package directory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/go-ldap/ldap/v3"

	"github.com/govtrust/govtrust/ca/ceremony/ceremonytest"
	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/audit"
	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store"
	"github.com/govtrust/govtrust/internal/store/storetest"
	"github.com/govtrust/govtrust/internal/testenv"
)

func pemBlock(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// slapd is a throw-away OpenLDAP server (INTEROP.md §4): its own
// configuration and database in a temporary directory, on a free port,
// never the system service.
type slapd struct {
	t    testing.TB
	dir  string
	addr string
	cmd  *exec.Cmd
}

const slapdSuffix = "dc=pki,dc=test"

func startSlapd(t testing.TB) *slapd {
	t.Helper()
	bin := testenv.LookPath(t, "slapd")
	if _, err := os.Stat("/usr/lib/ldap/back_mdb.so"); err != nil {
		testenv.Missing(t, "slapd's back_mdb module (Debian package slapd)")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %[1]s/slapd.pid
database mdb
suffix "%[2]s"
rootdn "cn=admin,%[2]s"
rootpw secret
directory %[1]s/data
maxsize 104857600
index objectClass eq
index uid eq
`, dir, slapdSuffix)
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &slapd{t: t, dir: dir, addr: testenv.FreeAddr(t)}
	_ = bin
	s.start()
	t.Cleanup(s.stop)
	ldif := "dn: " + slapdSuffix + "\nobjectClass: dcObject\nobjectClass: organization\ndc: pki\no: pki\n"
	cmd := exec.Command(testenv.LookPath(t, "ldapadd"), "-x", "-H", s.url(), "-D", "cn=admin,"+slapdSuffix, "-w", "secret")
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ldapadd base: %v %s", err, out)
	}
	return s
}

func (s *slapd) url() string { return "ldap://" + s.addr }

// start runs slapd in the foreground (-d 0) on s.addr and waits until it
// accepts connections.
func (s *slapd) start() {
	s.t.Helper()
	s.cmd = exec.Command("slapd", "-f", filepath.Join(s.dir, "slapd.conf"), "-h", s.url()+"/", "-d", "0")
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("slapd: %v", err)
	}
	for i := 0; i < 200; i++ {
		if c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.t.Fatalf("slapd did not start: %s", stderr.String())
}

// stop kills slapd (an outage: no clean shutdown) and waits for it.
func (s *slapd) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// TestExternalSlapd: the publisher keeps a real slapd in step (the issue's
// external publishing row): the same bytes as the embedded server and HTTP,
// fetched from slapd with ldapsearch; and while slapd is down, everything
// published meanwhile (issuances, a revocation, an import) reaches it once
// it is back, once: one value per certificate, the revoked one gone.
func TestExternalSlapd(t *testing.T) {
	sl := startSlapd(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "ldap-password")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf(`  external:
    - name: slapd
      url: %s
      bind_dn: cn=admin,%s
      password: file:%s
      base_dn: %s
`, sl.url(), slapdSuffix, pw, slapdSuffix)
	tn := startNode(t, filepath.Join(dir, "node"), extra, "")

	a := tn.issuePerson("张三", "zhangsan@gaj.example.gov.cn")
	caDN := "cn=sm2-issuing,ou=ca," + slapdSuffix
	certDN := func(serial string) string { return "uid=" + serial + "," + caDN }
	eventually(t, 10*time.Second, "first publication to slapd", func() error {
		if got := fetchBinary(t, sl.url(), certDN(a.Serial), "userCertificate;binary"); !bytes.Equal(got, a.der) {
			return fmt.Errorf("certificate in slapd: %d bytes", len(got))
		}
		return nil
	})
	for _, id := range []string{"sm2-issuing", "ecdsa-root"} {
		dn := "cn=" + id + ",ou=ca," + slapdSuffix
		if got, want := fetchBinary(t, sl.url(), dn, "certificateRevocationList;binary"), tn.public("/pki/"+id+".crl"); !bytes.Equal(got, want) {
			t.Errorf("slapd %s CRL: %d bytes, HTTP %d", id, len(got), len(want))
		}
		if got, want := fetchBinary(t, sl.url(), dn, "cACertificate;binary"), tn.public("/pki/"+id+".crt"); !bytes.Equal(got, want) {
			t.Errorf("slapd %s cACertificate: %d bytes, HTTP %d", id, len(got), len(want))
		}
	}

	// A cross-certificate issued to ecdsa-root reaches both directories
	// as the forward element of its crossCertificatePair.
	root, err := smx509.ParseCertificate(tn.public("/pki/ecdsa-root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	other, otherKey := ceremonytest.ExternalRoot(t, "Other Root CA")
	cross := ceremonytest.CrossSign(t, root, other, otherKey)
	tn.addAccount("operator", policy.RoleCAOperator)
	body, _ := json.Marshal(map[string]string{"certificate": pemBlock(cross), "issuer": pemBlock(other.Raw)})
	if status, raw := tn.do("POST", "/api/v1/ca/ecdsa-root/cross-certificates", "operator", "application/json", body); status != http.StatusCreated {
		t.Fatalf("import cross-certificate: %d %s", status, raw)
	}
	for _, d := range []struct{ url, base string }{{sl.url(), slapdSuffix}, {"ldap://" + tn.ldap, "dc=govtrust,dc=local"}} {
		eventually(t, 10*time.Second, "cross-certificate in "+d.url, func() error {
			pair := fetchBinary(t, d.url, "cn=ecdsa-root,ou=ca,"+d.base, "crossCertificatePair;binary")
			if pair == nil {
				return fmt.Errorf("no crossCertificatePair yet")
			}
			forward, reverse, err := directory.ParseCertificatePair(pair)
			if err != nil || !bytes.Equal(forward, cross) || reverse != nil {
				return fmt.Errorf("crossCertificatePair: %v, forward %d octets, reverse %d", err, len(forward), len(reverse))
			}
			return nil
		})
	}

	// Outage.
	sl.stop()
	var during []*issued
	for i := range 4 {
		during = append(during, tn.issuePerson(fmt.Sprintf("用户%d", i), fmt.Sprintf("u%d@example.gov.cn", i)))
	}
	tn.revoke(during[1].Serial)
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(orgYAML)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	// The publisher has tried and failed at least once.
	eventually(t, 10*time.Second, "publisher notices the outage", func() error {
		var msg string
		err := tn.n.Env().DB.QueryRow(context.Background(), "SELECT last_error FROM dir_targets WHERE name = 'slapd'").Scan(&msg)
		if err == nil && msg == "" {
			err = fmt.Errorf("no error recorded yet")
		}
		return err
	})
	sl.start()

	eventually(t, 75*time.Second, "catch-up after the outage", func() error {
		for i, c := range during {
			got := fetchBinary(t, sl.url(), certDN(c.Serial), "userCertificate;binary")
			if i == 1 {
				if got != nil {
					return fmt.Errorf("revoked certificate %s still in slapd", c.Serial)
				}
				continue
			}
			if !bytes.Equal(got, c.der) {
				return fmt.Errorf("certificate %s not (yet) in slapd", c.Serial)
			}
		}
		if out, err := ldapsearch(t, sl.url(), "-b", "ou=departments,"+slapdSuffix, "(uid=zhangsan)", "cn"); err != nil || !strings.Contains(out, "cn:: ") {
			return fmt.Errorf("person not in slapd: %v %s", err, out)
		}
		return nil
	})
	// Once: every certificate entry in slapd holds one value (fetchBinary
	// fails on more), and slapd has exactly the certificates the embedded
	// directory has.
	count := func(url, base string) int {
		out, err := ldapsearch(t, url, "-b", base, "(objectClass=pkiUser)", "dn")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(out, "dn: uid=")
	}
	// (The node's own certificates, HTTPS, TSA and OCSP, are there too.)
	if got, want := count(sl.url(), "ou=ca,"+slapdSuffix), count("ldap://"+tn.ldap, "ou=ca,dc=govtrust,dc=local"); got != want || want < 4 {
		t.Errorf("certificate entries: slapd %d, embedded %d; want equal, with the 4 current test certificates", got, want)
	}
	fetchBinary(t, sl.url(), "uid=zhangsan,ou=gaj,ou=departments,"+slapdSuffix, "userCertificate;binary")
}

// externalConfig is the directory section naming sl as the external target
// "slapd" (more, indented by six spaces, is added to the target).
func externalConfig(t *testing.T, dir string, sl *slapd, more string) string {
	t.Helper()
	pw := filepath.Join(dir, "ldap-password")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("  external:\n    - name: slapd\n      url: %s\n      bind_dn: cn=admin,%s\n      password: file:%s\n      base_dn: %s\n",
		sl.url(), slapdSuffix, pw, slapdSuffix) + more
}

// ldapWrite binds to the node's directory as the system administrator
// and runs fn.
func (tn *testNode) ldapWrite(fn func(l *ldap.Conn) error) {
	tn.t.Helper()
	l, err := ldap.DialURL("ldap://" + tn.ldap)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind("cn=sysadmin,ou=accounts,dc=govtrust,dc=local", tn.tokens["sysadmin"]); err != nil {
		tn.t.Fatal(err)
	}
	if err := fn(l); err != nil {
		tn.t.Fatal(err)
	}
}

// TestExternalDeleteChildrenFirst: a person and then its department are
// deleted while slapd is down; the catch-up deletes the person before the
// department (slapd refuses to delete an entry with children), and what
// comes after (a certificate) arrives.
func TestExternalDeleteChildrenFirst(t *testing.T) {
	sl := startSlapd(t)
	dir := t.TempDir()
	tn := startNode(t, filepath.Join(dir, "node"), externalConfig(t, dir, sl, ""), "")
	org := `
departments:
  - {code: tmp, name: Temp}
people:
  - {uid: lisi, name: Li Si, department: tmp, mail: lisi@example.gov.cn}
`
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(org)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	person := "uid=lisi,ou=tmp,ou=departments,"
	dept := "ou=tmp,ou=departments,"
	eventually(t, 15*time.Second, "person in slapd", func() error {
		if out, err := ldapsearch(t, sl.url(), "-b", person+slapdSuffix, "-s", "base", "(objectClass=*)", "dn"); err != nil {
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	sl.stop()
	tn.ldapWrite(func(l *ldap.Conn) error {
		// One batch: the person, then its department (the parent last).
		for _, dn := range []string{person, dept} {
			if err := l.Del(ldap.NewDelRequest(dn+"dc=govtrust,dc=local", nil)); err != nil {
				return fmt.Errorf("delete %s: %w", dn, err)
			}
		}
		return nil
	})
	sl.start()
	c := tn.issuePerson("王五", "wangwu@example.gov.cn")
	certDN := "uid=" + c.Serial + ",cn=sm2-issuing,ou=ca," + slapdSuffix
	eventually(t, 30*time.Second, "catch-up after the deletes", func() error {
		if got := fetchBinary(t, sl.url(), certDN, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			var msg string
			_ = tn.n.Env().DB.QueryRow(context.Background(), "SELECT last_error FROM dir_targets WHERE name = 'slapd'").Scan(&msg)
			return fmt.Errorf("certificate not in slapd; last error %q", msg)
		}
		return nil
	})
	for _, dn := range []string{person, dept} {
		if out, err := ldapsearch(t, sl.url(), "-b", dn+slapdSuffix, "-s", "base", "(objectClass=*)", "dn"); err == nil {
			t.Errorf("%s still in slapd: %s", dn, out)
		}
	}
}

// TestExternalApplicationMail: an application imported with a mailbox is
// an entry slapd's standard schema (core, cosine, inetorgperson) accepts,
// and what comes after it reaches slapd.
func TestExternalApplicationMail(t *testing.T) {
	sl := startSlapd(t)
	dir := t.TempDir()
	tn := startNode(t, filepath.Join(dir, "node"), externalConfig(t, dir, sl, ""), "")
	org := `
departments:
  - {code: gaj, name: 市公安局}
applications:
  - {name: hz-app, department: gaj, mail: hz-app@gaj.example.gov.cn, description: 户政业务系统}
  - {name: no-mail, department: gaj}
`
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(org)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	// A mailbox slapd would refuse (not an IA5String) is refused at import.
	bad := strings.Replace(org, "hz-app@gaj", "户政@gaj", 1)
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(bad)); status != http.StatusBadRequest ||
		!strings.Contains(string(raw), "applications[0]: mail") || !strings.Contains(string(raw), "not ASCII") {
		t.Errorf("import of a non-ASCII mail: %d %s; want 400 naming applications[0]", status, raw)
	}
	c := tn.issuePerson("王五", "wangwu@example.gov.cn")
	certDN := "uid=" + c.Serial + ",cn=sm2-issuing,ou=ca," + slapdSuffix
	eventually(t, 20*time.Second, "application and certificate in slapd", func() error {
		out, err := ldapsearch(t, sl.url(), "-b", "ou=gaj,ou=departments,"+slapdSuffix, "(objectClass=applicationProcess)", "mail")
		if err != nil || !strings.Contains(out, "mail: hz-app@gaj.example.gov.cn") || !strings.Contains(out, "dn: cn=no-mail,") {
			var msg string
			_ = tn.n.Env().DB.QueryRow(context.Background(), "SELECT last_error FROM dir_targets WHERE name = 'slapd'").Scan(&msg)
			return fmt.Errorf("applications in slapd: %v %q; last error %q", err, out, msg)
		}
		if got := fetchBinary(t, sl.url(), certDN, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			return fmt.Errorf("certificate not in slapd")
		}
		return nil
	})
}

// externalStatus returns GET /api/v1/directory/external's target "slapd".
func (tn *testNode) externalStatus() directory.ExternalTarget {
	tn.t.Helper()
	status, raw := tn.do("GET", "/api/v1/directory/external", "sysadmin", "", nil)
	var out struct{ Targets []directory.ExternalTarget }
	if err := json.Unmarshal(raw, &out); status != http.StatusOK || err != nil || len(out.Targets) != 1 {
		tn.t.Fatalf("GET /api/v1/directory/external: %d %s", status, raw)
	}
	return out.Targets[0]
}

// metric returns the value of the sample line prefix in /metrics.
func (tn *testNode) metric(prefix string) string {
	tn.t.Helper()
	tok, err := node.ReadBootstrapToken(tn.dir, "auditor")
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.tokens["auditor"] = tok
	status, raw := tn.do("GET", "/metrics", "auditor", "", nil)
	if status != http.StatusOK {
		tn.t.Fatalf("/metrics: %d %s", status, raw)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, prefix+" "); ok {
			return v
		}
	}
	return ""
}

// refusedCodes maps the DNs refused in st to their result codes.
func refusedCodes(st directory.ExternalTarget) map[string]int {
	out := map[string]int{}
	for _, r := range st.Refused {
		out[r.DN] = r.Code
	}
	return out
}

// TestExternalRefusedEntrySkipped: slapd already holds a person's DN as
// another structural class (an account), so it refuses the person
// (objectClassModsProhibited, 69) however often it is tried; the entry is
// recorded as refused (status API, metric, audit log) and everything
// after it (the rest of the import, a certificate) still arrives. Once
// the operator removed the conflicting entry, the person's next change
// writes it and it leaves the refused list.
func TestExternalRefusedEntrySkipped(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) { externalRefusedEntrySkipped(t, backend) })
	}
}

func externalRefusedEntrySkipped(t *testing.T, backend string) {
	dbURL := ""
	if backend == "postgres" {
		dbURL = storetest.PostgresURL(t)
	}
	sl := startSlapd(t)
	person := "uid=zhangsan,ou=gaj,ou=departments," + slapdSuffix
	ldif := "dn: ou=departments," + slapdSuffix + "\nobjectClass: organizationalUnit\nou: departments\n\n" +
		"dn: ou=gaj,ou=departments," + slapdSuffix + "\nobjectClass: organizationalUnit\nou: gaj\n\n" +
		"dn: " + person + "\nobjectClass: account\nuid: zhangsan\n"
	cmd := exec.Command(testenv.LookPath(t, "ldapadd"), "-x", "-H", sl.url(), "-D", "cn=admin,"+slapdSuffix, "-w", "secret")
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ldapadd: %v %s", err, out)
	}
	dir := t.TempDir()
	tn := startNodeDB(t, filepath.Join(dir, "node"), externalConfig(t, dir, sl, ""), "", dbURL)
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(orgYAML)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	c := tn.issuePerson("张三", "zhangsan@gaj.example.gov.cn")
	certDN := "uid=" + c.Serial + ",cn=sm2-issuing,ou=ca," + slapdSuffix
	eventually(t, 20*time.Second, "the rest of the queue in slapd", func() error {
		if got := fetchBinary(t, sl.url(), certDN, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			return fmt.Errorf("certificate not in slapd; status %+v", tn.externalStatus())
		}
		if out, err := ldapsearch(t, sl.url(), "-b", "ou=gaj-hz,ou=departments,"+slapdSuffix, "(cn=hz-app)", "dn"); err != nil || !strings.Contains(out, "cn=hz-app") {
			return fmt.Errorf("application not in slapd: %v %s", err, out)
		}
		return nil
	})
	st := tn.externalStatus()
	t.Logf("refused: %+v", st.Refused)
	if got := refusedCodes(st); st.OK || st.LastError != "" || len(got) != 1 || got[person] != 69 || st.Pending != 0 {
		t.Errorf("status %+v; want not ok, no last error, nothing pending, %s refused with 69", st, person)
	}
	if got := tn.metric(`govtrust_directory_external_refused_entries{target="slapd"}`); got != "1" {
		t.Errorf("refused entries metric = %q, want 1", got)
	}
	var audited int
	if err := tn.n.Env().DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM audit_log WHERE action = 'directory.external.refused' AND object = ?",
		"ldap/"+person).Scan(&audited); err != nil || audited == 0 {
		t.Errorf("audit records of the refusal: %d %v", audited, err)
	}
	if out, _ := ldapsearch(t, sl.url(), "-b", person, "-s", "base", "(objectClass=*)", "objectClass"); strings.Contains(out, "inetOrgPerson") {
		t.Errorf("slapd's entry changed: %s", out)
	}

	// The operator removes the conflicting entry; the person's next
	// change (a re-import) writes it, with its certificate.
	del := exec.Command(testenv.LookPath(t, "ldapdelete"), "-x", "-H", sl.url(), "-D", "cn=admin,"+slapdSuffix, "-w", "secret", person)
	if out, err := del.CombinedOutput(); err != nil {
		t.Fatalf("ldapdelete: %v %s", err, out)
	}
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(strings.Replace(orgYAML, "科长", "处长", 1))); status != http.StatusOK {
		t.Fatalf("re-import: %d %s", status, raw)
	}
	eventually(t, 20*time.Second, "the person in slapd", func() error {
		if got := fetchBinary(t, sl.url(), person, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			return fmt.Errorf("person's certificate not in slapd")
		}
		if st := tn.externalStatus(); !st.OK || len(st.Refused) != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if got := tn.metric(`govtrust_directory_external_refused_entries{target="slapd"}`); got != "0" {
		t.Errorf("refused entries metric = %q, want 0", got)
	}
}

// TestExternalRefusedParent: slapd refuses the departments (object classes
// configured for them that their entries do not satisfy, 65); the people
// and applications below them cannot be added (noSuchObject) and are
// refused with them rather than holding up the queue, while the services
// and the certificates arrive.
func TestExternalRefusedParent(t *testing.T) {
	sl := startSlapd(t)
	dir := t.TempDir()
	more := "      object_classes: {department: [top, organizationalUnit, strongAuthenticationUser]}\n"
	tn := startNode(t, filepath.Join(dir, "node"), externalConfig(t, dir, sl, more), "")
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(orgYAML)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	c := tn.issuePerson("张三", "zhangsan@gaj.example.gov.cn")
	certDN := "uid=" + c.Serial + ",cn=sm2-issuing,ou=ca," + slapdSuffix
	eventually(t, 20*time.Second, "the rest of the queue in slapd", func() error {
		if got := fetchBinary(t, sl.url(), certDN, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			return fmt.Errorf("certificate not in slapd; status %+v", tn.externalStatus())
		}
		if out, err := ldapsearch(t, sl.url(), "-b", "ou=services,"+slapdSuffix, "(cn=hz-query)", "dn"); err != nil || !strings.Contains(out, "cn=hz-query") {
			return fmt.Errorf("service not in slapd: %v %s", err, out)
		}
		return nil
	})
	deps := "ou=departments," + slapdSuffix
	want := map[string]int{"ou=gaj," + deps: 65, "ou=gaj-hz," + deps: 65, "uid=zhangsan,ou=gaj," + deps: 32, "cn=hz-app,ou=gaj-hz," + deps: 32}
	st := tn.externalStatus()
	t.Logf("refused: %+v", st.Refused)
	if got := refusedCodes(st); st.OK || st.LastError != "" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("status %+v; refused %v, want %v", st, got, want)
	}
	for _, r := range st.Refused {
		if r.Code == 32 && !strings.Contains(r.Message, "was refused") {
			t.Errorf("%s: message %q does not name the refused parent", r.DN, r.Message)
		}
	}
}

// TestExternalLeaseLostMidBatch: two processes push to one slapd. The one
// holding the lease stalls in the middle of a batch for longer than its
// lease (a slow server, a paused VM), the other takes the lease over and
// pushes the batch; when the first wakes up it must find its lease gone
// and stop, not go on writing (an older state over a newer one). Checked
// before every entry's push: the process pushing holds the lease.
func TestExternalLeaseLostMidBatch(t *testing.T) {
	const ttl = 3 * time.Second
	var (
		mu               sync.Mutex
		armed, stalled   bool
		pushesB, foreign int
		violations       []string
		tn               *testNode
		svcB             *directory.Service
		ctx              = context.Background()
	)
	directory.SetExternalLease(t, ttl, func(s *directory.Service, norm string) {
		mu.Lock()
		if tn == nil {
			mu.Unlock()
			return // the node is starting
		}
		var owner string
		if err := tn.n.Env().DB.QueryRow(ctx, "SELECT lease_owner FROM dir_targets WHERE name = 'slapd'").Scan(&owner); err != nil {
			t.Errorf("lease owner: %v", err)
		}
		if owner != directory.LeaseOwner(s) {
			violations = append(violations, fmt.Sprintf("%s pushed %s while %s held the lease", directory.LeaseOwner(s), norm, owner))
		}
		if s == svcB {
			pushesB++
		}
		if s != tn.dirSvc && s != svcB {
			foreign++
		}
		stall := armed && !stalled && s == tn.dirSvc
		stalled = stalled || stall
		mu.Unlock()
		if stall {
			time.Sleep(2 * ttl)
		}
	})
	sl := startSlapd(t)
	dir := t.TempDir()
	a := startNode(t, filepath.Join(dir, "node"), externalConfig(t, dir, sl, ""), "")
	mu.Lock()
	tn = a
	mu.Unlock()
	eventually(t, 15*time.Second, "A holds the lease and slapd is in step", func() error {
		st := tn.externalStatus()
		var owner string
		_ = tn.n.Env().DB.QueryRow(ctx, "SELECT lease_owner FROM dir_targets WHERE name = 'slapd'").Scan(&owner)
		if st.Cursor == 0 || st.Pending != 0 || owner != directory.LeaseOwner(tn.dirSvc) {
			return fmt.Errorf("status %+v, lease owner %q", st, owner)
		}
		return nil
	})

	// B: a second directory service on the same database (a second node).
	envA := tn.n.Env()
	sc, err := node.StoreConfig(envA.Config, filepath.Join(dir, "node"))
	if err != nil {
		t.Fatal(err)
	}
	dbB, err := store.Open(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer dbB.Close()
	envB := *envA
	envB.DB, envB.Audit = dbB, audit.New("node-b", envA.Clock)
	mu.Lock()
	svcB = directory.New(caSource{})
	mu.Unlock()
	if err := svcB.Start(ctx, &envB); err != nil {
		t.Fatal(err)
	}
	defer svcB.Stop(ctx)

	// A batch of several entries, taken by A, which stalls at its first.
	mu.Lock()
	armed = true
	mu.Unlock()
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(orgYAML)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	eventually(t, 30*time.Second, "the batch in slapd, A awake again", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !stalled || pushesB == 0 {
			return fmt.Errorf("A stalled %v, B pushed %d", stalled, pushesB)
		}
		if st := tn.externalStatus(); st.Pending != 0 || !st.OK {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	time.Sleep(2 * ttl) // A wakes up and finds the lease gone
	if out, err := ldapsearch(t, sl.url(), "-b", "ou=gaj-hz,ou=departments,"+slapdSuffix, "(cn=hz-app)", "dn"); err != nil || !strings.Contains(out, "cn=hz-app") {
		t.Errorf("application not in slapd: %v %s", err, out)
	}
	mu.Lock()
	if len(violations) > 0 || foreign > 0 {
		t.Errorf("pushes without the lease: %s (%d by other services)", strings.Join(violations, "; "), foreign)
	}
	mu.Unlock()

	// B stops and gives the lease up: A takes over at once, not when
	// B's lease would have run out.
	if err := svcB.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, ttl/2, "A takes the lease over", func() error {
		var owner string
		_ = tn.n.Env().DB.QueryRow(ctx, "SELECT lease_owner FROM dir_targets WHERE name = 'slapd'").Scan(&owner)
		if owner != directory.LeaseOwner(tn.dirSvc) {
			return fmt.Errorf("lease owner %q", owner)
		}
		return nil
	})
}
