package app

import (
	"sort"
	"strconv"

	"github.com/streamrpc/streamrpc/streams"
)

// The OpenRPC 1.3 document of the registry (GET /openrpc.json, and the
// JSON-RPC method rpc.discover over /jsonrpc and /ws). docs/discovery.md.

const (
	openRPCVersion = "1.3.2"
	// discoverMethod is OpenRPC's service discovery method: the one "rpc."
	// name the edge answers itself.
	discoverMethod = "rpc.discover"
)

// openRPCDoc builds the OpenRPC document of the given handlers (the methods
// the caller may see). It is pure: the same registry gives the same bytes.
func openRPCDoc(handlers []streams.HandlerInfo, version string) map[string]any {
	schemas := map[string]any{}
	errs := map[string]any{}
	var errRefs []any
	for _, ci := range streams.Codes {
		errs[ci.Name] = map[string]any{"code": ci.Code, "message": ci.Meaning}
		errRefs = append(errRefs, map[string]any{"$ref": "#/components/errors/" + ci.Name})
	}
	methods := []any{}
	for _, h := range handlers {
		for _, m := range h.Methods {
			methods = append(methods, openRPCMethod(h, m, schemas, errRefs))
		}
	}
	components := map[string]any{"errors": errs}
	if len(schemas) > 0 {
		components["schemas"] = schemas
	}
	return map[string]any{
		"openrpc": openRPCVersion,
		"info": map[string]any{
			"title":   "streamrpc",
			"version": version,
			"description": "Every method registered with this streamrpc edge, generated from its live registry, " +
				"callable over JSON-RPC 2.0 at POST /jsonrpc and GET /ws. A method is handler.method.",
		},
		"methods":    methods,
		"components": components,
	}
}

func openRPCMethod(h streams.HandlerInfo, m streams.MethodInfo, schemas map[string]any, errRefs []any) map[string]any {
	name := h.Name + "." + m.Name
	method := map[string]any{
		"name":   name,
		"tags":   []any{map[string]any{"name": h.Name}},
		"errors": errRefs,
		"result": map[string]any{"name": "result", "schema": map[string]any{}},
	}
	if m.Description != "" {
		method["description"] = m.Description
	}
	if s := embedSchema(schemas, name+".result_schema", m.ResultSchema); s != nil {
		method["result"] = map[string]any{"name": "result", "schema": s}
	}
	if m.ResultEnforced {
		method["x-streamrpc-result-enforced"] = true
	}
	method["paramStructure"], method["params"] = "either", []any{}
	ps := embedSchema(schemas, name+".params_schema", m.ParamsSchema)
	if ps == nil {
		return method
	}
	// The whole params schema, which the edge enforces; params below are
	// what OpenRPC can say of it (its properties, or its positions).
	method["x-streamrpc-params-schema"] = ps
	full, _ := schemas[name+".params_schema"].(map[string]any)
	if structure, params := paramDescriptors(full); structure != "" {
		method["paramStructure"], method["params"] = structure, params
	}
	return method
}

// paramDescriptors turns a params schema (embedded: 2020-12) into OpenRPC
// content descriptors: an object schema's properties (by-name), or an array
// schema's prefixItems (by-position); "" when it is neither.
func paramDescriptors(schema map[string]any) (string, []any) {
	if schema == nil {
		return "", nil
	}
	if props, ok := schema["properties"].(map[string]any); ok && schema["type"] == "object" {
		req := map[string]bool{}
		if list, ok := schema["required"].([]any); ok {
			for _, r := range list {
				if s, ok := r.(string); ok {
					req[s] = true
				}
			}
		}
		names := make([]string, 0, len(props))
		for n := range props {
			names = append(names, n)
		}
		sort.Strings(names)
		out := make([]any, 0, len(names))
		for _, n := range names {
			out = append(out, map[string]any{"name": n, "schema": props[n], "required": req[n]})
		}
		return "by-name", out
	}
	if schema["type"] == "array" {
		items, ok := schema["prefixItems"].([]any)
		if !ok {
			return "", nil
		}
		minItems, _ := schema["minItems"].(float64)
		out := make([]any, 0, len(items))
		for i, it := range items {
			out = append(out, map[string]any{"name": "arg" + strconv.Itoa(i), "schema": it, "required": float64(i) < minItems})
		}
		return "by-position", out
	}
	return "", nil
}
