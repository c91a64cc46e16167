package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/govtrust/govtrust/internal/node"
)

func ptr(s string) *string { return &s }

// api/openapi.yaml describes every route a node serves, with the action the
// route declares (or its public reason), and nothing else.
func TestOpenAPICoversRoutes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "api", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Action string `yaml:"x-govtrust-action"`
			Public string `yaml:"x-govtrust-public"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	// The node with the services `govtrust up` runs.
	n, err := node.Start(context.Background(), node.Options{DataDir: filepath.Join(t.TempDir(), "data"),
		HTTP: ptr("127.0.0.1:0"), HTTPS: ptr("127.0.0.1:0"), LDAP: ptr(""), LogOutput: io.Discard, Environ: []string{}}, services()...)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	pub, api := n.Routes()
	served := map[string]bool{}
	for _, r := range append(pub, api...) {
		method, path, _ := strings.Cut(r.Pattern, " ")
		key := strings.ToLower(method) + " " + path
		if served[key] {
			continue // /healthz and /readyz are on both listeners
		}
		served[key] = true
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("%s is served but not in api/openapi.yaml", r.Pattern)
			continue
		}
		if op.Action != r.Action || (r.Public != "") != (op.Public != "") {
			t.Errorf("%s: openapi says action %q public %q, the route declares %q %q", r.Pattern, op.Action, op.Public, r.Action, r.Public)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !served[method+" "+path] {
				t.Errorf("api/openapi.yaml documents %s %s, which no route serves", strings.ToUpper(method), path)
			}
		}
	}
}
