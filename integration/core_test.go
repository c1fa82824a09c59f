package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/streams"
)

// roundTripHTTP: a call over HTTP is answered with its params; its X-Request-Id names the
// handler and ends in a ULID; its result is readable by id. A case of TestTopologies.
func roundTripHTTP(t *testing.T, tp *topology) {
	st := tp.newStack(t, stackOptions{})
	r := post(t, st.url, "/rpc/echo/echo", []byte(`{"msg":"hi"}`), nil)
	if r.status != http.StatusOK || string(r.body) != `{"result":{"msg":"hi"}}` {
		t.Fatalf("got %d %s, want 200 {\"result\":{\"msg\":\"hi\"}}", r.status, r.body)
	}
	if h, u, _ := strings.Cut(r.requestID, "."); h != "echo" {
		t.Fatalf("X-Request-Id %q does not name its handler", r.requestID)
	} else if _, err := ulid.ParseStrict(u); err != nil {
		t.Fatalf("X-Request-Id %q does not end in a ULID: %v", r.requestID, err)
	}
	// The result stays readable by id.
	g := get(t, st.url+"/rpc/calls/"+r.requestID)
	if g.status != http.StatusOK || !bytes.Equal(g.Result, []byte(`{"msg":"hi"}`)) {
		t.Fatalf("GET result: %d %s", g.status, g.body)
	}
	s := post(t, st.url, "/rpc/echo/sleep", []byte(`{"ms":20}`), nil)
	if s.status != http.StatusOK || string(s.Result) != `{"slept":20}` {
		t.Fatalf("sleep: %d %s", s.status, s.body)
	}
}

func TestParamsByteExact(t *testing.T) {
	st := newStack(t, stackOptions{})
	big := `{"data":"` + strings.Repeat("x", 900<<10) + `"}`
	cases := []struct{ name, params string }{
		{"object", `{"a":1,"b":[true,false,null]}`},
		{"whitespace kept", "{ \"a\" :\t1 ,\n \"b\" : [ 1 , 2 ] }"},
		{"unicode", `{"greeting":"héllo wörld — 你好 — 🚀","escaped":"\u00e9\ud83d\ude80"}`},
		{"number precision", `{"n":12345678901234567890.123456789e-5}`},
		{"array", `[1,"two",{"three":3}]`},
		{"string", `"just a string"`},
		{"large 900KiB", big},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, st.url, "/rpc/echo/echo", []byte(tc.params), nil)
			want := `{"result":` + tc.params + `}`
			if r.status != http.StatusOK || string(r.body) != want {
				t.Fatalf("status %d; body differs from params (len %d vs %d)", r.status, len(r.body), len(want))
			}
		})
	}
}

func TestThousandConcurrentCalls(t *testing.T) {
	st := newStack(t, stackOptions{})
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			params := fmt.Sprintf(`{"i":%d}`, i)
			res, err := httpClient.Post(st.url+"/rpc/echo/echo", "application/json", strings.NewReader(params))
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			var out struct{ Result json.RawMessage }
			if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
				errs <- err
				return
			}
			if res.StatusCode != 200 || string(out.Result) != params {
				errs <- fmt.Errorf("call %d: %d %s", i, res.StatusCode, out.Result)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if w := st.edge.Waiting(); w != 0 {
		t.Fatalf("edge still waits on %d calls", w)
	}
}

func TestErrorCases(t *testing.T) {
	st := newStack(t, stackOptions{edge: app.Config{MaxBody: 64 << 10}})
	cases := []struct {
		name       string
		path       string
		body       string
		header     map[string]string
		wantStatus int
		wantCode   int
		wantText   string // the message contains it (or one of its |-separated texts)
	}{
		{"malformed JSON", "/rpc/echo/echo", `{"a":`, nil, 400, streams.CodeParseError, "not valid JSON"},
		{"wrong content type", "/rpc/echo/echo", `{"a":1}`, map[string]string{"Content-Type": "text/plain"}, 415, streams.CodeUnsupportedMedia, "application/json"},
		{"unknown handler", "/rpc/nobody/echo", `{}`, nil, 404, streams.CodeMethodNotFound, "no consumer has registered it"},
		{"unknown method", "/rpc/echo/nothing", `{}`, nil, 404, streams.CodeMethodNotFound, "has no method"},
		{"bad handler name", "/rpc/ec%7Bho%7D/echo", `{}`, nil, 400, streams.CodeInvalidRequest, "handler name"},
		{"handler name too long", "/rpc/" + strings.Repeat("h", 65) + "/echo", `{}`, nil, 400, streams.CodeInvalidRequest, "limit is 64"},
		{"bad Request-Timeout", "/rpc/echo/echo", `{}`, map[string]string{"Request-Timeout": "soon"}, 400, streams.CodeInvalidRequest, "Request-Timeout"},
		{"negative Request-Timeout", "/rpc/echo/echo", `{}`, map[string]string{"Request-Timeout": "-1"}, 400, streams.CodeInvalidRequest, "Request-Timeout"},
		// The edge and the consumer share the call's deadline: the edge's
		// "no reply before the deadline" or, when the edge's timer runs late
		// on a loaded machine, the consumer's "the handler did not finish
		// before the call's deadline" reaches the caller first. Both are this
		// timeout.
		{"timeout waiting for the reply", "/rpc/echo/sleep", `{"ms":3000}`, map[string]string{"Request-Timeout": "0.3"}, 504, streams.CodeTimeout, "before the call's deadline|no reply before the deadline"},
		{"handler error", "/rpc/echo/fail", `{"message":"card declined"}`, nil, 422, streams.CodeHandlerError, "card declined"},
		{"params fail the method's schema", "/rpc/echo/sleep", `{"ms":"soon"}`, nil, 422, streams.CodeInvalidParams, "do not match the schema of echo.sleep"},
		{"params fail the schema's minimum", "/rpc/echo/sleep", `{"ms":-5}`, nil, 422, streams.CodeInvalidParams, "minimum"},
		{"handler rejects params", "/rpc/echo/fail", `{"message":7}`, nil, 422, streams.CodeInvalidParams, "invalid params"},
		{"no route", "/nowhere", `{}`, nil, 404, streams.CodeNotFound, "no such route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, st.url, tc.path, []byte(tc.body), tc.header)
			if r.status != tc.wantStatus || r.Error == nil || r.Error.Code != tc.wantCode || !containsOneOf(r.Error.Message, tc.wantText) {
				t.Fatalf("got %d %s; want %d, code %d, message containing %q", r.status, r.body, tc.wantStatus, tc.wantCode, tc.wantText)
			}
			// Only a call that was accepted has an id, and it is readable.
			accepted := tc.wantCode == streams.CodeTimeout || tc.wantCode == streams.CodeHandlerError ||
				(tc.wantCode == streams.CodeInvalidParams && tc.wantText == "invalid params")
			switch {
			case !accepted && r.requestID != "":
				t.Fatalf("X-Request-Id %q on a call that was never accepted", r.requestID)
			case accepted && r.requestID == "":
				t.Fatal("no X-Request-Id on a call that was accepted")
			case accepted: // readable once it has its outcome (a timed-out call still runs)
				waitUntil(t, 10*time.Second, func() error {
					if g := get(t, st.url+"/rpc/calls/"+r.requestID); g.status != 200 {
						return fmt.Errorf("GET /rpc/calls/%s: %d %s", r.requestID, g.status, g.body)
					}
					return nil
				})
			}
		})
	}
	t.Run("body over the limit", func(t *testing.T) {
		// Raw HTTP: the edge answers 413 from the Content-Length alone and
		// closes; a client still writing the body could see a reset first.
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(st.url, "http://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST /rpc/echo/echo HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 70<<10)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct{ Error *streams.Error }
		_ = json.NewDecoder(res.Body).Decode(&out)
		if res.StatusCode != 413 || out.Error == nil || out.Error.Code != streams.CodeBodyTooLarge || !strings.Contains(out.Error.Message, "over the limit") {
			t.Fatalf("got %d %+v; want 413, code %d, message containing %q", res.StatusCode, out.Error, streams.CodeBodyTooLarge, "over the limit")
		}
	})
	t.Run("unknown result id", func(t *testing.T) {
		r := get(t, st.url+"/rpc/calls/"+streams.NewCallID("echo"))
		if r.status != 404 || r.Error == nil || r.Error.Code != streams.CodeNotFound {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
}

func TestRedisRestart(t *testing.T) {
	st := newStack(t, stackOptions{redisArgs: []string{"--appendonly", "yes"}})
	if r := post(t, st.url, "/rpc/echo/echo", []byte(`{"before":1}`), nil); r.status != 200 {
		t.Fatalf("before the outage: %d %s", r.status, r.body)
	}
	st.redis.Stop(t)
	r := post(t, st.url, "/rpc/echo/echo", []byte(`{"during":1}`), map[string]string{"Request-Timeout": "10"})
	if r.status != http.StatusServiceUnavailable || r.Error == nil || r.Error.Code != streams.CodeUnavailable {
		t.Fatalf("during the outage: got %d %s, want 503 unavailable", r.status, r.body)
	}
	st.redis.Start(t)
	waitUntil(t, 30*time.Second, func() error {
		r := post(t, st.url, "/rpc/echo/echo", []byte(`{"after":1}`), map[string]string{"Request-Timeout": "2"})
		if r.status != 200 || string(r.Result) != `{"after":1}` {
			return fmt.Errorf("after the outage: %d %s", r.status, r.body)
		}
		return nil
	})
}

// TestCommandsPerCall counts every command the edge and the consumer send to
// Redis (pipelined commands each, blocking reads included).
func TestCommandsPerCall(t *testing.T) {
	st := newStack(t, stackOptions{})
	post(t, st.url, "/rpc/echo/echo", []byte(`1`), nil) // warm up: scripts loaded
	const calls, callers = 2000, 16
	before := st.cmds.n.Load()
	var wg sync.WaitGroup
	var failed sync.Map
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls / callers {
				res, err := httpClient.Post(st.url+"/rpc/echo/echo", "application/json", strings.NewReader(fmt.Sprint(c*1000+i)))
				if err != nil || res.StatusCode != 200 {
					failed.Store(c, err)
				}
				if res != nil {
					res.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("caller %v: %v", k, v); return true })
	per := float64(st.cmds.n.Load()-before) / calls
	t.Logf("redis commands per call, edge and consumer together: %.2f", per)
	if per > 4 {
		t.Fatalf("%.2f commands per call, want at most 4", per)
	}
}

func TestResultTTL(t *testing.T) {
	st := newStack(t, stackOptions{edge: app.Config{ResultTTL: time.Second}})
	r := post(t, st.url, "/rpc/echo/echo", []byte(`{"k":1}`), nil)
	if g := get(t, st.url+"/rpc/calls/"+r.requestID); g.status != 200 {
		t.Fatalf("right after: %d %s", g.status, g.body)
	}
	waitUntil(t, 10*time.Second, func() error {
		if g := get(t, st.url+"/rpc/calls/"+r.requestID); g.status != 404 {
			return fmt.Errorf("result still there: %d", g.status)
		}
		return nil
	})
}

// containsOneOf reports whether s contains one of the |-separated texts.
func containsOneOf(s, texts string) bool {
	for t := range strings.SplitSeq(texts, "|") {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}
