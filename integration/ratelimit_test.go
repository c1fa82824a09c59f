package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/streams"
)

// TestRateLimitSharedAcrossEdges calls two edges on one Redis in turn, from
// one address: the limit holds for the sum, and every refusal is a 429
// rate_limited with Retry-After.
func TestRateLimitSharedAcrossEdges(t *testing.T) {
	// One request per 10s on average, 4 at once: the test runs well inside
	// one interval, so exactly the burst gets through.
	const burst = 4
	cfg := app.Config{RateLimitIP: 0.1, RateLimitIPBurst: burst}
	st := newStack(t, stackOptions{edge: cfg})
	edges := []string{st.url, ""}
	st.startEdge(t, cfg)
	edges[1] = st.url

	start := time.Now()
	allowed := map[string]int{}
	refused := map[string]int{}
	for i := range 12 {
		url := edges[i%2]
		r := post(t, url, "/rpc/echo/echo", []byte(`{"i":`+strconv.Itoa(i)+`}`), nil)
		switch r.status {
		case http.StatusOK:
			allowed[url]++
		case http.StatusTooManyRequests:
			refused[url]++
			if r.Error == nil || r.Error.Code != streams.CodeRateLimited {
				t.Fatalf("call %d: 429 body %s, want rate_limited", i, r.body)
			}
			ra, err := strconv.Atoi(r.header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 10 {
				t.Fatalf("call %d: Retry-After %q, want 1..10 seconds", i, r.header.Get("Retry-After"))
			}
		default:
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
	}
	if time.Since(start) > 9*time.Second {
		t.Skipf("the calls took %s: a new request became due, the count is not exact", time.Since(start))
	}
	total := allowed[edges[0]] + allowed[edges[1]]
	if total != burst {
		t.Fatalf("allowed %d calls in all (%v), want the burst %d across both edges", total, allowed, burst)
	}
	for _, url := range edges {
		if allowed[url] == 0 || refused[url] == 0 {
			t.Fatalf("edge %s allowed %d and refused %d: want both, the limit is shared", url, allowed[url], refused[url])
		}
	}
	// Probes are never limited.
	if g := get(t, edges[0]+"/healthz"); g.status != http.StatusOK {
		t.Fatalf("healthz while limited: %d %s", g.status, g.body)
	}
}

// TestHeaderSizeLimit: a request whose headers exceed STREAMRPC_MAX_HEADER_BYTES is answered 431.
func TestHeaderSizeLimit(t *testing.T) {
	st := newStack(t, stackOptions{edge: app.Config{MaxHeaderBytes: 2048}})
	cases := []struct {
		name   string
		header int // bytes of one header's value
		want   int
		// The edge answers 431 after reading its buffer's worth and closes:
		// a client still writing a request far larger than the socket
		// buffers may see the connection reset before it reads the 431.
		// Either way the request was refused.
		resetIsRefusal bool
	}{
		{name: "small", header: 100, want: http.StatusOK},
		{name: "just under", header: 1500, want: http.StatusOK},
		{name: "over", header: 3000, want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "far over", header: 64 << 10, want: http.StatusRequestHeaderFieldsTooLarge, resetIsRefusal: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, st.url+"/healthz", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Padding", strings.Repeat("a", tc.header))
			res, err := httpClient.Do(req)
			if err != nil {
				if tc.resetIsRefusal && errors.Is(err, syscall.ECONNRESET) {
					return
				}
				t.Fatal(err)
			}
			defer res.Body.Close()
			_, _ = io.Copy(io.Discard, res.Body)
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
	// The edge is still serving after the refusals.
	if g := get(t, st.url+"/healthz"); g.status != http.StatusOK {
		t.Fatalf("healthz after the refusals: %d", g.status)
	}
}

// TestConnectionsPerIP: past STREAMRPC_WS_MAX_CONNS_PER_IP an upgrade is
// refused with 429 rate_limited, and a closed connection frees its place;
// past STREAMRPC_MAX_CONNS_PER_IP a TCP connection is answered 429 and closed.
func TestConnectionsPerIP(t *testing.T) {
	t.Run("websocket upgrades", func(t *testing.T) {
		st := newStack(t, stackOptions{edge: app.Config{WSMaxConnsPerIP: 2}})
		first := rawWS(t, st.wsURL())
		rawWS(t, st.wsURL())
		// The edge counts a connection once it serves it, just after the
		// upgrade answer: wait for both.
		waitUntil(t, 5*time.Second, func() error {
			if n := st.edge.WebSockets().Open; n != 2 {
				return fmt.Errorf("%d open", n)
			}
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, res, err := fastws.DefaultDialer.DialContext(ctx, st.wsURL(), nil)
		if err == nil {
			_ = conn.Close()
			t.Fatal("a third WebSocket from one address was accepted")
		}
		if res == nil || res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
			t.Fatalf("third upgrade: %v (%+v), want 429 with Retry-After", err, res)
		}
		var body struct{ Error *streams.Error }
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Error == nil || body.Error.Code != streams.CodeRateLimited {
			t.Fatalf("third upgrade body: %v %+v", err, body.Error)
		}

		_ = first.Close()
		waitUntil(t, 5*time.Second, func() error {
			conn, _, err := fastws.DefaultDialer.DialContext(ctx, st.wsURL(), nil)
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = conn.Close() })
			return nil
		})
	})

	t.Run("tcp connections", func(t *testing.T) {
		st := newStack(t, stackOptions{edge: app.Config{MaxConnsPerIP: 2}, noConsume: true})
		addr := strings.TrimPrefix(st.url, "http://")
		dial := func() net.Conn {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c
		}
		// Two connections held open, each proven accepted by one request.
		for range 2 {
			c := dial()
			if status := rawGet(t, c); status != http.StatusOK {
				t.Fatalf("connection within the limit: status %d", status)
			}
		}
		if status := rawGet(t, dial()); status != http.StatusTooManyRequests {
			t.Fatalf("third connection: status %d, want 429", status)
		}
	})
}

// rawGet sends GET /healthz on c, keeping the connection open, and returns
// the status of the answer.
func rawGet(t *testing.T, c net.Conn) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

// TestRateLimitScript checks the GCRA script's arithmetic on a real Redis:
// the burst, the remaining count, the wait, the refill, independent
// subjects, and a key that expires once it limits nothing.
func TestRateLimitScript(t *testing.T) {
	r := startRedis(t)
	rdb := r.Client(t)
	c := streams.New(rdb, streams.Options{})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limit := streams.RateLimit{Rate: 20, Burst: 3} // one per 50ms, 3 at once

	for i, want := range []int{2, 1, 0} {
		d, err := c.RateLimit(ctx, "ip:192.0.2.1", limit)
		if err != nil || !d.Allowed || d.Remaining != want {
			t.Fatalf("request %d: %+v %v, want allowed with %d remaining", i, d, err, want)
		}
	}
	d, err := c.RateLimit(ctx, "ip:192.0.2.1", limit)
	if err != nil || d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 50*time.Millisecond {
		t.Fatalf("past the burst: %+v %v, want refused for at most 50ms", d, err)
	}
	if d, err := c.RateLimit(ctx, "ip:192.0.2.2", limit); err != nil || !d.Allowed {
		t.Fatalf("another address: %+v %v, want allowed", d, err)
	}
	ttl, err := rdb.PTTL(ctx, "srpc:{rl:ip:192.0.2.1}").Result()
	if err != nil || ttl <= 0 || ttl > 150*time.Millisecond {
		t.Fatalf("key TTL %s %v, want at most the burst's 150ms", ttl, err)
	}
	waitUntil(t, 2*time.Second, func() error {
		d, err := c.RateLimit(ctx, "ip:192.0.2.1", limit)
		if err != nil || !d.Allowed {
			return fmt.Errorf("%+v %v", d, err)
		}
		return nil
	})
	waitUntil(t, 2*time.Second, func() error {
		for _, k := range []string{"srpc:{rl:ip:192.0.2.1}", "srpc:{rl:ip:192.0.2.2}"} { // two slots: one EXISTS each
			if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
				return fmt.Errorf("%s is left (%d, %v)", k, n, err)
			}
		}
		return nil
	})
}

// TestRateLimitPerKeyAcrossEdges: with API keys, each key has its own limit,
// shared by two edges on one Redis; another key from the same address is not
// held back by it, and failed authentication counts against the address.
func TestRateLimitPerKeyAcrossEdges(t *testing.T) {
	const burst = 3
	keyA, hashA, err := app.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keyB, hashB, err := app.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := app.Config{
		APIKeys:            "a:" + hashA + ":call:echo.*;b:" + hashB + ":call:echo.*",
		RateLimitPrincipal: 0.1, RateLimitPrincipalBurst: burst,
		RateLimitIP: 0.1, RateLimitIPBurst: burst,
	}
	st := newStack(t, stackOptions{edge: cfg})
	edges := []string{st.url, ""}
	st.startEdge(t, cfg)
	edges[1] = st.url

	start := time.Now()
	count := func(key string, n int) (allowed, refused int) {
		for i := range n {
			r := post(t, edges[i%2], "/rpc/echo/echo", []byte(`{}`), map[string]string{"Authorization": "Bearer " + key})
			switch r.status {
			case http.StatusOK:
				allowed++
			case http.StatusTooManyRequests:
				refused++
				if r.header.Get("Retry-After") == "" || r.Error == nil || r.Error.Code != streams.CodeRateLimited {
					t.Fatalf("429 without Retry-After or rate_limited: %s", r.body)
				}
			case http.StatusUnauthorized:
			default:
				t.Fatalf("%d %s", r.status, r.body)
			}
		}
		return allowed, refused
	}
	cases := []struct {
		name          string
		key           string
		allowed, sent int
	}{
		{name: "key a, over its limit", key: keyA, allowed: burst, sent: 8},
		{name: "key b, its own limit", key: keyB, allowed: burst, sent: 8},
		{name: "bad keys, limited by address", key: "srpc_guess", allowed: 0, sent: 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			allowed, refused := count(tc.key, tc.sent)
			if time.Since(start) > 9*time.Second {
				t.Skipf("took %s: a new request became due, the count is not exact", time.Since(start))
			}
			// Bad keys: the first burst are answered 401, the rest 429.
			if allowed != tc.allowed || refused != tc.sent-burst {
				t.Fatalf("allowed %d, refused %d of %d; want %d allowed, %d refused", allowed, refused, tc.sent, tc.allowed, tc.sent-burst)
			}
		})
	}
}
