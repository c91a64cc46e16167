package directory_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// TestHolderBinding: a certificate is filed under a person's entry only
// when an account of the person's department asked for it. The rfc822Name
// of person-sign comes from the registration record (a request naming
// another mailbox is refused, 422); an RA officer of another organisation
// who writes 张三's mailbox into 李四's record still does not make the
// certificate 张三's in the directory, and neither does an application
// account's client-tls request naming that mailbox. The officer of 张三's
// department does.
func TestHolderBinding(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	ldapURL := "ldap://" + tn.ldap
	base := "dc=govtrust,dc=local"
	personDN := "uid=zhangsan,ou=gaj,ou=departments," + base
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(orgYAML)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, raw)
	}
	issue := func(role, profile, mail string, record map[string]string) (int, []byte) {
		t.Helper()
		key, _ := sm2.GenerateKey(rand.Reader)
		tmpl := &smx509.CertificateRequest{}
		if mail != "" {
			tmpl.EmailAddresses = []string{mail}
		}
		if profile == "client-tls" {
			tmpl.Subject.CommonName = "李四的应用"
		}
		csr, err := smx509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]any{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
			"profile": profile, "record": record})
		return tn.do("POST", "/api/v1/ca/sm2-issuing/certificates", role, "application/json", body)
	}
	lisi := map[string]string{"CN": "李四", "O": "另一个局", "id-card": "110105198001010016"}
	const zhangsan = "zhangsan@gaj.example.gov.cn"

	t.Run("request's mailbox refused", func(t *testing.T) {
		status, raw := issue("ra", "person-sign", zhangsan, lisi)
		if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "mail") {
			t.Fatalf("issue with another's mailbox in the request: %d %s, want 422 naming the record's mail", status, raw)
		}
	})
	certs := map[string][]byte{}
	withMail := map[string]string{"mail": zhangsan}
	for k, v := range lisi {
		withMail[k] = v
	}
	for _, c := range []struct{ name, role, profile, mail string }{
		{"officer of another organisation", "ra", "person-sign", ""},
		{"application account's client-tls", "ra", "client-tls", zhangsan},
		{"officer of the department", "ra-gaj", "person-sign", ""},
	} {
		status, raw := issue(c.role, c.profile, c.mail, withMail)
		if status != http.StatusCreated {
			t.Fatalf("%s: issue: %d %s", c.name, status, raw)
		}
		var out issued
		json.Unmarshal(raw, &out)
		b, _ := pem.Decode([]byte(out.Certificate))
		cert, _ := smx509.ParseCertificate(b.Bytes)
		if len(cert.EmailAddresses) != 1 || cert.EmailAddresses[0] != zhangsan {
			t.Fatalf("%s: rfc822Name %q", c.name, cert.EmailAddresses)
		}
		certs[c.name] = b.Bytes
		// Its own entry below the CA appears in every case.
		certDN := "uid=" + out.Serial + ",cn=sm2-issuing,ou=ca," + base
		eventually(t, 5*time.Second, c.name+": certificate entry", func() error {
			if got := fetchBinary(t, ldapURL, certDN, "userCertificate;binary"); !bytes.Equal(got, b.Bytes) {
				return fmt.Errorf("not (yet) at %s", certDN)
			}
			return nil
		})
	}
	// The department's certificate reached 张三's entry, so the others,
	// published before it, were weighed and left out.
	eventually(t, 5*time.Second, "department's certificate under 张三", func() error {
		if got := fetchBinary(t, ldapURL, personDN, "userCertificate;binary"); !bytes.Equal(got, certs["officer of the department"]) {
			return fmt.Errorf("%s lists %d bytes, want only the department's certificate", personDN, len(got))
		}
		return nil
	})
}
