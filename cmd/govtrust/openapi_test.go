package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/govtrust/govtrust/ca"
	"github.com/govtrust/govtrust/internal/authz"
	"github.com/govtrust/govtrust/internal/node"
	"github.com/govtrust/govtrust/tsa"
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

// openAPISchema is the part of an OpenAPI schema whose names are compared.
type openAPISchema struct {
	Type       string                    `yaml:"type"`
	Properties map[string]*openAPISchema `yaml:"properties"`
	Items      *openAPISchema            `yaml:"items"`
}

// TestOpenAPISchemasMatchGo: every JSON request and response schema of the
// CA and TSA routes in api/openapi.yaml names the properties of the Go type
// the handler decodes or encodes, no more and no fewer (json tags, nested
// objects and arrays included), and every such type's schema is there
// under the status code the handler answers with. A renamed field, a
// property the code does not have or a wrong status code fails here.
func TestOpenAPISchemasMatchGo(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "api", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type content map[string]struct {
		Schema *openAPISchema `yaml:"schema"`
	}
	var doc struct {
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content content `yaml:"content"`
			} `yaml:"requestBody"`
			Responses map[string]struct {
				Content content `yaml:"content"`
			} `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	// "METHOD path request" or "METHOD path STATUS" → the Go type.
	want := map[string]reflect.Type{
		"POST /api/v1/ca/{ca}/certificates request":       reflect.TypeFor[ca.IssueRequest](),
		"POST /api/v1/ca/{ca}/certificates 201":           reflect.TypeFor[ca.IssueResponse](),
		"GET /api/v1/ca/{ca}/certificates/{serial} 200":   reflect.TypeFor[ca.CertificateResponse](),
		"POST /api/v1/ca/{ca}/rollover request":           reflect.TypeFor[ca.RolloverRequest](),
		"POST /api/v1/ca/{ca}/rollover 201":               reflect.TypeFor[ca.RolloverResponse](),
		"POST /api/v1/ca/{ca}/cross-certificates request": reflect.TypeFor[ca.CrossRequest](),
		"POST /api/v1/ca/{ca}/cross-certificates 201":     reflect.TypeFor[ca.CrossInfo](),
		"GET /api/v1/ca/profiles 200": reflect.TypeFor[struct {
			Profiles []ca.ProfileInfo `json:"profiles"`
		}](),
		"POST /api/v1/ca/{ca}/crls 201":            reflect.TypeFor[ca.CRLInfo](),
		"POST /api/v1/ca/{ca}/revocations request": reflect.TypeFor[ca.RevokeRequest](),
		"POST /api/v1/ca/{ca}/revocations 200":     reflect.TypeFor[ca.RevokeResponse](),
		"POST /api/v1/ca/{ca}/revocations 202":     reflect.TypeFor[ca.PendingRevocation](),
		"GET /api/v1/tsa/tokens/{serial} 200":      reflect.TypeFor[tsa.TokenRecord](),
		"GET /api/v1/orgs 200": reflect.TypeFor[struct {
			Orgs []authz.Org `json:"orgs"`
		}](),
		"PUT /api/v1/orgs/{id} request": reflect.TypeFor[authz.OrgRequest](),
		"PUT /api/v1/orgs/{id} 200":     reflect.TypeFor[authz.Org](),
	}
	seen := map[string]bool{}
	check := func(key string, c content) {
		s := c["application/json"].Schema
		if s == nil || (s.Properties == nil && s.Items == nil) {
			return // no JSON, or no schema of it
		}
		seen[key] = true
		typ, ok := want[key]
		if !ok {
			t.Errorf("api/openapi.yaml: %s has a JSON schema, but the test names no Go type for it", key)
			return
		}
		compareSchema(t, key, s, typ)
	}
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, "/api/v1/ca") && !strings.Contains(path, "tsa") && !strings.HasPrefix(path, "/api/v1/orgs") {
			continue
		}
		for method, op := range ops {
			prefix := strings.ToUpper(method) + " " + path
			check(prefix+" request", op.RequestBody.Content)
			for status, resp := range op.Responses {
				check(prefix+" "+status, resp.Content)
			}
		}
	}
	for key := range want {
		if !seen[key] {
			t.Errorf("api/openapi.yaml: no JSON schema for %s", key)
		}
	}
}

// compareSchema reports the differences between the property names of s
// and the json names of typ's fields, and goes into nested objects and
// arrays.
func compareSchema(t *testing.T, where string, s *openAPISchema, typ reflect.Type) {
	t.Helper()
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array {
		if typ.Kind() != reflect.Pointer {
			if s.Items == nil {
				t.Errorf("%s: %s is a list, the schema has no items", where, typ)
				return
			}
			s = s.Items
		}
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct {
		return // a map or a scalar: no names to compare
	}
	fields := map[string]reflect.Type{}
	for f := range typ.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for name, ft := range fields {
		p, ok := s.Properties[name]
		if !ok {
			t.Errorf("%s: %s.%s is not a property of the schema", where, typ, name)
			continue
		}
		if p != nil && (p.Properties != nil || p.Items != nil) {
			compareSchema(t, where+"."+name, p, ft)
		}
	}
	for name := range s.Properties {
		if _, ok := fields[name]; !ok {
			t.Errorf("%s: the schema's property %q is not a field of %s", where, name, typ)
		}
	}
}
