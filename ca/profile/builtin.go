package profile

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// builtinFS holds the built-in profiles, one YAML file each, so operators
// read them as examples of the format.
//
//go:embed profiles/*.yaml
var builtinFS embed.FS

// BuiltinNames are the built-in profile names.
var BuiltinNames = []string{
	"person-sign", "person-enc", "org-sign", "org-enc", "server-tls", "client-tls",
	"ocsp-signer", "tsa", "seal-maker", "code-sign", "sub-ca", "node-tls",
}

// Builtin parses and returns the built-in profiles by name. They are parsed
// afresh on each call, so callers may modify what they get.
func Builtin() map[string]*Profile {
	out, err := builtin()
	if err != nil {
		// The files are embedded and tested; failing here is a build defect.
		panic(err)
	}
	return out
}

// BuiltinYAML returns the source of a built-in profile.
func BuiltinYAML(name string) ([]byte, error) {
	b, err := builtinFS.ReadFile("profiles/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("built-in profile %q: %w", name, err)
	}
	return b, nil
}

func builtin() (map[string]*Profile, error) {
	files, err := fs.Glob(builtinFS, "profiles/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	out := map[string]*Profile{}
	for _, f := range files {
		b, err := builtinFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		p, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("built-in %s: %w", f, err)
		}
		if want := strings.TrimSuffix(path.Base(f), ".yaml"); p.Name != want {
			return nil, fmt.Errorf("built-in %s: name %q does not match the file", f, p.Name)
		}
		out[p.Name] = p
	}
	return out, nil
}
