package store

import "strings"

// ValuesRows returns the VALUES list of a multi-row INSERT of rows rows of
// cols columns each: "(?, ?),(?, ?)" for 2 and 2.
func ValuesRows(rows, cols int) string {
	one := "(" + strings.Repeat("?, ", cols-1) + "?)"
	var b strings.Builder
	b.Grow(rows * (len(one) + 1))
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(one)
	}
	return b.String()
}

// ChunkRows returns how many of n waiting rows (n > 0) the next multi-row
// INSERT takes: the largest power of two not above n or max (itself a
// power of two). Cutting a batch so, largest first, needs only
// log2(max)+1 statement texts, each prepared once per connection
// (SQLite's statement cache, pgx's), instead of one per batch size.
func ChunkRows(n, max int) int {
	c := max
	for c > n {
		c /= 2
	}
	return c
}
