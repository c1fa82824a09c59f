package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/streamrpc/streamrpc/internal/schemacheck"
	"github.com/streamrpc/streamrpc/streams"
)

// The OpenAPI 3.1 document of the registry (GET /openapi.json, GET
// /handlers/{name}/openapi.json): one concrete path per method, so that any
// generator gives each method its own typed function. docs/discovery.md.

const openAPIVersion = "3.1.1"

// callHeader is a request header of POST /rpc/{handler}/{method} as the
// documents list it.
type callHeader struct {
	name, description string
	schema            map[string]any
	example           any
}

// callHeaders are the request headers a call may carry. The one table: a
// header the edge learns is added here, and every method's operation lists it.
var callHeaders = []callHeader{
	{name: "Prefer", schema: map[string]any{"type": "string"}, example: "respond-async, wait=5",
		description: "RFC 7240. `respond-async` answers 202 with a Location at once; with `wait=N` as well the edge first waits up to N seconds for the result (answered as a synchronous call is)."},
	{name: "Idempotency-Key", schema: map[string]any{"type": "string", "minLength": 1, "maxLength": 256},
		description: "A repeat of a call with the same key (within the call timeout plus the result TTL) is not run again: it gets the first call's result. The same key with other params answers 422 idempotency_mismatch."},
	{name: "Request-Timeout", schema: map[string]any{"type": "number", "exclusiveMinimum": 0}, example: 2.5,
		description: "Seconds: a shorter deadline than STREAMRPC_CALL_TIMEOUT (never a longer one). The handler's context ends at it."},
	{name: "Schedule-At", schema: map[string]any{"type": "string", "format": "date-time"}, example: "2026-01-02T15:04:05Z",
		description: "With Prefer: respond-async only: run the call at this RFC 3339 time (state scheduled until then; its deadline counts from it). A sync call with a schedule answers 400."},
	{name: "Schedule-In", schema: map[string]any{"type": "number", "minimum": 0}, example: 60,
		description: "With Prefer: respond-async only: run the call this many seconds from now. Not together with Schedule-At."},
	{name: "Streamrpc-Priority", schema: map[string]any{"type": "string", "enum": []any{"high", "normal", "low"}}, example: "high",
		description: "The call's priority (default normal): consumers take high calls first without starving low ones (docs/flow-control.md). Ignored for a scheduled call. Another value answers 400."},
	{name: "X-Request-Id", schema: map[string]any{"type": "string", "maxLength": 128},
		description: "The caller's correlation id, kept in the call's story and logs. The answer's X-Request-Id is the call's own id."},
}

// headerKey is a header's key in components/parameters.
func headerKey(name string) string { return strings.ReplaceAll(name, "-", "") }

// errorStatuses groups the errors table by HTTP status, in status order.
func errorStatuses() (statuses []int, byStatus map[int][]streams.CodeInfo) {
	byStatus = map[int][]streams.CodeInfo{}
	for _, ci := range streams.Codes {
		if _, ok := byStatus[ci.Status]; !ok {
			statuses = append(statuses, ci.Status)
		}
		byStatus[ci.Status] = append(byStatus[ci.Status], ci)
	}
	sort.Ints(statuses)
	return statuses, byStatus
}

func errorResponseKey(status int) string { return "Error" + strconv.Itoa(status) }

// securitySchemes are the credentials the edge accepts, as configured; nil
// when it runs open.
func (e *Edge) securitySchemes() map[string]any {
	if e.auth == nil {
		return nil
	}
	var creds []string
	bearer := map[string]any{"type": "http", "scheme": "bearer"}
	if strings.TrimSpace(e.cfg.APIKeys) != "" {
		creds = append(creds, "an API key")
	}
	if e.cfg.jwtConfigured() {
		creds = append(creds, "a JWT (iss "+strconv.Quote(e.cfg.JWTIssuer)+", aud "+strconv.Quote(e.cfg.JWTAudience)+")")
		if len(creds) == 1 {
			bearer["bearerFormat"] = "JWT"
		}
	}
	what := strings.Join(creds, " or ")
	bearer["description"] = "Authorization: Bearer with " + what + ". The roles listed on an operation are the scopes it needs."
	return map[string]any{
		"bearerAuth": bearer,
		"apiKeyHeader": map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key",
			"description": "X-API-Key with " + what + "."},
	}
}

// security is an operation's security requirement: either scheme, with the
// scopes it needs as roles (OpenAPI 3.1 allows roles on any scheme).
func security(schemes map[string]any, scopes ...string) []any {
	if schemes == nil {
		return nil
	}
	if scopes == nil {
		scopes = []string{}
	}
	return []any{map[string]any{"bearerAuth": scopes}, map[string]any{"apiKeyHeader": scopes}}
}

// openAPIDoc builds the OpenAPI document of the given handlers (the methods
// the caller may see). It is pure: the same registry gives the same bytes.
func (e *Edge) openAPIDoc(handlers []streams.HandlerInfo, version string) map[string]any {
	schemes := e.securitySchemes()
	schemas := openAPIComponentSchemas()
	paths := map[string]any{}
	var tags []any
	for _, h := range handlers {
		tag := map[string]any{"name": h.Name}
		if h.Description != "" {
			tag["description"] = h.Description
		}
		tags = append(tags, tag)
		for _, m := range h.Methods {
			paths["/rpc/"+h.Name+"/"+m.Name] = map[string]any{"post": callOperation(h, m, schemas, schemes)}
		}
	}
	paths["/rpc/calls/{id}"] = callRoutes(schemes)

	statuses, byStatus := errorStatuses()
	responses := map[string]any{}
	for _, s := range statuses {
		var lines []string
		for _, ci := range byStatus[s] {
			lines = append(lines, fmt.Sprintf("- `%d` %s: %s", ci.Code, ci.Name, ci.Meaning))
		}
		r := map[string]any{
			"description": statusText(s) + ". `error.code` is one of:\n" + strings.Join(lines, "\n"),
			"content":     jsonContent(ref("schemas", "ErrorBody")),
		}
		switch s {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			r["headers"] = map[string]any{"Retry-After": ref("headers", "Retry-After")}
		case http.StatusUnauthorized:
			r["headers"] = map[string]any{"WWW-Authenticate": ref("headers", "WWW-Authenticate")}
		}
		responses[errorResponseKey(s)] = r
	}

	params := map[string]any{}
	for _, h := range callHeaders {
		p := map[string]any{"name": h.name, "in": "header", "required": false, "description": h.description, "schema": h.schema}
		if h.example != nil {
			p["example"] = h.example
		}
		params[headerKey(h.name)] = p
	}
	components := map[string]any{
		"schemas":    schemas,
		"responses":  responses,
		"parameters": params,
		"headers": map[string]any{
			"X-Request-Id":       header("The call's id once it was accepted: its result is readable at GET /rpc/calls/{id}.", map[string]any{"type": "string"}),
			"Preference-Applied": header("respond-async", map[string]any{"type": "string"}),
			"Retry-After":        header("Seconds to wait before trying again.", map[string]any{"type": "integer"}),
			"WWW-Authenticate":   header(`Bearer realm="streamrpc"`, map[string]any{"type": "string"}),
		},
	}
	doc := map[string]any{
		"openapi": openAPIVersion,
		"info": map[string]any{
			"title":   "streamrpc",
			"version": version,
			"description": "Every method registered with this streamrpc edge, generated from its live registry. " +
				"A call is POST /rpc/{handler}/{method} with the params as the body; JSON-RPC 2.0 is at /jsonrpc and /ws (GET /openrpc.json).",
		},
		"paths":      paths,
		"components": components,
	}
	if tags != nil {
		doc["tags"] = tags
	}
	if schemes != nil {
		components["securitySchemes"] = schemes
		doc["security"] = security(schemes)
	}
	return doc
}

// callOperation is POST /rpc/{handler}/{method}.
func callOperation(h streams.HandlerInfo, m streams.MethodInfo, schemas map[string]any, schemes map[string]any) map[string]any {
	name := h.Name + "." + m.Name
	var params []any
	for _, hd := range callHeaders {
		params = append(params, ref("parameters", headerKey(hd.name)))
	}
	body := any(map[string]any{"description": "Any JSON: this method registered no params schema."})
	if s := embedSchema(schemas, name+".params_schema", m.ParamsSchema); s != nil {
		body = s
	}
	result := any(map[string]any{"description": "Any JSON: this method registered no result schema."})
	if s := embedSchema(schemas, name+".result_schema", m.ResultSchema); s != nil {
		result = s
	}
	responses := map[string]any{
		"200": map[string]any{
			"description": "The method's result.",
			"headers":     map[string]any{"X-Request-Id": ref("headers", "X-Request-Id")},
			"content": jsonContent(map[string]any{
				"type": "object", "required": []string{"result"}, "properties": map[string]any{"result": result},
			}),
		},
		"202": map[string]any{
			"description": "Accepted (Prefer: respond-async): read the result at Location.",
			"headers": map[string]any{
				"Location":           map[string]any{"description": "/rpc/calls/{id}: where the call's state and result are read.", "required": true, "schema": map[string]any{"type": "string"}},
				"X-Request-Id":       ref("headers", "X-Request-Id"),
				"Preference-Applied": ref("headers", "Preference-Applied"),
			},
			"content": jsonContent(ref("schemas", "Accepted")),
		},
	}
	statuses, _ := errorStatuses()
	for _, s := range statuses {
		responses[strconv.Itoa(s)] = ref("responses", errorResponseKey(s))
	}
	desc := m.Description
	if desc == "" {
		desc = name
	}
	op := map[string]any{
		"operationId": name,
		"summary":     name,
		"description": desc,
		"tags":        []string{h.Name},
		"parameters":  params,
		"requestBody": map[string]any{
			"description": "The params. An empty body means null params.",
			"required":    false,
			"content":     jsonContent(body),
		},
		"responses": responses,
	}
	if m.ResultEnforced {
		op["x-streamrpc-result-enforced"] = true
	}
	if sec := security(schemes, scopeCall+name); sec != nil {
		op["security"] = sec
	}
	return op
}

// callRoutes are GET and DELETE /rpc/calls/{id}: an async call's result.
func callRoutes(schemes map[string]any) map[string]any {
	errs := func(statuses ...int) map[string]any {
		m := map[string]any{}
		for _, s := range statuses {
			m[strconv.Itoa(s)] = ref("responses", errorResponseKey(s))
		}
		return m
	}
	get := errs(400, 401, 403, 404, 429, 503)
	get["200"] = map[string]any{"description": "The call's state, and its result or error once it has one.", "content": jsonContent(ref("schemas", "CallStatus"))}
	del := errs(400, 401, 403, 404, 429, 503)
	del["202"] = map[string]any{"description": "Cancelled (a queued call never runs) or cancelling (a running call's handler context is cancelled).", "content": jsonContent(ref("schemas", "Cancelled"))}
	del["409"] = map[string]any{"description": "The call already has its outcome.", "content": jsonContent(map[string]any{
		"type": "object", "properties": map[string]any{"error": ref("schemas", "Error"), "state": ref("schemas", "State")},
	})}
	idParam := map[string]any{"name": "id", "in": "path", "required": true, "description": "The call's id (X-Request-Id, or the end of Location).", "schema": map[string]any{"type": "string"}}
	getOp := map[string]any{
		"operationId": "getCall", "summary": "read a call's state and result", "tags": []string{"calls"},
		"parameters": []any{map[string]any{"name": "wait", "in": "query", "required": false,
			"description": "Long-poll up to this long (a duration like 10s, or seconds; at most 60s) for the outcome.",
			"schema":      map[string]any{"type": "string"}}},
		"responses": get,
	}
	delOp := map[string]any{
		"operationId": "cancelCall", "summary": "cancel a call", "tags": []string{"calls"}, "responses": del,
	}
	if sec := security(schemes, ScopeRead, scopeCall+"<handler>.*"); sec != nil {
		getOp["security"], delOp["security"] = sec, sec
	}
	return map[string]any{"parameters": []any{idParam}, "get": getOp, "delete": delOp}
}

// openAPIComponentSchemas are the shapes every document shares.
func openAPIComponentSchemas() map[string]any {
	var states []any
	for _, s := range []streams.State{streams.StateQueued, streams.StateRunning, streams.StateDone, streams.StateFailed, streams.StateDead, streams.StateCancelled} {
		states = append(states, string(s))
	}
	str := map[string]any{"type": "string"}
	return map[string]any{
		"Error": map[string]any{
			"type": "object", "required": []string{"code", "message"},
			"properties": map[string]any{
				"code":    map[string]any{"type": "integer", "description": "The errors table's code (JSON-RPC 2.0's, streamrpc's -32000..-32099) or a handler's own."},
				"message": str,
				"data":    map[string]any{"description": "Details, any JSON."},
			},
		},
		"ErrorBody": map[string]any{
			"type": "object", "required": []string{"error"},
			"properties": map[string]any{"error": ref("schemas", "Error")},
		},
		"State": map[string]any{"type": "string", "enum": states},
		"Accepted": map[string]any{
			"type": "object", "required": []string{"id", "state", "location"},
			"properties": map[string]any{
				"id": str, "state": ref("schemas", "State"), "location": str,
				"duplicate": map[string]any{"type": "boolean", "description": "A repeat of an Idempotency-Key: the first call's id and state."},
			},
		},
		"CallStatus": map[string]any{
			"type": "object", "required": []string{"id", "state"},
			"properties": map[string]any{
				"id": str, "state": ref("schemas", "State"), "handler": str, "method": str, "consumer": str,
				"result": map[string]any{"description": "The result, once the call is done."},
				"error":  ref("schemas", "Error"),
				"story":  map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
			},
		},
		"Cancelled": map[string]any{
			"type": "object", "required": []string{"id", "was", "state"},
			"properties": map[string]any{"id": str, "was": ref("schemas", "State"), "state": map[string]any{"type": "string", "enum": []string{"cancelled", "cancelling", "too_late"}}},
		},
	}
}

func ref(kind, name string) map[string]any {
	return map[string]any{"$ref": "#/components/" + kind + "/" + name}
}

func header(desc string, schema map[string]any) map[string]any {
	return map[string]any{"description": desc, "schema": schema}
}

func jsonContent(schema any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

func statusText(s int) string {
	if s == 499 {
		return "Client Closed Request"
	}
	return http.StatusText(s)
}

// embedSchema puts a registered schema in components/schemas under name and
// returns a reference to it; nil when there is none, or when it is not a
// valid JSON Schema 2020-12 (OpenAPI 3.1's dialect) once embedded: the
// document stays valid, and says any JSON there. The schema's own
// references ("#/$defs/x") point into itself: they are rewritten to point
// into the component, and its $schema and $id, which would change how they
// resolve (and which OpenAPI's dialect does not take), are left out.
func embedSchema(schemas map[string]any, name string, raw json.RawMessage) map[string]any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	if obj, ok := v.(map[string]any); ok {
		delete(obj, "$schema")
		delete(obj, "$id")
	}
	embedded, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	if _, err := schemacheck.Compile(embedded); err != nil {
		return nil // e.g. a draft-07 tuple ("items": [...]), which 2020-12 refuses
	}
	schemas[name] = rebaseRefs(v, "#/components/schemas/"+name)
	return ref("schemas", name)
}

// rebaseRefs rewrites the local references ("#…") of a schema that now
// lives at base.
func rebaseRefs(v any, base string) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok && k == "$ref" && strings.HasPrefix(s, "#") {
				t[k] = base + strings.TrimPrefix(s, "#")
				continue
			}
			t[k] = rebaseRefs(x, base)
		}
	case []any:
		for i, x := range t {
			t[i] = rebaseRefs(x, base)
		}
	}
	return v
}
