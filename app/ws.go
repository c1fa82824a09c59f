package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	fastws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// WebSocket close codes the edge sends, besides the protocol's own (1000
// normal closure in reply to the peer's, 1009 message too big past
// STREAMRPC_WS_MAX_MESSAGE, sent by the WebSocket library).
const (
	// CloseGoingAway (1001): the edge is shutting down. Calls in flight are
	// answered first, for as long as the shutdown grace allows.
	CloseGoingAway = fastws.CloseGoingAway
	// CloseTryAgainLater (1013): the edge reached STREAMRPC_WS_MAX_CONNS
	// between accepting the upgrade and opening the connection (a race of
	// upgrades at the limit; otherwise the upgrade is refused with 503).
	CloseTryAgainLater = fastws.CloseTryAgainLater
	// CloseSlowReader (4008): the client does not read its answers fast
	// enough and more than STREAMRPC_WS_WRITE_QUEUE bytes of them are queued.
	// The queued answers are dropped; the calls' results stay readable by id.
	// (4008 mirrors 1008 policy violation, in the range kept for applications.)
	CloseSlowReader = 4008
)

var errDraining = errors.New("app: the edge is shutting down")

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

// WSStats describes this edge's WebSocket connections.
type WSStats struct {
	Open       int   // connections open now
	InFlight   int   // calls in flight on them
	SlowClosed int64 // connections closed with 4008 since the edge started
}

// WebSockets returns the edge's WebSocket statistics.
func (e *Edge) WebSockets() WSStats { return e.ws.stats() }

// wsUpgrade runs before the upgrade: it refuses what is not an upgrade, bad
// options and connections past STREAMRPC_WS_MAX_CONNS, with a JSON error.
func (e *Edge) wsUpgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return fiber.ErrUpgradeRequired
	}
	if v := c.Query("cancel_on_close"); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return writeError(c, newError(streams.CodeInvalidRequest, "cancel_on_close must be true or false", "value", v))
		}
	}
	open, closed := e.ws.state()
	switch {
	case closed:
		return writeError(c, newError(streams.CodeUnavailable, "the edge is shutting down"))
	case open >= e.cfg.WSMaxConns:
		c.Set(fiber.HeaderRetryAfter, "1")
		return writeError(c, newError(streams.CodeOverloaded, "this edge has as many WebSocket connections as it takes; retry later", "limit", e.cfg.WSMaxConns))
	case e.ws.fullFor(c.IP()):
		// 429, not 503: the edge has room, this client does not.
		c.Set(fiber.HeaderRetryAfter, "1")
		return writeError(c, newError(streams.CodeRateLimited, "this address has as many WebSocket connections to this edge as it may; close one first",
			"scope", "ip", "limit", e.cfg.WSMaxConnsPerIP))
	}
	return c.Next()
}

// serveWS serves one WebSocket connection. It runs on the goroutine fasthttp
// gives the hijacked connection; Fiber's shutdown does not wait for it, the
// edge's wsHub does.
func (e *Edge) serveWS(conn *websocket.Conn) {
	c := newWSConn(e, conn.Conn)
	c.cancelOnClose, _ = strconv.ParseBool(conn.Query("cancel_on_close"))
	// Authenticated at the upgrade (authenticate); each call is checked
	// against its scopes in dispatch.
	c.principal, _ = conn.Locals(principalLocal).(*Principal)
	c.trace = e.traceHeaders(canonicalKeys(conn.Headers)) // calls without their own _meta.traceparent continue the upgrade's trace
	if err := e.ws.add(c); err != nil {
		// Only upgrades that raced past wsUpgrade's checks get here.
		code, text := CloseTryAgainLater, "too many WebSocket connections"
		if errors.Is(err, errTooManyFromIP) {
			text = "too many WebSocket connections from this address"
		}
		if errors.Is(err, errDraining) {
			code, text = CloseGoingAway, "the edge is shutting down"
		}
		_ = c.ws.WriteControl(fastws.CloseMessage, fastws.FormatCloseMessage(code, text), time.Now().Add(e.cfg.WSWriteTimeout))
		c.linger()
		return
	}
	defer e.ws.remove(c)
	c.run()
}

// wsHub is the edge's registry of WebSocket connections: it bounds their
// number and closes them on Shutdown.
type wsHub struct {
	mu         sync.Mutex
	conns      map[*wsConn]struct{}
	max        int
	maxPerIP   int            // 0: no limit
	perIP      map[string]int // open connections per peer address
	closed     bool
	wg         sync.WaitGroup // one per connection, done when its goroutines are
	slowClosed atomic.Int64
}

func newWSHub(max, maxPerIP int) *wsHub {
	return &wsHub{conns: make(map[*wsConn]struct{}), max: max, maxPerIP: maxPerIP, perIP: make(map[string]int)}
}

// errTooManyFromIP: the peer's address holds STREAMRPC_WS_MAX_CONNS_PER_IP.
var errTooManyFromIP = errors.New("app: too many WebSocket connections from this address")

func (h *wsHub) add(c *wsConn) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return errDraining
	case len(h.conns) >= h.max:
		return errors.New("app: too many WebSocket connections")
	case h.maxPerIP > 0 && h.perIP[c.remote] >= h.maxPerIP:
		return errTooManyFromIP
	}
	h.conns[c] = struct{}{}
	h.perIP[c.remote]++
	h.wg.Add(1)
	return nil
}

func (h *wsHub) remove(c *wsConn) {
	h.mu.Lock()
	delete(h.conns, c)
	if h.perIP[c.remote]--; h.perIP[c.remote] <= 0 {
		delete(h.perIP, c.remote)
	}
	h.mu.Unlock()
	h.wg.Done()
}

func (h *wsHub) state() (open int, closed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns), h.closed
}

// fullFor reports whether ip holds as many connections as it may.
func (h *wsHub) fullFor(ip string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxPerIP > 0 && h.perIP[ip] >= h.maxPerIP
}

func (h *wsHub) stats() WSStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := WSStats{Open: len(h.conns), SlowClosed: h.slowClosed.Load()}
	for c := range h.conns {
		s.InFlight += int(c.inFlight.Load())
	}
	return s
}

// shutdown stops every connection from reading, lets the calls in flight be
// answered until ctx ends, then closes the connections with 1001 and waits for
// their goroutines. New connections are refused from the start.
func (h *wsHub) shutdown(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	for c := range h.conns {
		c.drain()
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	h.mu.Lock()
	for c := range h.conns {
		c.abort()
	}
	h.mu.Unlock()
	<-done
}

// wsConn is one WebSocket connection. Its goroutines: the reader (serveWS's
// own goroutine), one writer, and one per call or batch in flight; all end
// before serveWS returns.
type wsConn struct {
	e  *Edge
	ws *fastws.Conn
	// trace is the upgrade request's W3C trace context: that of every call
	// on this connection that carries none in its "_meta".
	trace traceContext

	// ctx ends the calls' waits when the peer is gone (or at the end of a
	// shutdown's grace); their results stay readable by id.
	ctx    context.Context
	cancel context.CancelFunc
	// cancelOnClose is the ?cancel_on_close= option: whether the calls still
	// in flight when the connection closes should be cancelled. It is kept for
	// cancellation, which reads it together with calls.
	cancelOnClose bool

	inFlight atomic.Int64 // calls holding a slot of STREAMRPC_WS_MAX_IN_FLIGHT
	callsMu  sync.Mutex
	calls    map[string]*wsCall // edge call id -> the call in flight
	// finished are the JSON-RPC ids of the calls answered last (a ring of
	// finishedCalls), so that a $/cancel that crossed its call's answer gets
	// {"was":"done"} rather than an error.
	finished     [finishedCalls]json.RawMessage
	finishedNext int
	remote       string // the peer's address
	// principal is who opened the socket; nil when auth is off.
	principal *Principal
	running   sync.WaitGroup // goroutines of calls and batches

	out        wsQueue
	closeOnce  sync.Once
	closeReq   chan struct{} // closed by requestClose: the writer closes
	closeCode  int           // 0: no close frame (the peer is gone or closed first)
	closeText  string
	closeFlush bool // write what is queued before the close frame
	writerDone chan struct{}

	deadlineMu sync.Mutex
	draining   bool      // the edge shuts down: stop reading
	readBy     time.Time // nonzero: read no later than this (closing)
}

func newWSConn(e *Edge, ws *fastws.Conn) *wsConn {
	ctx, cancel := context.WithCancel(context.Background())
	remote := ""
	if ws != nil {
		if host, _, err := net.SplitHostPort(ws.RemoteAddr().String()); err == nil {
			remote = host
		}
	}
	return &wsConn{
		e: e, ws: ws, ctx: ctx, cancel: cancel, remote: remote,
		calls:      make(map[string]*wsCall),
		out:        wsQueue{limit: e.cfg.WSWriteQueue, wake: make(chan struct{}, 1)},
		closeReq:   make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

func (c *wsConn) run() {
	c.ws.SetReadLimit(c.e.cfg.WSMaxMessage)
	c.ws.SetPongHandler(func(string) error { return c.refreshReadDeadline() })
	go c.writeLoop()
	err := c.refreshReadDeadline()
	if err == nil {
		err = c.readLoop()
	}
	c.deadlineMu.Lock()
	draining := c.draining
	c.deadlineMu.Unlock()
	if !draining {
		if c.cancelOnClose {
			c.cancelAll()
		}
		c.cancel() // the peer is gone: stop waiting on its calls
	}
	c.running.Wait()
	switch {
	case draining:
		c.requestClose(CloseGoingAway, "the edge is shutting down", true)
	case errors.Is(err, fastws.ErrReadLimit):
		c.requestClose(0, "", false) // the library sent 1009
		c.e.log.Debug("websocket message over the limit", "limit", c.e.cfg.WSMaxMessage)
	default:
		c.requestClose(0, "", false)
	}
	<-c.writerDone
	c.cancel()
	if draining || errors.Is(err, fastws.ErrReadLimit) {
		c.linger() // a close frame went out: let the peer read it
	}
	c.e.log.Debug("websocket closed", "reason", err)
}

// maxLinger bounds linger.
const maxLinger = 2 * time.Second

// linger reads and drops what the peer still sends, until it closes the TCP
// connection or for STREAMRPC_WS_WRITE_TIMEOUT but at most 2s (a "lingering
// close"), so that closing the socket with unread data does not reset the
// connection before the peer has read the close frame.
func (c *wsConn) linger() {
	nc := c.ws.NetConn()
	if err := nc.SetReadDeadline(time.Now().Add(min(c.e.cfg.WSWriteTimeout, maxLinger))); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, nc)
}

// readLoop reads messages until the connection fails, the peer closes it, or
// the edge stops it.
func (c *wsConn) readLoop() error {
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		if err := c.refreshReadDeadline(); err != nil {
			return err
		}
		select {
		case <-c.closeReq:
			continue // closing: read and drop until the peer's close reply
		default:
		}
		c.dispatch(msg)
	}
}

// refreshReadDeadline gives the peer STREAMRPC_WS_PING_INTERVAL +
// STREAMRPC_WS_PONG_TIMEOUT to send its next frame (a pong at least), or less
// once the connection closes.
func (c *wsConn) refreshReadDeadline() error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if c.draining {
		return errDraining
	}
	d := time.Now().Add(c.e.cfg.WSPingInterval + c.e.cfg.WSPongTimeout)
	if !c.readBy.IsZero() && c.readBy.Before(d) {
		d = c.readBy
	}
	return c.ws.SetReadDeadline(d)
}

// stopReadingBy makes the reader stop by t at the latest.
func (c *wsConn) stopReadingBy(t time.Time) {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if c.readBy.IsZero() || t.Before(c.readBy) {
		c.readBy = t
	}
	_ = c.ws.SetReadDeadline(c.readBy)
}

// drain stops the reader now; the calls in flight go on (shutdown).
func (c *wsConn) drain() {
	c.deadlineMu.Lock()
	c.draining = true
	c.deadlineMu.Unlock()
	c.stopReadingBy(time.Now())
}

// abort ends the calls' waits and unblocks a writer stuck on a slow peer.
func (c *wsConn) abort() {
	c.cancel()
	c.closeNet()
}

// closeNet closes the TCP connection under the WebSocket, which ends its
// reads and writes. (fasthttp's hijacked connection ignores Close: it closes
// the connection itself once serveWS returns; so the one under it is closed.)
func (c *wsConn) closeNet() {
	nc := c.ws.NetConn()
	if u, ok := nc.(interface{ UnsafeConn() net.Conn }); ok {
		nc = u.UnsafeConn()
	}
	_ = nc.Close()
}

// dispatch answers one message: each call runs on its own goroutine and is
// answered when it completes, in any order.
func (c *wsConn) dispatch(msg []byte) {
	reqs, batch, perr := decodeJSONRPC(msg, c.e.cfg.JSONRPCMaxBatch)
	if perr != nil {
		c.send(encodeError(nil, perr))
		return
	}
	for i := range reqs {
		reqs[i].caller = c.remote
		if reqs[i].trace.parent == "" { // a per-call _meta.traceparent wins
			reqs[i].trace = c.trace
		}
	}
	authorizeCalls(c.principal, reqs, time.Now())
	if !batch {
		r := &reqs[0]
		switch {
		case r.err != nil:
			if resp := r.errorResponse(); resp != nil {
				c.send(resp)
			}
		case !c.acquire():
			if r.notification() {
				// No slot and no id to answer -32005 with: enqueue it here,
				// which holds back reading (one enqueue at a time).
				c.e.runJSONRPC(c.ctx, r, nil)
				return
			}
			c.send(encodeError(r.id, c.overloaded()))
		default:
			c.running.Add(1)
			go func() {
				defer c.running.Done()
				defer c.release()
				if resp := c.e.runJSONRPC(c.ctx, r, c); resp != nil {
					c.send(resp)
				}
			}()
		}
		return
	}
	// A batch is answered with one message once all its calls complete. Each
	// call takes a slot; one past the limit is answered -32005 in the batch.
	out := make([][]byte, len(reqs))
	run := make([]bool, len(reqs))
	held := 0
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.err != nil:
			out[i] = r.errorResponse()
		case c.acquire():
			run[i] = true
			held++
		case r.notification():
			c.e.runJSONRPC(c.ctx, r, nil)
		default:
			out[i] = encodeError(r.id, c.overloaded())
		}
	}
	if held == 0 {
		if b := encodeBatch(out); b != nil {
			c.send(b)
		}
		return
	}
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		var wg sync.WaitGroup
		for i := range reqs {
			if !run[i] {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.release()
				out[i] = c.e.runJSONRPC(c.ctx, &reqs[i], c)
			}()
		}
		wg.Wait()
		if b := encodeBatch(out); b != nil {
			c.send(b)
		}
	}()
}

func (c *wsConn) acquire() bool {
	if c.inFlight.Add(1) > int64(c.e.cfg.WSMaxInFlight) {
		c.inFlight.Add(-1)
		return false
	}
	return true
}

func (c *wsConn) release() { c.inFlight.Add(-1) }

func (c *wsConn) overloaded() *streams.Error {
	return newError(streams.CodeOverloaded, "too many calls in flight on this connection; wait for answers before sending more", "limit", c.e.cfg.WSMaxInFlight)
}

// finishedCalls is how many answered calls a connection remembers for
// $/cancel: enough for the cancels in flight when their calls are answered.
const finishedCalls = 64

// wsCall is a call in flight on a connection.
type wsCall struct {
	rpcID    json.RawMessage
	handler  string
	streamID string // "" until enqueued
	cancel   context.CancelCauseFunc
}

// track records a call in flight on this connection (see callTracker).
func (c *wsConn) track(callID, handler string, rpcID json.RawMessage) (context.Context, func(streams.Enqueued), func()) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	call := &wsCall{rpcID: rpcID, handler: handler, cancel: cancel}
	c.callsMu.Lock()
	c.calls[callID] = call
	c.callsMu.Unlock()
	enqueued := func(enq streams.Enqueued) {
		c.callsMu.Lock()
		call.streamID = enq.StreamID
		c.callsMu.Unlock()
	}
	return ctx, enqueued, func() {
		c.callsMu.Lock()
		delete(c.calls, callID)
		c.finished[c.finishedNext] = rpcID
		c.finishedNext = (c.finishedNext + 1) % finishedCalls
		c.callsMu.Unlock()
		cancel(nil)
	}
}

// cancelCall cancels the call in flight with JSON-RPC id rpcID: in Redis (a
// queued call never runs; a running one's handler context is cancelled), and
// here (its caller is answered -32006 at once).
func (c *wsConn) cancelCall(rpcID json.RawMessage) (streams.State, *streams.Error) {
	c.callsMu.Lock()
	var id string
	var call *wsCall
	for k, v := range c.calls {
		if bytes.Equal(v.rpcID, rpcID) {
			id, call = k, v
			break
		}
	}
	var handler, streamID string
	finished := false
	if call != nil {
		handler, streamID = call.handler, call.streamID
	} else {
		for _, f := range c.finished {
			if f != nil && bytes.Equal(f, rpcID) {
				finished = true
				break
			}
		}
	}
	c.callsMu.Unlock()
	switch {
	case finished:
		return streams.StateDone, nil // answered already: nothing left to cancel
	case call == nil:
		return "", newError(streams.CodeInvalidParams, "no call with this id is in flight on this connection (nor among the last answered)", "id", rpcID)
	}
	state := streams.StateQueued
	if streamID != "" {
		var err error
		if state, err = c.e.cancelInRedis(handler, id, streamID); err != nil {
			return "", unavailableError(err)
		}
	}
	call.cancel(errCallerCancelled)
	return state, nil
}

// cancelAll cancels, in Redis, every call still in flight: for a connection
// opened with ?cancel_on_close=true that the peer closed.
func (c *wsConn) cancelAll() {
	c.callsMu.Lock()
	calls := make(map[string]wsCall, len(c.calls))
	for id, call := range c.calls {
		calls[id] = *call
	}
	c.callsMu.Unlock()
	for id, call := range calls {
		if call.streamID != "" {
			if _, err := c.e.cancelInRedis(call.handler, id, call.streamID); err != nil {
				c.e.log.Debug("cancelling a call of a closed websocket failed", "call_id", id, "err", err)
			}
		}
	}
}

// callsInFlight returns the edge call ids of the calls in flight on this
// connection, each with its JSON-RPC id.
func (c *wsConn) callsInFlight() map[string]json.RawMessage {
	c.callsMu.Lock()
	defer c.callsMu.Unlock()
	m := make(map[string]json.RawMessage, len(c.calls))
	for k, v := range c.calls {
		m[k] = v.rpcID
	}
	return m
}

// send queues msg for the writer. Past the queue's bound the connection is
// closed with 4008 and what is queued is dropped.
func (c *wsConn) send(msg []byte) {
	if c.ctx.Err() != nil {
		return // the peer is gone
	}
	if !c.out.push(msg) {
		if c.requestClose(CloseSlowReader, "write queue full: the client does not read fast enough", false) {
			c.e.ws.slowClosed.Add(1)
			c.e.log.Info("websocket closed: the client does not read its answers", "limit_bytes", c.e.cfg.WSWriteQueue)
		}
	}
}

// requestClose asks the writer to close the connection with code (0: without
// a close frame), after writing what is queued if flush. Only the first
// request counts; it reports whether this one did.
func (c *wsConn) requestClose(code int, text string, flush bool) bool {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeCode, c.closeText, c.closeFlush = code, text, flush
		if !flush {
			c.out.discard()
		}
		close(c.closeReq)
	})
	return first
}

// writeLoop is the connection's one writer: answers, pings, the close frame.
func (c *wsConn) writeLoop() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.e.cfg.WSPingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.out.wake:
			if !c.flush() {
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(fastws.PingMessage, nil, time.Now().Add(c.e.cfg.WSWriteTimeout)); err != nil {
				c.broken(err)
				return
			}
		case <-c.closeReq:
			if c.closeFlush && !c.flush() {
				return
			}
			if c.closeCode != 0 {
				msg := fastws.FormatCloseMessage(c.closeCode, c.closeText)
				if err := c.ws.WriteControl(fastws.CloseMessage, msg, time.Now().Add(c.e.cfg.WSWriteTimeout)); err != nil {
					c.broken(err)
					return
				}
				// Wait for the peer's close reply, not longer than a write may take.
				c.stopReadingBy(time.Now().Add(c.e.cfg.WSWriteTimeout))
			}
			return
		}
	}
}

// flush writes the queued messages, one at a time; it stops early when the
// connection is to close without them. It reports false if a write failed.
func (c *wsConn) flush() bool {
	for {
		select {
		case <-c.closeReq:
			if !c.closeFlush {
				return true
			}
		default:
		}
		msg := c.out.pop()
		if msg == nil {
			return true
		}
		if err := c.ws.SetWriteDeadline(time.Now().Add(c.e.cfg.WSWriteTimeout)); err != nil {
			c.broken(err)
			return false
		}
		if err := c.ws.WriteMessage(fastws.TextMessage, msg); err != nil {
			c.broken(err)
			return false
		}
	}
}

// broken handles a failed write: the connection is unusable, so it is closed
// under the reader, which then tears the rest down.
func (c *wsConn) broken(err error) {
	c.e.log.Debug("websocket write failed", "err", err)
	c.out.discard()
	c.closeNet()
}

// wsQueue is a connection's write queue, bounded in bytes.
type wsQueue struct {
	mu     sync.Mutex
	msgs   [][]byte
	bytes  int
	limit  int
	closed bool
	wake   chan struct{} // one token: there is something to write
}

// push queues msg. It reports false, and drops msg, when the queue would go
// over its limit; a message alone in the queue is always taken.
func (q *wsQueue) push(msg []byte) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return true // closing: dropped, and not an overflow
	}
	if len(q.msgs) > 0 && q.bytes+len(msg) > q.limit {
		q.mu.Unlock()
		return false
	}
	q.msgs = append(q.msgs, msg)
	q.bytes += len(msg)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

func (q *wsQueue) pop() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) == 0 {
		return nil
	}
	msg := q.msgs[0]
	q.msgs[0] = nil
	q.msgs = q.msgs[1:]
	q.bytes -= len(msg)
	if len(q.msgs) == 0 {
		q.msgs = nil // let the backing array go
	}
	return msg
}

// discard drops what is queued and everything pushed from now on.
func (q *wsQueue) discard() {
	q.mu.Lock()
	q.msgs, q.bytes, q.closed = nil, 0, true
	q.mu.Unlock()
}
