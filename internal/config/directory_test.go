package config

import (
	"strings"
	"testing"
	"time"
)

// TestDirectoryValidate: the directory section refuses what would break
// the LDAP URLs in certificates, the server's limits or a publisher.
func TestDirectoryValidate(t *testing.T) {
	ok := func() DirectoryConfig { return Defaults().Directory }
	cases := []struct {
		name string
		mod  func(d *DirectoryConfig)
		want string
	}{
		{"defaults", func(*DirectoryConfig) {}, ""},
		{"base DN with a space", func(d *DirectoryConfig) { d.BaseDN = "o=gov trust" }, "directory.base_dn"},
		{"base DN not a DN", func(d *DirectoryConfig) { d.BaseDN = "govtrust" }, "directory.base_dn"},
		{"size limit", func(d *DirectoryConfig) { d.SizeLimit = 0 }, "directory.size_limit"},
		{"time limit", func(d *DirectoryConfig) { d.TimeLimit = time.Millisecond }, "directory.time_limit"},
		{"request size", func(d *DirectoryConfig) { d.MaxRequestBytes = 10 }, "directory.max_request_bytes"},
		{"connections", func(d *DirectoryConfig) { d.MaxConnections = 0 }, "directory.max_connections"},
		{"operations", func(d *DirectoryConfig) { d.MaxOperations = 0 }, "directory.max_operations"},
		{"write timeout", func(d *DirectoryConfig) { d.WriteTimeout = 0 }, "directory.write_timeout"},
		{"idle timeout", func(d *DirectoryConfig) { d.IdleTimeout = time.Millisecond }, "directory.idle_timeout"},
		{"public attribute", func(d *DirectoryConfig) { d.PublicAttributes = []string{"cn;binary"} }, "directory.public_attributes"},
		{"ldaps address", func(d *DirectoryConfig) { d.LDAPS = "nowhere" }, "directory.ldaps"},
		{"external ok", func(d *DirectoryConfig) {
			d.External = []ExternalLDAPConfig{{Name: "ol-1", URL: "ldap://ldap1:389", StartTLS: true, BindDN: "cn=p,dc=x", Password: "env:LDAP_PW",
				BaseDN: "dc=x", ObjectClasses: map[string][]string{"ca": {"top", "pkiCA"}}}}
		}, ""},
		{"external scheme", func(d *DirectoryConfig) { d.External = []ExternalLDAPConfig{{Name: "a", URL: "http://x"}} }, "scheme"},
		{"external bind without password", func(d *DirectoryConfig) {
			d.External = []ExternalLDAPConfig{{Name: "a", URL: "ldap://x", BindDN: "cn=p"}}
		}, "unauthenticated bind"},
		{"external inline password", func(d *DirectoryConfig) {
			d.External = []ExternalLDAPConfig{{Name: "a", URL: "ldap://x", BindDN: "cn=p", Password: "secret"}}
		}, "password"},
		{"external duplicate", func(d *DirectoryConfig) {
			d.External = []ExternalLDAPConfig{{Name: "a", URL: "ldap://x"}, {Name: "a", URL: "ldap://y"}}
		}, "listed twice"},
		{"external kind", func(d *DirectoryConfig) {
			d.External = []ExternalLDAPConfig{{Name: "a", URL: "ldap://x", ObjectClasses: map[string][]string{"cat": {"top"}}}}
		}, "object_classes"},
		{"ldaps with StartTLS", func(d *DirectoryConfig) {
			d.External = []ExternalLDAPConfig{{Name: "a", URL: "ldaps://x", StartTLS: true}}
		}, "start_tls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := ok()
			tc.mod(&d)
			err := d.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}
