package app

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Discovery documents, generated from the live registry (docs/discovery.md):
//
//	GET /openapi.json                  OpenAPI 3.1: a path per method, the async result routes
//	GET /handlers/{name}/openapi.json  the same for one handler
//	GET /openrpc.json                  OpenRPC 1.3, also the JSON-RPC method rpc.discover
//
// With auth on, each caller sees the methods its scopes allow. Nothing here
// is on the call path: calls never read what this caches.

// discoveryTTL is how long the registry read for the documents is trusted:
// a handler that registers new methods appears within it, without a restart.
const discoveryTTL = time.Second

// maxCachedDocs bounds the documents kept per registry version (one per
// kind, handler and set of visible methods: few, but scopes come from tokens).
const maxCachedDocs = 256

// discovery caches the registry and the documents rendered from it.
type discovery struct {
	e      *Edge
	loadMu sync.Mutex // one read of the registry at a time

	mu     sync.Mutex
	snap   *registrySnapshot
	loaded time.Time // when snap was last read (or found unchanged)
}

// registrySnapshot is the registry as read at one version, with the
// documents rendered from it: a registry read that finds the same version
// keeps them.
type registrySnapshot struct {
	handlers []streams.HandlerInfo
	version  string // a hash of handlers: changes when any registration does

	mu   sync.Mutex
	docs map[string][]byte
}

func newDiscovery(e *Edge) *discovery { return &discovery{e: e} }

func (e *Edge) discoveryRoutes() {
	e.discovery = newDiscovery(e)
	e.fiber.Get("/openapi.json", e.serveOpenAPI)
	e.fiber.Get("/handlers/:handler/openapi.json", e.serveOpenAPI)
	e.fiber.Get("/openrpc.json", e.serveOpenRPC)
}

// snapshot returns the registry, read again when older than discoveryTTL.
func (d *discovery) snapshot(ctx context.Context) (*registrySnapshot, error) {
	fresh := func() *registrySnapshot {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.snap != nil && time.Since(d.loaded) < discoveryTTL {
			return d.snap
		}
		return nil
	}
	if s := fresh(); s != nil {
		return s, nil
	}
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	if s := fresh(); s != nil { // read by another request meanwhile
		return s, nil
	}
	hs, err := d.e.streams.Registry(ctx)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(hs)
	if err != nil {
		return nil, err
	}
	h := fnv.New64a()
	_, _ = h.Write(b)
	version := strconv.FormatUint(h.Sum64(), 16)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snap == nil || d.snap.version != version {
		d.snap = &registrySnapshot{handlers: hs, version: version, docs: map[string][]byte{}}
	}
	d.loaded = time.Now()
	return d.snap, nil
}

// visible returns the handlers and methods p may see (all with auth off,
// or with the read scope, which shows them all at GET /handlers anyway;
// otherwise those its call: scopes allow), only handler's when it is set,
// and a key naming that set.
func visible(all []streams.HandlerInfo, handler string, p *Principal) ([]streams.HandlerInfo, string) {
	everything := p == nil || p.Scopes.Read
	var out []streams.HandlerInfo
	var key strings.Builder
	for _, h := range all {
		if handler != "" && h.Name != handler {
			continue
		}
		if everything {
			out = append(out, h)
			continue
		}
		hv := h
		hv.Methods = nil
		for _, m := range h.Methods {
			if p.Scopes.MayCall(h.Name, m.Name) {
				hv.Methods = append(hv.Methods, m)
				key.WriteString(h.Name + "." + m.Name + ",")
			}
		}
		if len(hv.Methods) > 0 {
			out = append(out, hv)
		}
	}
	if everything {
		return out, "*"
	}
	return out, key.String()
}

// Document kinds.
const (
	docOpenAPI = "openapi"
	docOpenRPC = "openrpc"
)

// document returns the encoded document of kind for p (nil: auth off),
// of handler's methods only when handler is set.
func (d *discovery) document(ctx context.Context, kind, handler string, p *Principal) ([]byte, *streams.Error) {
	snap, err := d.snapshot(ctx)
	if err != nil {
		return nil, unavailableError(err)
	}
	hs, set := visible(snap.handlers, handler, p)
	if handler != "" && len(hs) == 0 {
		return nil, newError(streams.CodeNotFound, "no handler "+strconv.Quote(handler)+" with methods this caller may see", "handler", handler)
	}
	key := kind + "\x00" + handler + "\x00" + set
	snap.mu.Lock()
	b, ok := snap.docs[key]
	snap.mu.Unlock()
	if ok {
		return b, nil
	}
	var doc map[string]any
	if kind == docOpenRPC {
		doc = openRPCDoc(hs, snap.version)
	} else {
		doc = d.e.openAPIDoc(hs, snap.version)
	}
	if b, err = json.Marshal(doc); err != nil {
		return nil, newError(streams.CodeInternal, "encoding the "+kind+" document failed: "+err.Error())
	}
	snap.mu.Lock()
	if len(snap.docs) < maxCachedDocs {
		snap.docs[key] = b
	}
	snap.mu.Unlock()
	return b, nil
}

func (e *Edge) serveOpenAPI(c *fiber.Ctx) error {
	h := ""
	if c.Params("handler") != "" {
		var bad *streams.Error
		if h, bad = handlerParam(c); bad != nil {
			return writeError(c, bad)
		}
	}
	return e.serveDocument(c, docOpenAPI, h)
}

func (e *Edge) serveOpenRPC(c *fiber.Ctx) error { return e.serveDocument(c, docOpenRPC, "") }

func (e *Edge) serveDocument(c *fiber.Ctx, kind, handler string) error {
	ctx, cancel := apiContext()
	defer cancel()
	b, bad := e.discovery.document(ctx, kind, handler, PrincipalOf(c))
	if bad != nil {
		return writeError(c, bad)
	}
	// Each caller may see another document: shared caches must not keep it.
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// discover answers rpc.discover: the OpenRPC document the caller may see.
func (e *Edge) discover(r *rpcRequest) []byte {
	if r.notify {
		return nil
	}
	ctx, cancel := apiContext()
	defer cancel()
	b, bad := e.discovery.document(ctx, docOpenRPC, "", r.viewer)
	if bad != nil {
		return encodeError(r.id, bad)
	}
	return encodeResult(r.id, b)
}
