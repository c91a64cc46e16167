package store

import (
	"strconv"
	"strings"
	"testing"
)

var rebindCases = []struct {
	name, in, want string
}{
	{"no placeholders", "SELECT 1", "SELECT 1"},
	{"two placeholders", "SELECT ? + ?", "SELECT $1 + $2"},
	{"string literal", "SELECT '?', ?", "SELECT '?', $1"},
	{"doubled quote", "SELECT 'it''s ?' || ?", "SELECT 'it''s ?' || $1"},
	{"standard string keeps backslash", `SELECT 'a\' || ?`, `SELECT 'a\' || $1`},
	{"escape string", `SELECT E'\'?' || ?`, `SELECT E'\'?' || $1`},
	{"lowercase escape string", `SELECT e'\\?' || ?`, `SELECT e'\\?' || $1`},
	{"identifier ending in e is not an escape string", `SELECT name'x\' || ?`, `SELECT name'x\' || $1`},
	{"quoted identifier", `SELECT x AS "a?""b?" FROM t WHERE y = ?`, `SELECT x AS "a?""b?" FROM t WHERE y = $1`},
	{"line comment", "SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"},
	{"line comment at end", "SELECT ? -- why?", "SELECT $1 -- why?"},
	{"nested block comment", "SELECT /* ? /* ? */ ? */ ?", "SELECT /* ? /* ? */ ? */ $1"},
	{"dollar quoted", "SELECT $$ ? $$, ?", "SELECT $$ ? $$, $1"},
	{"tagged dollar quoted", "SELECT $fn$ ?$x$ $fn$, ?", "SELECT $fn$ ?$x$ $fn$, $1"},
	{"dollar inside identifier", "SELECT a$b, ?", "SELECT a$b, $1"},
	{"positional parameter copied", "SELECT $1, $2", "SELECT $1, $2"},
	{"cast", "SELECT ?::text", "SELECT $1::text"},
	{"ten placeholders", "? ? ? ? ? ? ? ? ? ?", "$1 $2 $3 $4 $5 $6 $7 $8 $9 $10"},
	{"unterminated string", "SELECT ? 'abc ?", "SELECT $1 'abc ?"},
	{"unterminated comment", "SELECT ? /* ?", "SELECT $1 /* ?"},
	{"unterminated dollar quote", "SELECT ? $a$ ?", "SELECT $1 $a$ ?"},
	{"utf-8", "SELECT '印章?' , ?", "SELECT '印章?' , $1"},
}

func TestRebind(t *testing.T) {
	for _, tc := range rebindCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rebind(tc.in); got != tc.want {
				t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzRebind(f *testing.F) {
	for _, tc := range rebindCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := rebind(in)
		if !strings.Contains(in, "?") && out != in {
			t.Fatalf("rebind changed a query without placeholders: %q -> %q", in, out)
		}
		if strings.Count(out, "?") > strings.Count(in, "?") {
			t.Fatalf("rebind added '?': %q -> %q", in, out)
		}
		// Everything but the placeholders is copied: turning $1, $2, ... back
		// into '?' gives the input again. Only checked when the input has no
		// '$' of its own, so every $n in out was written by rebind.
		if !strings.Contains(in, "$") {
			if back := unbind(out); back != in {
				t.Fatalf("rebind changed more than placeholders: %q -> %q -> %q", in, out, back)
			}
		}
	})
}

// unbind replaces $1, $2, ... in order with '?'.
func unbind(s string) string {
	pos := 0
	for k := 1; ; k++ {
		p := "$" + strconv.Itoa(k)
		i := strings.Index(s[pos:], p)
		if i < 0 {
			return s
		}
		s = s[:pos+i] + "?" + s[pos+i+len(p):]
		pos += i + 1
	}
}
