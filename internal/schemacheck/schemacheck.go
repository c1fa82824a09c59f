// Package schemacheck compiles and applies the JSON Schemas that consumers
// register for their methods: the edge checks params with it before a call
// is enqueued, and the consumers SDK checks results with it when a method
// opts in (consumers.EnforceResult). One library and one way to report a
// mismatch on both sides.
package schemacheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Compile compiles a schema that may not load anything: no file or URL is
// ever read because a registered schema says so.
func Compile(raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(jsonschema.SchemeURLLoader{})
	if err := c.AddResource("mem:///schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("mem:///schema.json")
}

// Problem is a validation error on one line, as error messages carry it:
// where and what ("at '/receipt': got number, want string"), without the
// library's header line, which names only the schema's internal URL.
func Problem(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	msg := ve.Error()
	if head, rest, ok := strings.Cut(msg, "\n"); ok && strings.HasPrefix(head, "jsonschema validation failed") {
		msg = rest
	}
	var lines []string
	for l := range strings.SplitSeq(msg, "\n") {
		if l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "- ")); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
