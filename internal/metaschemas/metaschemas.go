// Package metaschemas holds the official OpenAPI 3.1 and OpenRPC
// meta-schemas (see README.md for where each file comes from) and compiles
// them, so that tests validate the edge's discovery documents with a
// maintained JSON Schema library and no network. Only tests import it.
package metaschemas

import (
	"bytes"
	"embed"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.json
var files embed.FS

// wip is the id suffix of the OpenAPI schemas in the specification's
// sources, which publishing replaces with a date.
const wip = "WORK-IN-PROGRESS"

// resources are the files and the URLs they are known by. The OpenRPC
// meta-schema refers to json-schema.tools' both with and without its
// trailing slash.
var resources = []struct {
	file string
	urls []string
}{
	{"oas-3.1-meta.json", []string{"https://spec.openapis.org/oas/3.1/meta/" + wip}},
	{"oas-3.1-dialect.json", []string{"https://spec.openapis.org/oas/3.1/dialect/" + wip}},
	{"oas-3.1-schema.json", []string{"https://spec.openapis.org/oas/3.1/schema/" + wip}},
	{"oas-3.1-schema-base.json", []string{"https://spec.openapis.org/oas/3.1/schema-base/" + wip}},
	{"json-schema-tools-meta.json", []string{"https://meta.json-schema.tools/", "https://meta.json-schema.tools"}},
	{"openrpc-meta-schema.json", []string{"https://meta.open-rpc.org/"}},
}

// Compile returns the OpenAPI 3.1 meta-schema (schema-base: it checks every
// Schema Object against the OpenAPI dialect too) and the OpenRPC one, with
// format assertions on.
func Compile() (openAPI, openRPC *jsonschema.Schema, err error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.UseLoader(jsonschema.SchemeURLLoader{}) // nothing from the network
	for _, r := range resources {
		b, err := files.ReadFile(r.file)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range r.urls {
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", r.file, err)
			}
			if len(r.urls) > 1 {
				doc.(map[string]any)["$id"] = u
			}
			if err := c.AddResource(u, doc); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", r.file, err)
			}
		}
	}
	if openAPI, err = c.Compile("https://spec.openapis.org/oas/3.1/schema-base/" + wip); err != nil {
		return nil, nil, err
	}
	if openRPC, err = c.Compile("https://meta.open-rpc.org/"); err != nil {
		return nil, nil, err
	}
	return openAPI, openRPC, nil
}

// Validate checks an encoded document against a meta-schema and that every
// local $ref in it ("#/…") points at something; it returns the document.
func Validate(sch *jsonschema.Schema, b []byte) (map[string]any, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if err := sch.Validate(doc); err != nil {
		return nil, fmt.Errorf("the document does not validate against its meta-schema: %w", err)
	}
	var bad []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["$ref"].(string); ok && len(r) > 1 && r[:2] == "#/" && Pointer(doc, r[1:]) == nil {
				bad = append(bad, r)
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(doc)
	if bad != nil {
		return nil, fmt.Errorf("$ref points at nothing: %v", bad)
	}
	m, _ := doc.(map[string]any)
	return m, nil
}
