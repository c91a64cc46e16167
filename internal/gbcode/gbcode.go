// Package gbcode checks the Chinese national identification codes that
// certificates and the organisation registry carry: the unified social
// credit code (GB 32100-2015) and the organisation code (GB 11714-1997).
// The CA's lints (ca/lint) and the organisation registry (internal/authz)
// share it, so a code the registry accepts is one the lints accept.
package gbcode

import (
	"fmt"
	"strings"
)

// uscc is the GB 32100 alphabet: digits and capital letters without I, O,
// S, V and Z; a character's value is its index.
const uscc = "0123456789ABCDEFGHJKLMNPQRTUWXY"

// CheckUSCC checks an 18-character unified social credit code (GB
// 32100-2015): every character in its alphabet, the last the check
// character of the 17 before it. Errors start with "uscc: ".
func CheckUSCC(s string) error {
	if len(s) != 18 {
		return fmt.Errorf("uscc: %d characters, want 18", len(s))
	}
	weights := [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}
	sum := 0
	for i := 0; i < 17; i++ {
		v := strings.IndexByte(uscc, s[i])
		if v < 0 {
			return fmt.Errorf("uscc: character %d (%q) is not in the GB 32100 alphabet", i+1, s[i])
		}
		sum += v * weights[i]
	}
	if c := (31 - sum%31) % 31; s[17] != uscc[c] {
		return fmt.Errorf("uscc: check character %c, want %c (GB 32100)", s[17], uscc[c])
	}
	return nil
}

// CheckOrgCode checks an organisation code (GB 11714-1997): eight digits or
// capital letters and a check character, optionally written "XXXXXXXX-C".
// field names the value in errors ("org-code", "org_code").
func CheckOrgCode(field, s string) error {
	body := s
	if len(s) == 10 && s[8] == '-' {
		body = s[:8] + s[9:]
	}
	if len(body) != 9 {
		return fmt.Errorf("%s: %q is not 9 characters (or 8-hyphen-1)", field, s)
	}
	weights := [8]int{3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := 0; i < 8; i++ {
		c := body[i]
		var v int
		switch {
		case '0' <= c && c <= '9':
			v = int(c - '0')
		case 'A' <= c && c <= 'Z':
			v = int(c-'A') + 10
		default:
			return fmt.Errorf("%s: character %d is not a digit or capital letter", field, i+1)
		}
		sum += v * weights[i]
	}
	// 11 - sum mod 11: 10 is written X, 11 is 0.
	var want byte
	switch c := 11 - sum%11; c {
	case 10:
		want = 'X'
	case 11:
		want = '0'
	default:
		want = byte('0' + c)
	}
	if body[8] != want {
		return fmt.Errorf("%s: check character %c, want %c (GB 11714)", field, body[8], want)
	}
	return nil
}
