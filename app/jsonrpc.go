package app

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/streamrpc/streamrpc/streams"
)

// JSON-RPC 2.0 (https://www.jsonrpc.org/specification), shared by POST
// /jsonrpc and GET /ws. A method is named "handler.method", split at the last
// dot: handler names may contain dots, method names then cannot.

// jsonrpcPath is the route of JSON-RPC over HTTP.
const jsonrpcPath = "/jsonrpc"

// rpcRequest is one decoded JSON-RPC request of a message (a batch has many).
type rpcRequest struct {
	// id is the request's id exactly as the caller wrote it (a string, a
	// number or null); nil for a notification, or when the id itself is invalid.
	id      json.RawMessage
	handler string
	method  string
	// params are the caller's bytes, passed on untouched; "null" when omitted.
	params json.RawMessage
	// err is set when the request is invalid: it is answered with err (and
	// id, or null) and never reaches a handler, even without an id.
	err *streams.Error
	// cancel is set for "$/cancel": the JSON-RPC id of the call to cancel.
	cancel json.RawMessage
	// caller is the caller's address, set by the transport.
	caller string
	// requestID is the caller's X-Request-Id (POST /jsonrpc), a correlation id.
	requestID string
	// trace is the call's W3C trace context: its "_meta"'s, else what the
	// transport received (HTTP request or WebSocket upgrade headers).
	trace traceContext
	// notify: a valid Request object without "id" (JSON-RPC 2.0's
	// notification). It is never answered, even when it cannot be run
	// (unknown or forbidden method, $/cancel over HTTP): err then only stops it.
	notify bool
	// discover is set for rpc.discover, which the edge answers itself with
	// the OpenRPC document viewer (nil with auth off) may see.
	discover bool
	viewer   *Principal
	// noProgress: "_meta":{"progress":false}, no $/progress for this call.
	noProgress bool
	// priority: "_meta":{"priority":…} (priority.go).
	priority streams.Priority
}

// requestMeta is a request's "_meta" member: what a JSON-RPC request carries
// besides its params, beside them so that params stay byte for byte and
// positional params work. Unknown keys are ignored. (README "JSON-RPC 2.0
// over HTTP and WebSocket", "_meta".)
type requestMeta struct {
	// TraceParent and TraceState are this call's W3C trace context; they win
	// over the HTTP request's or the WebSocket upgrade's headers.
	TraceParent string `json:"traceparent"`
	TraceState  string `json:"tracestate"`
	// Progress false turns this call's $/progress notifications off on a
	// WebSocket (streaming.go); absent or true: on.
	Progress *bool `json:"progress"`
	// Priority is the call's priority: high, normal or low (priority.go).
	Priority json.RawMessage `json:"priority"`
}

// cancelMethod cancels a call in flight on the same WebSocket, as LSP's
// $/cancelRequest does: {"jsonrpc":"2.0","method":"$/cancel","params":{"id":7}}.
const cancelMethod = "$/cancel"

// notification reports a valid Request object without id: it is never
// answered; it is enqueued unless err is set.
func (r *rpcRequest) notification() bool { return r.notify }

// errorResponse answers a request refused before it ran (err is set): nil for
// a notification, which is never answered.
func (r *rpcRequest) errorResponse() []byte {
	if r.notify {
		return nil
	}
	return encodeError(r.id, r.err)
}

var jsonNull = json.RawMessage("null")

// decodeJSONRPC decodes one message: a request object, or a batch (an array of
// them). A message that cannot be answered entry by entry (not JSON, an empty
// batch, a batch over maxBatch) returns only err, to be answered with id null.
// Each returned request is either valid or carries its own err. The returned
// slices share no memory with msg.
func decodeJSONRPC(msg []byte, maxBatch int) (reqs []rpcRequest, batch bool, err *streams.Error) {
	if !json.Valid(msg) {
		return nil, false, newError(streams.CodeParseError, "parse error: the message is not valid JSON: "+jsonProblem(msg))
	}
	if !utf8.Valid(msg) {
		return nil, false, newError(streams.CodeParseError, "parse error: the message is not valid UTF-8 (JSON text must be)")
	}
	trimmed := bytes.TrimLeft(msg, " \t\r\n")
	if trimmed[0] != '[' {
		return []rpcRequest{decodeRequest(msg)}, false, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(msg, &items); err != nil {
		return nil, true, newError(streams.CodeParseError, "parse error: "+err.Error())
	}
	switch {
	case len(items) == 0:
		return nil, true, newError(streams.CodeInvalidRequest, "invalid request: an empty batch")
	case maxBatch > 0 && len(items) > maxBatch:
		return nil, true, newError(streams.CodeInvalidRequest, "invalid request: a batch of "+strconv.Itoa(len(items))+" calls is over the limit", "limit", maxBatch)
	}
	reqs = make([]rpcRequest, len(items))
	for i, item := range items {
		reqs[i] = decodeRequest(item)
	}
	return reqs, true, nil
}

// decodeRequest decodes one request object; raw is valid JSON and UTF-8.
func decodeRequest(raw json.RawMessage) rpcRequest {
	m, ok := scanRequest(raw)
	if !ok {
		// Not an object, or escapes in member names: let encoding/json do it.
		if m, ok = mapRequest(raw); !ok {
			return rpcRequest{err: newError(streams.CodeInvalidRequest, "invalid request: a request must be a JSON object")}
		}
	}
	return m.request()
}

// mapRequest finds a request's members with encoding/json: members are
// matched exactly (encoding/json matches struct fields case-insensitively)
// and a member present as null is told apart from one that is absent.
func mapRequest(raw json.RawMessage) (requestMembers, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return requestMembers{}, false
	}
	return requestMembers{id: m["id"], jsonrpc: m["jsonrpc"], method: m["method"], params: m["params"], meta: m["_meta"]}, true
}

// request checks the members and builds the request. Everything it keeps is
// a copy: the message's buffer may be reused once it is decoded.
func (m requestMembers) request() rpcRequest {
	var r rpcRequest
	if id := m.id; id != nil {
		switch id[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'n':
			r.id = bytes.Clone(id)
		default:
			r.err = newError(streams.CodeInvalidRequest, `invalid request: "id" must be a string, a number or null`)
			return r
		}
	}
	if !bytes.Equal(m.jsonrpc, []byte(`"2.0"`)) {
		var version string
		if m.jsonrpc == nil || json.Unmarshal(m.jsonrpc, &version) != nil || version != "2.0" {
			r.err = newError(streams.CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
			return r
		}
	}
	name, ok := plainString(m.method)
	if !ok && (m.method == nil || json.Unmarshal(m.method, &name) != nil) {
		r.err = newError(streams.CodeInvalidRequest, `invalid request: "method" must be a string`)
		return r
	}
	switch p := m.params; {
	case p == nil || string(p) == "null":
	case p[0] == '{' || p[0] == '[':
	default:
		r.err = newError(streams.CodeInvalidRequest, `invalid request: "params" must be an object or an array (or omitted)`)
		return r
	}
	var meta requestMeta
	if m.meta != nil && (m.meta[0] != '{' || json.Unmarshal(m.meta, &meta) != nil) {
		r.err = newError(streams.CodeInvalidRequest, `invalid request: "_meta" must be an object`)
		return r
	}
	// A valid Request object from here on: without an id it is a
	// notification, and nothing below is answered.
	r.notify = m.id == nil
	r.trace = validTrace(meta.TraceParent, meta.TraceState)
	r.noProgress = meta.Progress != nil && !*meta.Progress
	if r.priority, r.err = metaPriority(meta.Priority); r.err != nil {
		return r
	}
	if name == cancelMethod {
		var p struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(m.params, &p) != nil || len(p.ID) == 0 || (p.ID[0] != '"' && p.ID[0] != '-' && (p.ID[0] < '0' || p.ID[0] > '9')) {
			r.err = newError(streams.CodeInvalidParams, `invalid params: $/cancel takes {"id": <the JSON-RPC id of the call to cancel>}`)
			return r
		}
		r.cancel = p.ID
		return r
	}
	if name == discoverMethod {
		r.discover = true // takes no params: any are ignored
		return r
	}
	if r.err = r.setMethod(name); r.err != nil {
		return r
	}
	if p := m.params; p == nil || string(p) == "null" {
		r.params = jsonNull
	} else {
		r.params = bytes.Clone(p)
	}
	return r
}

// setMethod splits "handler.method" at its last dot and checks both names as
// POST /rpc/{handler}/{method} does.
func (r *rpcRequest) setMethod(name string) *streams.Error {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return newError(streams.CodeMethodNotFound, `method not found: `+strconv.Quote(truncate(name, 200))+` is not "handler.method"`, "method", truncate(name, 200))
	}
	if strings.HasPrefix(name, "rpc.") {
		return newError(streams.CodeMethodNotFound, `method not found: names that begin with "rpc." are reserved by JSON-RPC 2.0`, "method", truncate(name, 200))
	}
	r.handler, r.method = name[:i], name[i+1:]
	if err := streams.ValidateName("handler", r.handler); err != nil {
		return newError(streams.CodeInvalidRequest, "invalid request: "+err.Error())
	}
	if err := streams.ValidateName("method", r.method); err != nil {
		return newError(streams.CodeInvalidRequest, "invalid request: "+err.Error())
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// appendResponse appends {"jsonrpc":"2.0","id":id,"<member>":value}; a nil id
// is written as null, and value goes out byte for byte.
func appendResponse(b []byte, id json.RawMessage, member string, value []byte) []byte {
	if id == nil {
		id = jsonNull
	}
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"`...)
	b = append(b, member...)
	b = append(b, `":`...)
	b = append(b, value...)
	return append(b, '}')
}

func encodeResult(id, result json.RawMessage) []byte {
	return appendResponse(make([]byte, 0, 48+len(id)+len(result)), id, "result", result)
}

func encodeError(id json.RawMessage, e *streams.Error) []byte {
	body, err := json.Marshal(e)
	if err != nil {
		body = []byte(`{"code":-32603,"message":"error encoding failed"}`)
	}
	return appendResponse(make([]byte, 0, 48+len(id)+len(body)), id, "error", body)
}

// encodeBatch joins the responses of a batch into one array, leaving out the
// nil ones (notifications). nil when nothing is left to answer.
func encodeBatch(responses [][]byte) []byte {
	var b []byte
	for _, r := range responses {
		if r == nil {
			continue
		}
		if b == nil {
			b = append(b, '[')
		} else {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	if b == nil {
		return nil
	}
	return append(b, ']')
}

// callTracker is the WebSocket connection a call runs on: it records the
// calls in flight so that they can be cancelled by JSON-RPC id.
type callTracker interface {
	// track records a call; ctx ends its wait (cancelled call, gone peer),
	// enqueued learns where it was enqueued, done forgets it.
	track(callID, handler string, rpcID json.RawMessage) (ctx context.Context, enqueued func(streams.Enqueued), done func())
	// cancelCall cancels the call in flight with this JSON-RPC id.
	cancelCall(rpcID json.RawMessage) (streams.State, *streams.Error)
	// streamTo returns a sink for the call's streamed events and stop, to
	// call before its response is sent; nil, nil: no streaming.
	streamTo(rpcID json.RawMessage) (*eventSink, func())
}

// runJSONRPC runs one request through the core (e.call) and returns its encoded
// response, or nil for a notification. ctx ends the wait for the reply early
// (besides the call's deadline, STREAMRPC_CALL_TIMEOUT); a notification never
// waits, and its enqueue does not depend on ctx.
func (e *Edge) runJSONRPC(ctx context.Context, r *rpcRequest, tracker callTracker) []byte {
	notify := r.notification()
	if r.err != nil {
		return r.errorResponse()
	}
	if r.cancel != nil {
		if tracker == nil {
			if notify {
				return nil
			}
			return encodeError(r.id, newError(streams.CodeMethodNotFound, "$/cancel cancels calls in flight on the same WebSocket; over HTTP use DELETE /rpc/calls/{id} for async calls"))
		}
		state, cerr := tracker.cancelCall(r.cancel)
		switch {
		case notify:
			return nil
		case cerr != nil:
			return encodeError(r.id, cerr)
		}
		return encodeResult(r.id, []byte(`{"was":"`+string(state)+`"}`))
	}
	if r.discover {
		return e.discover(r)
	}
	if notify {
		ctx = context.Background() // enqueued even if the caller goes away
	}
	id := streams.NewCallID(r.handler)
	var enqueued func(streams.Enqueued)
	if tracker != nil && !notify {
		var done func()
		ctx, enqueued, done = tracker.track(id, r.handler, r.id)
		defer done()
	}
	var sink *eventSink
	if tracker != nil && !notify && !r.noProgress {
		var stop func()
		if sink, stop = tracker.streamTo(r.id); stop != nil {
			defer stop() // deferred after done: runs first, the events precede the response
		}
	}
	reply, rerr := e.call(id, callRequest{
		handler: r.handler, method: r.method, params: r.params,
		timeout: e.cfg.CallTimeout, ctx: ctx, notify: notify, enqueued: enqueued, caller: r.caller, trace: r.trace, requestID: r.requestID,
		sink: sink, priority: r.priority,
	})
	if sink != nil && rerr == nil && sink.isLost() {
		rerr = errStreamLost(id)
	}
	switch {
	case notify:
		if rerr != nil {
			e.log.Debug("a JSON-RPC notification was not enqueued", "call_id", id, "handler", r.handler, "method", r.method, "code", rerr.Code, "err", rerr.Message)
		}
		return nil
	case rerr != nil:
		return encodeError(r.id, rerr)
	case !reply.OK:
		return appendResponse(make([]byte, 0, 48+len(r.id)+len(reply.Body)), r.id, "error", reply.Body)
	}
	return encodeResult(r.id, reply.Body)
}

// parent is the context a call's deadline derives from.
func (r callRequest) parent() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return context.Background()
}

// runAll runs the requests of one message concurrently and returns their
// answers in order (nil for a notification): the one path for a message over
// HTTP and over a WebSocket. With run nil every valid request runs and an
// invalid one is answered at once; otherwise only those with run[i] do, and
// out (given) already holds the others' answers (a WebSocket answers a call
// it has no slot for). A lone request runs on the caller's goroutine. done,
// if not nil, is called as each run ends (a WebSocket frees the call's slot).
func (e *Edge) runAll(ctx context.Context, reqs []rpcRequest, run []bool, out [][]byte, tracker callTracker, done func()) [][]byte {
	if run == nil {
		out = make([][]byte, len(reqs))
		run = make([]bool, len(reqs))
		for i := range reqs {
			if reqs[i].err != nil { // answered without a goroutine
				out[i] = reqs[i].errorResponse()
			} else {
				run[i] = true
			}
		}
	}
	runOne := func(i int) {
		if done != nil {
			defer done()
		}
		out[i] = e.runJSONRPC(ctx, &reqs[i], tracker)
	}
	if len(reqs) == 1 && run[0] {
		runOne(0)
		return out
	}
	var wg sync.WaitGroup
	for i := range reqs {
		if !run[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runOne(i)
		}()
	}
	wg.Wait()
	return out
}

// handleJSONRPC serves POST /jsonrpc: a request or a batch in the body. Every
// JSON-RPC answer is 200 (errors are in the body, per request); a message of
// notifications only is answered 204 with no body.
func (e *Edge) handleJSONRPC(c *fiber.Ctx) error {
	if ct := c.Get(fiber.HeaderContentType); !isJSON(ct) {
		return writeError(c, newError(streams.CodeUnsupportedMedia, "Content-Type must be application/json", "content_type", ct))
	}
	// decodeJSONRPC copies what it keeps: Fiber may reuse the body's buffer.
	reqs, batch, perr := decodeJSONRPC(c.Body(), e.cfg.JSONRPCMaxBatch)
	caller := strings.Clone(c.IP())
	tc := e.traceHeaders(c.Get)
	rid := ""
	if v := c.Get("X-Request-Id"); streams.ValidRequestID(v) {
		rid = strings.Clone(v)
	}
	for i := range reqs {
		reqs[i].caller = caller
		reqs[i].requestID = rid
		if reqs[i].trace.parent == "" { // a per-call _meta.traceparent wins
			reqs[i].trace = tc
		}
	}
	authorizeCalls(PrincipalOf(c), reqs, time.Now())
	var body []byte
	switch {
	case perr != nil:
		body = encodeError(nil, perr)
	case batch:
		body = encodeBatch(e.runAll(context.Background(), reqs, nil, nil, nil, nil))
	default:
		body = e.runAll(context.Background(), reqs, nil, nil, nil, nil)[0]
	}
	if body == nil {
		return c.SendStatus(fiber.StatusNoContent)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
}

// headerReceived runs once a request's headers are read, before its body
// (fasthttp's Server.HeaderReceived). A chunked body over STREAMRPC_MAX_BODY is
// found only while it is read, and fasthttp then resets the whole request,
// path included: it notes the chunked requests to /jsonrpc, by their header
// (one per connection, reused), so that their 413 is still a JSON-RPC
// response. Sized bodies over the limit are refused with their path intact.
func (e *Edge) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() == -1 && isJSONRPCURI(h.RequestURI()) {
		e.chunkedJSONRPC.Store(h, struct{}{})
	} else if _, ok := e.chunkedJSONRPC.Load(h); ok {
		e.chunkedJSONRPC.Delete(h)
	}
	return fasthttp.RequestConfig{}
}

func isJSONRPCURI(uri []byte) bool {
	return bytes.HasPrefix(uri, []byte(jsonrpcPath)) && (len(uri) == len(jsonrpcPath) || uri[len(jsonrpcPath)] == '?')
}

// writeJSONRPCError answers an error raised before a JSON-RPC message is read
// (body too large, wrong content type) with a JSON-RPC response of id null,
// and the HTTP status of the code table.
func writeJSONRPCError(c *fiber.Ctx, e *streams.Error) error {
	c.Status(streams.HTTPStatus(e.Code))
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(encodeError(nil, e))
}

// jsonrpcRoutes registers POST /jsonrpc and GET /ws.
func (e *Edge) jsonrpcRoutes() {
	e.fiber.Post(jsonrpcPath, e.handleJSONRPC)
	e.fiber.Get("/ws", e.wsUpgrade, websocket.New(e.serveWS, websocket.Config{
		// Selected when offered: a browser that offers its credential as
		// "bearer.<token>" must also offer a protocol the edge answers with.
		Subprotocols: []string{WSProtocol},
		RecoverHandler: func(c *websocket.Conn) {
			if r := recover(); r != nil {
				e.log.Error("websocket handler panicked", "panic", r)
			}
		},
	}))
}
