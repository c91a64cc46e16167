package gbcode

import (
	"strings"
	"testing"
)

func TestCheckUSCC(t *testing.T) {
	for _, c := range []struct{ code, err string }{
		{"91350100M000100Y43", ""},
		{"91110000MA01ABCD1M", ""},
		{"91350100M000100Y44", "check character 4, want 3"},
		{"91350100M000100I43", "not in the GB 32100 alphabet"},
		{"91350100M000100Y4", "17 characters, want 18"},
	} {
		err := CheckUSCC(c.code)
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("CheckUSCC(%q) = %v, want %q", c.code, err, c.err)
		}
	}
}

func TestCheckOrgCode(t *testing.T) {
	for _, c := range []struct{ code, err string }{
		{"M000100Y-4", ""},
		{"M000100Y4", ""},
		{"M000100Y-5", "org_code: check character 5, want 4"},
		{"m000100Y4", "not a digit or capital letter"},
		{"M000100", "not 9 characters"},
	} {
		err := CheckOrgCode("org_code", c.code)
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("CheckOrgCode(%q) = %v, want %q", c.code, err, c.err)
		}
	}
}
