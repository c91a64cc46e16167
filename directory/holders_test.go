package directory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/govtrust/govtrust/directory"
	"github.com/govtrust/govtrust/internal/clock"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/internal/store/storetest"
)

// personDN is 张三's entry in orgYAML.
const personDN = "uid=zhangsan,ou=gaj,ou=departments,dc=govtrust,dc=local"

// changedMail is orgYAML after 张三's mailbox changed.
var changedMail = strings.Replace(orgYAML, "mail: zhangsan@gaj.example.gov.cn", "mail: zhang.san@gaj.example.gov.cn", 1)

// importOrg imports doc (YAML) as the system administrator.
func (tn *testNode) importOrg(doc string) {
	tn.t.Helper()
	if status, raw := tn.do("POST", "/api/v1/directory/import", "sysadmin", "application/yaml", []byte(doc)); status != http.StatusOK {
		tn.t.Fatalf("import: %d %s", status, raw)
	}
}

// holderCerts returns the userCertificate values of the stored entry dn.
func holderCerts(t *testing.T, tn *testNode, dn string) [][]byte {
	t.Helper()
	var raw []byte
	err := tn.n.Env().DB.QueryRow(context.Background(), "SELECT attrs FROM dir_entries WHERE dn_norm = ?", strings.ToLower(dn)).Scan(&raw)
	if err != nil {
		t.Fatalf("entry %s: %v", dn, err)
	}
	var attrs map[string][][]byte
	if err := json.Unmarshal(raw, &attrs); err != nil {
		t.Fatal(err)
	}
	return attrs["userCertificate"]
}

// filedUnderPerson issues a certificate for 张三's current mailbox and
// waits until it is in his entry.
func filedUnderPerson(t *testing.T, tn *testNode, mail string) *issued {
	t.Helper()
	c := tn.issuePerson("张三", mail)
	eventually(t, 10*time.Second, "filed under the person", func() error {
		if got := fetchBinary(t, "ldap://"+tn.ldap, personDN, "userCertificate;binary"); !bytes.Equal(got, c.der) {
			return fmt.Errorf("person has %d bytes", len(got))
		}
		return nil
	})
	return c
}

// TestRevokedLeavesHolderAfterMailChange: a certificate filed under a
// person leaves the person's entry with its revocation even when the
// person's mail changed in between (a re-import keeps the certificates
// already filed), over LDAP and in the store.
func TestRevokedLeavesHolderAfterMailChange(t *testing.T) {
	tn := startNode(t, t.TempDir(), "", "")
	ldapURL := "ldap://" + tn.ldap
	tn.importOrg(orgYAML)
	c := filedUnderPerson(t, tn, "zhangsan@gaj.example.gov.cn")
	tn.importOrg(changedMail)
	if got := holderCerts(t, tn, personDN); len(got) != 1 || !bytes.Equal(got[0], c.der) {
		t.Fatalf("after the re-import the person holds %d certificates, want the one filed", len(got))
	}
	tn.revoke(c.Serial)
	certDN := tn.dirSvc.CertDN("sm2-issuing", c.Serial)
	eventually(t, 10*time.Second, "certificate entry removed", func() error {
		if got := fetchBinary(t, ldapURL, certDN, "userCertificate;binary"); got != nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	if got := fetchBinary(t, ldapURL, personDN, "userCertificate;binary"); got != nil {
		t.Errorf("revoked certificate %s still published in %s (%d bytes)", c.Serial, personDN, len(got))
	}
	if got := holderCerts(t, tn, personDN); len(got) != 0 {
		t.Errorf("revoked certificate still stored in %s", personDN)
	}
}

// TestExpiredLeavesHolderAfterMailChange: the expiry sweep takes an expired
// certificate out of its holder whose mail changed since it was filed.
func TestExpiredLeavesHolderAfterMailChange(t *testing.T) {
	clk := clock.NewFake(time.Now())
	tn := startNodeDB(t, filepath.Join(t.TempDir(), "data"), "", "", "", func(o *node.Options) { o.Clock = clk })
	tn.importOrg(orgYAML)
	c := filedUnderPerson(t, tn, "zhangsan@gaj.example.gov.cn")
	tn.importOrg(changedMail)
	cert, err := smx509.ParseCertificate(c.der)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(cert.NotAfter.Sub(clk.Now()) + time.Second)
	if n, err := tn.dirSvc.SweepExpired(context.Background()); err != nil || n < 1 {
		t.Fatalf("sweep after expiry removed %d (%v), want the certificate", n, err)
	}
	if got := holderCerts(t, tn, personDN); len(got) != 0 {
		t.Errorf("expired certificate still stored in %s", personDN)
	}
	if got := fetchBinary(t, "ldap://"+tn.ldap, personDN, "userCertificate;binary"); got != nil {
		t.Errorf("expired certificate %s still published in %s (%d bytes)", c.Serial, personDN, len(got))
	}
}

// TestHolderIndexFilledAtUpgrade: a directory written before the holder
// index (migration 00002) gets it at its first start: a certificate filed
// then leaves its holder on revocation after a mail change, and a
// certificate an earlier version failed to remove (its certificate entry
// gone, the value left in the person) is taken out of the person.
func TestHolderIndexFilledAtUpgrade(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			url := ""
			if backend == "postgres" {
				url = storetest.PostgresURL(t)
			}
			testHolderIndexFilledAtUpgrade(t, url)
		})
	}
}

func testHolderIndexFilledAtUpgrade(t *testing.T, dbURL string) {
	tn := startNodeDB(t, t.TempDir(), "", "", dbURL)
	ctx := context.Background()
	db := tn.n.Env().DB
	tn.importOrg(orgYAML)
	kept := filedUnderPerson(t, tn, "zhangsan@gaj.example.gov.cn")
	left := tn.issuePerson("张三", "zhangsan@gaj.example.gov.cn")
	eventually(t, 10*time.Second, "second certificate filed", func() error {
		if n := len(holderCerts(t, tn, personDN)); n != 2 {
			return fmt.Errorf("person holds %d", n)
		}
		return nil
	})
	// The state an earlier version left: no index, and the entry of a
	// certificate it removed while the value stayed in the person.
	leftNorm := strings.ToLower(tn.dirSvc.CertDN("sm2-issuing", left.Serial))
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"DELETE FROM dir_cert_holders", nil},
		{"UPDATE dir_meta SET holders_indexed = 0 WHERE id = 1", nil},
		{"DELETE FROM dir_entries WHERE dn_norm = ?", []any{leftNorm}},
	} {
		if _, err := db.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	// A second directory service on the database starts as an upgraded
	// node would.
	env := *tn.n.Env()
	svc := directory.New(caSource{})
	if err := svc.Start(ctx, &env); err != nil {
		t.Fatal(err)
	}
	defer svc.Stop(ctx)
	var rows, done int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM dir_cert_holders").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, "SELECT holders_indexed FROM dir_meta WHERE id = 1").Scan(&done); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || done != 1 {
		t.Errorf("after the start: %d index rows (want 1), holders_indexed %d", rows, done)
	}
	if got := holderCerts(t, tn, personDN); len(got) != 1 || !bytes.Equal(got[0], kept.der) {
		t.Fatalf("after the start the person holds %d certificates, want only the current one", len(got))
	}
	tn.importOrg(changedMail)
	tn.revoke(kept.Serial)
	eventually(t, 10*time.Second, "revoked certificate leaves the person", func() error {
		if got := fetchBinary(t, "ldap://"+tn.ldap, personDN, "userCertificate;binary"); got != nil {
			return fmt.Errorf("person still has %d bytes", len(got))
		}
		return nil
	})
}
