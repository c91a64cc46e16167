package textsearch

import (
	"errors"
	"strings"
	"testing"
)

var errNotFound = errors.New("x: keyword not found")

// TestSearch: white space is ignored on both sides, occurrences are
// counted across pages, an occurrence does not span pages, and the errors
// say how often the keyword occurred.
func TestSearch(t *testing.T) {
	pages := []string{"盖章 处 与盖章处", "无", "盖", "章处 盖章处"}
	find := func(n int) (page, at int, err error) {
		s, err := New("x", "盖 章处", n, 64)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pages {
			_, text := Visible([]rune(p), func(r rune) rune { return r })
			if at, ok := s.Page(text); ok {
				return i, at, nil
			}
		}
		return 0, 0, s.NotFound(errNotFound)
	}
	for _, c := range []struct{ n, page, at int }{{0, 0, 0}, {1, 0, 0}, {2, 0, 4}, {3, 3, 2}} {
		if page, at, err := find(c.n); err != nil || page != c.page || at != c.at {
			t.Errorf("n=%d: page %d at %d (%v), want page %d at %d", c.n, page, at, err, c.page, c.at)
		}
	}
	if _, _, err := find(4); !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), "occurs 3 times, not 4") {
		t.Errorf("n=4: %v", err)
	}
	s, _ := New("x", "不在", 1, 64)
	if err := s.NotFound(errNotFound); !errors.Is(err, errNotFound) || !strings.Contains(err.Error(), "is not in the text") {
		t.Errorf("absent: %v", err)
	}
	for _, bad := range []string{" \t", string([]byte{0xff}), strings.Repeat("字", 30)} {
		if _, err := New("x", bad, 1, 64); err == nil {
			t.Errorf("keyword %q accepted", bad)
		}
	}
}
