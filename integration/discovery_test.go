package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/metaschemas"
	"github.com/streamrpc/streamrpc/streams"
)

// billingMux is a second handler with schemas and an enforced result: its
// charge method returns whatever result its params ask for.
func billingMux() *consumers.Mux {
	mux := consumers.NewMux()
	mux.HandleFunc("charge", func(_ context.Context, r *consumers.Request) (any, error) {
		var p struct {
			Cents  int             `json:"cents"`
			Return json.RawMessage `json:"return"`
		}
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		if p.Return != nil {
			return p.Return, nil
		}
		return map[string]string{"receipt": fmt.Sprintf("r-%d", p.Cents)}, nil
	}, consumers.Describe("charges a card"),
		consumers.Schemas(
			json.RawMessage(`{"type":"object","properties":{"cents":{"type":"integer","minimum":1},"return":{}},"required":["cents"]}`),
			json.RawMessage(`{"type":"object","properties":{"receipt":{"type":"string"}},"required":["receipt"]}`)),
		consumers.EnforceResult())
	return mux
}

// getDoc GETs a discovery document with a credential ("" for none).
func getDoc(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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

// openAPIMethods are the operationIds of a document's calls, sorted.
func openAPIMethods(doc map[string]any) string {
	var out []string
	for p, item := range doc["paths"].(map[string]any) {
		if strings.HasPrefix(p, "/rpc/calls/") {
			continue
		}
		out = append(out, item.(map[string]any)["post"].(map[string]any)["operationId"].(string))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func openRPCMethods(doc map[string]any) string {
	var out []string
	for _, m := range doc["methods"].([]any) {
		out = append(out, m.(map[string]any)["name"].(string))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// TestDiscoveryLive: the documents come from the live registry (a handler
// that registers later appears without a restart), validate against the
// official meta-schemas, and show each caller the methods its scopes allow,
// over GET /openapi.json, /handlers/{name}/openapi.json, /openrpc.json and
// rpc.discover on /jsonrpc and /ws alike.
func TestDiscoveryLive(t *testing.T) {
	openAPI, openRPC, err := metaschemas.Compile()
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	var entries []string
	for id, scopes := range map[string]string{"echo": "call:echo.*", "billing": "call:billing.charge", "reader": "read"} {
		key, hash, err := app.NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = key
		entries = append(entries, id+":"+hash+":"+scopes)
	}
	st := newStack(t, stackOptions{edge: app.Config{APIKeys: strings.Join(entries, ";")}})

	const echoMethods = "echo.count,echo.echo,echo.fail,echo.sleep"
	status, b := getDoc(t, st.url+"/openapi.json", keys["reader"])
	if status != 200 {
		t.Fatalf("GET /openapi.json: %d %s", status, b)
	}
	doc, err := metaschemas.Validate(openAPI, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := openAPIMethods(doc); got != echoMethods {
		t.Fatalf("before billing registers: %s", got)
	}

	// A handler that registers now appears within the cache's second.
	st.startConsumer(t, consumers.Config{Handler: "billing"}, billingMux())
	waitUntil(t, 5*time.Second, func() error {
		_, b := getDoc(t, st.url+"/openapi.json", keys["reader"])
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			return err
		}
		if got := openAPIMethods(d); got != "billing.charge,"+echoMethods {
			return fmt.Errorf("methods %s", got)
		}
		return nil
	})

	discoverHTTP := func(t *testing.T, token string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, st.url+"/jsonrpc", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		r := do(t, req)
		if r.Error != nil {
			t.Fatalf("rpc.discover: %+v", r.Error)
		}
		return r.status, r.Result
	}
	discoverWS := func(t *testing.T, token string) (int, []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, err := client.DialWS(ctx, st.url+"/ws", client.WithHeader(http.Header{"Authorization": {"Bearer " + token}}))
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		var out json.RawMessage
		if err := ws.Call(ctx, "rpc.discover", nil, &out); err != nil {
			t.Fatalf("rpc.discover over /ws: %v", err)
		}
		return 200, out
	}
	doors := []struct {
		name  string
		fetch func(t *testing.T, token string) (int, []byte)
		kind  string
	}{
		{name: "GET /openapi.json", kind: "openapi", fetch: func(t *testing.T, token string) (int, []byte) { return getDoc(t, st.url+"/openapi.json", token) }},
		{name: "GET /openrpc.json", kind: "openrpc", fetch: func(t *testing.T, token string) (int, []byte) { return getDoc(t, st.url+"/openrpc.json", token) }},
		{name: "rpc.discover over /jsonrpc", kind: "openrpc", fetch: discoverHTTP},
		{name: "rpc.discover over /ws", kind: "openrpc", fetch: discoverWS},
	}
	callers := []struct {
		name, key, want string
	}{
		{name: "read sees every method", key: "reader", want: "billing.charge," + echoMethods},
		{name: "call:echo.*", key: "echo", want: echoMethods},
		{name: "call:billing.charge", key: "billing", want: "billing.charge"},
	}
	for _, door := range doors {
		for _, c := range callers {
			t.Run(door.name+"/"+c.name, func(t *testing.T) {
				status, b := door.fetch(t, keys[c.key])
				if status != 200 {
					t.Fatalf("status %d: %s", status, b)
				}
				sch, methods := openAPI, openAPIMethods
				if door.kind == "openrpc" {
					sch, methods = openRPC, openRPCMethods
				}
				doc, err := metaschemas.Validate(sch, b)
				if err != nil {
					t.Fatal(err)
				}
				if got := methods(doc); got != c.want {
					t.Fatalf("methods %s, want %s", got, c.want)
				}
			})
		}
	}

	t.Run("no credential", func(t *testing.T) {
		for _, p := range []string{"/openapi.json", "/openrpc.json", "/handlers/echo/openapi.json"} {
			if status, b := getDoc(t, st.url+p, ""); status != http.StatusUnauthorized {
				t.Errorf("GET %s without a credential: %d %s", p, status, b)
			}
		}
	})
	t.Run("one handler", func(t *testing.T) {
		tests := []struct {
			name, path, key string
			status          int
			want            string
		}{
			{name: "read", path: "/handlers/billing/openapi.json", key: "reader", status: 200, want: "billing.charge"},
			{name: "its own", path: "/handlers/echo/openapi.json", key: "echo", status: 200, want: echoMethods},
			{name: "one it may not call", path: "/handlers/billing/openapi.json", key: "echo", status: 404},
			{name: "unknown", path: "/handlers/nope/openapi.json", key: "reader", status: 404},
			{name: "bad name", path: "/handlers/b%7Bad/openapi.json", key: "reader", status: 400},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, b := getDoc(t, st.url+tt.path, keys[tt.key])
				if status != tt.status {
					t.Fatalf("status %d, want %d: %s", status, tt.status, b)
				}
				if tt.status != 200 {
					return
				}
				doc, err := metaschemas.Validate(openAPI, b)
				if err != nil {
					t.Fatal(err)
				}
				if got := openAPIMethods(doc); got != tt.want {
					t.Fatalf("methods %s, want %s", got, tt.want)
				}
			})
		}
	})
}

// TestResultSchemaEnforced: a consumer that enforces its result schema
// answers a result that does not match with -32603 and the validation
// error, and never sends it; a matching result goes out as it was.
func TestResultSchemaEnforced(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	st.startConsumer(t, consumers.Config{Handler: "billing"}, billingMux())
	tests := []struct {
		name       string
		params     string
		wantStatus int
		wantResult string
		wantMsg    string
	}{
		{name: "matching result", params: `{"cents":5}`, wantStatus: 200, wantResult: `{"receipt":"r-5"}`},
		{name: "missing property", params: `{"cents":5,"return":{"other":1}}`, wantStatus: 500, wantMsg: "missing property 'receipt'"},
		{name: "wrong type", params: `{"cents":5,"return":{"receipt":7}}`, wantStatus: 500, wantMsg: "want string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, st.url, "/rpc/billing/charge", []byte(tt.params), nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if tt.wantMsg == "" {
				if string(r.Result) != tt.wantResult {
					t.Fatalf("result %s, want %s", r.Result, tt.wantResult)
				}
				return
			}
			if r.Error == nil || r.Error.Code != streams.CodeInternal || !strings.Contains(r.Error.Message, tt.wantMsg) {
				t.Fatalf("error %+v: want -32603 saying %q", r.Error, tt.wantMsg)
			}
			if r.Result != nil {
				t.Fatalf("the non-matching result was sent: %s", r.Result)
			}
			// Nor is it readable later by id.
			s := get(t, st.url+"/rpc/calls/"+r.requestID)
			if s.Result != nil || s.Error == nil || s.Error.Code != streams.CodeInternal {
				t.Fatalf("GET /rpc/calls/%s: %s", r.requestID, s.body)
			}
		})
	}
}

// TestOpenAPIGeneratedClient: a client generated by oapi-codegen from a live
// edge's /openapi.json (the checked-in integration/testdata/oapiclient,
// regenerated here and compared) calls echo.echo and echo.sleep and gets
// their typed results, the typed 422 of params the schema refuses, and an
// async call's 202 and result by id (getCall). The test-only module pins
// the generator's version.
func TestOpenAPIGeneratedClient(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	st := newStack(t, stackOptions{})
	status, spec := getDoc(t, st.url+"/openapi.json", "")
	if status != 200 {
		t.Fatalf("GET /openapi.json: %d %s", status, spec)
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "oapiclient"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	specFile, generated := filepath.Join(tmp, "openapi.json"), filepath.Join(tmp, "client.gen.go")
	if err := os.WriteFile(specFile, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off")
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("go %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
		return out
	}
	run("tool", "oapi-codegen", "-config", "oapi-codegen.yaml", "-o", generated, specFile)
	got, err := os.ReadFile(generated)
	if err != nil {
		t.Fatal(err)
	}
	checkedIn := filepath.Join(dir, "echoclient", "client.gen.go")
	if os.Getenv("STREAMRPC_UPDATE_OAPICLIENT") != "" {
		if err := os.WriteFile(checkedIn, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(checkedIn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("the client generated from /openapi.json differs from %s: the document changed; rerun with STREAMRPC_UPDATE_OAPICLIENT=1 and review the diff", checkedIn)
	}

	var res struct {
		Status     int             `json:"status"`
		Echo       json.RawMessage `json:"echo"`
		Slept      int             `json:"slept"`
		SleepError *streams.Error  `json:"sleep_error"`
		Invalid    int             `json:"invalid_status"`
		InvalidErr *streams.Error  `json:"invalid_error"`
		AsyncCode  int             `json:"async_status"`
		Location   string          `json:"async_location"`
		AsyncState string          `json:"async_state"`
		AsyncRes   json.RawMessage `json:"async_result"`
	}
	out := run("run", ".", "-url", st.url)
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("the client's output is not JSON (%v): %s", err, out)
	}
	if res.Status != 200 || string(res.Echo) != `{"greeting":"hello","n":[1,2]}` {
		t.Fatalf("echo.echo through the generated client: %s", out)
	}
	if res.Slept != 3 || res.SleepError != nil {
		t.Fatalf("echo.sleep's typed result: %s", out)
	}
	if res.Invalid != 422 || res.InvalidErr == nil || res.InvalidErr.Code != streams.CodeInvalidParams {
		t.Fatalf("echo.sleep with params its schema refuses: want the typed 422 error, got %s", out)
	}
	if res.AsyncCode != 202 || !strings.HasPrefix(res.Location, "/rpc/calls/echo.") || res.AsyncState != "done" || string(res.AsyncRes) != `["later"]` {
		t.Fatalf("echo.echo with Prefer: respond-async, then getCall: %s", out)
	}
}

// TestRegistryRead: streams.Registry, what the documents are generated
// from, lists each registered handler with its methods by name, leaves out
// the settings kept beside them and the handlers forgotten.
func TestRegistryRead(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	sc := streams.New(st.connect(t), streams.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	register := func(name string, settings streams.HandlerSettings, methods ...string) {
		info := streams.HandlerInfo{Name: name, Description: name + " does things", Version: "1.2"}
		for _, m := range methods {
			info.Methods = append(info.Methods, streams.MethodInfo{Name: m, ResultSchema: json.RawMessage(`{"type":"string"}`), ResultEnforced: m == "b"})
		}
		if err := sc.Register(ctx, info, settings); err != nil {
			t.Fatal(err)
		}
	}
	register("zeta", streams.HandlerSettings{MaxBacklog: 10}, "b", "a")
	register("alpha", streams.HandlerSettings{}, "x")
	register("gone", streams.HandlerSettings{}, "y")
	if err := sc.Forget(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	hs, err := sc.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hs {
		for _, m := range h.Methods {
			got = append(got, fmt.Sprintf("%s(%s,%s).%s enforced=%v", h.Name, h.Description, h.Version, m.Name, m.ResultEnforced))
		}
	}
	want := "alpha(alpha does things,1.2).x enforced=false;zeta(zeta does things,1.2).a enforced=false;zeta(zeta does things,1.2).b enforced=true"
	if strings.Join(got, ";") != want {
		t.Fatalf("Registry:\n%s\nwant\n%s", strings.Join(got, ";"), want)
	}
}
