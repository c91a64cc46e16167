package store

import (
	"strconv"
	"strings"
)

// rebind turns '?' placeholders into PostgreSQL's $1..$n. A '?' inside a
// string constant ('...', E'...'), a quoted identifier ("..."), a
// dollar-quoted string ($tag$...$tag$) or a comment (-- and nested /* */) is
// left alone (PostgreSQL documentation §4.1.2 and §4.1.5). Malformed input
// (an unterminated quote) is copied through unchanged from that point, so the
// server reports the syntax error.
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i++
		case c == '\'':
			escapes := i > 0 && (query[i-1] == 'E' || query[i-1] == 'e') && (i < 2 || !isIdentChar(query[i-2]))
			j := skipQuoted(query, i, '\'', escapes)
			b.WriteString(query[i:j])
			i = j
		case c == '"':
			j := skipQuoted(query, i, '"', false)
			b.WriteString(query[i:j])
			i = j
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query)
			} else {
				j += i + 1
			}
			b.WriteString(query[i:j])
			i = j
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			j := skipBlockComment(query, i)
			b.WriteString(query[i:j])
			i = j
		case c == '$' && (i == 0 || !isIdentChar(query[i-1])):
			j := skipDollarQuoted(query, i)
			b.WriteString(query[i:j])
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// skipQuoted returns the index just past the quoted text starting at
// query[i] == q. A doubled quote stands for itself; with backslash escapes
// (E'...'), a backslash escapes the next byte.
func skipQuoted(query string, i int, q byte, backslash bool) int {
	for j := i + 1; j < len(query); j++ {
		switch query[j] {
		case '\\':
			if backslash {
				j++
			}
		case q:
			if j+1 < len(query) && query[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(query)
}

// skipBlockComment returns the index just past the (possibly nested) block
// comment starting at query[i:i+2] == "/*".
func skipBlockComment(query string, i int) int {
	depth := 0
	for j := i; j < len(query)-1; j++ {
		switch {
		case query[j] == '/' && query[j+1] == '*':
			depth++
			j++
		case query[j] == '*' && query[j+1] == '/':
			depth--
			j++
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(query)
}

// skipDollarQuoted returns the index just past a dollar-quoted string starting
// at query[i] == '$', or i+1 when the '$' does not open one (for example a
// positional parameter $1, which is copied through).
func skipDollarQuoted(query string, i int) int {
	j := i + 1
	for j < len(query) && query[j] != '$' {
		c := query[j]
		if !isIdentChar(c) || (j == i+1 && c >= '0' && c <= '9') {
			return i + 1
		}
		j++
	}
	if j >= len(query) {
		return i + 1
	}
	tag := query[i : j+1]
	end := strings.Index(query[j+1:], tag)
	if end < 0 {
		return len(query)
	}
	return j + 1 + end + len(tag)
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
