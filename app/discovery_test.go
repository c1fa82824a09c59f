package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/streamrpc/streamrpc/internal/metaschemas"
	"github.com/streamrpc/streamrpc/streams"
)

// testRegistry has every shape of method the generators handle: no
// schemas, an object params schema with local references, a positional
// (2020-12 prefixItems) one, a draft-07 schema with $schema and $id, and an
// enforced result.
var testRegistry = []streams.HandlerInfo{
	{Name: "billing", Description: "charges cards", Methods: []streams.MethodInfo{
		{Name: "charge", Description: "charges a card",
			ParamsSchema: json.RawMessage(`{"type":"object","properties":{"card":{"$ref":"#/$defs/card"},"cents":{"type":"integer","minimum":1}},"required":["card","cents"],"$defs":{"card":{"type":"string","pattern":"^[0-9]{16}$"}}}`),
			ResultSchema: json.RawMessage(`{"type":"object","properties":{"receipt":{"type":"string"}},"required":["receipt"]}`), ResultEnforced: true},
		{Name: "legacy", ParamsSchema: json.RawMessage(`{"$schema":"http://json-schema.org/draft-07/schema#","$id":"http://example.com/legacy","type":"object","properties":{"x":{"$ref":"#/definitions/x"}},"definitions":{"x":{"type":"number"}}}`)},
	}},
	{Name: "echo", Methods: []streams.MethodInfo{
		// Not valid JSON Schema 2020-12 once embedded: shown as any JSON.
		{Name: "broken", ParamsSchema: json.RawMessage(`{"type":7}`), ResultSchema: json.RawMessage(`{"required":"x"}`)},
		{Name: "echo", Description: "returns its params unchanged"},
		{Name: "pair", ParamsSchema: json.RawMessage(`{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"minItems":1}`)},
		{Name: "tuple07", ParamsSchema: json.RawMessage(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"array","items":[{"type":"string"}]}`)},
	}},
}

func metaSchemas(t testing.TB) (openAPI, openRPC *jsonschema.Schema) {
	t.Helper()
	openAPI, openRPC, err := metaschemas.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return openAPI, openRPC
}

func validateDoc(t testing.TB, sch *jsonschema.Schema, b []byte) map[string]any {
	t.Helper()
	doc, err := metaschemas.Validate(sch, b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return doc
}

var pointer = metaschemas.Pointer

func TestDiscoveryDocumentsMetaSchemas(t *testing.T) {
	openAPI, openRPC := metaSchemas(t)
	_, entry := newKey(t, "k", "call:*.*")
	edges := []struct {
		name string
		cfg  Config
	}{
		{name: "auth off", cfg: Config{}},
		{name: "api keys and a JWT key", cfg: Config{APIKeys: entry, JWTHS256Secret: hs256Secret, JWTIssuer: "https://issuer.test", JWTAudience: "streamrpc"}},
	}
	registries := []struct {
		name     string
		handlers []streams.HandlerInfo
	}{
		{name: "every shape", handlers: testRegistry},
		{name: "empty registry", handlers: nil},
	}
	for _, ec := range edges {
		for _, rc := range registries {
			t.Run(ec.name+"/"+rc.name, func(t *testing.T) {
				e := newTestEdge(t, ec.cfg)
				b, err := json.Marshal(e.openAPIDoc(rc.handlers, "v1"))
				if err != nil {
					t.Fatal(err)
				}
				validateDoc(t, openAPI, b)
				b, err = json.Marshal(openRPCDoc(rc.handlers, "v1"))
				if err != nil {
					t.Fatal(err)
				}
				validateDoc(t, openRPC, b)
			})
		}
	}
}

// TestMetaSchemasRefuse: the meta-schemas do refuse broken documents (a
// validation that passes everything would prove nothing).
func TestMetaSchemasRefuse(t *testing.T) {
	openAPI, openRPC := metaSchemas(t)
	e := newTestEdge(t, Config{})
	tests := []struct {
		name  string
		sch   *jsonschema.Schema
		doc   map[string]any
		spoil func(map[string]any)
	}{
		{name: "openapi: info not an object", sch: openAPI, doc: e.openAPIDoc(testRegistry, "v1"), spoil: func(d map[string]any) { d["info"] = 5 }},
		{name: "openapi: version 3.0", sch: openAPI, doc: e.openAPIDoc(testRegistry, "v1"), spoil: func(d map[string]any) { d["openapi"] = "3.0.3" }},
		{name: "openapi: a schema with a bad type", sch: openAPI, doc: e.openAPIDoc(testRegistry, "v1"),
			spoil: func(d map[string]any) {
				d["components"].(map[string]any)["schemas"].(map[string]any)["Error"] = map[string]any{"type": 7}
			}},
		{name: "openrpc: params not an array", sch: openRPC, doc: openRPCDoc(testRegistry, "v1"),
			spoil: func(d map[string]any) { d["methods"].([]any)[0].(map[string]any)["params"] = "x" }},
		{name: "openrpc: unknown version", sch: openRPC, doc: openRPCDoc(testRegistry, "v1"), spoil: func(d map[string]any) { d["openrpc"] = "0.9" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spoil(tt.doc)
			b, _ := json.Marshal(tt.doc)
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if tt.sch.Validate(v) == nil {
				t.Fatal("the broken document validates")
			}
		})
	}
}

// TestOpenAPIDocument checks what the document says of each method.
func TestOpenAPIDocument(t *testing.T) {
	openAPI, _ := metaSchemas(t)
	_, entry := newKey(t, "k", "call:*.*")
	e := newTestEdge(t, Config{APIKeys: entry})
	b, _ := json.Marshal(e.openAPIDoc(testRegistry, "v1"))
	doc := validateDoc(t, openAPI, b)
	statuses, _ := errorStatuses()
	for _, h := range testRegistry {
		for _, m := range h.Methods {
			name := h.Name + "." + m.Name
			t.Run(name, func(t *testing.T) {
				op, _ := pointer(doc, "/paths/~1rpc~1"+h.Name+"~1"+m.Name+"/post").(map[string]any)
				if op == nil {
					t.Fatalf("no POST /rpc/%s/%s", h.Name, m.Name)
				}
				if op["operationId"] != name {
					t.Errorf("operationId %v, want %s", op["operationId"], name)
				}
				if pointer(op, "/requestBody/content/application~1json/schema") == nil {
					t.Error("no request body schema (wanted one always: any JSON without a params schema)")
				}
				for _, s := range append([]int{200, 202}, statuses...) {
					if pointer(op, "/responses/"+strconv.Itoa(s)) == nil {
						t.Errorf("no %d response", s)
					}
				}
				if pointer(op, "/responses/202/headers/Location/required") != true {
					t.Error("202 without a required Location header")
				}
				var headers []string
				for _, p := range op["parameters"].([]any) {
					ref, _ := p.(map[string]any)["$ref"].(string)
					headers = append(headers, pointer(doc, strings.TrimPrefix(ref, "#")+"/name").(string))
				}
				for _, want := range []string{"Prefer", "Idempotency-Key", "Request-Timeout"} {
					if !strings.Contains(strings.Join(headers, ","), want) {
						t.Errorf("headers %v lack %s", headers, want)
					}
				}
				if got := pointer(op, "/security/0/bearerAuth/0"); got != "call:"+name {
					t.Errorf("security role %v, want call:%s", got, name)
				}
				if (op["x-streamrpc-result-enforced"] == true) != m.ResultEnforced {
					t.Errorf("x-streamrpc-result-enforced = %v, want %v", op["x-streamrpc-result-enforced"], m.ResultEnforced)
				}
			})
		}
	}
	// A consumer's local references now point into its component.
	if got := pointer(doc, "/components/schemas/billing.charge.params_schema/properties/card/$ref"); got != "#/components/schemas/billing.charge.params_schema/$defs/card" {
		t.Errorf("rebased $ref = %v", got)
	}
	for _, p := range []string{"/paths/~1rpc~1calls~1{id}/get", "/paths/~1rpc~1calls~1{id}/delete", "/components/securitySchemes/bearerAuth", "/components/securitySchemes/apiKeyHeader"} {
		if pointer(doc, p) == nil {
			t.Errorf("no %s", p)
		}
	}
}

func TestOpenRPCDocument(t *testing.T) {
	_, openRPC := metaSchemas(t)
	b, _ := json.Marshal(openRPCDoc(testRegistry, "v1"))
	doc := validateDoc(t, openRPC, b)
	methods := map[string]map[string]any{}
	for _, m := range doc["methods"].([]any) {
		mm := m.(map[string]any)
		methods[mm["name"].(string)] = mm
	}
	tests := []struct {
		method    string
		structure string
		params    string // names, comma-separated, required ones marked *
	}{
		{method: "billing.charge", structure: "by-name", params: "card*,cents*"},
		{method: "billing.legacy", structure: "by-name", params: "x"},
		{method: "echo.echo", structure: "either", params: ""},
		{method: "echo.broken", structure: "either", params: ""},
		{method: "echo.tuple07", structure: "either", params: ""},
		{method: "echo.pair", structure: "by-position", params: "arg0*,arg1"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			m := methods[tt.method]
			if m == nil {
				t.Fatalf("no method %s", tt.method)
			}
			if m["paramStructure"] != tt.structure {
				t.Errorf("paramStructure %v, want %s", m["paramStructure"], tt.structure)
			}
			var names []string
			for _, p := range m["params"].([]any) {
				pm := p.(map[string]any)
				n := pm["name"].(string)
				if pm["required"] == true {
					n += "*"
				}
				names = append(names, n)
			}
			if got := strings.Join(names, ","); got != tt.params {
				t.Errorf("params %q, want %q", got, tt.params)
			}
			if got := len(m["errors"].([]any)); got != len(streams.Codes) {
				t.Errorf("%d errors, want the %d of the errors table", got, len(streams.Codes))
			}
		})
	}
	if fmt.Sprint(pointer(doc, "/components/errors/timeout/code")) != strconv.Itoa(streams.CodeTimeout) {
		t.Error("components.errors.timeout is not -32001")
	}
}

// TestDiscoveryVisible: with auth on a caller sees the methods its call:
// scopes allow; read sees them all (GET /handlers shows them anyway).
func TestDiscoveryVisible(t *testing.T) {
	tests := []struct {
		name    string
		scopes  []string
		noAuth  bool
		handler string
		want    string
	}{
		{name: "auth off", noAuth: true, want: "billing.charge,billing.legacy,echo.broken,echo.echo,echo.pair,echo.tuple07"},
		{name: "read", scopes: []string{"read"}, want: "billing.charge,billing.legacy,echo.broken,echo.echo,echo.pair,echo.tuple07"},
		{name: "one handler", scopes: []string{"call:echo.*"}, want: "echo.broken,echo.echo,echo.pair,echo.tuple07"},
		{name: "one method", scopes: []string{"call:billing.charge"}, want: "billing.charge"},
		{name: "glob on methods of every handler", scopes: []string{"call:*.e*"}, want: "echo.echo"},
		{name: "nothing", scopes: []string{"call:other.*"}, want: ""},
		{name: "handler filter", scopes: []string{"call:*.*"}, handler: "billing", want: "billing.charge,billing.legacy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p *Principal
			if !tt.noAuth {
				s, err := parseScopes(tt.scopes)
				if err != nil {
					t.Fatal(err)
				}
				p = newPrincipal("k", "api_key", s)
			}
			hs, _ := visible(testRegistry, tt.handler, p)
			var got []string
			for _, h := range hs {
				for _, m := range h.Methods {
					got = append(got, h.Name+"."+m.Name)
				}
			}
			if strings.Join(got, ",") != tt.want {
				t.Fatalf("visible = %v, want %s", got, tt.want)
			}
		})
	}
}

// bigRegistry is 10 handlers of 10 methods, each with both schemas.
func bigRegistry() []streams.HandlerInfo {
	var hs []streams.HandlerInfo
	for h := range 10 {
		hi := streams.HandlerInfo{Name: "h" + strconv.Itoa(h)}
		for m := range 10 {
			hi.Methods = append(hi.Methods, testRegistry[0].Methods[0])
			hi.Methods[m].Name = "m" + strconv.Itoa(m)
		}
		hs = append(hs, hi)
	}
	return hs
}

// BenchmarkDiscoveryRender is what a registry change costs: rendering
// and encoding both documents of 100 methods once.
func BenchmarkDiscoveryRender(b *testing.B) {
	e := newTestEdge(b, Config{})
	hs := bigRegistry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(e.openAPIDoc(hs, "v")); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(openRPCDoc(hs, "v")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiscoveryCached is a document request while the registry is
// unchanged: a scope filter and a map lookup.
func BenchmarkDiscoveryCached(b *testing.B) {
	e := newTestEdge(b, Config{})
	e.discovery.snap = &registrySnapshot{handlers: bigRegistry(), version: "v", docs: map[string][]byte{}}
	e.discovery.loaded = time.Now().Add(time.Hour) // fresh for the whole run: no Redis read
	s, _ := parseScopes([]string{"call:h1.*"})
	p := newPrincipal("k", "api_key", s)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.discovery.document(ctx, docOpenAPI, "", p); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDiscoveryRoutesWithoutRedis: the routes answer with the errors table
// when the registry cannot be read or the name is bad.
func TestDiscoveryRoutesWithoutRedis(t *testing.T) {
	e := newTestEdge(t, Config{})
	tests := []struct {
		name   string
		path   string
		status int
		code   int
	}{
		{name: "openapi, redis down", path: "/openapi.json", status: 503, code: streams.CodeUnavailable},
		{name: "openrpc, redis down", path: "/openrpc.json", status: 503, code: streams.CodeUnavailable},
		{name: "one handler, redis down", path: "/handlers/echo/openapi.json", status: 503, code: streams.CodeUnavailable},
		{name: "dotted handler name reaches the route", path: "/handlers/billing.v2/openapi.json", status: 503, code: streams.CodeUnavailable},
		{name: "bad handler name", path: "/handlers/b%7Bad%7D/openapi.json", status: 400, code: streams.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.Fiber().Test(httptest.NewRequest("GET", tt.path, nil), 10_000)
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Error *streams.Error }
			_ = json.NewDecoder(res.Body).Decode(&body)
			if res.StatusCode != tt.status || body.Error == nil || body.Error.Code != tt.code {
				t.Fatalf("GET %s: %d %+v, want %d with code %d", tt.path, res.StatusCode, body.Error, tt.status, tt.code)
			}
			if tt.status == 503 && res.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

// TestDecodeDiscover: rpc.discover is the one rpc. name the edge answers;
// any principal may ask (it sees what its scopes allow), an expired one not.
func TestDecodeDiscover(t *testing.T) {
	noCalls := newPrincipal("r", "api_key", Scopes{})
	expired := newPrincipal("x", "jwt", Scopes{Read: true})
	expired.Expires = time.Now().Add(-time.Minute)
	tests := []struct {
		name     string
		msg      string
		p        *Principal
		discover bool
		code     int // of the request's error, 0 if none
	}{
		{name: "with id", msg: `{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}`, discover: true},
		{name: "params are ignored", msg: `{"jsonrpc":"2.0","id":1,"method":"rpc.discover","params":{"x":1}}`, discover: true},
		{name: "a principal with no call scope", msg: `{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}`, p: noCalls, discover: true},
		{name: "an expired principal", msg: `{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}`, p: expired, discover: true, code: streams.CodeUnauthenticated},
		{name: "other rpc. names stay reserved", msg: `{"jsonrpc":"2.0","id":1,"method":"rpc.describe"}`, code: streams.CodeMethodNotFound},
		{name: "case matters", msg: `{"jsonrpc":"2.0","id":1,"method":"rpc.Discover"}`, code: streams.CodeMethodNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs, _, perr := decodeJSONRPC([]byte(tt.msg), 10)
			if perr != nil {
				t.Fatal(perr)
			}
			authorizeCalls(tt.p, reqs, time.Now())
			r := reqs[0]
			if r.discover != tt.discover {
				t.Fatalf("discover = %v, want %v", r.discover, tt.discover)
			}
			code := 0
			if r.err != nil {
				code = r.err.Code
			}
			if code != tt.code {
				t.Fatalf("error %+v, want code %d", r.err, tt.code)
			}
			if tt.code == 0 && r.viewer != tt.p {
				t.Fatalf("viewer %v, want %v", r.viewer, tt.p)
			}
		})
	}
}
