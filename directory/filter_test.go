package directory

import "testing"

// TestFilterMatch evaluates RFC 4515 filters against a person entry, as an
// administrator (every attribute) and anonymously (public ones only).
func TestFilterMatch(t *testing.T) {
	s := sampleService(t)
	e := s.tree.get("uid=zhangsan,ou=gaj,ou=departments,dc=govtrust,dc=local")
	all := func(string) bool { return true }
	public := func(a string) bool { return s.public[a] }
	cases := []struct {
		filter      string
		admin, anon bool
	}{
		{"(objectClass=*)", true, true},
		{"(objectclass=INETORGPERSON)", true, true},
		{"(cn=张三)", true, true},
		{"(cn=张*)", true, true},
		{"(mail=*@EXAMPLE.gov.cn)", true, true},
		{"(mail=zh*san*gov*)", true, true},
		{"(mail=zh*q*)", false, false},
		{"(&(uid=zhangsan)(sn=张))", true, true},
		{"(|(uid=nobody)(cn=张三))", true, true},
		{"(!(uid=zhangsan))", false, false},
		{"(uid>=z)", true, true},
		{"(uid<=a)", false, false},
		{"(telephoneNumber=*)", true, false},
		{"(telephoneNumber=138*)", true, false},
		{"(!(telephoneNumber=138*))", false, true},
		{"(title=*)", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			f, err := compileFilter(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.match(e, all); got != tc.admin {
				t.Errorf("admin: %v, want %v", got, tc.admin)
			}
			if got := f.match(e, public); got != tc.anon {
				t.Errorf("anonymous: %v, want %v", got, tc.anon)
			}
		})
	}
	for _, bad := range []string{"((cn=)", "cn=x", "(cn:dn:=x)", ""} {
		if _, err := compileFilter(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

// TestNormalizeDN: DNs compare case-insensitively, without spaces around
// separators, with multi-valued RDNs in a fixed order.
func TestNormalizeDN(t *testing.T) {
	cases := []struct{ in, norm, parent string }{
		{"CN=Sm2-Issuing, OU=ca ,DC=govtrust,DC=local", "cn=sm2-issuing,ou=ca,dc=govtrust,dc=local", "ou=ca,dc=govtrust,dc=local"},
		{"uid=ZhangSan+cn=张三,ou=gaj", "cn=张三+uid=zhangsan,ou=gaj", "ou=gaj"},
		{"commonName=a\\,b,o=x", "cn=a\\,b,o=x", "o=x"},
		{"", "", ""},
	}
	for _, tc := range cases {
		norm, parent, err := normalizeDN(tc.in)
		if err != nil || norm != tc.norm || parent != tc.parent {
			t.Errorf("normalizeDN(%q) = %q, %q, %v; want %q, %q", tc.in, norm, parent, err, tc.norm, tc.parent)
		}
	}
	if _, _, err := normalizeDN("cn==,,"); err == nil {
		t.Error("bad DN accepted")
	}
}
