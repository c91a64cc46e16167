package config

import (
	"encoding/asn1"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The commented file written on first run must say exactly what the built-in
// defaults are, so the two cannot drift apart.
func TestDefaultFileMatchesDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "govtrust.yaml")
	wrote, err := WriteDefault(path)
	if err != nil || !wrote {
		t.Fatalf("WriteDefault = %v, %v", wrote, err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := Defaults(); !reflect.DeepEqual(*c, want) {
		t.Fatalf("default file decodes to\n%+v\nwant\n%+v", *c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	// Every key of the struct appears in the file, so an operator sees it.
	for _, key := range EnvKeys() {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(string(DefaultFile()), leaf+":") {
			t.Errorf("default file does not mention %s", key)
		}
	}
	// A second write keeps the operator's file.
	if err := os.WriteFile(path, []byte("mode: production\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if wrote, err := WriteDefault(path); err != nil || wrote {
		t.Fatalf("second WriteDefault = %v, %v; want false, nil", wrote, err)
	}
}

func TestStrictDecoding(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "mode: dev\nlisten:\n  http: 127.0.0.1:1\nbogus: 1\n", "line 4: field bogus not found"},
		{"unknown nested key", "listen:\n  http: 127.0.0.1:1\n  htps: x\n", "line 3: field htps not found"},
		{"wrong type", "database:\n  readers: many\n", "line 2"},
		{"bad duration", "http:\n  read_timeout: soon\n", "line 2"},
		{"two documents", "mode: dev\n---\nmode: production\n", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPrecedenceAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("listen:\n  http: 127.0.0.1:1111\n  https: 127.0.0.1:2222\nhttp:\n  read_timeout: 7s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{
		"GOVTRUST_LISTEN_HTTPS=127.0.0.1:3333",
		"GOVTRUST_HTTP_SHUTDOWN_TIMEOUT=9s",
		"GOVTRUST_DATABASE_READERS=2",
		"GOVTRUST_P11_DIR=/tmp/x", // belongs to the software token, not an error
		"PATH=/usr/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.HTTP != "127.0.0.1:1111" || c.Listen.HTTPS != "127.0.0.1:3333" {
		t.Errorf("listen = %+v: file then env precedence broken", c.Listen)
	}
	if c.HTTP.ReadTimeout != 7*time.Second || c.HTTP.ShutdownTimeout != 9*time.Second || c.Database.Readers != 2 {
		t.Errorf("http/database = %+v %+v", c.HTTP, c.Database)
	}
	if c.Listen.LDAP != Defaults().Listen.LDAP {
		t.Errorf("untouched key lost its default: %q", c.Listen.LDAP)
	}

	for _, bad := range [][]string{
		{"GOVTRUST_LISTEN_HTTTP=x"},
		{"GOVTRUST_DATABASE_READERS=lots"},
		{"GOVTRUST_HTTP_READ_TIMEOUT=soon"},
	} {
		if _, err := Load("", bad); err == nil || !strings.Contains(err.Error(), strings.SplitN(bad[0], "=", 2)[0]) {
			t.Errorf("Load(env %v) error = %v, want one naming the variable", bad, err)
		}
	}
}

func TestValidate(t *testing.T) {
	mut := map[string]func(c *Config){
		"mode":               func(c *Config) { c.Mode = "prod" },
		"listen.http":        func(c *Config) { c.Listen.HTTP = "8080" },
		"sqlite_synchronous": func(c *Config) { c.Database.SQLiteSynchronous = "SOMETIMES" },
		"password in URL":    func(c *Config) { c.Database.URL = "postgres://u:hunter2@db/x" },
		"inline secret":      func(c *Config) { c.Database.Password = "hunter2" },
		"max_body_bytes":     func(c *Config) { c.HTTP.MaxBodyBytes = 10 },
		"read_timeout":       func(c *Config) { c.HTTP.ReadTimeout = 0 },
		"log.level":          func(c *Config) { c.Log.Level = "loud" },
		"node.name":          func(c *Config) { c.Node.Name = "has space" },
		"node.gc_percent":    func(c *Config) { c.Node.GCPercent = -1 },
		"public_ok_per_sec":  func(c *Config) { c.Log.PublicOKPerSecond = -1 },
		"tsa.policies":       func(c *Config) { c.TSA.Policies = []string{"1.2.x"} },
		"tsa.no policy":      func(c *Config) { c.TSA.Policies = nil },
		"tsa.big arc":        func(c *Config) { c.TSA.Policies = []string{"2.25.329800735698586629295641978511506172918"} },
		"tsa.unencodable":    func(c *Config) { c.TSA.Policies = []string{"1.45.7"} },
		"tsa.accuracy":       func(c *Config) { c.TSA.Accuracy = 0 },
		"tsa.accuracy 1ms":   func(c *Config) { c.TSA.Accuracy = time.Millisecond },
		"tsa.max_body_bytes": func(c *Config) { c.TSA.MaxBodyBytes = 10 << 20 },
	}
	for name, m := range mut {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			m(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted a bad configuration")
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
	c := Defaults()
	c.Mode = ModeProduction
	c.HSM.Soft.Unlock, c.HSM.Soft.Passphrase = UnlockPassphrase, "env:GOVTRUST_MASTER_PASSPHRASE"
	c.HSM.PKCS11 = []PKCS11Config{{Token: "ca", Module: "/usr/lib/softhsm/libsofthsm2.so", PIN: "file:/run/secrets/ca-pin"}}
	c.Database.URL = "postgres://govtrust@db:5432/govtrust?sslmode=verify-full"
	c.Database.Password = "env:PGPASSWORD"
	c.CA.PublicURL, c.CA.PublicLDAPURL = "http://pki.example.gov.cn/", "ldap://ldap.example.gov.cn:389"
	if err := c.Validate(); err != nil {
		t.Fatalf("valid PostgreSQL settings refused: %v", err)
	}
	if c.CA.PublicURL != "http://pki.example.gov.cn" {
		t.Errorf("ca.public_url kept its trailing slash: %q", c.CA.PublicURL)
	}
}

// validOID accepts exactly the dotted OIDs whose arcs fit an int and that
// DER can encode (encoding/asn1 is the reference): the second arc below 40
// under the first arcs 0 and 1 (X.690 §8.19.4), any under 2.
func TestValidOID(t *testing.T) {
	for _, tc := range []struct {
		oid string
		ok  bool
	}{
		{"0.0", true}, {"0.39", true}, {"1.39.1", true}, {"2.40.1", true}, {"2.999.3161.1", true},
		{"2.100000000.1", true}, {"1.2.156.10197.1.301.1", true},
		{"1.45.7", false}, {"0.40", false}, {"1.40", false}, {"1.100.2", false}, {"0.999999999", false},
		{"3.1", false}, {"1", false}, {"1..2", false}, {"1.02", false}, {"1.2.x", false}, {"1.2.1234567890", false},
	} {
		if got := validOID(tc.oid); got != tc.ok {
			t.Errorf("validOID(%q) = %v, want %v", tc.oid, got, tc.ok)
		}
		if !tc.ok {
			continue
		}
		var oid asn1.ObjectIdentifier
		for _, p := range strings.Split(tc.oid, ".") {
			n, _ := strconv.Atoi(p)
			oid = append(oid, n)
		}
		if _, err := asn1.Marshal(oid); err != nil {
			t.Errorf("validOID accepts %q, which asn1.Marshal refuses: %v", tc.oid, err)
		}
	}
}

// The CA's public URLs: well-formed when set, set and not loopback in
// production.
func TestCAPublicURLs(t *testing.T) {
	for _, tt := range []struct {
		name, http, ldap string
		production, ok   bool
	}{
		{"dev defaults", "", "", false, true},
		{"dev with a path", "https://example.gov.cn/pki-root", "ldaps://ldap.example.gov.cn", false, true},
		{"production", "http://pki.example.gov.cn", "ldap://10.1.2.3:389", true, true},
		{"production without", "", "", true, false},
		{"production without LDAP", "http://pki.example.gov.cn", "", true, false},
		{"production on loopback", "http://127.0.0.1:8080", "ldap://ldap.example.gov.cn", true, false},
		{"production on localhost", "http://pki.example.gov.cn", "ldap://localhost", true, false},
		{"production on 0.0.0.0", "http://0.0.0.0", "ldap://ldap.example.gov.cn", true, false},
		{"wrong scheme", "ftp://pki.example.gov.cn", "", false, false},
		{"LDAP as HTTP", "", "http://ldap.example.gov.cn", false, false},
		{"no host", "http:///pki", "", false, false},
		{"port 0", "http://pki.example.gov.cn:0", "", false, false},
		{"query", "http://pki.example.gov.cn/?a=b", "", false, false},
		{"user", "http://u@pki.example.gov.cn", "", false, false},
		{"relative", "pki.example.gov.cn", "", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			if tt.production {
				c.Mode = ModeProduction
				c.HSM.Soft.Unlock, c.HSM.Soft.Passphrase = UnlockPassphrase, "env:GOVTRUST_MASTER_PASSPHRASE"
			}
			c.CA.PublicURL, c.CA.PublicLDAPURL = tt.http, tt.ldap
			err := c.Validate()
			if (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestSecretRef(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pw")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GT_TEST_SECRET", "from-env")
	for ref, want := range map[SecretRef]string{"file:" + SecretRef(path): "s3cret", "env:GT_TEST_SECRET": "from-env", "": ""} {
		got, err := ref.Resolve()
		if err != nil || string(got) != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, bad := range []SecretRef{"s3cret", "env:", "file:", "env:GT_TEST_UNSET_VARIABLE", "file:" + SecretRef(filepath.Join(dir, "none"))} {
		if _, err := bad.Resolve(); err == nil {
			t.Errorf("Resolve(%q) succeeded", bad)
		}
	}
}
