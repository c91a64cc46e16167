package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/govtrust/govtrust/internal/testenv"
)

const module = "github.com/govtrust/govtrust"

// serviceRoots are the top-level directories that hold services (ARCHITECTURE.md
// §1, layers L2–L4). portal is one of them: it talks to services through
// interfaces that cmd/govtrust wires, never by importing them.
var serviceRoots = []string{"ca", "tsa", "kms", "directory", "signature", "sso", "exchange", "portal"}

// codecs are the only service subpackages another service may import: pure
// encoders and decoders of a protocol's data (ARCHITECTURE.md §1, "a service
// may import another service's pure codec subpackage"). They are held to the
// lower-layer import allowlist, so importing one never pulls in a service core.
var codecs = []string{
	"tsa/tsp",       // RFC 3161 TimeStampReq / TimeStampResp / TSTInfo
	"ca/ocsp",       // RFC 6960 OCSP codec
	"signature/cms", // CMS SignedData / EnvelopedData (GM/T 0010)
	"signature/ses", // GM/T 0031 / GB/T 38540 SESeal and SES_Signature
	"signature/ofd", // GB/T 33190 OFD signature embedding
	"signature/pdf", // PDF signatures
	// The keyword match shared by the OFD and PDF codecs (internal: no
	// other service can import it anyway).
	"signature/internal/textsearch",
}

// lowerAllowed are the non-standard-library import paths (and their
// subpackages) that hsm/... and the codec packages may import: no I/O, no
// config, no database below the services (ARCHITECTURE.md §1). Besides these
// they may import the standard library and hsm/...; codecs may also import
// codecs (a PDF signature is a CMS SignedData, an OFD signature an SES one).
var lowerAllowed = []string{
	"golang.org/x/crypto",
	"github.com/emmansun/gmsm",
	"github.com/miekg/pkcs11",
	// The PDF object model of signature/pdf (INTEROP.md: incremental
	// updates); it parses and writes PDF in memory and does no I/O of its
	// own that the codec does not ask for.
	"github.com/pdfcpu/pdfcpu",
}

// pureInternal are internal packages as pure as a codec (encoders with no
// I/O, importing only the standard library): held to the lower-layer
// allowlist themselves, and importable by hsm/... and the codecs.
var pureInternal = []string{
	"internal/der", // hand-written DER appends of ca/crl and tsa/tsp
}

// lowerExceptions are single (importer, imported) pairs, relative to the
// module, allowed in the lower layer against the rule, each with its reason.
var lowerExceptions = map[[2]string]string{
	{"hsm/soft", "internal/store"}: "the software keystore's storage is the platform's SQL store " +
		"(SQLite or PostgreSQL, migrations, transactions); a second storage layer would duplicate it",
}

// pkg is the part of `go list -json` output the rules read.
type pkg struct {
	ImportPath   string
	Name         string
	Doc          string
	Dir          string
	GoFiles      []string
	CgoFiles     []string
	TestGoFiles  []string
	XTestGoFiles []string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

const listFields = "ImportPath,Name,Doc,Dir,GoFiles,CgoFiles,TestGoFiles,XTestGoFiles,Imports,TestImports,XTestImports,Error"

// rules are the checks TestImportRules runs, each as its own subtest. Every
// check returns one message per violation, naming the package and the import.
var rules = []struct {
	name  string
	check func([]pkg) []string
}{
	{"package comments", checkDoc},
	{"nothing imports cmd", checkNoCmd},
	{"no testing in production", checkNoTesting},
	{"services import no other service", checkServices},
	{"lower layers stay low", checkLowerLayers},
	{"bench stays apart", checkBench},
}

// required are packages known to exist; their absence means the listing is
// broken and the rules would pass vacuously.
var required = []string{"hsm", "internal/testenv", "internal/archtest", "bench/ref", "bench/rawcrypto"}

func TestImportRules(t *testing.T) {
	pkgs := listModule(t)
	t.Run("self-check", func(t *testing.T) {
		have := make(map[string]bool, len(pkgs))
		for _, p := range pkgs {
			have[p.ImportPath] = true
		}
		for _, r := range required {
			if !have[module+"/"+r] {
				t.Errorf("go list output lacks %s/%s (listed %d packages): the rules below would check nothing", module, r, len(pkgs))
			}
		}
	})
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			for _, v := range r.check(pkgs) {
				t.Error(v)
			}
		})
	}
}

// listModule returns the module's packages from `go list -e -json ./...` run at
// the module root. Packages that do not list (a syntax error in a file someone
// is editing, an import of a missing package) are left out with a log line
// locally and fail the test under CI, where the tree must build; packages that
// list are always checked, even if one of their dependencies is broken.
func listModule(t *testing.T) []pkg {
	t.Helper()
	gomod, err := exec.CommandContext(t.Context(), "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == string(filepath.Separator) {
		t.Fatalf("go env GOMOD = %q: not inside the module", gomod)
	}

	cmd := exec.CommandContext(t.Context(), "go", "list", "-e", "-json="+listFields, "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list in %s: %v\n%s", root, err, stderr.Bytes())
	}
	all, err := decodeList(out)
	if err != nil {
		t.Fatal(err)
	}

	var pkgs []pkg
	for _, p := range all {
		if p.Error != nil {
			msg := fmt.Sprintf("%s does not list, its imports are not checked: %s", p.ImportPath, p.Error.Err)
			if testenv.InCI() {
				t.Error(msg)
			} else {
				t.Log(msg + " (tolerated outside CI: probably mid-edit)")
			}
			continue
		}
		if p.Doc == "" && len(p.GoFiles)+len(p.CgoFiles) == 0 {
			// go list takes Doc only from non-test files; a test-only package
			// carries its comment in a _test.go file.
			p.Doc = testDoc(t, p)
		}
		pkgs = append(pkgs, p)
	}
	touchInputs(t, root)
	return pkgs
}

// decodeList decodes the stream of JSON objects go list prints.
func decodeList(out []byte) ([]pkg, error) {
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

// testDoc returns the package comment of a test-only package, or "".
func testDoc(t *testing.T, p pkg) string {
	t.Helper()
	fset := token.NewFileSet()
	for _, name := range slices.Concat(p.TestGoFiles, p.XTestGoFiles) {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Logf("%s: parse %s: %v", p.ImportPath, name, err)
			continue
		}
		if f.Doc != nil {
			return f.Doc.Text()
		}
	}
	return ""
}

// touchInputs opens every source directory of the module. go test caches a
// passing result keyed on the files and directories the test opened, and go
// list runs in a child process it cannot see; opening the directories makes
// the cache notice any added, removed or changed file, so a new forbidden
// import is never hidden behind "(cached)".
func touchInputs(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		// The directories the go command ignores (cmd/go "Package lists and patterns").
		if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
}

// Path helpers. Paths in the rules are relative to the module ("hsm/soft").

// rel returns the module-relative path of an import path, or ok=false for a
// path outside the module. The module root package is ".".
func rel(imp string) (r string, ok bool) {
	if imp == module {
		return ".", true
	}
	r, ok = strings.CutPrefix(imp, module+"/")
	return r, ok
}

// within reports whether imp is the path p or below it.
func within(imp, p string) bool {
	return imp == p || strings.HasPrefix(imp, p+"/")
}

// under reports whether the module package imp is dir or below it.
func under(imp, dir string) bool {
	r, ok := rel(imp)
	return ok && within(r, dir)
}

// serviceOf returns the service root a module package belongs to, or "".
func serviceOf(imp string) string {
	r, ok := rel(imp)
	if !ok {
		return ""
	}
	first, _, _ := strings.Cut(r, "/")
	if slices.Contains(serviceRoots, first) {
		return first
	}
	return ""
}

// isCodec reports whether imp is exactly one of the shared codec packages.
// Their subpackages are not shared: one could hold, say, a responder that
// imports the service core.
func isCodec(imp string) bool {
	r, ok := rel(imp)
	return ok && slices.Contains(codecs, r)
}

// inCodec reports whether imp is a codec package or below one; the lower-layer
// allowlist applies to all of them.
func inCodec(imp string) bool {
	return slices.ContainsFunc(codecs, func(c string) bool { return under(imp, c) })
}

// inPureInternal reports whether imp is one of pureInternal or below one.
func inPureInternal(imp string) bool {
	return slices.ContainsFunc(pureInternal, func(c string) bool { return under(imp, c) })
}

// isTestHelper reports whether imp is a module package made for tests:
// storetest, hsmtest, pkitest, testenv. They may import testing; production
// code may not import them.
func isTestHelper(imp string) bool {
	if _, ok := rel(imp); !ok {
		return false
	}
	last := path.Base(imp)
	return strings.HasSuffix(last, "test") || last == "testenv"
}

// isStd reports whether imp is in the standard library: its first element has
// no dot (cmd/go "Remote import paths"). "C" (cgo) counts as standard.
func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// imports yields the package's imports with where they come from.
type imported struct {
	path string
	from string // "", " (in _test.go)" or " (in external _test.go)"
}

func allImports(p pkg) []imported {
	var all []imported
	for _, i := range p.Imports {
		all = append(all, imported{i, ""})
	}
	for _, i := range p.TestImports {
		all = append(all, imported{i, " (in _test.go)"})
	}
	for _, i := range p.XTestImports {
		all = append(all, imported{i, " (in external _test.go)"})
	}
	return all
}

// Rule 1: every package, main and test-helper packages included, has a
// package comment (STYLE.md "Comments").
func checkDoc(pkgs []pkg) []string {
	var v []string
	for _, p := range pkgs {
		if strings.TrimSpace(p.Doc) == "" {
			v = append(v, fmt.Sprintf("%s has no package comment: add one (in doc.go if the package has several files)", p.ImportPath))
		}
	}
	return v
}

// Rule 2: nothing imports cmd/..., not even tests: cmd/govtrust only wires
// (ARCHITECTURE.md §1, L5).
func checkNoCmd(pkgs []pkg) []string {
	var v []string
	for _, p := range pkgs {
		for _, i := range allImports(p) {
			if under(i.path, "cmd") {
				v = append(v, fmt.Sprintf("%s imports %s%s: nothing may import cmd/..., which only wires services together", p.ImportPath, i.path, i.from))
			}
		}
	}
	return v
}

// Rule 3: production code does not import testing, directly or through a test
// helper package; only the test helpers themselves may.
func checkNoTesting(pkgs []pkg) []string {
	var v []string
	for _, p := range pkgs {
		if isTestHelper(p.ImportPath) {
			continue
		}
		for _, i := range p.Imports {
			switch {
			case within(i, "testing"):
				v = append(v, fmt.Sprintf("%s imports %s in non-test code: only _test.go files and test-helper packages (named *test or testenv) may", p.ImportPath, i))
			case isTestHelper(i):
				v = append(v, fmt.Sprintf("%s imports test-helper package %s in non-test code: it would bring testing into production", p.ImportPath, i))
			}
		}
	}
	return v
}

// Rule 4: a service imports no other service, except that service's shared
// codec packages. Test files are not checked: an integration test may drive
// two services.
func checkServices(pkgs []pkg) []string {
	var v []string
	for _, p := range pkgs {
		from := serviceOf(p.ImportPath)
		if from == "" {
			continue
		}
		for _, i := range p.Imports {
			to := serviceOf(i)
			if to == "" || to == from || isCodec(i) {
				continue
			}
			v = append(v, fmt.Sprintf("%s (service %s) imports %s (service %s): declare a small interface and let cmd/govtrust wire it; only the codec packages %s are shared",
				p.ImportPath, from, i, to, strings.Join(codecs, ", ")))
		}
	}
	return v
}

// Rule 5: internal/... and hsm/... import no service package; hsm/... and the
// codec packages import only the standard library, lowerAllowed, hsm/... and
// (codecs) other codecs, apart from lowerExceptions. Test-helper packages
// (hsm/hsmtest) are held only to the first part: rule 3 keeps them out of
// production binaries, and a conformance suite needs testenv. Test files are
// not checked.
func checkLowerLayers(pkgs []pkg) []string {
	var v []string
	for _, p := range pkgs {
		low := under(p.ImportPath, "internal") || under(p.ImportPath, "hsm")
		pure := (under(p.ImportPath, "hsm") || inCodec(p.ImportPath) || inPureInternal(p.ImportPath)) && !isTestHelper(p.ImportPath)
		if !low && !pure {
			continue
		}
		for _, i := range p.Imports {
			if low && serviceOf(i) != "" {
				v = append(v, fmt.Sprintf("%s imports service package %s: internal/... and hsm/... are lower layers and import no service", p.ImportPath, i))
				continue
			}
			if pure && !pureAllowed(p.ImportPath, i) {
				v = append(v, fmt.Sprintf("%s imports %s: hsm/... and the codec packages may import only the standard library, %s, hsm/... and codecs",
					p.ImportPath, i, strings.Join(lowerAllowed, "/..., ")+"/..."))
			}
		}
	}
	return v
}

func pureAllowed(from, imp string) bool {
	if isStd(imp) || under(imp, "hsm") || (inCodec(from) && inCodec(imp)) || inPureInternal(imp) {
		return true
	}
	if slices.ContainsFunc(lowerAllowed, func(a string) bool { return within(imp, a) }) {
		return true
	}
	f, _ := rel(from)
	i, _ := rel(imp)
	_, ok := lowerExceptions[[2]string{f, i}]
	return ok
}

// Rule 6: bench/ is a leaf. Nothing under internal/ imports it, not even in
// tests; elsewhere only bench/ itself and _test.go files may.
func checkBench(pkgs []pkg) []string {
	var v []string
	for _, p := range pkgs {
		if under(p.ImportPath, "bench") {
			continue
		}
		internal := under(p.ImportPath, "internal")
		for _, i := range allImports(p) {
			if !under(i.path, "bench") {
				continue
			}
			switch {
			case internal:
				v = append(v, fmt.Sprintf("%s imports %s%s: nothing under internal/ may import bench/...", p.ImportPath, i.path, i.from))
			case i.from == "":
				v = append(v, fmt.Sprintf("%s imports %s in non-test code: only bench/ and _test.go files may import bench/...", p.ImportPath, i.path))
			}
		}
	}
	return v
}

// TestRulesCatchViolations runs each rule on hand-made package lists, so that a
// rule which silently stopped matching (a typo in a path, a wrong prefix test)
// fails here instead of passing on the real tree.
func TestRulesCatchViolations(t *testing.T) {
	m := func(r string) string { return module + "/" + r }
	p := func(r string, imports ...string) pkg {
		return pkg{ImportPath: m(r), Doc: "Package " + path.Base(r) + " does something.", Imports: imports}
	}
	withTests := func(q pkg, test, xtest []string) pkg {
		q.TestImports, q.XTestImports = test, xtest
		return q
	}
	tests := []struct {
		name  string
		check func([]pkg) []string
		pkgs  []pkg
		want  []string // one substring per expected violation, in order
	}{
		{
			name:  "doc/good",
			check: checkDoc,
			pkgs:  []pkg{p("ca"), {ImportPath: m("cmd/govtrust"), Name: "main", Doc: "Govtrust runs the platform."}},
		},
		{
			name:  "doc/bad",
			check: checkDoc,
			pkgs:  []pkg{{ImportPath: m("ca")}, {ImportPath: m("cmd/govtrust"), Name: "main", Doc: " \n"}, {ImportPath: m("internal/store/storetest")}},
			want:  []string{m("ca") + " has no package comment", m("cmd/govtrust") + " has no", m("internal/store/storetest") + " has no"},
		},
		{
			name:  "cmd/good",
			check: checkNoCmd,
			pkgs:  []pkg{p("cmd/govtrust", m("ca"), m("sso"), "github.com/spf13/cobra")},
		},
		{
			name:  "cmd/bad",
			check: checkNoCmd,
			pkgs: []pkg{
				p("ca", m("cmd/govtrust")),
				withTests(p("internal/config"), []string{m("cmd/govtrust/admin")}, nil),
				withTests(p("cmd/govtrust/admin"), nil, []string{m("cmd/govtrust")}),
			},
			want: []string{
				m("ca") + " imports " + m("cmd/govtrust") + ":",
				m("internal/config") + " imports " + m("cmd/govtrust/admin") + " (in _test.go)",
				m("cmd/govtrust/admin") + " imports " + m("cmd/govtrust") + " (in external _test.go)",
			},
		},
		{
			name:  "testing/good",
			check: checkNoTesting,
			pkgs: []pkg{
				p("internal/store/storetest", "testing", m("internal/testenv")),
				p("internal/testenv", "testing"),
				p("internal/pkitest", "testing", m("internal/store/storetest")),
				withTests(p("ca", m("ca/ocsp")), []string{"testing", m("internal/store/storetest")}, []string{"testing/fstest"}),
			},
		},
		{
			name:  "testing/bad",
			check: checkNoTesting,
			pkgs: []pkg{
				p("ca", "testing"),
				p("tsa", "testing/fstest"),
				p("internal/store", m("internal/store/storetest")),
				p("cmd/govtrust", m("internal/testenv")),
			},
			want: []string{
				m("ca") + " imports testing in non-test code",
				m("tsa") + " imports testing/fstest",
				m("internal/store") + " imports test-helper package " + m("internal/store/storetest"),
				m("cmd/govtrust") + " imports test-helper package " + m("internal/testenv"),
			},
		},
		{
			name:  "services/good",
			check: checkServices,
			pkgs: []pkg{
				p("signature", m("tsa/tsp"), m("ca/ocsp"), m("signature/cms"), m("hsm"), m("internal/store")),
				p("exchange/approval", m("exchange"), m("signature/ses")),
				p("portal", m("internal/httpx"), m("internal/authz")),
				withTests(p("ca"), []string{m("tsa"), m("kms")}, []string{m("directory")}),
				p("cmd/govtrust", m("ca"), m("tsa"), m("portal")),
			},
		},
		{
			name:  "services/bad",
			check: checkServices,
			pkgs: []pkg{
				p("signature", m("tsa")),
				p("portal", m("sso")),
				p("ca", m("tsa/tsp/internal/der")),
				p("kms/kmc", m("ca/issue")),
				p("exchange/approval", m("signature/cms"), m("sso/account")),
			},
			want: []string{
				m("signature") + " (service signature) imports " + m("tsa") + " (service tsa)",
				m("portal") + " (service portal) imports " + m("sso") + " (service sso)",
				m("ca") + " (service ca) imports " + m("tsa/tsp/internal/der"),
				m("kms/kmc") + " (service kms) imports " + m("ca/issue") + " (service ca)",
				m("exchange/approval") + " (service exchange) imports " + m("sso/account"),
			},
		},
		{
			name:  "lower/good",
			check: checkLowerLayers,
			pkgs: []pkg{
				p("hsm", "crypto/ecdsa", "net/url", "github.com/emmansun/gmsm/sm2"),
				p("hsm/pkcs11", "C", m("hsm"), "github.com/miekg/pkcs11", "golang.org/x/crypto/cryptobyte"),
				p("hsm/soft", m("hsm"), m("internal/store"), "github.com/emmansun/gmsm/sm4"),
				p("hsm/hsmtest", "testing", m("hsm"), m("internal/testenv")),
				p("signature/pdf", m("signature/cms"), m("tsa/tsp"), "image/png"),
				p("ca/ocsp", "encoding/asn1", m("hsm")),
				p("tsa/tsp", m("internal/der"), "golang.org/x/crypto/cryptobyte"),
				p("internal/der", "math/big"),
				p("internal/audit", m("internal/store"), m("hsm"), "github.com/emmansun/gmsm/sm3"),
				withTests(p("hsm"), []string{m("internal/store"), m("ca")}, []string{"gopkg.in/yaml.v3"}),
				p("ca", m("internal/store"), "github.com/jackc/pgx/v5"),
			},
		},
		{
			name:  "lower/bad",
			check: checkLowerLayers,
			pkgs: []pkg{
				p("internal/authz", m("sso")),
				p("internal/httpx", m("ca/ocsp")),
				p("hsm", m("ca")),
				p("hsm/pkcs11", m("internal/store")),
				p("tsa/tsp", m("internal/clock")),
				p("signature/cms", "gopkg.in/yaml.v3"),
				p("ca/ocsp/der", "github.com/jackc/pgx/v5"),
				p("hsm/soft", "golang.org/x/sys/unix"),
				p("internal/der", m("internal/clock")),
			},
			want: []string{
				m("internal/authz") + " imports service package " + m("sso"),
				m("internal/httpx") + " imports service package " + m("ca/ocsp"),
				m("hsm") + " imports service package " + m("ca"),
				m("hsm/pkcs11") + " imports " + m("internal/store") + ": hsm/... and the codec packages may import only",
				m("tsa/tsp") + " imports " + m("internal/clock") + ":",
				m("signature/cms") + " imports gopkg.in/yaml.v3:",
				m("ca/ocsp/der") + " imports github.com/jackc/pgx/v5:",
				m("hsm/soft") + " imports golang.org/x/sys/unix:",
				m("internal/der") + " imports " + m("internal/clock") + ":",
			},
		},
		{
			name:  "bench/good",
			check: checkBench,
			pkgs: []pkg{
				p("bench/caload", m("bench/ref"), m("ca")),
				withTests(p("ca"), []string{m("bench/ref")}, []string{m("bench/ref")}),
			},
		},
		{
			name:  "bench/bad",
			check: checkBench,
			pkgs: []pkg{
				withTests(p("internal/store"), nil, []string{m("bench/ref")}),
				p("internal/audit", m("bench/ref")),
				p("ca", m("bench/ref")),
				p("cmd/govtrust", m("bench/rawcrypto")),
			},
			want: []string{
				m("internal/store") + " imports " + m("bench/ref") + " (in external _test.go): nothing under internal/",
				m("internal/audit") + " imports " + m("bench/ref") + ": nothing under internal/",
				m("ca") + " imports " + m("bench/ref") + " in non-test code",
				m("cmd/govtrust") + " imports " + m("bench/rawcrypto") + " in non-test code",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.check(tt.pkgs)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d violations, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestPathHelpers(t *testing.T) {
	tests := []struct {
		imp                string
		service            string
		std, helper, codec bool
	}{
		{imp: "crypto/ecdsa", std: true},
		{imp: "C", std: true},
		{imp: "github.com/emmansun/gmsm/sm2"},
		{imp: module + "/ca", service: "ca"},
		{imp: module + "/ca/ocsp", service: "ca", codec: true},
		{imp: module + "/ca/ocsp/responder", service: "ca"},
		{imp: module + "/cause", service: ""}, // a prefix of a root is not the root
		{imp: module + "/portal/public", service: "portal"},
		{imp: module + "/internal/store/storetest", helper: true},
		{imp: module + "/internal/testenv", helper: true},
		{imp: module + "/hsm/hsmtest", helper: true},
		{imp: "github.com/other/storetest"}, // outside the module: not ours to allow
		{imp: module},
	}
	for _, tt := range tests {
		t.Run(tt.imp, func(t *testing.T) {
			if got := serviceOf(tt.imp); got != tt.service {
				t.Errorf("serviceOf = %q, want %q", got, tt.service)
			}
			if got := isStd(tt.imp); got != tt.std {
				t.Errorf("isStd = %v, want %v", got, tt.std)
			}
			if got := isTestHelper(tt.imp); got != tt.helper {
				t.Errorf("isTestHelper = %v, want %v", got, tt.helper)
			}
			if got := isCodec(tt.imp); got != tt.codec {
				t.Errorf("isCodec = %v, want %v", got, tt.codec)
			}
		})
	}
}

// TestDecodeList checks the decoding of go list's output stream, including a
// package that does not list.
func TestDecodeList(t *testing.T) {
	out := []byte(`{"ImportPath": "` + module + `/hsm", "Doc": "Package hsm is the SPI.", "Imports": ["crypto"]}
{"ImportPath": "` + module + `/ca", "Error": {"Err": "ca.go:3:1: expected declaration"}}
`)
	pkgs, err := decodeList(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 {
		t.Fatalf("decoded %d packages, want 2", len(pkgs))
	}
	if pkgs[0].Doc == "" || !slices.Equal(pkgs[0].Imports, []string{"crypto"}) || pkgs[0].Error != nil {
		t.Errorf("first package = %+v", pkgs[0])
	}
	if pkgs[1].Error == nil || !strings.Contains(pkgs[1].Error.Err, "expected declaration") {
		t.Errorf("second package error = %+v, want the build error", pkgs[1].Error)
	}
	if _, err := decodeList([]byte(`{"ImportPath": `)); err == nil {
		t.Error("decodeList of truncated output succeeded")
	}
}
