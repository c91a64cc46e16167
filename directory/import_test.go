package directory_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/directory"
)

// TestImportMail: mail is an IA5String (RFC 4524 §2.16) holding one
// address; anything else is refused at import with a message naming the
// record, rather than by every LDAP server it is published to.
func TestImportMail(t *testing.T) {
	for _, c := range []struct {
		mail, want string
	}{
		{"zhangsan@gaj.example.gov.cn", ""},
		{"", ""},
		{"zhang.san+pki@xn--fiqs8s.cn", ""},
		{"张三@gaj.example.gov.cn", "not ASCII"},
		{"zhangsan@公安.中国", "not ASCII"},
		{"Zhang San <zhangsan@gaj.example.gov.cn>", "not an e-mail address"},
		{"zhangsan", "not an e-mail address"},
		{"zhang san@gaj.example.gov.cn", "not an e-mail address"},
		{"a@b.cn, c@d.cn", "not an e-mail address"},
		{strings.Repeat("a", 250) + "@gaj.cn", "longer than 256"},
	} {
		for _, kind := range []string{"people", "applications"} {
			var yaml, csv string
			if kind == "people" {
				yaml = "people:\n  - {uid: u1, name: U, department: gaj, mail: \"" + c.mail + "\"}\n"
				csv = "kind,uid,name,department,mail\nperson,u1,U,gaj,\"" + c.mail + "\"\n"
			} else {
				yaml = "applications:\n  - {name: app, department: gaj, mail: \"" + c.mail + "\"}\n"
				csv = "kind,name,department,mail\napplication,app,gaj,\"" + c.mail + "\"\n"
			}
			for format, data := range map[string]string{"yaml": yaml, "csv": csv} {
				_, err := directory.ParseImport([]byte(data), format)
				switch {
				case c.want == "" && err != nil:
					t.Errorf("%s %s mail %q: %v", format, kind, c.mail, err)
				case c.want != "" && (!errors.Is(err, directory.ErrImport) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), kind+"[0]")):
					t.Errorf("%s %s mail %q: %v; want ErrImport naming %s[0] and saying %q", format, kind, c.mail, err, kind, c.want)
				}
			}
		}
	}
}
