package consumers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/streamrpc/streamrpc/internal/schemacheck"
	"github.com/streamrpc/streamrpc/streams"
)

// MethodInfo describes a method in the registry the edge and the UI read.
type MethodInfo = streams.MethodInfo

// MethodOption sets a field of a method's MethodInfo.
type MethodOption func(*MethodInfo)

// Describe sets a method's description.
func Describe(text string) MethodOption { return func(m *MethodInfo) { m.Description = text } }

// Schemas sets a method's JSON Schemas for params and result (either may be nil).
func Schemas(params, result json.RawMessage) MethodOption {
	return func(m *MethodInfo) { m.ParamsSchema, m.ResultSchema = params, result }
}

// EnforceResult makes the Mux check each result of the method against its
// result schema (set with Schemas) before it is sent: a result that does not
// match is never sent, and the caller gets a CodeInternal (-32603) error that
// says why. The check runs after the middleware, on the result as it would go
// out; it costs one JSON decoding of the result, so it is opt-in. Handle
// panics if the method has no result schema or it does not compile.
func EnforceResult() MethodOption { return func(m *MethodInfo) { m.ResultEnforced = true } }

// Mux routes each call to the Handler registered for its method.
type Mux struct {
	mu      sync.RWMutex
	methods map[string]muxEntry
	mw      []Middleware
}

type muxEntry struct {
	info    MethodInfo
	handler Handler
	result  *jsonschema.Schema // set with EnforceResult
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{methods: make(map[string]muxEntry)} }

// Handle registers h for method. It panics on an invalid or duplicate name, as
// http.ServeMux does: both are programming errors.
func (m *Mux) Handle(method string, h Handler, opts ...MethodOption) {
	if err := streams.ValidateName("method", method); err != nil {
		panic("consumers: " + err.Error())
	}
	if h == nil {
		panic("consumers: nil handler for method " + method)
	}
	info := MethodInfo{Name: method}
	for _, o := range opts {
		o(&info)
	}
	entry := muxEntry{info: info, handler: h}
	if info.ResultEnforced {
		if len(info.ResultSchema) == 0 {
			panic("consumers: EnforceResult for method " + method + ", which has no result schema")
		}
		sch, err := schemacheck.Compile(info.ResultSchema)
		if err != nil {
			panic("consumers: the result schema of method " + method + " does not compile: " + err.Error())
		}
		entry.result = sch
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.methods[method]; dup {
		panic("consumers: method " + method + " registered twice")
	}
	m.methods[method] = entry
}

// HandleFunc registers f for method.
func (m *Mux) HandleFunc(method string, f func(ctx context.Context, req *Request) (any, error), opts ...MethodOption) {
	m.Handle(method, HandlerFunc(f), opts...)
}

// Use adds middleware that wraps every method's handler.
func (m *Mux) Use(mw ...Middleware) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mw = append(m.mw, mw...)
}

// ServeRPC runs the handler of req.Method through the middleware.
func (m *Mux) ServeRPC(ctx context.Context, req *Request) (any, error) {
	m.mu.RLock()
	e, ok := m.methods[req.Method]
	mw := m.mw
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrMethodNotFound, req.Method)
	}
	res, err := Chain(e.handler, mw...).ServeRPC(ctx, req)
	if err != nil || e.result == nil {
		return res, err
	}
	return checkResult(e.result, req, res)
}

// checkResult encodes a result and checks it against the method's result
// schema: the encoded result when it matches (so that it is not encoded
// twice), a CodeInternal error that says why when it does not.
func checkResult(sch *jsonschema.Schema, req *Request, res any) (any, error) {
	raw, ok := res.(json.RawMessage)
	if !ok {
		b, err := json.Marshal(res)
		if err != nil {
			return nil, &Error{Code: CodeInternal, Message: "the handler's result cannot be encoded as JSON: " + err.Error()}
		}
		raw = b
	}
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "the handler returned invalid JSON"}
	}
	if err := sch.Validate(v); err != nil {
		problem := schemacheck.Problem(err)
		return nil, &Error{Code: CodeInternal, Message: "the result of " + req.Method + " does not match its result schema: " + problem,
			Data: map[string]string{"method": req.Method, "schema_error": problem}}
	}
	return raw, nil
}

// Methods lists the registered methods, sorted by name.
func (m *Mux) Methods() []MethodInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]MethodInfo, 0, len(m.methods))
	for _, e := range m.methods {
		out = append(out, e.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// MethodLister is implemented by handlers that know their methods (like Mux).
// A Server registers them so that the edge accepts calls to them.
type MethodLister interface {
	Methods() []MethodInfo
}
