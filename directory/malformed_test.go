package directory_test

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/govtrust/govtrust/internal/testenv"
)

// TestMalformed: bad filters, oversize requests and garbage BER get an
// LDAP error or a closed connection; the server keeps answering another
// client that was connected all along, and new ones.
func TestMalformed(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	bystander, err := ldap.DialURL("ldap://" + tn.ldap)
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close()
	alive := func(t *testing.T) {
		t.Helper()
		res, err := bystander.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeSingleLevel, 0, 0, 0, false, "(cn=sm2-root)", []string{"cn"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("server stopped answering: %v", err)
		}
	}
	// send writes in on a connection of its own and reads until the server
	// answers, closes, or 1 s passes (a truncated message leaves the
	// server waiting for the rest, as slapd does); then it hangs up.
	send := func(t *testing.T, in []byte) {
		t.Helper()
		c, err := net.Dial("tcp", tn.ldap)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(in); err != nil {
			return // closed while writing
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(c)
	}
	cases := []struct {
		name string
		in   []byte
	}{
		{"garbage", []byte("\x00\x01\x02 definitely not BER \xff\xfe")},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"2 GiB length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01}},
		{"oversize request", append([]byte{0x30, 0x83, 0x10, 0x00, 0x00}, bytes.Repeat([]byte{0x04}, 1<<20)...)},
		{"truncated bind", []byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02}},
		{"search without filter", []byte{0x30, 0x1a, 0x02, 0x01, 0x02, 0x63, 0x15, 0x04, 0x00, 0x0a, 0x01, 0x02, 0x0a, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x01, 0x01, 0x00, 0x30, 0x00}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			send(t, tc.in)
			alive(t)
		})
	}
	t.Run("unsupported filters", func(t *testing.T) {
		// Extensible matches are not evaluated: protocolError, or for
		// those gldap itself cannot decode, a closed connection.
		for _, f := range []string{"(cn:caseExactMatch:=x)", "(cn:dn:=x)", "(:1.2.3:=x)"} {
			c, err := ldap.DialURL("ldap://" + tn.ldap)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Search(ldap.NewSearchRequest("dc=govtrust,dc=local", ldap.ScopeWholeSubtree, 0, 0, 0, false, f, nil, nil))
			c.Close()
			closedConn := err != nil && (ldap.IsErrorWithCode(err, ldap.ErrorNetwork) || strings.Contains(err.Error(), "EOF"))
			if !ldap.IsErrorWithCode(err, ldap.LDAPResultProtocolError) && !closedConn {
				t.Errorf("%s: %v, want protocolError or a closed connection", f, err)
			}
			t.Logf("%s: %v", f, err)
			alive(t)
		}
	})
	t.Run("bad base DN", func(t *testing.T) {
		_, err := bystander.Search(ldap.NewSearchRequest("cn==,,", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(cn=*)", nil, nil))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidDNSyntax) {
			t.Errorf("bad base: %v, want invalidDNSyntax", err)
		}
	})
	t.Run("size limit and paging", func(t *testing.T) {
		_, err := bystander.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeWholeSubtree, 0, 2, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			t.Errorf("size limit 2: %v, want sizeLimitExceeded", err)
		}
		all, err := bystander.Search(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		paged, err := bystander.SearchWithPaging(ldap.NewSearchRequest("ou=ca,dc=govtrust,dc=local", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil), 2)
		if err != nil || len(paged.Entries) != len(all.Entries) || len(all.Entries) < 5 {
			t.Errorf("paged search: %d entries (%v), unpaged %d", len(paged.Entries), err, len(all.Entries))
		}
	})
}

// TestStartTLS: ldapsearch -ZZ upgrades the connection with the node's
// HTTPS certificate (verified against DIR/bootstrap/tls-chain.pem) and
// then reads as usual; a second StartTLS is refused; the LDAPS listener
// (directory.ldaps) serves the same over TLS from the first byte.
func TestStartTLS(t *testing.T) {
	ldaps := testenv.FreeAddr(t)
	tn := startNode(t, t.TempDir(), "  ldaps: "+ldaps+"\n", "")
	chain := filepath.Join(tn.dir, "bootstrap", "tls-chain.pem")
	if _, err := os.Stat(chain); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.LookPath(t, "ldapsearch"), "-x", "-ZZ", "-LLL", "-H", "ldap://"+tn.ldap,
		"-b", "cn=sm2-root,ou=ca,dc=govtrust,dc=local", "-s", "base", "cn")
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+chain, "LDAPTLS_REQCERT=demand")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cn: sm2-root") {
		t.Fatalf("ldapsearch -ZZ: %v\n%s", err, out)
	}
	cmd = exec.Command(testenv.LookPath(t, "ldapsearch"), "-x", "-LLL", "-H", "ldaps://"+ldaps,
		"-b", "cn=sm2-root,ou=ca,dc=govtrust,dc=local", "-s", "base", "cn")
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+chain, "LDAPTLS_REQCERT=demand")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "cn: sm2-root") {
		t.Fatalf("ldapsearch ldaps://: %v\n%s", err, out)
	}
	c, err := ldap.DialURL("ldap://" + tn.ldap)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Error("second StartTLS accepted")
	}
}
