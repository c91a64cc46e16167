package store

import (
	"fmt"
	"testing"
)

func TestValuesRowsAndChunks(t *testing.T) {
	for _, c := range []struct {
		rows, cols int
		want       string
	}{
		{1, 1, "(?)"},
		{1, 3, "(?, ?, ?)"},
		{3, 2, "(?, ?),(?, ?),(?, ?)"},
	} {
		if got := ValuesRows(c.rows, c.cols); got != c.want {
			t.Errorf("ValuesRows(%d, %d) = %q, want %q", c.rows, c.cols, got, c.want)
		}
	}
	// 100 rows at most 64 a statement: 64, 32, 4.
	var chunks []int
	for n := 100; n > 0; {
		c := ChunkRows(n, 64)
		chunks = append(chunks, c)
		n -= c
	}
	if fmt.Sprint(chunks) != "[64 32 4]" {
		t.Errorf("chunks of 100 = %v, want [64 32 4]", chunks)
	}
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 63: 32, 64: 64, 65: 64, 1000: 64} {
		if got := ChunkRows(n, 64); got != want {
			t.Errorf("ChunkRows(%d, 64) = %d, want %d", n, got, want)
		}
	}
}
