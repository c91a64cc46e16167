package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// SecretRef names where a secret lives: "file:/path" (the file's content, one
// trailing newline removed) or "env:NAME". An empty SecretRef means no secret.
// Inline values are refused by Validate, so a secret never sits in a config
// file or a process listing.
type SecretRef string

// Validate refuses anything but an empty reference, file: or env:.
func (s SecretRef) Validate() error {
	switch {
	case s == "":
		return nil
	case strings.HasPrefix(string(s), "file:") && len(s) > len("file:"):
		return nil
	case strings.HasPrefix(string(s), "env:") && len(s) > len("env:"):
		return nil
	}
	// Do not echo the value: it may be the secret itself, pasted inline.
	return errors.New("secret must be a reference (file:/path or env:NAME), not an inline value")
}

// Resolve reads the secret. It returns nil for an empty reference.
func (s SecretRef) Resolve() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	switch {
	case s == "":
		return nil, nil
	case strings.HasPrefix(string(s), "file:"):
		path := strings.TrimPrefix(string(s), "file:")
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", s, err)
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r")), nil
	default:
		name := strings.TrimPrefix(string(s), "env:")
		v, ok := os.LookupEnv(name)
		if !ok {
			return nil, fmt.Errorf("secret %s: environment variable not set", s)
		}
		return []byte(v), nil
	}
}
