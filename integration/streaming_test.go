package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
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

// processEchoStack is an edge in this process and the example echo consumer
// as an OS process.
func processEchoStack(t *testing.T) *stack {
	t.Helper()
	st := newStack(t, stackOptions{noConsume: true})
	st.echoConsumer(t, "a")
	waitForEcho(t, st.url)
	return st
}

// TestStreamSSE: a call with Accept: text/event-stream gets 1,000 partials
// in order, each with its id, then the result; without the header the same
// call answers the result alone. The consumer is the example echo process.
func TestStreamSSE(t *testing.T) {
	st := processEchoStack(t)
	res, events := postSSE(t, st.url, "/rpc/echo/count", `{"n":1000,"partial":true}`)
	if res.StatusCode != 200 || res.Header.Get("X-Request-Id") == "" {
		t.Fatalf("status %d, headers %v", res.StatusCode, res.Header)
	}
	checkPartials(t, events, 1000, `{"counted":1000}`)

	t.Run("the story and the call page count what was streamed", func(t *testing.T) {
		id := res.Header.Get("X-Request-Id")
		waitUntil(t, 10*time.Second, func() error {
			st := get(t, st.url+"/rpc/calls/"+id)
			if !bytes.Contains(st.body, []byte(`"event":"finished"`)) || !bytes.Contains(st.body, []byte(`"partials":1000`)) {
				return fmt.Errorf("story: %s", st.body)
			}
			return nil
		})
		page, err := httpClient.Get(st.url + "/ui/calls/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer page.Body.Close()
		html, _ := io.ReadAll(page.Body)
		if !bytes.Contains(html, []byte("streamed: 1000 partials, 0 progress")) {
			t.Fatalf("the call page does not say what was streamed")
		}
	})

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
	st := processEchoStack(t)
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

// streamingApp is an app that streams, for a sidecar: /sse answers
// text/event-stream, /ndjson application/x-ndjson, each {"n":N} partials
// {"i":k} then {"counted":N}; /sse_error a partial then an error event.
func streamingApp(t *testing.T) *httptest.Server {
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
	return app
}

// sidecarProcess runs `streamrpc consumer` for handler "app" in front of the
// streaming app at upstream, and waits until it serves.
func (st *stack) sidecarProcess(t *testing.T, upstream string) {
	t.Helper()
	startProcess(t, binary(t, "streamrpc"), []string{
		"REDIS_URL=" + st.redis.URL, "STREAMRPC_HANDLER=app", "STREAMRPC_UPSTREAM_URL=" + upstream,
		"STREAMRPC_METHODS=sse,ndjson,sse_error", "STREAMRPC_HEALTH_ADDR=" + freeAddr(t), "STREAMRPC_UPSTREAM_TIMEOUT=30s",
	}, "consumer")
	waitUntil(t, 30*time.Second, func() error {
		if o := rawCall(st.url, "/rpc/app/ndjson", []byte(`{"n":0}`)); o.err != nil || o.status != 200 {
			return fmt.Errorf("%d %s %v", o.status, o.body, o.err)
		}
		return nil
	})
}

// TestStreamSidecar: an app behind the sidecar that answers an event stream
// or NDJSON streams 1,000 partials in order to an SSE caller; the last line
// (NDJSON) or "event: result" (SSE) is the result; "event: error" ends it.
func TestStreamSidecar(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	app := streamingApp(t)
	st.sidecarProcess(t, app.URL)
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

// TestStreamKilledMidStream kills the consumer (SIGKILL) in the middle of a
// stream: another consumer claims the call and runs it again, and the caller
// is told with a restart notification (attempt 2) before the new attempt's
// progress, never a silent mix of two attempts; then it gets the result.
func TestStreamKilledMidStream(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	vt := "STREAMRPC_VISIBILITY_TIMEOUT=1s"
	a := st.echoConsumer(t, "a", vt)
	waitForEcho(t, st.url)
	conn := rawWS(t, st.wsURL())
	send(t, conn, `{"jsonrpc":"2.0","id":9,"method":"echo.count","params":{"n":40,"ms":100,"partial":true}}`)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for seen := 0; seen < 3; { // a few partials of attempt 1
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(`"kind":"partial"`)) {
			seen++
		}
	}
	a.signal(t, syscall.SIGKILL, 10*time.Second)
	st.echoConsumer(t, "b", vt)
	progress, answer := readWSUntilAnswer(t, conn, "9")
	if string(answer.Result) != `{"counted":40}` {
		t.Fatalf("answer %+v", answer)
	}
	restart := -1
	for i, m := range progress {
		if m.Params.Kind == "restart" {
			if restart >= 0 || m.Params.Attempt != 2 {
				t.Fatalf("restart notification %d: %+v (first at %d)", i, m.Params, restart)
			}
			restart = i
		}
	}
	if restart < 0 {
		t.Fatalf("no restart notification among %d", len(progress))
	}
	after := progress[restart+1:]
	if len(after) != 40 {
		t.Fatalf("%d partials after the restart, want attempt 2's 40", len(after))
	}
	for i, m := range after {
		if m.Params.Seq != fmt.Sprintf("2-%d", i+1) || string(m.Params.Value) != fmt.Sprintf(`{"i":%d}`, i+1) {
			t.Fatalf("partial %d after the restart: %+v", i, m.Params)
		}
	}
}

// TestStreamCancelMidStream: $/cancel in the middle of a stream answers the
// caller -32006 and stops the handler: the call's outcome in Redis is the
// cancellation, long before the stream would have ended.
func TestStreamCancelMidStream(t *testing.T) {
	st := processEchoStack(t)
	conn := rawWS(t, st.wsURL())
	send(t, conn, `{"jsonrpc":"2.0","id":1,"method":"echo.count","params":{"n":1000,"ms":50,"partial":true}}`)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for seen := 0; seen < 2; {
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(`"kind":"partial"`)) {
			seen++
		}
	}
	send(t, conn, `{"jsonrpc":"2.0","id":2,"method":"$/cancel","params":{"id":1}}`)
	_, answer := readWSUntilAnswer(t, conn, "1")
	var e struct {
		Code int `json:"code"`
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(answer.Error, &e); err != nil || e.Code != streams.CodeCancelled || e.Data.ID == "" {
		t.Fatalf("answer %s", answer.Error)
	}
	sc := st.streamsClient(t)
	cancelled := func(t *testing.T, id string) {
		waitUntil(t, 10*time.Second, func() error { // the handler stopped: its outcome is settled
			r, err := sc.Result(context.Background(), id)
			if err != nil {
				return err
			}
			if r.OK || r.Err().Code != streams.CodeCancelled {
				return fmt.Errorf("outcome %s", r.Body)
			}
			return nil
		})
	}
	cancelled(t, e.Data.ID)

	t.Run("DELETE an async call mid-stream", func(t *testing.T) {
		r := post(t, st.url, "/rpc/echo/count", []byte(`{"n":1000,"ms":50,"partial":true}`), map[string]string{"Prefer": "respond-async"})
		waitUntil(t, 10*time.Second, func() error {
			if evs, err := sc.CallEvents(context.Background(), r.requestID, "", 10); err != nil || len(evs) < 2 {
				return fmt.Errorf("%d events (%v)", len(evs), err)
			}
			return nil
		})
		req, _ := http.NewRequest(http.MethodDelete, st.url+"/rpc/calls/"+r.requestID, nil)
		if res := do(t, req); res.status != 202 || !bytes.Contains(res.body, []byte(`"cancelling"`)) {
			t.Fatalf("DELETE: %d %s", res.status, res.body)
		}
		cancelled(t, r.requestID)
	})
}

// TestStreamSlowReader: callers that read nothing until the call is over
// (its result settled in Redis) still get every partial, in order: the edge
// keeps them for the caller, a WebSocket is not closed as a slow reader (its
// write queue is small here) and the reply reader serves other calls.
func TestStreamSlowReader(t *testing.T) {
	st := newStack(t, stackOptions{edge: app.Config{WSWriteQueue: 64 << 10}})
	sc := st.streamsClient(t)
	const n, pad = 1000, 1024
	body := fmt.Sprintf(`{"n":%d,"partial":true,"pad":%d}`, n, pad)
	settled := func(t *testing.T, id string) {
		waitUntil(t, 30*time.Second, func() error {
			_, err := sc.Result(context.Background(), id)
			return err
		})
	}
	t.Run("sse", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, st.url+"/rpc/echo/count", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		settled(t, res.Header.Get("X-Request-Id"))
		// Meanwhile the edge answers others at once.
		if r := post(t, st.url, "/rpc/echo/echo", []byte(`{"x":1}`), nil); r.status != 200 {
			t.Fatalf("another call: %d %s", r.status, r.body)
		}
		events := readSSE(t, res.Body)
		if len(events) != n+1 || events[n].data != fmt.Sprintf(`{"counted":%d}`, n) {
			t.Fatalf("%d events", len(events))
		}
		for i, ev := range events[:n] {
			if ev.id != fmt.Sprintf("1-%d", i+1) || !strings.HasPrefix(ev.data, fmt.Sprintf(`{"i":%d,`, i+1)) {
				t.Fatalf("event %d: %s %.40s", i, ev.id, ev.data)
			}
		}
	})
	t.Run("websocket", func(t *testing.T) {
		countRuns := func() int64 {
			for _, m := range st.consumer.Stats().Methods {
				if m.Method == "count" {
					return m.Calls
				}
			}
			return 0
		}
		before := countRuns()
		conn := rawWS(t, st.wsURL())
		send(t, conn, `{"jsonrpc":"2.0","id":1,"method":"echo.count","params":`+body+`}`)
		// The call's id is not on the socket until it is answered: wait
		// until its handler has run and nothing is left to settle instead.
		waitUntil(t, 30*time.Second, func() error {
			if n, err := sc.Backlog(context.Background(), "echo"); err != nil || n != 0 || countRuns() != before+1 {
				return fmt.Errorf("backlog %d (%v), %d runs", n, err, countRuns()-before)
			}
			return nil
		})
		progress, answer := readWSUntilAnswer(t, conn, "1")
		if string(answer.Result) != fmt.Sprintf(`{"counted":%d}`, n) || len(progress) != n {
			t.Fatalf("answer %s %s, %d partials", answer.Result, answer.Error, len(progress))
		}
		for i, m := range progress {
			if m.Params.Seq != fmt.Sprintf("1-%d", i+1) {
				t.Fatalf("partial %d: %s", i, m.Params.Seq)
			}
		}
	})
}

// TestStreamConcurrent: 100 streams at once, each gets its own 100 partials
// in order and its result.
func TestStreamConcurrent(t *testing.T) {
	st := newStack(t, stackOptions{consumer: consumers.Config{Concurrency: 100}})
	const streams, n = 100, 100
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, st.url+"/rpc/echo/count", strings.NewReader(fmt.Sprintf(`{"n":%d,"partial":true}`, n+i)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "text/event-stream")
			res, err := httpClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			events := readSSE(t, res.Body)
			if len(events) != n+i+1 || events[n+i].data != fmt.Sprintf(`{"counted":%d}`, n+i) {
				errs <- fmt.Errorf("stream %d: %d events", i, len(events))
				return
			}
			for k, ev := range events[:n+i] {
				if ev.data != fmt.Sprintf(`{"i":%d}`, k+1) {
					errs <- fmt.Errorf("stream %d event %d: %s", i, k, ev.data)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStreamAsyncEvents: an async call's events are read with GET
// /rpc/calls/{id}/events, then its result; Last-Event-ID resumes after an
// event while the result is kept.
func TestStreamAsyncEvents(t *testing.T) {
	st := newStack(t, stackOptions{})
	r := post(t, st.url, "/rpc/echo/count", []byte(`{"n":1000,"partial":true}`), map[string]string{"Prefer": "respond-async"})
	if r.status != 202 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	events := func(last string) []streamEvent {
		req, _ := http.NewRequest(http.MethodGet, st.url+"/rpc/calls/"+r.requestID+"/events", nil)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		return readSSE(t, res.Body)
	}
	checkPartials(t, events(""), 1000, `{"counted":1000}`)
	resumed := events("1-990")
	if len(resumed) != 11 || resumed[0].id != "1-991" || resumed[10].event != "result" {
		t.Fatalf("resumed: %+v", resumed)
	}
	t.Run("bad Last-Event-ID", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, st.url+"/rpc/calls/"+r.requestID+"/events", nil)
		req.Header.Set("Last-Event-ID", "nope")
		if res := do(t, req); res.status != 400 {
			t.Fatalf("%d %s", res.status, res.body)
		}
	})
	t.Run("unknown call", func(t *testing.T) {
		if res := get(t, st.url+"/rpc/calls/echo.01ARZ3NDEKTSV4RRFFQ69G5FAV/events"); res.status != 404 {
			t.Fatalf("%d %s", res.status, res.body)
		}
	})
}

// TestStreamGoClient: client.CallStream over HTTP and over a WebSocket gets
// every partial in order, on the caller's goroutine, then the result; a
// refused call is its *client.Error.
func TestStreamGoClient(t *testing.T) {
	st := newStack(t, stackOptions{})
	ws, err := client.DialWS(context.Background(), st.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	hc := client.New(st.url)
	calls := []struct {
		name string
		call func(ctx context.Context, params any, on func(client.Event), out any) error
	}{
		{"http", func(ctx context.Context, params any, on func(client.Event), out any) error {
			return hc.CallStream(ctx, "echo", "count", params, on, out)
		}},
		{"websocket", func(ctx context.Context, params any, on func(client.Event), out any) error {
			return ws.CallStream(ctx, "echo.count", params, on, out)
		}},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var got []client.Event
			var out struct {
				Counted int `json:"counted"`
			}
			if err := tc.call(ctx, map[string]any{"n": 1000, "partial": true}, func(e client.Event) { got = append(got, e) }, &out); err != nil {
				t.Fatal(err)
			}
			if out.Counted != 1000 || len(got) != 1000 {
				t.Fatalf("result %d, %d events", out.Counted, len(got))
			}
			for i, e := range got {
				if e.Kind != client.EventPartial || e.ID != fmt.Sprintf("1-%d", i+1) || string(e.Data) != fmt.Sprintf(`{"i":%d}`, i+1) {
					t.Fatalf("event %d: %+v", i, e)
				}
			}
			var ce *client.Error
			if err := tc.call(ctx, map[string]any{"n": -1}, nil, nil); !errors.As(err, &ce) || ce.Code != client.CodeInvalidParams {
				t.Fatalf("invalid params: %v", err)
			}
		})
	}
}

// TestStreamBounds: past StreamMaxPartials or StreamMaxPartialBytes the
// caller gets the partials sent until then and an error that names the
// setting, not a result with partials missing.
func TestStreamBounds(t *testing.T) {
	st := newStack(t, stackOptions{consumer: consumers.Config{StreamMaxPartials: 10, StreamMaxPartialBytes: 100}})
	cases := []struct {
		name, body string
		partials   int
		message    string
	}{
		{"too many partials", `{"n":20,"partial":true}`, 10, "STREAMRPC_STREAM_MAX_PARTIALS=10"},
		{"a partial too large", `{"n":3,"partial":true,"pad":200}`, 0, "STREAMRPC_STREAM_MAX_PARTIAL_BYTES=100"},
		{"within both", `{"n":10,"partial":true,"pad":50}`, 10, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, events := postSSE(t, st.url, "/rpc/echo/count", tc.body)
			last := events[len(events)-1]
			if len(events) != tc.partials+1 {
				t.Fatalf("%d events, want %d partials and the outcome; last %+v", len(events), tc.partials, last)
			}
			switch {
			case tc.message == "" && last.event != "result":
				t.Fatalf("outcome %+v", last)
			case tc.message != "" && (last.event != "error" || !strings.Contains(last.data, tc.message)):
				t.Fatalf("outcome %+v, want an error naming %s", last, tc.message)
			}
		})
	}
}

// TestStreamRetryRestarts: an attempt that streamed and then failed
// retryably is run again; the caller gets the first attempt's partials, a
// restart with attempt 2, the second attempt's partials and its result.
func TestStreamRetryRestarts(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	mux := consumers.NewMux()
	mux.HandleFunc("twice", func(_ context.Context, r *consumers.Request) (any, error) {
		for i := 1; i <= 3; i++ {
			if err := r.Partial(map[string]int{"attempt": r.Attempt, "i": i}); err != nil {
				return nil, err
			}
		}
		if r.Attempt == 1 {
			return nil, consumers.Retryable(errors.New("transient"))
		}
		return map[string]int{"attempt": r.Attempt}, nil
	})
	st.startConsumer(t, consumers.Config{Handler: "retrying", RetryBaseDelay: 20 * time.Millisecond}, mux)
	_, events := postSSE(t, st.url, "/rpc/retrying/twice", `{}`)
	var got []string
	for _, ev := range events {
		got = append(got, ev.event+" "+ev.id+" "+ev.data)
	}
	want := []string{
		`partial 1-1 {"attempt":1,"i":1}`, `partial 1-2 {"attempt":1,"i":2}`, `partial 1-3 {"attempt":1,"i":3}`,
		`restart  {"attempt":2}`,
		`partial 2-1 {"attempt":2,"i":1}`, `partial 2-2 {"attempt":2,"i":2}`, `partial 2-3 {"attempt":2,"i":3}`,
		`result  {"attempt":2}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestStreamCancelOnClose: closing a socket opened with
// ?cancel_on_close=true in the middle of a stream stops its handler.
func TestStreamCancelOnClose(t *testing.T) {
	st := newStack(t, stackOptions{})
	conn := rawWS(t, st.wsURL()+"?cancel_on_close=true")
	send(t, conn, `{"jsonrpc":"2.0","id":1,"method":"echo.count","params":{"n":1000,"ms":50,"partial":true}}`)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for seen := 0; seen < 2; {
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(`"kind":"partial"`)) {
			seen++
		}
	}
	_ = conn.Close()
	// The handler returns early with the cancellation: its run ends as an error.
	waitUntil(t, 10*time.Second, func() error {
		for _, m := range st.consumer.Stats().Methods {
			if m.Method == "count" && m.Calls == 1 && m.Errors == 1 {
				return nil
			}
		}
		return fmt.Errorf("stats %+v", st.consumer.Stats().Methods)
	})
}
