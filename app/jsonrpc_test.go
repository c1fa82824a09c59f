package app

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/streamrpc/streamrpc/streams"
)

func TestDecodeJSONRPC(t *testing.T) {
	type want struct {
		id      string // "" : nil
		handler string
		method  string
		params  string
		code    int // 0: valid
	}
	cases := []struct {
		name      string
		msg       string
		wantBatch bool
		wantErr   int // code of a whole-message error, 0 if none
		want      []want
	}{
		{"call by name", `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"a":1}}`, false, 0,
			[]want{{id: "1", handler: "echo", method: "echo", params: `{"a":1}`}}},
		{"call by position", `{"jsonrpc":"2.0","id":"x","method":"echo.echo","params":[1, 2 ,3]}`, false, 0,
			[]want{{id: `"x"`, handler: "echo", method: "echo", params: `[1, 2 ,3]`}}},
		{"params byte-exact", "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"echo.echo\",\"params\":{ \"n\" :1.50e3,\t\"s\":\"\\u00e9🚀\" }}", false, 0,
			[]want{{id: "7", handler: "echo", method: "echo", params: "{ \"n\" :1.50e3,\t\"s\":\"\\u00e9🚀\" }"}}},
		{"no params is null", `{"jsonrpc":"2.0","id":1,"method":"echo.echo"}`, false, 0,
			[]want{{id: "1", handler: "echo", method: "echo", params: "null"}}},
		{"params null is null", `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":null}`, false, 0,
			[]want{{id: "1", handler: "echo", method: "echo", params: "null"}}},
		{"id kept raw", `{"jsonrpc":"2.0","id":1.0e3,"method":"echo.echo"}`, false, 0,
			[]want{{id: "1.0e3", handler: "echo", method: "echo", params: "null"}}},
		{"id null is a call", `{"jsonrpc":"2.0","id":null,"method":"echo.echo"}`, false, 0,
			[]want{{id: "null", handler: "echo", method: "echo", params: "null"}}},
		{"notification", `{"jsonrpc":"2.0","method":"echo.echo","params":[]}`, false, 0,
			[]want{{handler: "echo", method: "echo", params: "[]"}}},
		{"dotted handler", `{"jsonrpc":"2.0","id":1,"method":"billing.v2.charge"}`, false, 0,
			[]want{{id: "1", handler: "billing.v2", method: "charge", params: "null"}}},
		{"not JSON", `{"jsonrpc":"2.0",`, false, streams.CodeParseError, nil},
		{"empty", ``, false, streams.CodeParseError, nil},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo.echo\",\"params\":[\"\xff\"]}", false, streams.CodeParseError, nil},
		{"empty batch", ` [ ] `, true, streams.CodeInvalidRequest, nil},
		{"batch over the limit", `[` + strings.Repeat(`1,`, 10) + `1]`, true, streams.CodeInvalidRequest, nil},
		{"not an object", `1`, false, 0, []want{{code: streams.CodeInvalidRequest}}},
		{"no version", `{"id":1,"method":"echo.echo"}`, false, 0, []want{{id: "1", code: streams.CodeInvalidRequest}}},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"echo.echo"}`, false, 0, []want{{id: "1", code: streams.CodeInvalidRequest}}},
		{"members are case-sensitive", `{"jsonrpc":"2.0","ID":1,"Method":"echo.echo"}`, false, 0, []want{{code: streams.CodeInvalidRequest}}},
		{"method not a string", `{"jsonrpc":"2.0","id":1,"method":1}`, false, 0, []want{{id: "1", code: streams.CodeInvalidRequest}}},
		{"id an object", `{"jsonrpc":"2.0","id":{},"method":"echo.echo"}`, false, 0, []want{{code: streams.CodeInvalidRequest}}},
		{"params a string", `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":"x"}`, false, 0, []want{{id: "1", code: streams.CodeInvalidRequest}}},
		{"method without a dot", `{"jsonrpc":"2.0","id":1,"method":"echo"}`, false, 0, []want{{id: "1", code: streams.CodeMethodNotFound}}},
		{"method ends with a dot", `{"jsonrpc":"2.0","id":1,"method":"echo."}`, false, 0, []want{{id: "1", code: streams.CodeMethodNotFound}}},
		{"reserved rpc.", `{"jsonrpc":"2.0","id":1,"method":"rpc.other"}`, false, 0, []want{{id: "1", code: streams.CodeMethodNotFound}}},
		{"bad handler name", `{"jsonrpc":"2.0","id":1,"method":"ec{ho}.echo"}`, false, 0, []want{{id: "1", code: streams.CodeInvalidRequest}}},
		{"notification of no handler.method", `{"jsonrpc":"2.0","method":"nodot"}`, false, 0, []want{{code: streams.CodeMethodNotFound}}},
		{"batch mixed", `[{"jsonrpc":"2.0","id":1,"method":"echo.echo"},1,{"jsonrpc":"2.0","method":"echo.echo"}]`, true, 0,
			[]want{{id: "1", handler: "echo", method: "echo", params: "null"}, {code: streams.CodeInvalidRequest}, {handler: "echo", method: "echo", params: "null"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reqs, batch, err := decodeJSONRPC([]byte(tc.msg), 10)
			if batch != tc.wantBatch {
				t.Errorf("batch = %v, want %v", batch, tc.wantBatch)
			}
			if tc.wantErr != 0 {
				if err == nil || err.Code != tc.wantErr {
					t.Fatalf("err = %v, want code %d", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if len(reqs) != len(tc.want) {
				t.Fatalf("%d requests, want %d", len(reqs), len(tc.want))
			}
			for i, w := range tc.want {
				r := reqs[i]
				if string(r.id) != w.id {
					t.Errorf("[%d] id = %q, want %q", i, r.id, w.id)
				}
				if w.code != 0 {
					if r.err == nil || r.err.Code != w.code {
						t.Errorf("[%d] err = %v, want code %d", i, r.err, w.code)
					}
					continue
				}
				if r.err != nil {
					t.Errorf("[%d] err = %v", i, r.err)
				}
				if r.handler != w.handler || r.method != w.method || string(r.params) != w.params {
					t.Errorf("[%d] = %s.%s(%s), want %s.%s(%s)", i, r.handler, r.method, r.params, w.handler, w.method, w.params)
				}
			}
		})
	}
}

func TestDecodeJSONRPCCopies(t *testing.T) {
	msg := []byte(`{"jsonrpc":"2.0","id":"abc","method":"echo.echo","params":{"k":"v"}}`)
	reqs, _, err := decodeJSONRPC(msg, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		msg[i] = 'x' // Fiber reuses its body buffer: nothing may point into it
	}
	if string(reqs[0].id) != `"abc"` || string(reqs[0].params) != `{"k":"v"}` {
		t.Fatalf("decoded values changed with the message: id %s params %s", reqs[0].id, reqs[0].params)
	}
}

func TestEncodeResponses(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"result", encodeResult(json.RawMessage(`"a"`), json.RawMessage(`{"x": 1}`)), `{"jsonrpc":"2.0","id":"a","result":{"x": 1}}`},
		{"error with null id", encodeError(nil, streams.NewError(-32700, "parse error")), `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`},
		{"batch leaves out notifications", encodeBatch([][]byte{[]byte(`1`), nil, []byte(`2`)}), `[1,2]`},
		{"batch of notifications only", encodeBatch([][]byte{nil, nil}), ``},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Fatalf("got %s, want %s", tc.got, tc.want)
			}
		})
	}
}

func TestJSONRPCOverHTTPWithoutRedis(t *testing.T) {
	e := newTestEdge(t, Config{MaxBody: 1024})
	cases := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantBody    string // exact, or "" to check wantCode only
		wantCode    int
	}{
		{"parse error", "application/json", `{"jsonrpc":`, 200, "", streams.CodeParseError},
		{"invalid request", "application/json", `{"jsonrpc":"2.0","id":5,"method":7}`, 200, "", streams.CodeInvalidRequest},
		{"method not found", "application/json", `{"jsonrpc":"2.0","id":"q","method":"nodot"}`, 200, "", streams.CodeMethodNotFound},
		{"redis down", "application/json", `{"jsonrpc":"2.0","id":1,"method":"echo.echo"}`, 200, "", streams.CodeUnavailable},
		{"notification only", "application/json", `{"jsonrpc":"2.0","method":"echo.echo"}`, 204, "-", 0},
		{"notification of no handler.method", "application/json", `{"jsonrpc":"2.0","method":"update","params":[1,2,3,4,5]}`, 204, "-", 0},
		{"notification of rpc.", "application/json", `{"jsonrpc":"2.0","method":"rpc.other"}`, 204, "-", 0},
		{"notification of rpc.discover", "application/json", `{"jsonrpc":"2.0","method":"rpc.discover"}`, 204, "-", 0},
		{"rpc.discover, redis down", "application/json", `{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}`, 200, "", streams.CodeUnavailable},
		{"$/cancel notification over HTTP", "application/json", `{"jsonrpc":"2.0","method":"$/cancel","params":{"id":1}}`, 204, "-", 0},
		{"batch of notifications that cannot run", "application/json", `[{"jsonrpc":"2.0","method":"notify_sum","params":[1,2,4]},{"jsonrpc":"2.0","method":"notify_hello","params":[7]}]`, 204, "-", 0},
		{"invalid request without id", "application/json", `{"jsonrpc":"2.0","method":1}`, 200,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: \"method\" must be a string"}}`, 0},
		{"wrong content type", "text/plain", `{}`, 415, "", streams.CodeUnsupportedMedia},
		{"batch of invalid entries", "application/json", `[1,2]`, 200,
			`[{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: a request must be a JSON object"}},` +
				`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: a request must be a JSON object"}}]`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/jsonrpc", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			res, err := e.Fiber().Test(req, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.wantStatus, body)
			}
			switch tc.wantBody {
			case "-":
				if len(body) != 0 {
					t.Fatalf("body %q, want none", body)
				}
				return
			case "":
			default:
				if string(body) != tc.wantBody {
					t.Fatalf("body %s\nwant %s", body, tc.wantBody)
				}
				return
			}
			var r struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   *streams.Error  `json:"error"`
			}
			if err := json.Unmarshal(body, &r); err != nil || r.JSONRPC != "2.0" || r.Error == nil || r.Error.Code != tc.wantCode {
				t.Fatalf("body %s, want a JSON-RPC error %d", body, tc.wantCode)
			}
		})
	}
}

func TestConfigValidateJSONRPC(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"max batch", Config{JSONRPCMaxBatch: -1}, "STREAMRPC_JSONRPC_MAX_BATCH"},
		{"max message", Config{WSMaxMessage: -1}, "STREAMRPC_WS_MAX_MESSAGE"},
		{"max in flight", Config{WSMaxInFlight: -1}, "STREAMRPC_WS_MAX_IN_FLIGHT"},
		{"max conns", Config{WSMaxConns: -1}, "STREAMRPC_WS_MAX_CONNS"},
		{"write queue", Config{WSWriteQueue: -1}, "STREAMRPC_WS_WRITE_QUEUE"},
		{"write timeout", Config{WSWriteTimeout: -time.Second}, "STREAMRPC_WS_WRITE_TIMEOUT"},
		{"ping interval", Config{WSPingInterval: -time.Second}, "STREAMRPC_WS_PING_INTERVAL"},
		{"pong timeout", Config{WSPongTimeout: -time.Second}, "STREAMRPC_WS_PONG_TIMEOUT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	d := Config{}.withDefaults()
	if d.JSONRPCMaxBatch <= 0 || d.WSMaxMessage <= 0 || d.WSMaxInFlight <= 0 || d.WSMaxConns <= 0 ||
		d.WSWriteQueue <= 0 || d.WSWriteTimeout <= 0 || d.WSPingInterval <= 0 || d.WSPongTimeout <= 0 {
		t.Fatalf("a JSON-RPC setting has no default: %+v", d)
	}
}

// FuzzDecodeJSONRPC checks that the decoder never panics, that every request
// it returns is either answerable as invalid or names a valid handler and
// method with structured (or null) params taken byte for byte from the
// message, and that every response built from it is valid JSON.
func FuzzDecodeJSONRPC(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":{"a":1}}`,
		`[{"jsonrpc":"2.0","id":"a","method":"echo.sleep","params":{"ms":1}},{"jsonrpc":"2.0","method":"echo.echo"}]`,
		`{"jsonrpc":"2.0","id":null,"method":"a.b.c","params":[]}`,
	} {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"a.b","params":{"s":"x\"}"},"id":2}`,
		`{ "params" : [ {"a":[1,"]"]} ] , "method":"a\u002eb", "jsonrpc":"2\u002e0", "id":-1.5e3 }`,
		`{"\u0069d":1,"jsonrpc":"2.0","method":"a.b"}`,
		`{"id":true,"jsonrpc":"2.0","method":"a.b"}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		// The one-pass scanner must read every request as encoding/json does.
		if json.Valid(msg) && utf8.Valid(msg) {
			if fast, ok := scanRequest(msg); ok {
				slow, ok := mapRequest(msg)
				if !ok {
					t.Fatalf("scanned as an object, encoding/json disagrees: %q", msg)
				}
				if a, b := fast.request(), slow.request(); !reflect.DeepEqual(a, b) {
					t.Fatalf("scanner %+v, encoding/json %+v for %q", a, b, msg)
				}
			}
		}
		orig := bytes.Clone(msg)
		reqs, batch, err := decodeJSONRPC(msg, 50)
		if !bytes.Equal(msg, orig) {
			t.Fatal("the decoder changed its input")
		}
		if err != nil {
			if len(reqs) != 0 {
				t.Fatalf("a whole-message error with %d requests", len(reqs))
			}
			if !json.Valid(encodeError(nil, err)) {
				t.Fatalf("error response is not JSON: %s", encodeError(nil, err))
			}
			return
		}
		if len(reqs) == 0 || (!batch && len(reqs) != 1) || len(reqs) > 50 {
			t.Fatalf("%d requests (batch %v)", len(reqs), batch)
		}
		for _, r := range reqs {
			if !json.Valid(encodeError(r.id, streams.NewError(1, "x"))) {
				t.Fatalf("response with id %q is not JSON", r.id)
			}
			if r.err != nil || r.cancel != nil || r.discover { // answered by the edge itself: no handler
				continue
			}
			if streams.ValidateName("handler", r.handler) != nil || streams.ValidateName("method", r.method) != nil {
				t.Fatalf("accepted %q.%q", r.handler, r.method)
			}
			if string(r.params) != "null" && !bytes.Contains(msg, r.params) {
				t.Fatalf("params %q are not the message's bytes", r.params)
			}
			if p := r.params[0]; p != '{' && p != '[' && string(r.params) != "null" {
				t.Fatalf("params %q are not structured", r.params)
			}
			if !json.Valid(encodeResult(r.id, r.params)) {
				t.Fatalf("result response is not JSON: %s", encodeResult(r.id, r.params))
			}
		}
	})
}

// A body over STREAMRPC_MAX_BODY on /jsonrpc is answered with a JSON-RPC
// response of id null and status 413, sized or chunked alike.
func TestJSONRPCBodyTooLarge(t *testing.T) {
	e := newTestEdge(t, Config{MaxBody: 64})
	base := serve(t, e)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)
	body := `{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":["` + strings.Repeat("x", 200) + `"]}`
	cases := []struct {
		name    string
		chunked bool
	}{
		{"sized", false},
		{"chunked", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(body)
			if tc.chunked {
				r = io.MultiReader(r) // no length known: net/http sends it chunked
			}
			req, err := http.NewRequest("POST", base+"/jsonrpc", r)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if tc.chunked && len(res.Request.TransferEncoding) == 0 && req.ContentLength != -1 && req.ContentLength != 0 {
				t.Fatalf("the request was not chunked")
			}
			b, _ := io.ReadAll(res.Body)
			var got struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   *streams.Error  `json:"error"`
			}
			if res.StatusCode != http.StatusRequestEntityTooLarge || json.Unmarshal(b, &got) != nil || got.JSONRPC != "2.0" || string(got.ID) != "null" ||
				got.Error == nil || got.Error.Code != streams.CodeBodyTooLarge {
				t.Fatalf("answered %d %s, want 413 and a JSON-RPC error %d with id null", res.StatusCode, b, streams.CodeBodyTooLarge)
			}
		})
	}
}

// "_meta" sits beside params: its trace context is the call's, unknown keys
// are ignored, params stay byte for byte, and a _meta that is not an object
// is an invalid request.
func TestDecodeJSONRPCMeta(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		name      string
		msg       string
		wantTrace traceContext
		wantCode  int
	}{
		{"trace context", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"_meta":{"traceparent":"` + tp + `","tracestate":"k=v"}}`, traceContext{parent: tp, state: "k=v"}, 0},
		{"unknown keys ignored", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"_meta":{"weight":3,"traceparent":"` + tp + `"}}`, traceContext{parent: tp}, 0},
		{"priority", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"_meta":{"priority":"high"}}`, traceContext{}, 0},
		{"unknown priority", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"_meta":{"priority":"urgent"}}`, traceContext{}, streams.CodeInvalidRequest},
		{"priority not a string", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"_meta":{"priority":3}}`, traceContext{}, streams.CodeInvalidRequest},
		{"malformed traceparent dropped", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"_meta":{"traceparent":"nope"}}`, traceContext{}, 0},
		{"escaped member names", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"\u005fmeta":{"traceparent":"` + tp + `"}}`, traceContext{parent: tp}, 0},
		{"not an object", `{"jsonrpc":"2.0","id":1,"method":"a.b","params":[1, 2],"_meta":[1]}`, traceContext{}, streams.CodeInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reqs, _, err := decodeJSONRPC([]byte(tc.msg), 10)
			if err != nil {
				t.Fatal(err)
			}
			r := reqs[0]
			if tc.wantCode != 0 {
				if r.err == nil || r.err.Code != tc.wantCode {
					t.Fatalf("err %v, want %d", r.err, tc.wantCode)
				}
				return
			}
			if r.err != nil || r.trace != tc.wantTrace || string(r.params) != "[1, 2]" {
				t.Fatalf("err %v trace %+v params %s; want trace %+v, params [1, 2]", r.err, r.trace, r.params, tc.wantTrace)
			}
			if want := strings.Contains(tc.msg, `"priority":"high"`); want != (r.priority == streams.PriorityHigh) {
				t.Fatalf("priority %q", r.priority)
			}
		})
	}
}
