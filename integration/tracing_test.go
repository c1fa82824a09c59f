package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// A caller's trace context: trace id and span id of its own span.
const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID  = "00f067aa0ba902b7"
	callerParent  = "00-" + callerTraceID + "-" + callerSpanID + "-01"
)

// spanIDs is what the traced handler answers: the span its context carries.
type spanIDs struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// recorded waits for the ended span with id in rec and returns it.
func recorded(t *testing.T, rec *tracetest.SpanRecorder, id trace.SpanID) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	waitUntil(t, 10*time.Second, func() error {
		for _, s := range rec.Ended() {
			if s.SpanContext().SpanID() == id {
				found = s
				return nil
			}
		}
		return fmt.Errorf("no ended span %s among %d", id, len(rec.Ended()))
	})
	return found
}

// TestTraceSpansEdgeToHandler: one trace spans caller → edge → stream →
// handler. The edge's server span is the child of the caller's traceparent
// (HTTP header, or the WebSocket upgrade's), the handler's span is the
// child of the edge's, and the handler's context carries it. Edge and
// consumer have tracer providers of their own: the context can only have
// travelled in the call's envelope, through Redis.
func TestTraceSpansEdgeToHandler(t *testing.T) {
	edgeRec, handlerRec := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	edgeTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(edgeRec))
	handlerTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(handlerRec))
	t.Cleanup(func() { _ = edgeTP.Shutdown(context.Background()); _ = handlerTP.Shutdown(context.Background()) })

	st := newStack(t, stackOptions{edge: app.Config{TracerProvider: edgeTP}, noConsume: true})
	mux := consumers.NewMux()
	mux.HandleFunc("span", func(ctx context.Context, _ *consumers.Request) (any, error) {
		sc := trace.SpanContextFromContext(ctx)
		return spanIDs{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String()}, nil
	})
	st.startConsumer(t, consumers.Config{Handler: "traced", TracerProvider: handlerTP}, mux)

	callerTrace, _ := trace.TraceIDFromHex(callerTraceID)
	callerSpan, _ := trace.SpanIDFromHex(callerSpanID)
	cases := []struct {
		name string
		call func(t *testing.T) spanIDs
		// withCaller: the caller sent a traceparent; else the edge starts the trace.
		withCaller bool
	}{
		{name: "http with traceparent", withCaller: true, call: func(t *testing.T) spanIDs {
			r := post(t, st.url, "/rpc/traced/span", nil, map[string]string{"traceparent": callerParent, "tracestate": "vendor=x"})
			return decodeSpan(t, r)
		}},
		{name: "http starts the trace", call: func(t *testing.T) spanIDs {
			return decodeSpan(t, post(t, st.url, "/rpc/traced/span", nil, nil))
		}},
		{name: "jsonrpc over http", withCaller: true, call: func(t *testing.T) spanIDs {
			r := post(t, st.url, "/jsonrpc", []byte(`{"jsonrpc":"2.0","id":1,"method":"traced.span"}`), map[string]string{"traceparent": callerParent})
			return decodeSpan(t, r)
		}},
		{name: "async call", withCaller: true, call: func(t *testing.T) spanIDs {
			a := post(t, st.url, "/rpc/traced/span", nil, map[string]string{"traceparent": callerParent, "Prefer": "respond-async"})
			if a.status != http.StatusAccepted {
				t.Fatalf("async call: %d %s", a.status, a.body)
			}
			return decodeSpan(t, get(t, st.url+"/rpc/calls/"+a.requestID+"?wait=10s"))
		}},
		{name: "websocket upgrade header", withCaller: true, call: func(t *testing.T) spanIDs {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, _, err := fastws.DefaultDialer.DialContext(ctx, st.wsURL(), http.Header{"Traceparent": {callerParent}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			var r response
			if err := json.Unmarshal(wsExchange(t, conn, `{"jsonrpc":"2.0","id":1,"method":"traced.span"}`), &r); err != nil {
				t.Fatal(err)
			}
			return decodeSpan(t, &r)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.call(t)
			traceID, err := trace.TraceIDFromHex(got.TraceID)
			if err != nil || !traceID.IsValid() {
				t.Fatalf("the handler's context carries no span: %+v", got)
			}
			if tc.withCaller && traceID != callerTrace {
				t.Fatalf("handler trace %s, want the caller's %s", traceID, callerTrace)
			}
			spanID, err := trace.SpanIDFromHex(got.SpanID)
			if err != nil {
				t.Fatal(err)
			}
			// The handler's context carries its run's span, whose parent is the edge's.
			handlerSpan := recorded(t, handlerRec, spanID)
			edgeSpan := recorded(t, edgeRec, handlerSpan.Parent().SpanID())
			for _, s := range []sdktrace.ReadOnlySpan{handlerSpan, edgeSpan} {
				if s.Name() != "traced/span" || s.SpanContext().TraceID() != traceID {
					t.Errorf("span %q in trace %s, want traced/span in %s", s.Name(), s.SpanContext().TraceID(), traceID)
				}
			}
			if edgeSpan.SpanKind() != trace.SpanKindServer {
				t.Errorf("edge span kind %s, want server", edgeSpan.SpanKind())
			}
			switch {
			case tc.withCaller && edgeSpan.Parent().SpanID() != callerSpan:
				t.Errorf("edge span's parent %s, want the caller's span %s", edgeSpan.Parent().SpanID(), callerSpan)
			case !tc.withCaller && edgeSpan.Parent().IsValid():
				t.Errorf("edge span has parent %s, want a root span", edgeSpan.Parent().SpanID())
			}
			if !handlerSpan.Parent().IsRemote() || handlerSpan.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("handler span's parent is not remote (%v) or its kind %s is not consumer", handlerSpan.Parent().IsRemote(), handlerSpan.SpanKind())
			}
		})
	}
}

func decodeSpan(t *testing.T, r *response) spanIDs {
	t.Helper()
	var ids spanIDs
	if r.Error != nil || json.Unmarshal(r.Result, &ids) != nil {
		t.Fatalf("call answered %d %s", r.status, r.body)
	}
	return ids
}

// TestTracePassesThroughWithTracingOff: with no OTEL_* and no
// TracerProvider anywhere, the caller's trace context still reaches the Go
// handler's context and the sidecar's upstream request: over HTTP, in a
// JSON-RPC batch, and per call on one WebSocket (_meta.traceparent).
func TestTracePassesThroughWithTracingOff(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	mux := consumers.NewMux()
	mux.HandleFunc("span", func(ctx context.Context, _ *consumers.Request) (any, error) {
		sc := trace.SpanContextFromContext(ctx)
		return spanIDs{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String()}, nil
	})
	st.startConsumer(t, consumers.Config{Handler: "traced"}, mux)
	up := newFakeUpstream(t)
	startSidecar(t, st, up.URL, consumers.Config{})

	const otherTrace = "0af7651916cd43dd8448eb211c80319c"
	parent := func(traceID string) string { return "00-" + traceID + "-" + callerSpanID + "-01" }
	t.Run("Go handler over HTTP", func(t *testing.T) {
		r := post(t, st.url, "/rpc/traced/span", nil, map[string]string{"traceparent": callerParent})
		if got := decodeSpan(t, r); got.TraceID != callerTraceID || got.SpanID != callerSpanID {
			t.Fatalf("handler saw %+v, want the caller's trace %s, parent %s", got, callerTraceID, callerSpanID)
		}
	})
	t.Run("sidecar upstream over HTTP", func(t *testing.T) {
		r := post(t, st.url, "/rpc/app/echo", []byte(`{"x":1}`), map[string]string{"traceparent": callerParent, "tracestate": "vendor=x"})
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		h := up.headers()
		last := h[len(h)-1]
		if got := last.Get("traceparent"); !strings.Contains(got, callerTraceID) {
			t.Fatalf("upstream got traceparent %q, want the caller's trace %s", got, callerTraceID)
		}
		if got := last.Get("tracestate"); got != "vendor=x" {
			t.Fatalf("upstream got tracestate %q, want vendor=x", got)
		}
	})
	t.Run("JSON-RPC batch", func(t *testing.T) {
		status, b := jsonrpcHTTPWith(t, st, `[{"jsonrpc":"2.0","id":1,"method":"traced.span"},`+
			`{"jsonrpc":"2.0","id":2,"method":"traced.span","_meta":{"traceparent":"`+parent(otherTrace)+`"}}]`,
			map[string]string{"traceparent": callerParent})
		if status != 200 {
			t.Fatalf("%d %s", status, b)
		}
		var answers []struct {
			ID     int     `json:"id"`
			Result spanIDs `json:"result"`
		}
		if err := json.Unmarshal(b, &answers); err != nil || len(answers) != 2 {
			t.Fatalf("answer %s: %v", b, err)
		}
		want := map[int]string{1: callerTraceID, 2: otherTrace} // _meta wins over the header
		for _, a := range answers {
			if a.Result.TraceID != want[a.ID] {
				t.Fatalf("call %d saw trace %s, want %s", a.ID, a.Result.TraceID, want[a.ID])
			}
		}
	})
	t.Run("two calls on one WebSocket, different traces", func(t *testing.T) {
		hdr := http.Header{"Traceparent": {callerParent}}
		conn, _, err := fastws.DefaultDialer.Dial(st.wsURL(), hdr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		const third = "11111111111111111111111111111111"
		msgs := map[int]string{
			1: `{"jsonrpc":"2.0","id":1,"method":"traced.span","_meta":{"traceparent":"` + parent(otherTrace) + `"}}`,
			2: `{"jsonrpc":"2.0","id":2,"method":"traced.span","_meta":{"traceparent":"` + parent(third) + `"}}`,
			3: `{"jsonrpc":"2.0","id":3,"method":"traced.span"}`, // the upgrade's
		}
		want := map[int]string{1: otherTrace, 2: third, 3: callerTraceID}
		for _, m := range msgs {
			if err := conn.WriteMessage(fastws.TextMessage, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		for range msgs {
			var a struct {
				ID     int     `json:"id"`
				Result spanIDs `json:"result"`
			}
			if err := json.Unmarshal(wsRead(t, conn), &a); err != nil {
				t.Fatal(err)
			}
			if a.Result.TraceID != want[a.ID] {
				t.Fatalf("call %d saw trace %s, want %s", a.ID, a.Result.TraceID, want[a.ID])
			}
		}
	})
}

// jsonrpcHTTPWith posts body to /jsonrpc with extra headers.
func jsonrpcHTTPWith(t *testing.T, st *stack, body string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, st.url+"/jsonrpc", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := httpClient.Do(req)
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

// A caller's X-Request-Id is kept as the call's correlation id: in the
// story and on the handler's Request, over POST /rpc, POST /jsonrpc and
// every call of a WebSocket whose upgrade sent it; the call id stays the edge's.
func TestCallerRequestIDKept(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	mux := consumers.NewMux()
	mux.HandleFunc("rid", func(_ context.Context, req *consumers.Request) (any, error) { return req.RequestID, nil })
	st.startConsumer(t, consumers.Config{Handler: "corr"}, mux)
	cases := []struct {
		name, sent, want string
	}{
		{"kept", "caller-abc-123", "caller-abc-123"},
		{"too long: dropped", strings.Repeat("x", 129), ""},
		{"none", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.sent != "" {
				h["X-Request-Id"] = tc.sent
			}
			r := post(t, st.url, "/rpc/corr/rid", nil, h)
			if r.status != 200 || string(r.Result) != fmt.Sprintf("%q", tc.want) {
				t.Fatalf("handler saw %s (%d), want %q", r.Result, r.status, tc.want)
			}
			if r.requestID == tc.sent || !strings.HasPrefix(r.requestID, "corr.") {
				t.Fatalf("X-Request-Id answered %q: the call id must stay the edge's", r.requestID)
			}
			if status, b := jsonrpcHTTPWith(t, st, `{"jsonrpc":"2.0","id":1,"method":"corr.rid"}`, h); status != 200 || !strings.Contains(string(b), fmt.Sprintf(`"result":%q`, tc.want)) {
				t.Fatalf("over /jsonrpc the handler saw %s, want %q", b, tc.want)
			}
			// On a WebSocket, the upgrade's X-Request-Id is that of every
			// call on it.
			hdr := http.Header{}
			if tc.sent != "" {
				hdr.Set("X-Request-Id", tc.sent)
			}
			conn, _, err := fastws.DefaultDialer.Dial(st.wsURL(), hdr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			for id := 1; id <= 2; id++ {
				if err := conn.WriteMessage(fastws.TextMessage, fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"corr.rid"}`, id)); err != nil {
					t.Fatal(err)
				}
				_, b, err := conn.ReadMessage()
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), fmt.Sprintf(`"result":%q`, tc.want)) {
					t.Fatalf("call %d over /ws: the handler saw %s, want %q", id, b, tc.want)
				}
			}
			waitUntil(t, 10*time.Second, func() error {
				var story struct {
					Story []streams.StoryEvent `json:"story"`
				}
				g := get(t, st.url+"/rpc/calls/"+r.requestID)
				if err := json.Unmarshal(g.body, &story); err != nil || len(story.Story) == 0 {
					return fmt.Errorf("no story yet: %s", g.body)
				}
				if got := story.Story[0]; got.Event != "queued" || got.RequestID != tc.want {
					return fmt.Errorf("queued event %+v, want request_id %q", got, tc.want)
				}
				return nil
			})
		})
	}
}
