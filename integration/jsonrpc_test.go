package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// rpcAnswer is one JSON-RPC response, decoded.
type rpcAnswer struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *streams.Error  `json:"error"`
}

func (st *stack) wsURL() string { return "ws" + strings.TrimPrefix(st.url, "http") + "/ws" }

// rawWS opens a WebSocket without the client package, for tests that need
// to misbehave (stop reading, drop the connection). Closed at the end of the test.
func rawWS(t *testing.T, url string) *fastws.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := fastws.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func dialClient(t *testing.T, url string) *client.WS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := client.DialWS(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// closeCode reads until the connection ends, and returns its close code (0:
// it ended without one). It fails the test if the connection is still open
// after within.
func closeCode(t *testing.T, conn *fastws.Conn, within time.Duration) int {
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
			t.Fatalf("the connection is still open after %s", within)
		}
		return 0
	}
}

// jsonrpcHTTP posts body to /jsonrpc and returns the status and body (post
// would decode it as an object; a batch's answer is an array).
func jsonrpcHTTP(t *testing.T, st *stack, body string) (int, []byte) {
	t.Helper()
	res, err := httpClient.Post(st.url+"/jsonrpc", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

// wsExchange sends one message and returns the next message read.
func wsExchange(t *testing.T, conn *fastws.Conn, msg string) []byte {
	t.Helper()
	if err := conn.WriteMessage(fastws.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, b, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWSThousandCallsOutOfOrder(t *testing.T) {
	st := newStack(t, stackOptions{consumer: consumers.Config{Concurrency: 64}})
	const n = 1000

	t.Run("raw socket", func(t *testing.T) {
		conn := rawWS(t, st.wsURL())
		ms := make([]int, n)
		for i := range ms {
			ms[i] = rand.IntN(51)
		}
		// Sent in id order by one writer, while one reader collects the answers.
		sendErr := make(chan error, 1)
		go func() {
			for i := range n {
				msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"echo.sleep","params":{"ms":%d}}`, i, ms[i])
				if err := conn.WriteMessage(fastws.TextMessage, []byte(msg)); err != nil {
					sendErr <- err
					return
				}
			}
			sendErr <- nil
		}()
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		order := make([]int, 0, n)
		seen := make(map[int]bool, n)
		for len(order) < n {
			_, b, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("after %d answers: %v", len(order), err)
			}
			var a rpcAnswer
			var id int
			if err := json.Unmarshal(b, &a); err != nil || json.Unmarshal(a.ID, &id) != nil {
				t.Fatalf("answer %s", b)
			}
			if id < 0 || id >= n || seen[id] {
				t.Fatalf("unexpected or repeated id in %s", b)
			}
			seen[id] = true
			if want := fmt.Sprintf(`{"slept":%d}`, ms[id]); a.JSONRPC != "2.0" || a.Error != nil || string(a.Result) != want {
				t.Fatalf("call %d answered %s, want result %s", id, b, want)
			}
			order = append(order, id)
		}
		if err := <-sendErr; err != nil {
			t.Fatal(err)
		}
		inversions := 0
		for i := 1; i < n; i++ {
			if order[i] < order[i-1] {
				inversions++
			}
		}
		t.Logf("%d of %d answers came before an earlier call's", inversions, n)
		if inversions == 0 {
			t.Fatal("the answers came in call order: they should come as calls complete")
		}
	})

	t.Run("client package", func(t *testing.T) {
		ws := dialClient(t, st.wsURL())
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ms := rand.IntN(51)
				var out struct{ Slept int }
				if err := ws.Call(ctx, "echo.sleep", map[string]int{"ms": ms}, &out); err != nil || out.Slept != ms {
					t.Errorf("call %d: %v, slept %d want %d", i, err, out.Slept, ms)
				}
			}()
		}
		wg.Wait()
	})

	waitUntil(t, 10*time.Second, func() error {
		if w, s := st.edge.Waiting(), st.edge.WebSockets(); w != 0 || s.InFlight != 0 {
			return fmt.Errorf("edge waits on %d calls, %d in flight on sockets", w, s.InFlight)
		}
		return nil
	})
}

// counter is a handler "count" with a method "hit" that counts its calls: it
// shows that notifications reach a handler.
func startCounter(t *testing.T, st *stack) *atomic.Int64 {
	t.Helper()
	var hits atomic.Int64
	mux := consumers.NewMux()
	mux.HandleFunc("hit", func(context.Context, *consumers.Request) (any, error) {
		hits.Add(1)
		return true, nil
	})
	st.startConsumer(t, consumers.Config{Handler: "count"}, mux)
	return &hits
}

func TestJSONRPCBatchMixed(t *testing.T) {
	st := newStack(t, stackOptions{})
	hits := startCounter(t, st)
	batch := `[
		{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"a": [1, 2]}},
		{"jsonrpc":"2.0","id":"two","method":"echo.fail","params":{"message":"card declined"}},
		{"jsonrpc":"2.0","id":3,"method":"echo.nothing","params":{}},
		{"jsonrpc":"2.0","method":"count.hit","params":[]},
		{"jsonrpc":"1.0","id":4,"method":"echo.echo"},
		5,
		{"jsonrpc":"2.0","id":6,"method":"echo.sleep","params":{"ms":"soon"}},
		{"jsonrpc":"2.0","id":7,"method":"nodot"},
		{"jsonrpc":"2.0","id":8,"method":"echo.echo","params":"not structured"}
	]`
	want := map[string]struct {
		result string
		code   int
	}{
		`1`:     {result: `{"a": [1, 2]}`},
		`"two"`: {code: streams.CodeHandlerError},
		`3`:     {code: streams.CodeMethodNotFound},
		`4`:     {code: streams.CodeInvalidRequest},
		`null`:  {code: streams.CodeInvalidRequest},
		`6`:     {code: streams.CodeInvalidParams},
		`7`:     {code: streams.CodeMethodNotFound},
		`8`:     {code: streams.CodeInvalidRequest},
	}
	check := func(t *testing.T, b []byte) {
		t.Helper()
		var answers []rpcAnswer
		if err := json.Unmarshal(b, &answers); err != nil {
			t.Fatalf("answer is not a batch: %s", b)
		}
		if len(answers) != len(want) {
			t.Fatalf("%d answers, want %d (the notification unanswered): %s", len(answers), len(want), b)
		}
		for _, a := range answers {
			w, ok := want[string(a.ID)]
			if !ok {
				t.Fatalf("unexpected id %s", a.ID)
			}
			switch {
			case w.code != 0 && (a.Error == nil || a.Error.Code != w.code):
				t.Errorf("id %s: %+v, want error %d", a.ID, a.Error, w.code)
			case w.code == 0 && (a.Error != nil || string(a.Result) != w.result):
				t.Errorf("id %s: result %s error %+v, want result %s", a.ID, a.Result, a.Error, w.result)
			}
		}
	}
	cases := []struct {
		name string
		send func(t *testing.T) []byte
	}{
		{"POST /jsonrpc", func(t *testing.T) []byte {
			status, b := jsonrpcHTTP(t, st, batch)
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			return b
		}},
		{"GET /ws", func(t *testing.T) []byte { return wsExchange(t, rawWS(t, st.wsURL()), batch) }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check(t, tc.send(t))
			waitUntil(t, 10*time.Second, func() error {
				if h := hits.Load(); h != int64(i+1) {
					return fmt.Errorf("the notification reached the handler %d times, want %d", h, i+1)
				}
				return nil
			})
		})
	}
	t.Run("notifications only: no answer", func(t *testing.T) {
		before := hits.Load()
		status, b := jsonrpcHTTP(t, st, `[{"jsonrpc":"2.0","method":"count.hit"},{"jsonrpc":"2.0","method":"count.hit"}]`)
		if status != http.StatusNoContent || len(b) != 0 {
			t.Fatalf("got %d %s, want 204 and no body", status, b)
		}
		ws := dialClient(t, st.wsURL())
		if err := ws.Notify(context.Background(), "count.hit", []int{1}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, func() error {
			if h := hits.Load() - before; h != 3 {
				return fmt.Errorf("%d notifications reached the handler, want 3", h)
			}
			return nil
		})
	})
}

func TestJSONRPCErrorCodes(t *testing.T) {
	st := newStack(t, stackOptions{edge: app.Config{CallTimeout: time.Second, MaxBody: 4 << 10}})
	conn := rawWS(t, st.wsURL())
	cases := []struct {
		name   string
		msg    string
		wantID string
		code   int
		text   string
	}{
		{"parse error", `{"jsonrpc":"2.0","id":1,"method":`, "null", streams.CodeParseError, "parse error"},
		{"invalid request", `{"jsonrpc":"2.0","id":1}`, "1", streams.CodeInvalidRequest, `"method"`},
		{"invalid params member", `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":true}`, "1", streams.CodeInvalidRequest, `"params"`},
		{"bad handler name", `{"jsonrpc":"2.0","id":1,"method":"ec{ho}.echo"}`, "1", streams.CodeInvalidRequest, "handler name"},
		{"method not handler.method", `{"jsonrpc":"2.0","id":"m","method":"echo"}`, `"m"`, streams.CodeMethodNotFound, "handler.method"},
		{"unknown handler", `{"jsonrpc":"2.0","id":2,"method":"nobody.echo"}`, "2", streams.CodeMethodNotFound, "no consumer has registered it"},
		{"unknown method", `{"jsonrpc":"2.0","id":3,"method":"echo.nothing"}`, "3", streams.CodeMethodNotFound, "has no method"},
		{"invalid params", `{"jsonrpc":"2.0","id":4,"method":"echo.sleep","params":{"ms":"soon"}}`, "4", streams.CodeInvalidParams, "invalid params"},
		{"handler error", `{"jsonrpc":"2.0","id":5,"method":"echo.fail","params":{"message":"card declined"}}`, "5", streams.CodeHandlerError, "card declined"},
		// The edge or the consumer may say it first: the text differs, the code not.
		{"timeout", `{"jsonrpc":"2.0","id":6,"method":"echo.sleep","params":{"ms":3000}}`, "6", streams.CodeTimeout, ""},
		{"id echoed raw", `{"jsonrpc":"2.0","id":1.50e2,"method":"nodot"}`, "1.50e2", streams.CodeMethodNotFound, ""},
	}
	for _, door := range []string{"POST /jsonrpc", "GET /ws"} {
		t.Run(door, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					var b []byte
					if door == "GET /ws" {
						b = wsExchange(t, conn, tc.msg)
					} else {
						var status int
						status, b = jsonrpcHTTP(t, st, tc.msg)
						if status != http.StatusOK {
							t.Fatalf("status %d", status)
						}
					}
					var a rpcAnswer
					if err := json.Unmarshal(b, &a); err != nil || a.JSONRPC != "2.0" || string(a.ID) != tc.wantID ||
						a.Error == nil || a.Error.Code != tc.code || !strings.Contains(a.Error.Message, tc.text) {
						t.Fatalf("answer %s; want id %s, error %d containing %q", b, tc.wantID, tc.code, tc.text)
					}
				})
			}
		})
	}
	t.Run("HTTP only", func(t *testing.T) {
		httpCases := []struct {
			name   string
			body   string
			header map[string]string
			status int
			code   int
		}{
			{"body too large", `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":["` + strings.Repeat("x", 5<<10) + `"]}`, nil, 413, streams.CodeBodyTooLarge},
			{"wrong content type", `{"jsonrpc":"2.0","id":1,"method":"echo.echo"}`, map[string]string{"Content-Type": "text/plain"}, 415, streams.CodeUnsupportedMedia},
		}
		for _, tc := range httpCases {
			t.Run(tc.name, func(t *testing.T) {
				r := post(t, st.url, "/jsonrpc", []byte(tc.body), tc.header)
				var a rpcAnswer
				if r.status != tc.status || json.Unmarshal(r.body, &a) != nil || a.JSONRPC != "2.0" || string(a.ID) != "null" || a.Error == nil || a.Error.Code != tc.code {
					t.Fatalf("got %d %s; want %d and a JSON-RPC error %d", r.status, r.body, tc.status, tc.code)
				}
			})
		}
	})
}

func TestWSLimits(t *testing.T) {
	st := newStack(t, stackOptions{edge: app.Config{WSMaxInFlight: 2, WSMaxMessage: 4 << 10, WSMaxConns: 3}})
	openIs := func(n int) func() error {
		return func() error {
			if o := st.edge.WebSockets().Open; o != n {
				return fmt.Errorf("%d connections open, want %d", o, n)
			}
			return nil
		}
	}

	t.Run("too many in flight", func(t *testing.T) {
		ws := dialClient(t, st.wsURL())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		slow := make(chan error, 2)
		for range 2 {
			go func() { slow <- ws.Call(ctx, "echo.sleep", map[string]int{"ms": 1500}, nil) }()
		}
		waitUntil(t, 10*time.Second, func() error {
			if n := st.edge.WebSockets().InFlight; n != 2 {
				return fmt.Errorf("%d calls in flight, want 2", n)
			}
			return nil
		})
		var rerr *client.Error
		if err := ws.Call(ctx, "echo.echo", []int{3}, nil); !errors.As(err, &rerr) || rerr.Code != client.CodeOverloaded {
			t.Fatalf("third call: %v, want -32005", err)
		}
		for range 2 {
			if err := <-slow; err != nil {
				t.Fatalf("a call within the limit: %v", err)
			}
		}
		var out []int
		if err := ws.Call(ctx, "echo.echo", []int{4}, &out); err != nil || len(out) != 1 || out[0] != 4 {
			t.Fatalf("the connection does not serve after the limit: %v %v", err, out)
		}
		_ = ws.Close()
		waitUntil(t, 10*time.Second, openIs(0))
	})

	t.Run("oversized message", func(t *testing.T) {
		conn := rawWS(t, st.wsURL())
		msg := `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":["` + strings.Repeat("x", 8<<10) + `"]}`
		if err := conn.WriteMessage(fastws.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if code := closeCode(t, conn, 10*time.Second); code != fastws.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
		waitUntil(t, 10*time.Second, openIs(0))
	})

	t.Run("too many connections", func(t *testing.T) {
		for range 3 {
			dialClient(t, st.wsURL())
		}
		waitUntil(t, 10*time.Second, openIs(3))
		_, err := client.DialWS(context.Background(), st.wsURL())
		var rerr *client.Error
		if !errors.As(err, &rerr) || rerr.Status != http.StatusServiceUnavailable || rerr.Code != client.CodeOverloaded {
			t.Fatalf("fourth connection: %v, want a 503 with -32005", err)
		}
	})
}

// TestWSSlowReader: clients that send calls but stop reading the answers. The
// edge queues at most STREAMRPC_WS_WRITE_QUEUE bytes of answers per
// connection, then closes it with 4008; a client that never reads again is
// dropped once a write has been blocked for STREAMRPC_WS_WRITE_TIMEOUT.
func TestWSSlowReader(t *testing.T) {
	const writeTimeout = 3 * time.Second
	st := newStack(t, stackOptions{
		edge:     app.Config{WSWriteQueue: 256 << 10, WSWriteTimeout: writeTimeout},
		consumer: consumers.Config{Concurrency: 64},
	})
	// Each answer is 32 KiB: the echo of its params.
	msg := []byte(`{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":["` + strings.Repeat("x", 32<<10) + `"]}`)
	flood := func(t *testing.T, conn *fastws.Conn, slowClosed int64) {
		t.Helper()
		stop := make(chan struct{})
		done := make(chan int, 1)
		go func() {
			n := 0
			defer func() { done <- n }()
			for ; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if conn.WriteMessage(fastws.TextMessage, msg) != nil {
					return
				}
			}
		}()
		waitUntil(t, 60*time.Second, func() error {
			if s := st.edge.WebSockets().SlowClosed; s != slowClosed {
				return fmt.Errorf("%d connections closed for slow reading, want %d", s, slowClosed)
			}
			return nil
		})
		close(stop)
		t.Logf("%d calls sent before the edge gave up on the reader", <-done)
	}

	t.Run("resumes reading: sees 4008", func(t *testing.T) {
		conn := rawWS(t, st.wsURL())
		flood(t, conn, 1)
		if code := closeCode(t, conn, 30*time.Second); code != app.CloseSlowReader {
			t.Fatalf("close code %d, want %d", code, app.CloseSlowReader)
		}
	})
	t.Run("never reads again: dropped", func(t *testing.T) {
		conn := rawWS(t, st.wsURL())
		flood(t, conn, 2)
		start := time.Now()
		waitUntil(t, writeTimeout+10*time.Second, func() error {
			if o := st.edge.WebSockets().Open; o != 0 {
				return fmt.Errorf("%d connections open", o)
			}
			return nil
		})
		t.Logf("dropped %s after the overflow", time.Since(start).Round(time.Millisecond))
	})
	waitUntil(t, 30*time.Second, func() error {
		if w := st.edge.Waiting(); w != 0 {
			return fmt.Errorf("edge still waits on %d calls", w)
		}
		return nil
	})
}

// TestWSDisconnectMidCall: a client that goes away with calls in flight. The
// edge stops waiting on them at once (their results stay readable by id).
func TestWSDisconnectMidCall(t *testing.T) {
	st := newStack(t, stackOptions{
		edge:     app.Config{WSPingInterval: 300 * time.Millisecond, WSPongTimeout: 700 * time.Millisecond},
		consumer: consumers.Config{Concurrency: 32},
	})
	const calls = 10
	const sleepMS = 4000
	startCalls := func(t *testing.T, conn *fastws.Conn) {
		t.Helper()
		for i := range calls {
			msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"echo.sleep","params":{"ms":%d}}`, i, sleepMS)
			if err := conn.WriteMessage(fastws.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, 10*time.Second, func() error {
			if w := st.edge.Waiting(); w != calls {
				return fmt.Errorf("edge waits on %d calls, want %d", w, calls)
			}
			return nil
		})
	}
	freed := func(t *testing.T, start time.Time) {
		t.Helper()
		waitUntil(t, sleepMS*time.Millisecond/2, func() error {
			if w, s := st.edge.Waiting(), st.edge.WebSockets(); w != 0 || s.Open != 0 || s.InFlight != 0 {
				return fmt.Errorf("edge waits on %d calls; %d sockets open, %d calls in flight on them", w, s.Open, s.InFlight)
			}
			return nil
		})
		t.Logf("freed %s after the disconnect", time.Since(start).Round(time.Millisecond))
	}

	t.Run("connection dropped", func(t *testing.T) {
		conn := rawWS(t, st.wsURL())
		startCalls(t, conn)
		start := time.Now()
		_ = conn.NetConn().Close() // no close handshake
		freed(t, start)
	})
	t.Run("peer silent", func(t *testing.T) {
		// The connection stays up but the client neither reads (so it never
		// answers a ping) nor sends: the edge declares it dead.
		conn := rawWS(t, st.wsURL())
		startCalls(t, conn)
		freed(t, time.Now())
	})
}

// jsonrpcThreeDoorsSameResult: the same call through POST /rpc, POST /jsonrpc and
// GET /ws gives the same result, byte for byte, or the same error. A case of TestTopologies.
func jsonrpcThreeDoorsSameResult(t *testing.T, tp *topology) {
	st := tp.newStack(t, stackOptions{})
	ws := dialClient(t, st.wsURL())
	httpClient := client.New(st.url)
	cases := []struct {
		name, method, params string
	}{
		{"object", "echo", `{"a":1,"b":[true,false,null]}`},
		{"whitespace and unicode kept", "echo", "{ \"s\" :\t\"héllo 🚀 \\u00e9\" , \"n\": 1.50e3 }"},
		{"array", "echo", `[1,"two",{"three":3}]`},
		{"computed result", "sleep", `{"ms":5}`},
		{"handler error", "fail", `{"message":"card declined"}`},
		{"invalid params", "sleep", `{"ms":"soon"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			viaRPC := post(t, st.url, "/rpc/echo/"+tc.method, []byte(tc.params), nil)

			status, b := jsonrpcHTTP(t, st, `{"jsonrpc":"2.0","id":"x","method":"echo.`+tc.method+`","params":`+tc.params+`}`)
			var viaJSONRPC rpcAnswer
			if status != http.StatusOK || json.Unmarshal(b, &viaJSONRPC) != nil {
				t.Fatalf("POST /jsonrpc: %d %s", status, b)
			}

			var viaWS json.RawMessage
			wsErr := ws.Call(ctx, "echo."+tc.method, json.RawMessage(tc.params), &viaWS)

			var viaClient json.RawMessage
			clientErr := httpClient.Call(ctx, "echo", tc.method, json.RawMessage(tc.params), &viaClient)

			if viaRPC.Error == nil {
				for door, got := range map[string][]byte{"POST /jsonrpc": viaJSONRPC.Result, "GET /ws": viaWS, "client.Call": viaClient} {
					if !bytes.Equal(got, viaRPC.Result) {
						t.Errorf("%s: result %s, POST /rpc gave %s", door, got, viaRPC.Result)
					}
				}
				if wsErr != nil || clientErr != nil || viaJSONRPC.Error != nil {
					t.Errorf("errors: ws %v, client %v, jsonrpc %+v", wsErr, clientErr, viaJSONRPC.Error)
				}
				return
			}
			want, _ := json.Marshal(viaRPC.Error)
			got, _ := json.Marshal(viaJSONRPC.Error)
			if !bytes.Equal(got, want) {
				t.Errorf("POST /jsonrpc: error %s, POST /rpc gave %s", got, want)
			}
			for door, err := range map[string]error{"GET /ws": wsErr, "client.Call": clientErr} {
				var rerr *client.Error
				if !errors.As(err, &rerr) || rerr.Code != viaRPC.Error.Code || rerr.Message != viaRPC.Error.Message || !bytes.Equal(rerr.Data, viaRPC.Error.Data) {
					t.Errorf("%s: error %v, POST /rpc gave %s", door, err, want)
				}
			}
		})
	}
}
