package main

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/internal/testenv"
)

// TestDirectoryImport: `govtrust up` serves LDAP on --ldap (port 0 picks
// one; addresses.json names it); `govtrust directory import` loads a UTF-8
// CSV with Chinese names through the API as the system administrator (the
// RA officer is refused), and ldapsearch returns the same UTF-8 bytes.
func TestDirectoryImport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := up(t, dir, "--ldap", "127.0.0.1:0")
	defer p.stop(t)
	if p.addrs["ldap"] == "" || strings.HasSuffix(p.addrs["ldap"], ":0") {
		t.Fatalf("addresses.json ldap = %q", p.addrs["ldap"])
	}
	csv := filepath.Join(t.TempDir(), "org.csv")
	if err := os.WriteFile(csv, []byte("kind,code,uid,name,department,parent,mail,telephone,id_number,url\n"+
		"department,mzj,,民政局,,,,010-1,,\n"+
		"person,,lisi,李四,mzj,,lisi@mzj.example.gov.cn,13900000000,110105194912310021,\n"+
		"service,,,婚姻登记查询,mzj,,,,,https://hy.example.gov.cn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := func(role string) []string {
		return []string{"directory", "import", "--url", "https://" + p.addrs["https"],
			"--token-file", filepath.Join(dir, "bootstrap", role+".token"), "--cacert", filepath.Join(dir, "bootstrap", "tls-chain.pem"), csv}
	}
	if out, code := govtrust(t, args("ra")...); code == 0 || !strings.Contains(out, "403") {
		t.Errorf("import as RA = %d, want 403:\n%s", code, out)
	}
	out, code := govtrust(t, args("sysadmin")...)
	if code != 0 || !strings.Contains(out, `"people":1`) {
		t.Fatalf("import = %d\n%s", code, out)
	}
	res, err := exec.Command(testenv.LookPath(t, "ldapsearch"), "-x", "-LLL", "-H", "ldap://"+p.addrs["ldap"],
		"-b", "ou=departments,dc=govtrust,dc=local", "(uid=lisi)", "cn", "telephoneNumber").CombinedOutput()
	if err != nil {
		t.Fatalf("ldapsearch: %v\n%s", err, res)
	}
	var cn string
	for _, l := range strings.Split(string(res), "\n") {
		if v, ok := strings.CutPrefix(l, "cn:: "); ok {
			b, _ := base64.StdEncoding.DecodeString(v)
			cn = string(b)
		}
	}
	if cn != "李四" || strings.Contains(string(res), "telephoneNumber") {
		t.Errorf("ldapsearch: cn %q (want 李四), no telephoneNumber for anonymous:\n%s", cn, res)
	}
}
