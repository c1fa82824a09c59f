package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
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

// wsUpgrade runs before the upgrade: it refuses what is not an upgrade, bad
// options and connections past STREAMRPC_WS_MAX_CONNS, with a JSON error.
func (e *Edge) wsUpgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return fiber.ErrUpgradeRequired
	}
	for _, opt := range []string{"cancel_on_close", "progress"} {
		if v := c.Query(opt); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return writeError(c, newError(streams.CodeInvalidRequest, opt+" must be true or false", "value", v))
			}
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
	if v := conn.Query("progress"); v != "" {
		progress, _ := strconv.ParseBool(v)
		c.noProgress = !progress
	}
	// Authenticated at the upgrade (authenticate); each call is checked
	// against its scopes in dispatch.
	c.principal, _ = conn.Locals(principalLocal).(*Principal)
	c.trace = e.traceHeaders(canonicalKeys(conn.Headers)) // calls without their own _meta.traceparent continue the upgrade's trace
	// The upgrade's X-Request-Id is the correlation id of every call on
	// the socket, as POST /jsonrpc's is of every call in its batch.
	if rid := conn.Headers("X-Request-Id"); streams.ValidRequestID(rid) {
		c.requestID = strings.Clone(rid)
	}
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

// wsConn is one WebSocket connection. Its goroutines: the reader (serveWS's
// own goroutine), one writer, and one per call or batch in flight; all end
// before serveWS returns.
type wsConn struct {
	e  *Edge
	ws *fastws.Conn
	// trace is the upgrade request's W3C trace context: that of every call
	// on this connection that carries none in its "_meta".
	trace traceContext
	// requestID is the upgrade request's X-Request-Id, "" if none: the
	// correlation id (envelope "rid") of every call on this connection.
	requestID string

	// ctx ends the calls' waits when the peer is gone (or at the end of a
	// shutdown's grace); their results stay readable by id.
	ctx    context.Context
	cancel context.CancelFunc
	// cancelOnClose is the ?cancel_on_close= option: whether the calls still
	// in flight when the connection closes should be cancelled. It is kept for
	// cancellation, which reads it together with calls.
	cancelOnClose bool
	// noProgress is ?progress=false: no $/progress notifications on this
	// socket (ws_progress.go).
	noProgress bool

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
