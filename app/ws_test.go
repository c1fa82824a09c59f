package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/streams"
)

// These tests run an edge whose Redis cannot be reached (see newTestEdge):
// everything the WebSocket door does before a call reaches Redis, and its
// limits, are checked here; calls that reach handlers are in integration/.

func wsURL(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/ws" }

// dialWS opens a raw WebSocket; it is closed when the test ends.
func dialWS(t *testing.T, url string) *fastws.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, res, err := fastws.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// readUntilClose reads until the connection ends and returns the close code
// (0 if it ended without a close frame).
func readUntilClose(t *testing.T, conn *fastws.Conn, within time.Duration) int {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *fastws.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection was not closed within %s", within)
		}
		return 0
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *streams.Error  `json:"error"`
}

func TestWSUpgradeRefusals(t *testing.T) {
	e := newTestEdge(t, Config{WSMaxConns: 1})
	base := serve(t, e)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(hc.CloseIdleConnections)

	t.Run("not an upgrade", func(t *testing.T) {
		res, err := hc.Get(base + "/ws")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("status %d, want 426", res.StatusCode)
		}
	})
	t.Run("bad cancel_on_close", func(t *testing.T) {
		_, res, err := fastws.DefaultDialer.Dial(wsURL(base)+"?cancel_on_close=maybe", nil)
		if err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
			t.Fatalf("err %v, response %v; want a 400", err, res)
		}
	})
	t.Run("over the connection limit", func(t *testing.T) {
		first := dialWS(t, wsURL(base))
		// The connection counts from when it is open, just after the upgrade.
		waitFor(t, 5*time.Second, "the first connection is open", func() bool { return e.WebSockets().Open == 1 })
		_, res, err := fastws.DefaultDialer.Dial(wsURL(base), nil)
		if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("err %v, response %v; want a 503", err, res)
		}
		var body struct{ Error *streams.Error }
		b, _ := io.ReadAll(res.Body)
		if json.Unmarshal(b, &body) != nil || body.Error == nil || body.Error.Code != streams.CodeOverloaded {
			t.Fatalf("body %s, want error -32005", b)
		}
		if res.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		// Once the first closes, a new connection is taken.
		_ = first.WriteControl(fastws.CloseMessage, fastws.FormatCloseMessage(fastws.CloseNormalClosure, ""), time.Now().Add(time.Second))
		readUntilClose(t, first, 5*time.Second)
		waitFor(t, 5*time.Second, "the first connection leaves the edge", func() bool { return e.WebSockets().Open == 0 })
		dialWS(t, wsURL(base))
	})
}

func TestWSProtocolErrors(t *testing.T) {
	e := newTestEdge(t, Config{JSONRPCMaxBatch: 3})
	conn := dialWS(t, wsURL(serve(t, e)))
	cases := []struct {
		name  string
		msg   string
		batch int // entries of the answer if it is a batch, 0 if not
		id    string
		code  int
	}{
		{"parse error", `{"jsonrpc":"2.0","id":1,`, 0, "null", streams.CodeParseError},
		{"invalid request", `{"jsonrpc":"1.0","id":"a","method":"echo.echo"}`, 0, `"a"`, streams.CodeInvalidRequest},
		{"params not structured", `{"jsonrpc":"2.0","id":2,"method":"echo.echo","params":3}`, 0, "2", streams.CodeInvalidRequest},
		{"method not found", `{"jsonrpc":"2.0","id":3,"method":"echo"}`, 0, "3", streams.CodeMethodNotFound},
		{"empty batch", `[]`, 0, "null", streams.CodeInvalidRequest},
		{"batch over the limit", `[1,2,3,4]`, 0, "null", streams.CodeInvalidRequest},
		{"batch of invalid entries", `[1,{"jsonrpc":"2.0","id":9,"method":"x"}]`, 2, "", 0},
		{"redis down", `{"jsonrpc":"2.0","id":4,"method":"echo.echo"}`, 0, "4", streams.CodeUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := conn.WriteMessage(fastws.TextMessage, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, msg, err := conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if tc.batch > 0 {
				var rs []rpcResponse
				if err := json.Unmarshal(msg, &rs); err != nil || len(rs) != tc.batch {
					t.Fatalf("answer %s, want a batch of %d", msg, tc.batch)
				}
				return
			}
			var r rpcResponse
			if err := json.Unmarshal(msg, &r); err != nil || r.JSONRPC != "2.0" || string(r.ID) != tc.id || r.Error == nil || r.Error.Code != tc.code {
				t.Fatalf("answer %s, want id %s and error %d", msg, tc.id, tc.code)
			}
		})
	}
}

func TestWSMessageTooBig(t *testing.T) {
	e := newTestEdge(t, Config{WSMaxMessage: 512})
	conn := dialWS(t, wsURL(serve(t, e)))
	msg := `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":["` + strings.Repeat("x", 1024) + `"]}`
	if err := conn.WriteMessage(fastws.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if code := readUntilClose(t, conn, 10*time.Second); code != fastws.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	waitFor(t, 10*time.Second, "the edge frees the connection", func() bool { return e.WebSockets().Open == 0 })
}

// TestWSSlowReader: a client that sends calls but does not read the answers
// is closed with 4008 once its answers queued at the edge pass the bound; if
// it never reads again, the edge drops it once a write has been blocked for
// STREAMRPC_WS_WRITE_TIMEOUT.
func TestWSSlowReader(t *testing.T) {
	const writeTimeout = 2 * time.Second
	e := newTestEdge(t, Config{WSWriteQueue: 64 << 10, WSWriteTimeout: writeTimeout})
	base := serve(t, e)
	// Each message is answered at once (the method cannot exist) with its
	// 32 KiB id echoed: the answers pile up in the socket buffers, then in the
	// edge's queue.
	id := `"` + strings.Repeat("i", 32<<10) + `"`
	msg := []byte(`{"jsonrpc":"2.0","id":` + id + `,"method":"nodot"}`)
	flood := func(t *testing.T, conn *fastws.Conn, slowClosed int64) {
		t.Helper()
		stop := make(chan struct{})
		sent := make(chan int, 1)
		go func() {
			n := 0
			defer func() { sent <- n }()
			for ; n < 20000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := conn.WriteMessage(fastws.TextMessage, msg); err != nil {
					return
				}
			}
		}()
		waitFor(t, 30*time.Second, "the edge closes the slow reader", func() bool { return e.WebSockets().SlowClosed == slowClosed })
		close(stop)
		t.Logf("sent %d calls", <-sent)
	}
	t.Run("resumes reading", func(t *testing.T) {
		conn := dialWS(t, wsURL(base))
		flood(t, conn, 1)
		if code := readUntilClose(t, conn, 20*time.Second); code != CloseSlowReader {
			t.Fatalf("close code %d, want %d", code, CloseSlowReader)
		}
		waitFor(t, 30*time.Second, "the edge frees the connection", func() bool { return e.WebSockets().Open == 0 })
	})
	t.Run("never reads again", func(t *testing.T) {
		conn := dialWS(t, wsURL(base))
		flood(t, conn, 2)
		// Well before the ping deadline (40s by default).
		waitFor(t, writeTimeout+5*time.Second, "the edge drops the connection", func() bool { return e.WebSockets().Open == 0 })
	})
}

func TestWSDeadPeer(t *testing.T) {
	e := newTestEdge(t, Config{WSPingInterval: 100 * time.Millisecond, WSPongTimeout: 100 * time.Millisecond})
	base := serve(t, e)
	alive := dialWS(t, wsURL(base))
	// The live client reads, so its WebSocket library answers the pings.
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := alive.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	dead := dialWS(t, wsURL(base)) // never reads: never answers a ping
	waitFor(t, 5*time.Second, "both connections open", func() bool { return e.WebSockets().Open == 2 })
	waitFor(t, 5*time.Second, "the edge drops the dead peer", func() bool { return e.WebSockets().Open == 1 })
	// Well past the dead peer's deadline, the live one is still served.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n := e.WebSockets().Open; n != 1 {
			t.Fatalf("%d connections open, want the live one", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = dead.Close()
	_ = alive.Close()
	<-readErr
}

func TestWSShutdownClosesConnections(t *testing.T) {
	e := newTestEdge(t, Config{})
	conn := dialWS(t, wsURL(serve(t, e))+"?cancel_on_close=true")
	waitFor(t, 5*time.Second, "the connection is open", func() bool { return e.WebSockets().Open == 1 })
	e.ws.mu.Lock()
	for c := range e.ws.conns {
		if !c.cancelOnClose {
			t.Error("cancel_on_close=true was not kept")
		}
	}
	e.ws.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(context.Background()) }()
	if code := readUntilClose(t, conn, 10*time.Second); code != CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	_ = conn.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if n := e.WebSockets().Open; n != 0 {
		t.Fatalf("%d connections left after Shutdown", n)
	}
}

func TestWSTracksCallsInFlight(t *testing.T) {
	e := newTestEdge(t, Config{})
	c := newWSConn(e, nil)
	t.Cleanup(c.cancel)
	var dones []func()
	for i := range 3 {
		_, _, done := c.track(fmt.Sprintf("call%d", i), "echo", json.RawMessage(fmt.Sprint(i)))
		dones = append(dones, done)
	}
	if got := c.callsInFlight(); len(got) != 3 || string(got["call1"]) != "1" {
		t.Fatalf("in flight: %v", got)
	}
	var wg sync.WaitGroup
	for _, done := range dones {
		wg.Add(1)
		go func() { defer wg.Done(); done() }()
	}
	wg.Wait()
	if got := c.callsInFlight(); len(got) != 0 {
		t.Fatalf("still in flight: %v", got)
	}
}

func TestWSCancelOfFinishedCall(t *testing.T) {
	e := newTestEdge(t, Config{})
	c := newWSConn(e, nil)
	t.Cleanup(c.cancel)
	_, _, done := c.track("call1", "echo", json.RawMessage(`"a"`))
	done() // answered
	cases := []struct {
		name     string
		rpcID    string
		wantWas  streams.State
		wantCode int
	}{
		{"answered call: done", `"a"`, streams.StateDone, 0},
		{"never seen: invalid params", `"b"`, "", streams.CodeInvalidParams},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			was, err := c.cancelCall(json.RawMessage(tc.rpcID))
			switch {
			case tc.wantCode != 0 && (err == nil || err.Code != tc.wantCode):
				t.Fatalf("cancelCall = %q, %v; want error %d", was, err, tc.wantCode)
			case tc.wantCode == 0 && (err != nil || was != tc.wantWas):
				t.Fatalf("cancelCall = %q, %v; want %q", was, err, tc.wantWas)
			}
		})
	}
	t.Run("forgotten past the ring", func(t *testing.T) {
		for i := range finishedCalls {
			_, _, done := c.track(fmt.Sprint("more", i), "echo", json.RawMessage(fmt.Sprint(i+100)))
			done()
		}
		if _, err := c.cancelCall(json.RawMessage(`"a"`)); err == nil {
			t.Fatal("an answered call is remembered past the ring's size")
		}
	})
}

func TestWSQueueBound(t *testing.T) {
	q := wsQueue{limit: 10, wake: make(chan struct{}, 1)}
	steps := []struct {
		name string
		msg  string
		want bool
	}{
		{"alone over the limit is taken", "0123456789abc", true},
		{"past the limit is refused", "x", false},
	}
	for _, s := range steps {
		if got := q.push([]byte(s.msg)); got != s.want {
			t.Fatalf("%s: push = %v", s.name, got)
		}
	}
	if m := q.pop(); string(m) != "0123456789abc" || q.bytes != 0 {
		t.Fatalf("pop = %q, %d bytes left", m, q.bytes)
	}
	for i, p := range []struct {
		msg  string
		want bool
	}{{"12345", true}, {"12345", true}, {"1", false}} { // 5 + 5 bytes fit, 1 more does not
		if got := q.push([]byte(p.msg)); got != p.want {
			t.Fatalf("push %d = %v, want %v: the byte bound is not 10", i, got, p.want)
		}
	}
	q.discard()
	if q.pop() != nil || !q.push([]byte("dropped")) || q.pop() != nil {
		t.Fatal("a discarded queue still holds messages")
	}
}
