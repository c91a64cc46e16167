// Package fsx holds the file-system steps that durable writes outside the
// SQL store share: making a file's or a directory's contents durable.
package fsx

import "os"

// SyncPath fsyncs the file or directory at path. fsync acts on the file,
// not on the descriptor, so it makes durable what any descriptor wrote to
// it; for a directory, the entries created, renamed or removed in it (a
// new file is durable only once its directory is synced too).
func SyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
