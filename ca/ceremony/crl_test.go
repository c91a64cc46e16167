package ceremony

import (
	"os"
	"strings"
	"testing"
)

// TestValidateCRL: a CRL ceremony file is decoded strictly, and what a
// reviewer could get wrong is named.
func TestValidateCRL(t *testing.T) {
	base, err := os.ReadFile("testdata/crl-ecdsa.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCRL(base); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, from, to, want string }{
		{"kind", "kind: crl", "kind: root", `kind "root"`},
		{"unknown key", "next_update_days: 180", "next_update_days: 180\nthis_update: now", "field this_update not found"},
		{"id", "ca: gov-ecdsa-root", "ca: Gov_Root", `ca "Gov_Root"`},
		{"too long", "next_update_days: 180", "next_update_days: 366", "next_update_days 366"},
		{"none", "next_update_days: 180", "next_update_days: 0", "next_update_days 0"},
		{"https URL", "http://pki.example.gov.cn/pki/gov-ecdsa-root.crl", "https://pki.example.gov.cn/pki/gov-ecdsa-root.crl", "crl_url"},
		{"another CA's URL", "http://pki.example.gov.cn/pki/gov-ecdsa-root.crl", "http://pki.example.gov.cn/pki/other.crl", "ending in /gov-ecdsa-root.crl"},
		{"no issuer key", "  key_uri: soft:ca/gov-ecdsa-root", "", "issuer.key_uri"},
		{"reason", "reason: cACompromise", "reason: privilegeWithdrawn", `reason "privilegeWithdrawn"`},
		{"unspecified", "reason: cACompromise", "reason: unspecified", `reason "unspecified"`},
		{"hold", "reason: cACompromise", "reason: certificateHold", `reason "certificateHold"`},
		{"no pin", `    certificate_sha256: "5C:1F`, `    # certificate_sha256: "5C:1F`, "certificate_sha256"},
		{"twice", "    reason: cACompromise", "    reason: cACompromise\n  - certificate: sub.pem\n    certificate_sha256: \"" + strings.Repeat("AB", 32) + "\"\n    reason: superseded", "listed twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(string(base), c.from, c.to, 1)
			if src == string(base) {
				t.Fatalf("%q not in the example", c.from)
			}
			_, err := ParseCRL([]byte(src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	// A root ceremony file is not a CRL ceremony file, nor the reverse.
	if _, err := LoadCRL("testdata/root-ecdsa.yaml"); err == nil {
		t.Error("LoadCRL read a root ceremony file")
	}
	if _, err := Load("testdata/crl-ecdsa.yaml"); err == nil {
		t.Error("Load read a CRL ceremony file")
	}
}
