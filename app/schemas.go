package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/streamrpc/streamrpc/internal/schemacheck"
	"github.com/streamrpc/streamrpc/streams"
)

// schemaTTL is how long the edge trusts the params schemas it read from the
// registry: a consumer's new schema is enforced within it. Checking costs no
// Redis round trip per call.
const schemaTTL = 10 * time.Second

// schemas enforces the params JSON Schemas that consumers registered for
// their methods: a call whose params do not match is answered 422 / -32602
// and never enqueued.
type schemas struct {
	streams *streams.Client
	log     *slog.Logger

	mu        sync.Mutex
	byHandler map[string]*handlerSchemas
	loading   map[string]chan struct{} // closed when the read of a handler's schemas in progress ends
}

type handlerSchemas struct {
	loaded  time.Time
	methods map[string]*jsonschema.Schema // only methods with a params schema
}

func newSchemas(sc *streams.Client, log *slog.Logger) *schemas {
	return &schemas{streams: sc, log: log, byHandler: map[string]*handlerSchemas{}, loading: map[string]chan struct{}{}}
}

// check validates params against the method's schema, if it has one.
func (s *schemas) check(ctx context.Context, handler, method string, params json.RawMessage) *streams.Error {
	hs := s.get(ctx, handler)
	if hs == nil {
		return nil
	}
	sch := hs.methods[method]
	if sch == nil {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(params))
	if err != nil {
		return newError(streams.CodeParseError, "params are not valid JSON: "+err.Error())
	}
	if err := sch.Validate(v); err != nil {
		return newError(streams.CodeInvalidParams, "invalid params: they do not match the schema of "+handler+"."+method+": "+schemacheck.Problem(err),
			"handler", handler, "method", method)
	}
	return nil
}

// get returns the handler's compiled schemas, reading them again when older
// than schemaTTL; nil if they cannot be read (then the call goes on: the
// consumer still sees its params).
func (s *schemas) get(ctx context.Context, handler string) *handlerSchemas {
	s.mu.Lock()
	hs := s.byHandler[handler]
	if hs != nil && time.Since(hs.loaded) < schemaTTL {
		s.mu.Unlock()
		return hs
	}
	// One caller (re)reads a handler's schemas at a time: the others go on
	// with the stale ones, or, when there are none yet, wait for that read,
	// so that concurrent calls do not all read the registry at once.
	if loading, ok := s.loading[handler]; ok {
		s.mu.Unlock()
		if hs != nil {
			return hs
		}
		select {
		case <-loading:
		case <-ctx.Done():
		}
		s.mu.Lock()
		hs = s.byHandler[handler]
		s.mu.Unlock()
		return hs
	}
	loaded := make(chan struct{})
	s.loading[handler] = loaded
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.loading, handler)
		s.mu.Unlock()
		close(loaded)
	}()
	methods, err := s.streams.Methods(ctx, handler)
	if err != nil {
		return hs
	}
	fresh := &handlerSchemas{loaded: time.Now(), methods: map[string]*jsonschema.Schema{}}
	for name, js := range methods {
		var mi streams.MethodInfo
		if json.Unmarshal([]byte(js), &mi) != nil || len(mi.ParamsSchema) == 0 {
			continue
		}
		sch, err := schemacheck.Compile(mi.ParamsSchema)
		if err != nil {
			s.log.Warn("a registered params schema does not compile; not enforced", "handler", handler, "method", name, "err", err)
			continue
		}
		fresh.methods[name] = sch
	}
	s.mu.Lock()
	s.byHandler[handler] = fresh
	s.mu.Unlock()
	return fresh
}
