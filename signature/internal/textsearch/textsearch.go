// Package textsearch finds the n-th occurrence of a keyword in the text of
// a document's pages, the rule seal positions by keyword use in both OFD
// (signature/ofd) and PDF (signature/pdf): white space in the keyword and
// in the text is ignored, occurrences are counted from the first page on,
// and an occurrence does not span pages. Each format extracts its glyphs;
// this package only matches their runes, so both formats agree on which
// occurrence is the n-th.
package textsearch

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Search is one search for the n-th occurrence of a keyword.
type Search struct {
	format  string // "ofd" or "pdf", for error messages
	keyword string
	want    []rune
	n, seen int
}

// New starts a search for occurrence n (from 1; less counts as 1) of
// keyword, which must be valid UTF-8 of at most maxBytes and hold
// something besides white space.
func New(format, keyword string, n, maxBytes int) (*Search, error) {
	if !utf8.ValidString(keyword) || len(keyword) > maxBytes {
		return nil, fmt.Errorf("%s: keyword: valid UTF-8 of at most %d bytes", format, maxBytes)
	}
	var want []rune
	for _, r := range keyword {
		if !unicode.IsSpace(r) {
			want = append(want, r)
		}
	}
	if len(want) == 0 {
		return nil, errors.New(format + ": keyword is empty")
	}
	return &Search{format: format, keyword: keyword, want: want, n: max(n, 1)}, nil
}

// Len is the keyword's length in runes, white space left out.
func (s *Search) Len() int { return len(s.want) }

// Page takes the runes of the next page's glyphs, white space already left
// out, and returns the index of the keyword's first rune if the n-th
// occurrence is on this page.
func (s *Search) Page(text []rune) (int, bool) {
next:
	for i := 0; i+len(s.want) <= len(text); i++ {
		for k, r := range s.want {
			if text[i+k] != r {
				continue next
			}
		}
		if s.seen++; s.seen == s.n {
			return i, true
		}
	}
	return 0, false
}

// NotFound is the error after the last page: notFound wrapped with how
// often the keyword occurred.
func (s *Search) NotFound(notFound error) error {
	if s.seen == 0 {
		return fmt.Errorf("%w: %q is not in the text of the document's pages", notFound, s.keyword)
	}
	return fmt.Errorf("%w: %q occurs %d times, not %d", notFound, s.keyword, s.seen, s.n)
}

// Visible returns the glyphs of gs that are not white space and their
// runes, in order.
func Visible[G any](gs []G, r func(G) rune) ([]G, []rune) {
	out, text := gs[:0:0], make([]rune, 0, len(gs))
	for _, g := range gs {
		if c := r(g); !unicode.IsSpace(c) {
			out, text = append(out, g), append(text, c)
		}
	}
	return out, text
}
