package directory_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/internal/authz/policy"
	"github.com/govtrust/govtrust/internal/testenv"
)

const orgYAML = `
departments:
  - {code: gaj, name: 市公安局, telephone: "010-12345678"}
  - {code: gaj-hz, name: 户政处, parent: gaj}
people:
  - {uid: zhangsan, name: 张三, surname: 张, department: gaj, title: 科长, mail: zhangsan@gaj.example.gov.cn,
     telephone: "13800000000", id_number: "11010519491231002X"}
applications:
  - {name: hz-app, department: gaj-hz, description: 户政业务系统}
services:
  - {name: hz-query, department: gaj-hz, url: "https://hz.example.gov.cn/api"}
`

// TestAcceptanceF01F02 performs ACCEPTANCE.md F-01 and F-02 and the
// issue's "within 5 s" rows against the embedded server with ldapsearch
// and curl: a certificate issued through the CA API appears in its own
// entry and in its holder's entry, byte-identical to the API's; the CA
// entry's certificate and CRLs are the bytes HTTP serves; after a
// revocation and a new CRL, the certificate is gone and the CRL fetched
// through the certificate's LDAP CRL distribution point equals the HTTP
// one, with the same CRLNumber.
func TestAcceptanceF01F02(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	ldapURL := "ldap://" + tn.ldap
	base := "dc=govtrust,dc=local"
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(orgYAML)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}

	c := tn.issuePerson("张三", "zhangsan@gaj.example.gov.cn")
	certDN := "uid=" + c.Serial + ",cn=sm2-issuing,ou=ca," + base
	personDN := "uid=zhangsan,ou=gaj,ou=departments," + base
	took := eventually(t, 5*time.Second, "issued certificate over LDAP", func() error {
		if got := fetchBinary(t, ldapURL, certDN, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			return fmt.Errorf("certificate entry has %d bytes", len(got))
		}
		return nil
	})
	t.Logf("issued -> visible over LDAP in %s", took)
	t.Run("F-01 subscriber entries", func(t *testing.T) {
		if got := fetchBinary(t, ldapURL, personDN, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			t.Errorf("holder %s: userCertificate;binary is %d bytes, want the issued certificate (%d)", personDN, len(got), len(c.der))
		}
		out, err := ldapsearch(t, ldapURL, "-b", "ou=ca,"+base, "(uid="+c.Serial+")", "dn")
		if err != nil || !strings.Contains(out, "dn: "+certDN) {
			t.Errorf("search by serial: %v\n%s", err, out)
		}
	})
	t.Run("F-01 CA entries", func(t *testing.T) {
		for _, id := range []string{"sm2-root", "sm2-issuing", "ecdsa-root", "ecdsa-issuing"} {
			dn := "cn=" + id + ",ou=ca," + base
			if got, want := fetchBinary(t, ldapURL, dn, "cACertificate;binary"), tn.public("/pki/"+id+".crt"); !bytes.Equal(got, want) {
				t.Errorf("%s cACertificate: %d bytes, HTTP %d", id, len(got), len(want))
			}
			want := tn.public("/pki/" + id + ".crl")
			for _, attr := range []string{"certificateRevocationList;binary", "authorityRevocationList;binary"} {
				if got := fetchBinary(t, ldapURL, dn, attr); !bytes.Equal(got, want) {
					t.Errorf("%s %s: %d bytes, HTTP %d", id, attr, len(got), len(want))
				}
			}
		}
	})

	// Revoke and publish a CRL now; both reach LDAP within 5 s.
	tn.revoke(c.Serial)
	tn.addAccount("operator", policy.RoleCAOperator)
	if status, raw := tn.do("POST", "/api/v1/ca/sm2-issuing/crls", "operator", "", nil); status != http.StatusCreated {
		t.Fatalf("force CRL: %d %s", status, raw)
	}
	httpCRL := tn.public("/pki/sm2-issuing.crl")
	took = eventually(t, 5*time.Second, "revocation and new CRL over LDAP", func() error {
		if got := fetchBinary(t, ldapURL, certDN, "userCertificate;binary"); got != nil {
			return fmt.Errorf("revoked certificate still listed")
		}
		if got := fetchBinary(t, ldapURL, "cn=sm2-issuing,ou=ca,"+base, "certificateRevocationList;binary"); !bytes.Equal(got, httpCRL) {
			return fmt.Errorf("LDAP CRL differs from HTTP")
		}
		return nil
	})
	t.Logf("revoked + CRL -> visible over LDAP in %s", took)
	if got := fetchBinary(t, ldapURL, personDN, "userCertificate;binary"); got != nil {
		t.Errorf("holder still lists the revoked certificate")
	}

	t.Run("F-02 CRL over LDAP = HTTP", func(t *testing.T) {
		cert, err := smx509.ParseCertificate(c.der)
		if err != nil {
			t.Fatal(err)
		}
		var ldapDP, httpDP string
		for _, u := range cert.CRLDistributionPoints {
			switch {
			case strings.HasPrefix(u, "ldap://"):
				ldapDP = u
			case strings.HasPrefix(u, "http://"):
				httpDP = u
			}
		}
		if ldapDP == "" || httpDP == "" {
			t.Fatalf("CRL distribution points %q: want an http and an ldap URL", cert.CRLDistributionPoints)
		}
		// Both fetched from the URLs in the certificate, with curl.
		curl := testenv.LookPath(t, "curl")
		dir := t.TempDir()
		viaHTTP := filepath.Join(dir, "http.crl")
		if out, err := exec.Command(curl, "-sf", "-o", viaHTTP, httpDP).CombinedOutput(); err != nil {
			t.Fatalf("curl %s: %v %s", httpDP, err, out)
		}
		// curl prints LDAP answers as LDIF-like text with the value
		// base64-encoded after "certificateRevocationList;binary:: ".
		out, err := exec.Command(curl, "-sf", strings.ReplaceAll(ldapDP, " ", "%20")).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v %s", ldapDP, err, out)
		}
		if !strings.Contains(string(out), "certificateRevocationList;binary") {
			t.Fatalf("curl %s: no CRL in\n%s", ldapDP, out)
		}
		u, err := url.Parse(ldapDP)
		if err != nil {
			t.Fatal(err)
		}
		dn, _ := url.PathUnescape(strings.TrimPrefix(u.Path, "/"))
		viaLDAP := fetchBinary(t, "ldap://"+u.Host, dn, u.RawQuery)
		httpBytes, _ := os.ReadFile(viaHTTP)
		if !bytes.Equal(viaLDAP, httpBytes) || len(httpBytes) == 0 {
			t.Fatalf("LDAP CRL (%d bytes) differs from HTTP CRL (%d bytes)", len(viaLDAP), len(httpBytes))
		}
		l, err := smx509.ParseRevocationList(viaLDAP)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := smx509.ParseRevocationList(httpBytes)
		if l.Number.Cmp(h.Number) != 0 {
			t.Errorf("CRLNumber LDAP %v, HTTP %v", l.Number, h.Number)
		}
		found := false
		for _, e := range l.RevokedCertificateEntries {
			found = found || fmt.Sprintf("%x", e.SerialNumber) == strings.TrimLeft(c.Serial, "0")
		}
		if !found {
			t.Errorf("CRL %v lacks revoked serial %s", l.Number, c.Serial)
		}
	})
}

// TestAcceptanceF03 is ACCEPTANCE.md F-03: anonymous clients read public
// attributes only (not telephone or ID numbers, not even through a
// filter) and cannot write; a name without a password is refused;
// the system administrator binds with an API token and writes, audited;
// an RA officer may not write.
func TestAcceptanceF03(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	ldapURL := "ldap://" + tn.ldap
	base := "dc=govtrust,dc=local"
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(orgYAML)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	person := "uid=zhangsan,ou=gaj,ou=departments," + base

	out, err := ldapsearch(t, ldapURL, "-b", "ou=departments,"+base, "(&(objectClass=inetOrgPerson)(cn=张*))", "*")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "dn: "+person) || !strings.Contains(out, "mail: zhangsan@gaj.example.gov.cn") {
		t.Errorf("anonymous search lacks the person or its public attributes:\n%s", out)
	}
	for _, private := range []string{"telephoneNumber", "serialNumber", "13800000000", "11010519491231002X"} {
		if strings.Contains(out, private) {
			t.Errorf("anonymous search shows %s:\n%s", private, out)
		}
	}
	if out, _ := ldapsearch(t, ldapURL, "-b", base, "(telephoneNumber=138*)", "dn"); strings.Contains(out, "dn:") {
		t.Errorf("anonymous filter on a private attribute matched:\n%s", out)
	}

	modify := testenv.LookPath(t, "ldapmodify")
	run := func(args []string, ldif string) (string, error) {
		cmd := exec.Command(modify, append([]string{"-x", "-H", ldapURL}, args...)...)
		cmd.Stdin = strings.NewReader(ldif)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	writes := map[string]string{
		"add":    "dn: uid=mallory,ou=gaj,ou=departments," + base + "\nchangetype: add\nobjectClass: inetOrgPerson\ncn: m\nsn: m\nuid: mallory\n",
		"modify": "dn: " + person + "\nchangetype: modify\nreplace: title\ntitle: 处长\n",
		"delete": "dn: " + person + "\nchangetype: delete\n",
	}
	for op, ldif := range writes {
		t.Run("anonymous "+op, func(t *testing.T) {
			out, err := run(nil, ldif)
			if err == nil || !strings.Contains(out, "Insufficient access (50)") {
				t.Errorf("anonymous %s: err %v, want Insufficient access (50):\n%s", op, err, out)
			}
		})
	}
	t.Run("name without password", func(t *testing.T) {
		out, err := run([]string{"-D", "cn=sysadmin,ou=accounts," + base, "-w", ""}, writes["modify"])
		if err == nil || !strings.Contains(out, "(53)") {
			t.Errorf("unauthenticated bind: err %v, want unwilling to perform (53):\n%s", err, out)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		out, err := run([]string{"-D", "cn=sysadmin,ou=accounts," + base, "-w", tn.tokens["ra"]}, writes["modify"])
		if err == nil || !strings.Contains(out, "Invalid credentials (49)") {
			t.Errorf("bind as sysadmin with the RA's token: err %v:\n%s", err, out)
		}
	})
	t.Run("RA may not write", func(t *testing.T) {
		out, err := run([]string{"-D", "cn=ra,ou=accounts," + base, "-w", tn.tokens["ra"]}, writes["modify"])
		if err == nil || !strings.Contains(out, "(50)") {
			t.Errorf("RA modify: err %v:\n%s", err, out)
		}
	})
	t.Run("sysadmin writes, audited, sees private attributes", func(t *testing.T) {
		creds := []string{"-D", "cn=sysadmin,ou=accounts," + base, "-w", tn.tokens["sysadmin"]}
		if out, err := run(creds, writes["modify"]); err != nil {
			t.Fatalf("sysadmin modify: %v\n%s", err, out)
		}
		if out, err := run(creds, "dn: cn=sm2-issuing,ou=ca,"+base+"\nchangetype: modify\nreplace: description\ndescription: x\n"); err == nil || !strings.Contains(out, "(53)") {
			t.Errorf("sysadmin modify of a CA entry: err %v, want unwilling (53):\n%s", err, out)
		}
		out, err := ldapsearch(t, ldapURL, append(creds, "-b", person, "-s", "base", "*")...)
		if err != nil || !strings.Contains(out, "title:: ") && !strings.Contains(out, "title: 处长") || !strings.Contains(out, "telephoneNumber: 13800000000") {
			t.Errorf("sysadmin read: %v\n%s", err, out)
		}
		var n int
		if err := tn.n.Env().DB.QueryRow(context.Background(),
			"SELECT COUNT(*) FROM audit_log WHERE action = 'directory.entry.modify' AND actor = 'account/sysadmin' AND object = ?", "ldap/"+person).Scan(&n); err != nil || n != 1 {
			t.Errorf("audit records of the modify: %d, %v; want 1", n, err)
		}
	})
}
