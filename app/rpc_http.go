package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
	"github.com/streamrpc/streamrpc/ui"
)

func (e *Edge) routes() {
	// Ahead of authentication: a preflight carries no credential, and a
	// WebSocket from a foreign origin is refused whoever it claims to be.
	e.fiber.Use(e.cors)
	if e.auth != nil {
		// Ahead of every route: what is not public needs a credential. Each
		// route below names the scope it needs (docs/security.md, "Routes").
		e.fiber.Use(e.authenticate)
	}
	// Rate limits come first, so a refused request costs nothing more; but
	// after authentication, whose principal they count by: register an
	// authentication middleware before this.
	if e.limiter.enabled() {
		e.fiber.Use(e.limiter.middleware)
	}
	e.fiber.Get("/healthz", e.handleHealth)
	e.fiber.Get("/readyz", e.handleReady)
	e.fiber.Get("/metrics", e.need(ScopeRead), e.metrics.handler())
	e.fiber.Post("/rpc/:handler/:method", e.needCall, e.handleCall)
	e.fiber.Get("/rpc/calls/:id", e.needCallOrRead, e.handleCallStatus)
	e.fiber.Get("/rpc/calls/:id/events", e.needCallOrRead, e.handleCallEvents)
	e.fiber.Delete("/rpc/calls/:id", e.needCallOrRead, e.handleCancel)
	e.deadLetterRoutes()
	e.registryRoutes()
	e.discoveryRoutes()
	e.operateRoutes()
	uiOpts := ui.Options{ResultTTL: e.cfg.ResultTTL}
	if e.auth != nil {
		uiOpts.SignIn, uiOpts.SignOut, uiOpts.CSRFToken = e.uiSignIn, e.uiSignOut, e.uiCSRFToken
		uiOpts.Guard = e.need(ScopeRead)
	}
	ui.New(uiSource{e}, uiOpts).Register(e.fiber)
	e.jsonrpcRoutes()
}

// callRequest is a validated call, ready to enqueue.
type callRequest struct {
	handler, method string
	params          json.RawMessage
	timeout         time.Duration
	idemKey         string // Idempotency-Key header, "" if none
	caller          string // the caller's address, for the activity record
	requestID       string // the caller's X-Request-Id: a correlation id, "" if none
	// ctx, if set, ends the wait for the reply early (a closed WebSocket).
	ctx context.Context
	// notify: a JSON-RPC notification, enqueued but not waited for.
	notify bool
	// waitHere: an async call whose caller waits on this edge for its result
	// (Prefer: respond-async, wait=N). Other async calls and notifications
	// are enqueued with no ReplyTo: no edge's reply stream gets their reply.
	waitHere bool
	// enqueued, if set, learns where the call was enqueued (for cancelling).
	enqueued func(streams.Enqueued)
	// trace is the caller's W3C trace context, then the edge span's, which
	// the envelope carries (tracing.go); empty when tracing is off.
	trace traceContext
	// scheduleAt: an async call to run then (Schedule-At/-In), zero if none.
	scheduleAt time.Time
	// priority: Streamrpc-Priority or _meta.priority (priority.go).
	priority streams.Priority
	// sink, if set, gets the call's streamed events (streaming.go).
	sink *eventSink
}

// handleCall serves POST /rpc/{handler}/{method}: the body is the params.
func (e *Edge) handleCall(c *fiber.Ctx) error {
	req, bad := e.parseCall(c)
	if bad != nil {
		return writeError(c, bad)
	}
	id := streams.NewCallID(req.handler)
	if p := parsePrefer(c); p.async {
		return e.answerAsync(c, id, req, p.wait)
	}
	if !req.scheduleAt.IsZero() {
		return writeError(c, errSyncSchedule())
	}
	if wantsSSE(c) {
		return e.answerSSE(c, id, req)
	}
	reply, rerr := e.call(id, req)
	if reply.ID != "" {
		// Only a call that was accepted has an id, readable at
		// GET /rpc/calls/{id}: one refused (404, 422 schema, 503) has none.
		c.Set("X-Request-Id", reply.ID)
	}
	if rerr != nil {
		if rerr.Code == streams.CodeOverloaded {
			c.Set(fiber.HeaderRetryAfter, "1")
		}
		return writeError(c, rerr)
	}
	return writeReply(c, reply)
}

// writeReply answers with a call's reply: {"result":…}, or {"error":…} with
// the status of its code.
func writeReply(c *fiber.Ctx, reply streams.Reply) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	if !reply.OK {
		c.Status(streams.HTTPStatus(reply.Err().Code))
		return c.Send(wrapBody(`{"error":`, reply.Body))
	}
	return c.Send(wrapBody(`{"result":`, reply.Body))
}

func wrapBody(prefix string, body []byte) []byte {
	b := make([]byte, 0, len(prefix)+len(body)+1)
	b = append(b, prefix...)
	b = append(b, body...)
	return append(b, '}')
}

// parseCall validates everything about a call before it touches Redis.
func (e *Edge) parseCall(c *fiber.Ctx) (callRequest, *streams.Error) {
	req := callRequest{
		handler: strings.Clone(c.Params("handler")),
		method:  strings.Clone(c.Params("method")),
		timeout: e.cfg.CallTimeout,
		caller:  strings.Clone(c.IP()),
		trace:   e.traceHeaders(c.Get),
	}
	if err := streams.ValidateName("handler", req.handler); err != nil {
		return req, newError(streams.CodeInvalidRequest, err.Error())
	}
	if err := streams.ValidateName("method", req.method); err != nil {
		return req, newError(streams.CodeInvalidRequest, err.Error())
	}
	if t := c.Get("Request-Timeout"); t != "" {
		d, bad := requestTimeout(t, req.timeout)
		if bad != nil {
			return req, bad
		}
		req.timeout = d
	}
	if rid := c.Get("X-Request-Id"); streams.ValidRequestID(rid) {
		req.requestID = strings.Clone(rid) // kept for logs and the story; the call id stays ours
	}
	if sched, bad := parseSchedule(c); bad != nil {
		return req, bad
	} else {
		req.scheduleAt = sched
	}
	if prio, bad := parsePriority(c); bad != nil {
		return req, bad
	} else {
		req.priority = prio
	}
	if k := c.Get("Idempotency-Key"); k != "" {
		if len(k) > 256 {
			return req, newError(streams.CodeInvalidRequest, "Idempotency-Key is over 256 bytes")
		}
		req.idemKey = strings.Clone(k)
	}
	body := c.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		req.params = json.RawMessage("null") // no params
		return req, nil
	}
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return req, newError(streams.CodeUnsupportedMedia, "Content-Type must be application/json", "content_type", c.Get(fiber.HeaderContentType))
	}
	if !json.Valid(body) {
		return req, newError(streams.CodeParseError, "the body is not valid JSON: "+jsonProblem(body))
	}
	if !utf8.Valid(body) {
		return req, newError(streams.CodeParseError, "the body is not valid UTF-8 (JSON text must be)")
	}
	// The body buffer is Fiber's and is reused after the handler returns, but
	// the enqueue pipeline may still be sending it then: keep a copy.
	req.params = bytes.Clone(body)
	return req, nil
}

// requestTimeout reads a Request-Timeout header (seconds) against the call
// timeout max: a call may ask for less, never more, and not under 1ms. The
// seconds are compared before they become a Duration, which would overflow
// past 292 years (1e10 would wrap to a negative, then 1ms).
func requestTimeout(t string, max time.Duration) (time.Duration, *streams.Error) {
	secs, err := strconv.ParseFloat(t, 64)
	if err != nil || secs <= 0 || math.IsNaN(secs) || math.IsInf(secs, 0) {
		return max, newError(streams.CodeInvalidRequest, "Request-Timeout must be a positive number of seconds", "value", t)
	}
	if secs >= max.Seconds() {
		return max, nil
	}
	return time.Duration(math.Max(secs*float64(time.Second), float64(time.Millisecond))), nil
}

func isJSON(contentType string) bool {
	if contentType == fiber.MIMEApplicationJSON {
		return true // what nearly every call sends: no parsing (and no map of parameters)
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// jsonProblem says where the JSON went wrong.
func jsonProblem(body []byte) string {
	var v any
	err := json.Unmarshal(body, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return err.Error() + " (at byte " + strconv.FormatInt(se.Offset, 10) + ")"
	}
	if err != nil {
		return err.Error()
	}
	return "invalid"
}

// roundTrip enqueues a call and waits for its reply until the call's deadline.
// The reply's ID is the call's id once it was accepted (with an idempotency
// key seen before, the first call's), also with a timeout or cancelled error;
// "" for a call that was never accepted. Callers go through call (observe.go), which measures it.
func (e *Edge) roundTrip(id string, req callRequest) (streams.Reply, *streams.Error) {
	now := time.Now()
	deadline := now.Add(req.timeout)
	ctx, cancel := context.WithDeadline(req.parent(), deadline)
	defer cancel()

	ch := e.waiters.addStream(id, req.sink)
	enq, rerr := e.enqueue(ctx, id, req, now, deadline, false)
	if rerr != nil {
		e.waiters.remove(id)
		return streams.Reply{ID: enq.ID}, rerr // an id only if the call was queued all the same
	}
	if enq.Duplicate {
		e.waiters.remove(id)
		return e.awaitResult(ctx, enq.ID, req.timeout)
	}
	if req.enqueued != nil {
		req.enqueued(enq)
	}
	if req.notify {
		e.waiters.remove(id)
		return streams.Reply{ID: id}, nil
	}
	select {
	case r := <-ch:
		e.waiters.release(ch)
		return r, nil
	case <-ctx.Done():
		e.waiters.remove(id)
		if errors.Is(context.Cause(ctx), errCallerCancelled) {
			return streams.Reply{ID: id}, newError(streams.CodeCancelled, "the call was cancelled by its caller", "id", id)
		}
		return streams.Reply{ID: id}, newError(streams.CodeTimeout, "no reply before the deadline", "id", id, "timeout", req.timeout.String())
	}
}

// errCallerCancelled is the cause of a call's context when its caller
// cancelled it ($/cancel).
var errCallerCancelled = errors.New("cancelled by the caller")

// enqueue checks the params against the method's schema and enqueues the
// call: the one path for sync, async and JSON-RPC calls.
func (e *Edge) enqueue(ctx context.Context, id string, req callRequest, now, deadline time.Time, async bool) (streams.Enqueued, *streams.Error) {
	if bad := e.schemas.check(ctx, req.handler, req.method, req.params); bad != nil {
		return streams.Enqueued{}, bad
	}
	var idem *streams.Idempotency
	if req.idemKey != "" {
		ttl := e.cfg.CallTimeout + e.cfg.ResultTTL
		if !req.scheduleAt.IsZero() { // kept until its result expires: it starts later
			ttl += time.Until(req.scheduleAt)
		}
		idem = &streams.Idempotency{Key: req.idemKey, TTL: ttl}
	}
	// The reply goes to this edge's reply stream only if a caller waits for
	// it here; an async call's long-polls read its result key (pollStatus),
	// and a notification's reply is nobody's (docs/async.md).
	replyTo := e.id
	if (async && !req.waitHere) || req.notify {
		replyTo = ""
	}
	enq, err := e.streams.Enqueue(ctx, &streams.Call{
		ID: id, Handler: req.handler, Method: req.method, Params: req.params,
		ReplyTo: replyTo, Deadline: deadline, Attempt: 1, EnqueuedAt: now, ResultTTL: e.cfg.ResultTTL, Caller: req.caller,
		TraceParent: req.trace.parent, TraceState: req.trace.state, RequestID: req.requestID,
	}, streams.EnqueueOptions{BacklogLimit: e.cfg.BacklogLimit, Idempotency: idem, Async: async, ScheduleAt: req.scheduleAt, Priority: req.priority})
	if err != nil {
		if errors.Is(err, streams.ErrNotReplicated) && enq.ID == "" {
			// Queued on the primary, not confirmed by its replicas: the call
			// has its id (readable by it, and it may still run).
			enq.ID = id
		}
		return enq, enqueueError(err, req)
	}
	return enq, nil
}

// awaitResult waits for the result of a call this edge did not enqueue (a
// repeat of an idempotent call), by reading its result key with backoff: such
// repeats are rare, and no connection is held between reads.
func (e *Edge) awaitResult(ctx context.Context, id string, timeout time.Duration) (streams.Reply, *streams.Error) {
	wait := 10 * time.Millisecond
	for {
		r, err := e.streams.Result(ctx, id)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, streams.ErrNotFound) && ctx.Err() == nil {
			return streams.Reply{}, newError(streams.CodeUnavailable, "redis is unavailable")
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return streams.Reply{ID: id}, newError(streams.CodeTimeout, "no reply before the deadline (the first call with this Idempotency-Key is still running)", "id", id, "timeout", timeout.String())
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
}

func enqueueError(err error, req callRequest) *streams.Error {
	switch {
	case errors.Is(err, streams.ErrNoHandler):
		return newError(streams.CodeMethodNotFound, unknownHandlerMsg+strconv.Quote(req.handler)+": no consumer has registered it", "handler", req.handler)
	case errors.Is(err, streams.ErrNoMethod):
		return newError(streams.CodeMethodNotFound, "handler "+strconv.Quote(req.handler)+" has no method "+strconv.Quote(req.method), "handler", req.handler, "method", req.method)
	case errors.Is(err, streams.ErrIdempotencyMismatch):
		return newError(streams.CodeIdempotencyMismatch, "this Idempotency-Key was used before with other params (or another method); use a new key for a different call", "handler", req.handler)
	case errors.Is(err, streams.ErrBacklogFull):
		return newError(streams.CodeOverloaded, "handler "+strconv.Quote(req.handler)+" has too many calls waiting; retry later", "handler", req.handler)
	case errors.Is(err, context.DeadlineExceeded):
		return newError(streams.CodeTimeout, "the call could not be enqueued before its deadline")
	case errors.Is(err, streams.ErrNotReplicated):
		return newError(streams.CodeUnavailable, "the call was queued but its replicas did not confirm it in time (STREAMRPC_DURABLE_REPLICAS); it may still run: retry with the same Idempotency-Key", "handler", req.handler)
	case errors.Is(err, streams.ErrUnavailable):
		return newError(streams.CodeUnavailable, "redis is unavailable; the call was not accepted")
	}
	return newError(streams.CodeInternal, "enqueue failed: "+err.Error())
}
