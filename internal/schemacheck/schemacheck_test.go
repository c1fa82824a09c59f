package schemacheck

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func TestCompile(t *testing.T) {
	tests := []struct {
		name    string
		schema  string
		wantErr bool
	}{
		{name: "object with local reference", schema: `{"type":"object","properties":{"a":{"$ref":"#/$defs/a"}},"$defs":{"a":{"type":"integer"}}}`},
		{name: "draft-07 by its $schema", schema: `{"$schema":"http://json-schema.org/draft-07/schema#","items":[{"type":"string"}]}`},
		{name: "not JSON", schema: `{"type":`, wantErr: true},
		{name: "not a schema", schema: `{"type":7}`, wantErr: true},
		{name: "a remote reference is never loaded", schema: `{"$ref":"http://127.0.0.1:1/schema.json"}`, wantErr: true},
		{name: "a file reference is never loaded", schema: `{"$ref":"file:///etc/passwd"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(json.RawMessage(tt.schema))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Compile(%s) = %v, want error %v", tt.schema, err, tt.wantErr)
			}
		})
	}
}

func TestProblemIsOneLine(t *testing.T) {
	sch, err := Compile(json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["a","b"]}`))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(`{"a":"x"}`)))
	err = sch.Validate(v)
	if err == nil {
		t.Fatal("an invalid document validates")
	}
	p := Problem(err)
	if strings.Contains(p, "\n") || !strings.Contains(p, "missing property 'b'") || !strings.Contains(p, "want integer") {
		t.Fatalf("Problem = %q: want one line naming both problems", p)
	}
}
