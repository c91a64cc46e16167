package directory

import (
	"bytes"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/govtrust/govtrust/internal/config"
	"github.com/govtrust/govtrust/internal/node"
)

// sampleTree is a small tree for the request fuzzers and unit tests.
func sampleService(t testing.TB) *Service {
	t.Helper()
	s := New(nil)
	cfg := config.Defaults()
	s.env = &node.Env{Config: &cfg, Logger: slog.New(slog.DiscardHandler)}
	s.cfg = cfg.Directory
	s.baseDN = s.cfg.BaseDN
	s.base, _, _ = normalizeDN(s.baseDN)
	s.public = map[string]bool{}
	for _, a := range s.cfg.PublicAttributes {
		s.public[schemaName(a)] = true
	}
	var es []*Entry
	add := func(dn, kind string, attrs map[string]string, ocs ...string) {
		e, err := newEntry(dn, kind, ocs...)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range attrs {
			e.setStr(k, v)
		}
		es = append(es, e)
	}
	add(s.baseDN, KindContainer, map[string]string{"dc": "govtrust"}, "top", "dcObject")
	add("ou=departments,"+s.baseDN, KindContainer, map[string]string{"ou": "departments"}, "top", "organizationalUnit")
	add("ou=gaj,ou=departments,"+s.baseDN, KindDepartment, map[string]string{"ou": "gaj", "description": "市公安局"}, "top", "organizationalUnit")
	add("uid=zhangsan,ou=gaj,ou=departments,"+s.baseDN, KindPerson,
		map[string]string{"cn": "张三", "sn": "张", "uid": "zhangsan", "mail": "zhangsan@example.gov.cn", "telephoneNumber": "13800000000"},
		"top", "inetOrgPerson")
	s.tree.reset(es, 1)
	return s
}

// FuzzFilter: any filter string either fails to compile or evaluates
// against an entry without panicking, with and without private attributes.
func FuzzFilter(f *testing.F) {
	for _, seed := range []string{"(objectClass=*)", "(&(cn=张*)(!(mail=*x*)))", "(|(uid=a)(uid>=b)(uid<=c)(cn~=d))",
		"((cn=)", "(cn=*a*b*c*)", "(cn:dn:=x)", "(&)", "(|)", "(userCertificate;binary=\\00\\01)"} {
		f.Add(seed)
	}
	s := sampleService(f)
	e := s.tree.get("uid=zhangsan,ou=gaj,ou=departments,dc=govtrust,dc=local")
	f.Fuzz(func(t *testing.T, in string) {
		flt, err := compileFilter(in)
		if err != nil {
			return
		}
		flt.match(e, func(string) bool { return true })
		flt.match(e, func(a string) bool { return s.public[a] })
		flt.indexed()
	})
}

// FuzzDN: a DN either fails to parse or normalises to a fixed point.
func FuzzDN(f *testing.F) {
	for _, seed := range []string{"cn=a,dc=b", "CN=Ab\\,c , DC=x", "uid=张三+cn=x,ou=y", "cn=#0101", "=", ",,", "cn=a\\"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		norm, parent, err := normalizeDN(in)
		if err != nil {
			return
		}
		again, parent2, err := normalizeDN(norm)
		if err != nil || again != norm || parent2 != parent {
			t.Fatalf("normalizeDN(%q) = %q, again %q, %v", in, norm, again, err)
		}
	})
}

// FuzzRequest writes arbitrary bytes to a live server as one client; the
// server answers or closes that connection and keeps answering others.
func FuzzRequest(f *testing.F) {
	for _, seed := range [][]byte{
		{0x30, 0x05, 0x02, 0x01, 0x01, 0x42, 0x00},                                           // unbind
		{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff},                                                 // declares 2 GiB
		{0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00}, // anonymous bind
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00}, // indefinite length
	} {
		f.Add(seed)
	}
	s := sampleService(f)
	addr, err := s.serve(f.Context(), 0, "127.0.0.1:0", nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Stop(f.Context()) })
	probe, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { probe.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Millisecond))
		_, _ = c.Write(in)
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(c)
		c.Close()
		res, err := probe.Search(ldap.NewSearchRequest("dc=govtrust,dc=local", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(uid=zhangsan)", []string{"cn"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("server no longer answers after %x: %v", in, err)
		}
	})
}
