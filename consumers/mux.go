package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

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

// Mux routes each call to the Handler registered for its method.
type Mux struct {
	mu      sync.RWMutex
	methods map[string]muxEntry
	mw      []Middleware
}

type muxEntry struct {
	info    MethodInfo
	handler Handler
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
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.methods[method]; dup {
		panic("consumers: method " + method + " registered twice")
	}
	m.methods[method] = muxEntry{info: info, handler: h}
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
	return Chain(e.handler, mw...).ServeRPC(ctx, req)
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
