package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/consumers"
)

// streamEvent is one Server-Sent Event as a caller reads it.
type streamEvent struct {
	id, event string
	data      string
}

// readSSE reads events from r until the stream ends.
func readSSE(t testing.TB, r io.Reader) []streamEvent {
	t.Helper()
	var out []streamEvent
	var cur streamEvent
	var data []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" || len(data) > 0 {
				cur.data = strings.Join(data, "\n")
				out = append(out, cur)
			}
			cur, data = streamEvent{}, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// postSSE calls path with Accept: text/event-stream and returns the events.
func postSSE(t testing.TB, url, path, body string) (*http.Response, []streamEvent) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(res.Body)
		return res, []streamEvent{{event: "http", data: string(b)}}
	}
	return res, readSSE(t, res.Body)
}

// checkPartials checks that events are n partials {"i":1..n} in order, then
// the result want.
func checkPartials(t testing.TB, events []streamEvent, n int, want string) {
	t.Helper()
	if len(events) != n+1 {
		t.Fatalf("%d events, want %d partials and a result; last: %+v", len(events), n, events[len(events)-1])
	}
	for i, ev := range events[:n] {
		if ev.event != "partial" || ev.data != fmt.Sprintf(`{"i":%d}`, i+1) || ev.id != fmt.Sprintf("1-%d", i+1) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	if last := events[n]; last.event != "result" || last.data != want {
		t.Fatalf("last event %+v, want result %s", last, want)
	}
}

// TestStreamSSE: a call with Accept: text/event-stream gets 1,000 partials
// in order, each with its id, then the result; without the header the same
// call answers the result alone.
func TestStreamSSE(t *testing.T) {
	st := newStack(t, stackOptions{})
	res, events := postSSE(t, st.url, "/rpc/echo/count", `{"n":1000,"partial":true}`)
	if res.StatusCode != 200 || res.Header.Get("X-Request-Id") == "" {
		t.Fatalf("status %d, headers %v", res.StatusCode, res.Header)
	}
	checkPartials(t, events, 1000, `{"counted":1000}`)

	plain := post(t, st.url, "/rpc/echo/count", []byte(`{"n":50,"partial":true}`), nil)
	if plain.status != 200 || string(plain.Result) != `{"counted":50}` {
		t.Fatalf("without Accept: %d %s", plain.status, plain.body)
	}

	t.Run("refused before queueing answers JSON", func(t *testing.T) {
		res, events := postSSE(t, st.url, "/rpc/nobody/count", `{}`)
		if res.StatusCode != 404 || len(events) != 1 || !strings.Contains(events[0].data, `"code":-32601`) {
			t.Fatalf("status %d, %+v", res.StatusCode, events)
		}
	})
	t.Run("progress is coalesced, the last value arrives", func(t *testing.T) {
		_, events := postSSE(t, st.url, "/rpc/echo/count", `{"n":500}`)
		if len(events) < 2 || events[len(events)-2].data != `{"i":500}` || events[len(events)-1].event != "result" {
			t.Fatalf("events: %d, last two %+v", len(events), events[max(0, len(events)-2):])
		}
		for _, ev := range events[:len(events)-1] {
			if ev.event != "progress" {
				t.Fatalf("event %+v", ev)
			}
		}
	})
}

// wsMessage is a JSON-RPC message a WebSocket caller reads.
type wsMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		ID      json.RawMessage `json:"id"`
		Kind    string          `json:"kind"`
		Seq     string          `json:"seq"`
		Value   json.RawMessage `json:"value"`
		Attempt int             `json:"attempt"`
	} `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// readWSUntilAnswer reads messages until the response to id, returning the
// $/progress notifications for id before it and the response.
func readWSUntilAnswer(t testing.TB, conn *fastws.Conn, id string) ([]wsMessage, wsMessage) {
	t.Helper()
	var progress []wsMessage
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		switch {
		case m.Method == "$/progress" && string(m.Params.ID) == id:
			progress = append(progress, m)
		case m.Method == "" && string(m.ID) == id:
			return progress, m
		}
	}
}

// TestStreamWS: $/progress notifications keyed by the JSON-RPC id, 1,000
// partials in order, then the response; none with "_meta":{"progress":false}
// or on a socket opened with ?progress=false.
func TestStreamWS(t *testing.T) {
	st := newStack(t, stackOptions{})
	conn := rawWS(t, st.wsURL())
	send(t, conn, `{"jsonrpc":"2.0","id":"a","method":"echo.count","params":{"n":1000,"partial":true}}`)
	progress, answer := readWSUntilAnswer(t, conn, `"a"`)
	if string(answer.Result) != `{"counted":1000}` || len(progress) != 1000 {
		t.Fatalf("answer %s, %d notifications", answer.Result, len(progress))
	}
	for i, m := range progress {
		if m.Params.Kind != "partial" || string(m.Params.Value) != fmt.Sprintf(`{"i":%d}`, i+1) || m.Params.Seq != fmt.Sprintf("1-%d", i+1) {
			t.Fatalf("notification %d: %+v", i, m.Params)
		}
	}

	cases := []struct {
		name, query, meta string
	}{
		{"off per call", "", `,"_meta":{"progress":false}`},
		{"off per socket", "?progress=false", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := rawWS(t, st.wsURL()+tc.query)
			send(t, conn, `{"jsonrpc":"2.0","id":1,"method":"echo.count","params":{"n":20,"partial":true}`+tc.meta+`}`)
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, b, err := conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(`"result":{"counted":20}`)) {
				t.Fatalf("first message: %s", b)
			}
		})
	}
}

// startStreamingSidecar runs a sidecar (handler "app") in front of an app
// that streams: /sse answers text/event-stream, /ndjson application/x-ndjson,
// each n = ?n partials {"i":k} (the query comes in the params).
func startStreamingSidecar(t *testing.T, st *stack) {
	t.Helper()
	mux := http.NewServeMux()
	params := func(r *http.Request) (n int, result bool) {
		var p struct {
			N      int  `json:"n"`
			Result bool `json:"result"`
		}
		_ = json.NewDecoder(r.Body).Decode(&p)
		return p.N, p.Result
	}
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		n, result := params(r)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "event: partial\ndata: {\"i\":%d}\n\n", i)
			if i%100 == 0 {
				w.(http.Flusher).Flush()
			}
		}
		fmt.Fprint(w, "event: progress\ndata: {\"done\":1}\n\n")
		if result {
			fmt.Fprintf(w, "event: result\ndata: {\"counted\":%d}\n\n", n)
		}
	})
	mux.HandleFunc("POST /ndjson", func(w http.ResponseWriter, r *http.Request) {
		n, _ := params(r)
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "{\"i\":%d}\n", i)
		}
		fmt.Fprintf(w, "{\"counted\":%d}\n", n)
	})
	mux.HandleFunc("POST /sse_error", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"i\":1}\n\nevent: error\ndata: {\"code\":1001,\"message\":\"out of tokens\"}\n\n")
	})
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	side, err := consumers.NewSidecar(consumers.SidecarConfig{
		UpstreamURL: app.URL, Methods: consumers.MethodList{{Name: "sse"}, {Name: "ndjson"}, {Name: "sse_error"}},
		UpstreamTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(side.Close)
	st.startConsumer(t, consumers.Config{Handler: "app"}, side)
}

// TestStreamSidecar: an app behind the sidecar that answers an event stream
// or NDJSON streams 1,000 partials in order to an SSE caller; the last line
// (NDJSON) or "event: result" (SSE) is the result; "event: error" ends it.
func TestStreamSidecar(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	startStreamingSidecar(t, st)
	cases := []struct {
		name, path, body string
	}{
		{"sse with event: result", "/rpc/app/sse", `{"n":1000,"result":true}`},
		{"ndjson, the last line is the result", "/rpc/app/ndjson", `{"n":1000}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, events := postSSE(t, st.url, tc.path, tc.body)
			// The SSE app's progress value arrives after the partials.
			if tc.path == "/rpc/app/sse" {
				if len(events) < 2 || events[len(events)-2].event != "progress" {
					t.Fatalf("no progress before the result: %+v", events[max(0, len(events)-3):])
				}
				events = append(events[:len(events)-2], events[len(events)-1])
			}
			checkPartials(t, events, 1000, `{"counted":1000}`)
		})
	}
	t.Run("ndjson: a single line is the result", func(t *testing.T) {
		_, events := postSSE(t, st.url, "/rpc/app/ndjson", `{"n":0}`)
		if len(events) != 1 || events[0].event != "result" || events[0].data != `{"counted":0}` {
			t.Fatalf("events %+v", events)
		}
	})
	t.Run("event: error ends the call", func(t *testing.T) {
		_, events := postSSE(t, st.url, "/rpc/app/sse_error", `{}`)
		if len(events) != 1 || events[0].event != "error" || !strings.Contains(events[0].data, `"code":1001`) {
			t.Fatalf("events %+v", events)
		}
	})
}
