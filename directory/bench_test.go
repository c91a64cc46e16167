package directory_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// BenchmarkSearch compares searches per second of the embedded server and
// slapd (mdb, uid and objectClass indexed) serving the same entries, put
// there by the external publisher: a CA entry's CRL by DN, a certificate by
// DN, and a certificate by serial (one-level filter (uid=<serial>) under
// the CA entry, among all the CA's certificates). Each parallel worker
// holds its own connection. Compare the ns/op of the embedded and slapd
// variants (ratio = slapd ns/op / embedded ns/op, the goal is ≥ 1).
func BenchmarkSearch(b *testing.B) {
	sl := startSlapd(b)
	dir := b.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret"), 0o600); err != nil {
		b.Fatal(err)
	}
	extra := fmt.Sprintf("  external:\n    - {name: slapd, url: %q, bind_dn: \"cn=admin,%s\", password: \"file:%s\", base_dn: %q}\n", sl.url(), slapdSuffix, pw, slapdSuffix)
	tn := startNode(b, filepath.Join(dir, "node"), extra, "")
	var last *issued
	for i := range 200 {
		last = tn.issuePerson(fmt.Sprintf("用户%d", i), fmt.Sprintf("u%d@example.gov.cn", i))
	}
	eventually(b, 60*time.Second, "slapd caught up", func() error {
		if fetchBinary(b, sl.url(), "uid="+last.Serial+",cn=sm2-issuing,ou=ca,"+slapdSuffix, "userCertificate;binary") == nil {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	servers := []struct{ name, url, base string }{
		{"embedded", "ldap://" + tn.ldap, "dc=govtrust,dc=local"},
		{"slapd", sl.url(), slapdSuffix},
	}
	for _, q := range []struct {
		name string
		req  func(base string) *ldap.SearchRequest
	}{
		{"CRL-by-DN", func(base string) *ldap.SearchRequest {
			return ldap.NewSearchRequest("cn=sm2-issuing,ou=ca,"+base, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"certificateRevocationList;binary"}, nil)
		}},
		{"cert-by-DN", func(base string) *ldap.SearchRequest {
			return ldap.NewSearchRequest("uid="+last.Serial+",cn=sm2-issuing,ou=ca,"+base, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"userCertificate;binary"}, nil)
		}},
		{"cert-by-serial", func(base string) *ldap.SearchRequest {
			return ldap.NewSearchRequest("cn=sm2-issuing,ou=ca,"+base, ldap.ScopeSingleLevel, 0, 0, 0, false, "(uid="+last.Serial+")", []string{"userCertificate;binary"}, nil)
		}},
	} {
		for _, s := range servers {
			b.Run(q.name+"/"+s.name, func(b *testing.B) {
				req := q.req(s.base)
				b.RunParallel(func(pb *testing.PB) {
					c, err := ldap.DialURL(s.url)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					for pb.Next() {
						res, err := c.Search(req)
						if err != nil || len(res.Entries) != 1 || len(res.Entries[0].Attributes) != 1 {
							b.Errorf("%s: %v", s.name, err)
							return
						}
					}
				})
			})
		}
	}
}
