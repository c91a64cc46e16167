package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed default.yaml
var defaultFile []byte

// DefaultFile returns the commented default configuration file.
func DefaultFile() []byte { return append([]byte(nil), defaultFile...) }

// WriteDefault writes the commented default configuration to path unless a
// file is already there. It reports whether it wrote one.
func WriteDefault(path string) (bool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("write default config: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("write default config: %w", err)
	}
	if _, err := f.Write(defaultFile); err != nil {
		f.Close()
		return false, fmt.Errorf("write default config: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("write default config: %w", err)
	}
	return true, f.Close()
}
