package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// configStructs are every struct whose env tags are settings: the binary's
// own (which nest streams.RedisOptions, app.Config and its
// streams.Durability) and the consumers SDK's. envNames walks nested structs.
var configStructs = []any{
	settings{}, consumerSettings{},
	app.Config{}, consumers.Config{}, consumers.SidecarConfig{},
	streams.RedisOptions{}, streams.Durability{},
}

// structSettings is the set of every env tag of configStructs.
func structSettings(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, s := range configStructs {
		for _, n := range envNames(reflect.TypeOf(s)) {
			names[n] = true
		}
	}
	if len(names) < 50 {
		t.Fatalf("found only %d settings in the config structs: %v", len(names), names)
	}
	return names
}

var (
	getenvRe  = regexp.MustCompile(`Getenv\("(STREAMRPC_[A-Z0-9_]+)"\)`)
	composeRe = regexp.MustCompile(`\$\{(STREAMRPC_[A-Z0-9_]+)`)
	// a table row naming a setting in its first cell: | `NAME` | …
	rowRe = regexp.MustCompile("(?m)^\\| `((?:STREAMRPC_|REDIS_URL)[A-Z0-9_]*)` \\|")
	// a line of .env.example that sets a variable
	exampleRe = regexp.MustCompile(`(?m)^([A-Z][A-Z0-9_]*)=`)
)

// otherSettings are the STREAMRPC_* variables no config struct holds: those
// compose.yaml substitutes and those the code (tests included) reads with
// os.Getenv, found by scanning the module's sources.
func otherSettings(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	compose, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range composeRe.FindAllSubmatch(compose, -1) {
		names[string(m[1])] = true
	}
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "../.." || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range getenvRe.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !names["STREAMRPC_REQUIRE_DOCKER"] || !names["STREAMRPC_EDGE_PORT"] {
		t.Fatalf("the scan of the sources and compose.yaml missed known variables: %v", names)
	}
	return names
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestConfigurationDocListsEverySetting: docs/configuration.md has one row
// per setting, and no row for a setting nothing reads.
func TestConfigurationDocListsEverySetting(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	want := structSettings(t)
	for n := range otherSettings(t) {
		want[n] = true
	}
	rows := map[string]int{}
	for _, m := range rowRe.FindAllSubmatch(doc, -1) {
		rows[string(m[1])]++
	}
	for _, name := range sortedKeys(want) {
		if rows[name] == 0 {
			t.Errorf("docs/configuration.md has no row for %s", name)
		}
	}
	for name, n := range rows {
		switch {
		case !want[name]:
			t.Errorf("docs/configuration.md lists %s, which no config struct, compose.yaml or os.Getenv reads", name)
		case n > 1:
			t.Errorf("docs/configuration.md lists %s %d times; want once", name, n)
		}
	}
}

// TestEnvExampleNamesOnlyRealSettings is the other direction of
// TestEnvExampleListsEverySetting: every variable .env.example sets is a
// setting a config struct or compose.yaml reads, or an OTEL_* variable of the
// OpenTelemetry SDK that docs/configuration.md names; none is set twice.
func TestEnvExampleNamesOnlyRealSettings(t *testing.T) {
	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	known := structSettings(t)
	compose, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range composeRe.FindAllSubmatch(compose, -1) {
		known[string(m[1])] = true
	}
	var seen []string
	for _, m := range exampleRe.FindAllSubmatch(example, -1) {
		name := string(m[1])
		if slices.Contains(seen, name) {
			t.Errorf(".env.example sets %s twice", name)
		}
		seen = append(seen, name)
		switch {
		case strings.HasPrefix(name, "OTEL_"):
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf(".env.example sets %s, which docs/configuration.md does not name", name)
			}
		case !known[name]:
			t.Errorf(".env.example sets %s, which no config struct or compose.yaml reads", name)
		}
	}
	if len(seen) < 50 {
		t.Fatalf(".env.example sets only %d variables", len(seen))
	}
}
