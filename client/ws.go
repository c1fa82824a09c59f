package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
)

// ErrClosed is returned by calls on a WebSocket that is closed, or that
// closed while they waited; the error wraps the reason (a
// *websocket.CloseError carries the edge's close code).
var ErrClosed = errors.New("streamrpc: websocket closed")

// WS is a WebSocket connection to an edge, speaking JSON-RPC 2.0. It is safe
// for concurrent use: any number of calls may be in flight at once, and each
// is answered as soon as the edge has its reply.
type WS struct {
	conn         *websocket.Conn
	writeTimeout time.Duration

	writeMu sync.Mutex // one writer at a time
	nextID  atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan wsResponse
	events  map[uint64]*callEvents // calls made with CallStream
	err     error                  // set once the connection is done

	done      chan struct{} // closed when the reader has stopped
	closeOnce sync.Once
}

type wsResponse struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *Error          `json:"error"`
	// A notification from the edge ($/progress) has these instead.
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// WSOption configures DialWS.
type WSOption func(*wsOptions)

type wsOptions struct {
	header       http.Header
	writeTimeout time.Duration
	dialer       *websocket.Dialer
}

// WithHeader adds headers to the upgrade request.
func WithHeader(h http.Header) WSOption { return func(o *wsOptions) { o.header = h } }

// WithWriteTimeout bounds a write when the call's context has no deadline.
// Default 30s.
func WithWriteTimeout(d time.Duration) WSOption { return func(o *wsOptions) { o.writeTimeout = d } }

// WithDialer dials with d instead of a default websocket.Dialer.
func WithDialer(d *websocket.Dialer) WSOption { return func(o *wsOptions) { o.dialer = d } }

// DialWS opens a WebSocket to the edge. rawURL is the edge's ws:// or wss://
// URL; an http(s):// URL is turned into one, and a URL without a path gets
// "/ws". If the edge refuses the upgrade with an error body, that is the
// returned *Error.
func DialWS(ctx context.Context, rawURL string, opts ...WSOption) (*WS, error) {
	o := wsOptions{writeTimeout: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	u, err := wsURL(rawURL)
	if err != nil {
		return nil, err
	}
	d := o.dialer
	if d == nil {
		d = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	}
	conn, res, err := d.DialContext(ctx, u, o.header)
	if err != nil {
		if res != nil && res.Body != nil {
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			var ans struct {
				Error *Error `json:"error"`
			}
			if json.Unmarshal(b, &ans) == nil && ans.Error != nil {
				ans.Error.Status = res.StatusCode
				return nil, ans.Error
			}
			return nil, fmt.Errorf("streamrpc: websocket upgrade refused: %s: %w", res.Status, err)
		}
		return nil, fmt.Errorf("streamrpc: dialing %s: %w", u, err)
	}
	w := &WS{
		conn:         conn,
		writeTimeout: o.writeTimeout,
		pending:      make(map[uint64]chan wsResponse),
		events:       make(map[uint64]*callEvents),
		done:         make(chan struct{}),
	}
	go w.read()
	return w, nil
}

func wsURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("streamrpc: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("streamrpc: %q: want a ws://, wss://, http:// or https:// URL", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	return u.String(), nil
}

// Call calls method ("handler.method") with params and decodes the result
// into out (see Client.Call for params and out). It returns when the answer
// comes, ctx ends (the call itself goes on at the edge) or the connection closes.
func (w *WS) Call(ctx context.Context, method string, params, out any) error {
	return w.call(ctx, method, params, out, nil, nil)
}

// call runs a call; with evs, the call's $/progress events go to evs and
// drain runs (on this goroutine) whenever some came, and before the result.
func (w *WS) call(ctx context.Context, method string, params, out any, evs *callEvents, drain func()) error {
	p, err := encodeParams(params)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // not sent: the caller gave up already
	}
	id := w.nextID.Add(1)
	msg := encodeRequest(id, method, p)
	ch := make(chan wsResponse, 1)
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return w.err
	}
	w.pending[id] = ch
	var ready chan struct{}
	if evs != nil {
		w.events[id] = evs
		ready = evs.ready
	}
	w.mu.Unlock()
	forget := func() {
		w.mu.Lock()
		delete(w.pending, id)
		delete(w.events, id)
		w.mu.Unlock()
	}
	if err := w.write(ctx, msg); err != nil {
		forget()
		return err
	}
	if evs != nil {
		defer forget()
	}
wait:
	select {
	case <-ready: // nil without evs: never
		drain()
		goto wait
	case r := <-ch:
		if err := ctx.Err(); err != nil {
			return err // the context ended as the answer came: it wins
		}
		if drain != nil {
			drain() // the events came before the answer, on the same reader
		}
		return r.decode(out)
	case <-ctx.Done():
		forget()
		// Tell the edge, so that the call does not run (queued) or its
		// handler stops (running). Best effort: the socket may be gone.
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = w.write(cctx, []byte(`{"jsonrpc":"2.0","method":"$/cancel","params":{"id":`+strconv.FormatUint(id, 10)+`}}`))
		cancel()
		return ctx.Err()
	case <-w.done:
		select {
		case r := <-ch: // answered just before the end
			return r.decode(out)
		default:
			return w.Err()
		}
	}
}

// Notify sends a notification: the edge enqueues the call and never answers.
// It returns once the message is written.
func (w *WS) Notify(ctx context.Context, method string, params any) error {
	p, err := encodeParams(params)
	if err != nil {
		return err
	}
	return w.write(ctx, encodeRequest(0, method, p))
}

// encodeRequest builds a request (a notification if id is 0). The params go
// out byte for byte: json.Marshal would compact them and escape HTML in them.
func encodeRequest(id uint64, method string, params json.RawMessage) []byte {
	name, _ := json.Marshal(method) // a string always encodes
	b := make([]byte, 0, 64+len(name)+len(params))
	b = append(b, `{"jsonrpc":"2.0",`...)
	if id != 0 {
		b = append(b, `"id":`...)
		b = strconv.AppendUint(b, id, 10)
		b = append(b, ',')
	}
	b = append(b, `"method":`...)
	b = append(b, name...)
	if params != nil {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	return append(b, '}')
}

func (r wsResponse) decode(out any) error {
	if r.Error != nil {
		return r.Error
	}
	return decodeResult(r.Result, out)
}

func (w *WS) write(ctx context.Context, msg []byte) error {
	if err := w.Err(); err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(w.writeTimeout)
	}
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if err := w.conn.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	if err := w.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return nil
}

// read is the connection's one reader: it hands each answer to its call. It
// answers the edge's pings (the library does, while reading).
func (w *WS) read() {
	defer close(w.done)
	for {
		_, msg, err := w.conn.ReadMessage()
		if err != nil {
			w.fail(err)
			_ = w.conn.Close()
			return
		}
		msg = bytes.TrimLeft(msg, " \t\r\n")
		if len(msg) > 0 && msg[0] == '[' {
			var batch []wsResponse
			if json.Unmarshal(msg, &batch) == nil {
				for _, r := range batch {
					w.deliver(r)
				}
			}
			continue
		}
		var r wsResponse
		if json.Unmarshal(msg, &r) == nil {
			if r.Method == "$/progress" {
				w.progress(r.Params)
				continue
			}
			w.deliver(r)
		}
	}
}

func (w *WS) deliver(r wsResponse) {
	id, ok := parseID(r.ID)
	if !ok {
		return // not an answer to one of our calls (id null: a message we sent was refused whole)
	}
	w.mu.Lock()
	ch, ok := w.pending[id]
	delete(w.pending, id)
	w.mu.Unlock()
	if ok {
		ch <- r
	}
}

// parseID reads one of our JSON-RPC ids (a number).
func parseID(raw json.RawMessage) (uint64, bool) {
	id, err := strconv.ParseUint(string(raw), 10, 64)
	return id, err == nil
}

func (w *WS) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
}

// Err returns why the connection closed, or nil while it is open.
func (w *WS) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Done is closed when the connection has closed, by Close or by the edge.
func (w *WS) Done() <-chan struct{} { return w.done }

// CloseCode returns the close code the connection ended with, or 0 if it is
// open or ended without one (e.g. 1006: the network failed).
func (w *WS) CloseCode() int {
	var ce *websocket.CloseError
	if errors.As(w.Err(), &ce) {
		return ce.Code
	}
	return 0
}

// Close closes the connection (normal closure, 1000) and waits for its reader
// to stop. Calls still waiting return ErrClosed. Safe to call more than once.
func (w *WS) Close() error {
	w.closeOnce.Do(func() {
		// WriteControl may run alongside a write in progress.
		err := w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		if err == nil {
			// Let the edge answer the close, briefly, then close regardless.
			t := time.NewTimer(time.Second)
			select {
			case <-w.done:
			case <-t.C:
			}
			t.Stop()
		}
		_ = w.conn.Close()
		<-w.done
		w.fail(errors.New("closed by the client"))
	})
	return nil
}
