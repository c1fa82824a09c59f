// Package architecture holds the test that keeps the module's import rules:
// the whiteboard's layering, checked on every `go test ./...`.
package architecture

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/streamrpc/streamrpc"

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// listPackages runs `go list -json ./...` at the module's root.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; expected the whole module", len(pkgs))
	}
	return pkgs
}

// rel is p without the module's prefix ("streams", "examples/echo"), or ""
// for a package outside the module.
func rel(p string) string {
	if p == module {
		return "."
	}
	r, ok := strings.CutPrefix(p, module+"/")
	if !ok {
		return ""
	}
	return r
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// TestImportRules: streams knows Redis and nothing of the module; consumers
// and app never import each other; examples use only the public SDK
// (consumers, client) and product code never depends on an example.
func TestImportRules(t *testing.T) {
	rules := []struct {
		name    string
		from    func(string) bool
		allowed func(to string) bool
		// withTests applies the rule to the package's tests' imports too
		// (streams' tests may start Redis with internal/redistest).
		withTests bool
	}{
		{"streams imports nothing of the module", func(p string) bool { return under(p, "streams") },
			func(to string) bool { return under(to, "streams") }, false},
		{"consumers never imports app", func(p string) bool { return under(p, "consumers") },
			func(to string) bool { return !under(to, "app") }, true},
		{"app never imports consumers", func(p string) bool { return under(p, "app") },
			func(to string) bool { return !under(to, "consumers") }, true},
		{"examples use only the SDK", func(p string) bool { return under(p, "examples") },
			func(to string) bool { return to == "consumers" || to == "client" }, false},
		{"nothing outside examples imports an example", func(p string) bool { return !under(p, "examples") },
			func(to string) bool { return !under(to, "examples") }, true},
	}
	for _, p := range listPackages(t) {
		from := rel(p.ImportPath)
		for _, r := range rules {
			if !r.from(from) {
				continue
			}
			imports := p.Imports
			if r.withTests {
				imports = append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...)
			}
			for _, imp := range imports {
				to := rel(imp)
				if to == "" || to == from {
					continue
				}
				if !r.allowed(to) {
					t.Errorf("%s: %s imports %s", r.name, from, to)
				}
			}
		}
	}
}

// TestNoTestRunsOnMiniredis: behaviour a test claims is shown on a real
// Redis; miniredis is only `streamrpc dev`'s zero-setup default
// (docs/dependencies.md).
func TestNoTestRunsOnMiniredis(t *testing.T) {
	const miniredis = "github.com/alicebob/miniredis/v2"
	users := 0
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			if imp == miniredis {
				users++
			}
		}
		for _, imp := range append(append([]string{}, p.TestImports...), p.XTestImports...) {
			if imp == miniredis {
				t.Errorf("%s: a test imports %s; start a real Redis (internal/redistest.StartSingle)", rel(p.ImportPath), imp)
			}
		}
	}
	if users == 0 {
		t.Fatalf("no package imports %s: the check above would pass for the wrong reason (renamed module?)", miniredis)
	}
}
