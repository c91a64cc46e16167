package fsx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestSyncPath syncs a file and a directory, and reports a missing path.
func TestSyncPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, dir} {
		if err := SyncPath(p); err != nil {
			t.Errorf("SyncPath(%s): %v", p, err)
		}
	}
	if err := SyncPath(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncPath of a missing file: %v, want fs.ErrNotExist", err)
	}
}
