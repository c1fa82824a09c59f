package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
)

// closedWithin reads from conn until the edge closes it, and fails the test
// if it is still open after within.
func closedWithin(t *testing.T, conn net.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(within))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %s", within)
	}
	return time.Since(start)
}

// STREAMRPC_READ_TIMEOUT and STREAMRPC_IDLE_TIMEOUT drop slow and idle
// clients, and leave a WebSocket, an /events stream and a long-poll longer
// than both alone.
func TestSlowClientTimeouts(t *testing.T) {
	const readTimeout, idleTimeout = 500 * time.Millisecond, 800 * time.Millisecond
	st := newStack(t, stackOptions{edge: app.Config{ReadTimeout: readTimeout, IdleTimeout: idleTimeout}})
	addr := strings.TrimPrefix(st.url, "http://")
	dial := func(t *testing.T) net.Conn {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	t.Run("half a header", func(t *testing.T) {
		conn := dial(t)
		if _, err := fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		if took := closedWithin(t, conn, readTimeout+3*time.Second); took < readTimeout/2 {
			t.Fatalf("closed after %s, before the read timeout", took)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn := dial(t)
		if _, err := fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		closedWithin(t, conn, idleTimeout+3*time.Second)
	})
	t.Run("a WebSocket outlives both", func(t *testing.T) {
		ws := dialClient(t, st.wsURL())
		var out struct{ Slept int }
		for range 2 { // the socket reads nothing for 1.5s each time
			if err := ws.Call(t.Context(), "echo.sleep", map[string]int{"ms": 1500}, &out); err != nil || out.Slept != 1500 {
				t.Fatalf("call: %v (%+v)", err, out)
			}
		}
	})
	t.Run("an /events stream outlives both", func(t *testing.T) {
		// The stream is read past both timeouts: an event (stats come every
		// 2s) that arrives after them shows it is still open.
		outlast := readTimeout + idleTimeout + 200*time.Millisecond
		res, err := http.Get(st.url + "/events")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = res.Body.Close() })
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
		start := time.Now()
		deadline := time.AfterFunc(outlast+10*time.Second, func() { _ = res.Body.Close() })
		defer deadline.Stop()
		sc := bufio.NewScanner(res.Body)
		for {
			if !sc.Scan() {
				t.Fatalf("the stream ended after %s (%v): cut by a timeout", time.Since(start), sc.Err())
			}
			if strings.HasPrefix(sc.Text(), "event: ") && time.Since(start) > outlast {
				return
			}
		}
	})
	t.Run("a long-poll outlives both", func(t *testing.T) {
		r := post(t, st.url, "/rpc/echo/sleep", []byte(`{"ms":2500}`), preferAsync)
		if r.status != http.StatusAccepted {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		start := time.Now()
		g := get(t, st.url+"/rpc/calls/"+r.requestID+"?wait=20s")
		if g.status != http.StatusOK || g.State != "done" {
			t.Fatalf("long-poll: %d %s", g.status, g.body)
		}
		if took := time.Since(start); took < readTimeout+idleTimeout {
			t.Fatalf("the long-poll took %s: it did not outlast the timeouts, the test proves nothing", took)
		}
	})
}
