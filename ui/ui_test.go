package ui

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

func newApp(src Source) *fiber.App {
	app := fiber.New()
	New(src, Options{Now: func() time.Time { return testNow }}).Register(app)
	return app
}

type rendered struct {
	status int
	header http.Header
	body   string
}

func fetch(t *testing.T, app *fiber.App, path string) rendered {
	t.Helper()
	res, err := app.Test(httptest.NewRequest(http.MethodGet, path, nil), 10000)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rendered{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (p rendered) has(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(p.body, w) {
			t.Errorf("page does not contain %q", w)
		}
	}
}

func (p rendered) hasNot(t *testing.T, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(p.body, b) {
			t.Errorf("page contains %q", b)
		}
	}
}

func wantHTML(t *testing.T, p rendered, status int) {
	t.Helper()
	if p.status != status {
		t.Fatalf("status %d, want %d; body:\n%s", p.status, status, p.body)
	}
	if ct := p.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if !strings.HasPrefix(p.body, "<!doctype html>") || !strings.HasSuffix(strings.TrimSpace(p.body), "</html>") {
		t.Errorf("not a whole page:\n%s", p.body)
	}
}

func TestOverview(t *testing.T) {
	app := newApp(newFakeSource())
	for _, path := range []string{"/ui/", "/ui"} {
		p := fetch(t, app, path)
		wantHTML(t, p, 200)
		p.has(t,
			`<title>Handlers · streamrpc</title>`,
			`href="/ui/handlers/echo"`, `href="/ui/handlers/billing.v2"`, `href="/ui/handlers/reports"`,
			`The example handler: echo, sleep and fail.`,
			`data-total="handlers">3<`, `data-total="consumers_online">3<`, `data-total="calls">19,631<`, `data-total="dead_letters">3<`,
			`data-stat="calls_per_second">31<`, `data-stat="success_rate">99.8%<`, `data-stat="p50">0.9ms<`, `data-stat="p99">310ms<`,
			`data-stat="backlog">4<`,
			`<path class="spark-line" d="M0,`, // the sparkline, drawn server-side
			`data-feed`, `<tr data-id="01JPB3Z7K90000000000009000">`, `href="/ui/calls/01JPB3Z7K90000000000009000"`,
			`card declined`, `<span class="badge err" data-slot="outcome">error</span>`,
			`<template data-feed-row>`, `/ui/static/app.js?v=`,
		)
		// Sorted by name.
		if i, j := strings.Index(p.body, `data-h="billing.v2"`), strings.Index(p.body, `data-h="echo"`); i < 0 || j < i {
			t.Errorf("handlers not sorted by name")
		}
	}
}

func TestOverviewEmpty(t *testing.T) {
	p := fetch(t, newApp(&fakeSource{}), "/ui/")
	wantHTML(t, p, 200)
	p.has(t, "No handler yet", "go run ./examples/echo", "No calls yet")
}

func TestHandlerPage(t *testing.T) {
	app := newApp(newFakeSource())
	p := fetch(t, app, "/ui/handlers/echo")
	wantHTML(t, p, 200)
	p.has(t,
		`<h1 class="mono">echo`, `v0.4.0`, `data-stat="consumers_online">2</span> consumer<span data-plural>s</span> online`,
		`data-stat="calls">18,699<`, `data-stat="p95">12ms<`, `data-stat="pending">3<`, `data-stat="delayed">1<`,
		`data-rate-chart`, `>−2m<`, `>now<`, `>5s<`, `>&gt;60s<`,
		// methods table
		`href="/ui/handlers/echo/methods#m-sleep"`, `<td class="num">412</td>`, `99.3%`,
		// consumers: online first, the gone one dimmed
		`web-1-4211-a9f2`, `<tr class="gone">`, `3/16`,
		// a sidecar whose app is down says so
		`>waiting for app</span>`,
		// latest activity: only this handler's
		`<tr data-id="01JPB3Z7K90000000000008995">`,
		// dead letters with replay and delete
		`action="/handlers/echo/dead-letters/1773500965123-0/replay"`, `data-delete="/handlers/echo/dead-letters/1773500965123-0"`,
		`handler_error`, `upstream said no`, `>4001<`,
	)
	p.hasNot(t, `billing.v2.charge`, `card declined`)
	if n := strings.Count(p.body, `<rect class="bar"`); n != streams.RateBuckets+len(streams.DurationBuckets)+1 {
		t.Errorf("%d bars, want %d rate + %d histogram", n, streams.RateBuckets, len(streams.DurationBuckets)+1)
	}
	// A handler name with a dot is one path segment.
	p = fetch(t, app, "/ui/handlers/billing.v2")
	wantHTML(t, p, 200)
	p.has(t, `<h1 class="mono">billing.v2`, `gateway timeout`, `action="/handlers/billing.v2/dead-letters/1773500000000-0/replay"`)
	// No dead letters, no consumer, no calls.
	p = fetch(t, app, "/ui/handlers/reports")
	wantHTML(t, p, 200)
	p.has(t, "No dead letters.", "No consumer is serving this handler.", "No calls in the last 10 minutes.", "No runs yet.", `data-stat="consumers_online">0</span> consumer<span data-plural>s</span> online`)
}

func TestMethodsPage(t *testing.T) {
	p := fetch(t, newApp(newFakeSource()), "/ui/handlers/echo/methods")
	wantHTML(t, p, 200)
	p.has(t,
		`<section class="card method" id="m-echo">`, `id="m-sleep"`, `id="m-fail"`,
		`returns its params unchanged`, `sleeps {&#34;ms&#34;:N} milliseconds, then returns {&#34;slept&#34;:N}`,
		// schemas, highlighted
		`<span class="jk">&#34;type&#34;</span>: <span class="js">&#34;object&#34;</span>`,
		`No schema: any JSON is passed to the handler as it is.`,
		// the try-it form, prefilled from the schema's example and default
		`<form class="tryit" method="post" action="/rpc/echo/echo" data-tryit>`,
		"{\n  &#34;msg&#34;: &#34;hello&#34;\n}</textarea>",
		"{\n  &#34;ms&#34;: 100\n}</textarea>",
		`curl -s -X POST http://example.com/rpc/echo/sleep -H 'content-type: application/json' -d '{&#34;ms&#34;:100}'`,
		`data-result`, `<dd>18,250</dd>`,
		// the discovery documents (docs/discovery.md)
		`<a href="/handlers/echo/openapi.json">OpenAPI of echo</a>`, `<a href="/openapi.json">`, `<a href="/openrpc.json">OpenRPC</a>`,
	)
}

func TestCallPage(t *testing.T) {
	app := newApp(newFakeSource())
	p := fetch(t, app, "/ui/calls/01JPB3Z7K90000000000009000")
	wantHTML(t, p, 200)
	p.has(t,
		`01JPB3Z7K90000000000009000`, `<span class="badge big ok" data-call-state="done">done</span>`,
		`href="/ui/handlers/echo/methods#m-echo"`, `3ms from first to last event`,
		`<li class="ev ev-queued">`, `<li class="ev ev-finished">`, `>&#43;2ms<`, `from 10.0.3.7`,
		`<h2>Result</h2>`, `<span class="jn">-3e2</span>`, `<span class="jb">true</span>`, `<span class="jz">null</span>`,
	)
	p.hasNot(t, `dead-callout`, `data-replay`)

	p = fetch(t, app, "/ui/calls/01JPB3Z7K90000000000008995")
	wantHTML(t, p, 200)
	p.has(t,
		`data-call-state="dead">dead<`, `This call failed every attempt and is in the dead letters.`,
		`action="/handlers/echo/dead-letters/1773500965123-0/replay"`, // the dead letter matched by call id
		`<strong>dead lettered</strong>`, `>&#43;1.021s<`, `failed on request; next attempt in 1s`,
		`<h2>Error</h2>`, `-32000 handler_error`, `<p class="err-message">failed on request</p>`,
		`<span class="jk">&#34;retryable&#34;</span>`,
	)
}

func TestCallPageDeadButReplayed(t *testing.T) {
	src := newFakeSource()
	src.dead["echo"] = nil
	p := fetch(t, newApp(src), "/ui/calls/01JPB3Z7K90000000000008995")
	wantHTML(t, p, 200)
	p.has(t, `no longer among the handler's dead letters`)
	p.hasNot(t, `data-replay`)
}

func TestCallPageRunning(t *testing.T) {
	src := newFakeSource()
	src.calls["Q1"] = streams.CallStory{CallStatus: streams.CallStatus{ID: "Q1", State: streams.StateRunning, Handler: "echo", Consumer: "web-1"},
		Method: "sleep", Events: []streams.StoryEvent{{Time: testNow, Event: "queued", Params: json.RawMessage(`{"ms":5000}`)}}}
	p := fetch(t, newApp(src), "/ui/calls/Q1")
	wantHTML(t, p, 200)
	p.has(t, `data-call-waiting="Q1"`, `<strong>running</strong>`, `Not answered yet.`, `<span class="jn">5000</span>`, `on <span class="mono">web-1</span>`)
}

func TestNotFound(t *testing.T) {
	app := newApp(newFakeSource())
	for path, want := range map[string]string{
		"/ui/handlers/nope":         "Handler not found",
		"/ui/handlers/nope/methods": "Handler not found",
		"/ui/calls/01NOPE":          "Not a call id",
		"/ui/elsewhere":             "Page not found",
	} {
		p := fetch(t, app, path)
		wantHTML(t, p, 404)
		p.has(t, `<div class="error-code">404</div>`, want, `href="/ui/"`)
	}
}

func TestSourceUnavailable(t *testing.T) {
	app := newApp(&fakeSource{err: errRedisDown})
	for _, path := range []string{"/ui/", "/ui/handlers/echo", "/ui/handlers/echo/methods", "/ui/calls/X"} {
		p := fetch(t, app, path)
		wantHTML(t, p, 503)
		p.has(t, "redis unavailable: connection refused")
	}
}

// partialSource fails the reads that are not the page's main subject.
type partialSource struct{ *fakeSource }

func (partialSource) Activity(_ context.Context, _ string, _ int) ([]streams.Activity, error) {
	return nil, errRedisDown
}

func (partialSource) DeadLetters(_ context.Context, _ string, _ int) ([]streams.DeadLetter, int64, error) {
	return nil, 0, errRedisDown
}

func TestPartialFailure(t *testing.T) {
	app := newApp(partialSource{newFakeSource()})
	p := fetch(t, app, "/ui/handlers/echo")
	wantHTML(t, p, 200)
	p.has(t, "Could not load the activity", "Could not load the dead letters", `data-stat="calls">18,699<`)
	p = fetch(t, app, "/ui/calls/01JPB3Z7K90000000000008995")
	wantHTML(t, p, 200)
	p.has(t, "Could not load the dead letters")
}

const xss = `<script>alert(1)</script>`

// xssSource puts a script tag in every value a caller or a handler controls.
func xssSource() *fakeSource {
	f := newFakeSource()
	h := &f.handlers[0]
	h.Name, h.Description, h.Kind = "evil"+xss, xss, xss
	h.Info.Name, h.Info.Description, h.Info.Version = h.Name, xss, xss
	h.Info.Methods = []streams.MethodInfo{{Name: "m" + xss, Description: xss,
		ParamsSchema: json.RawMessage(`{"type":"object","properties":{"x":{"type":"string","examples":["` + strings.ReplaceAll(xss, "/", `\/`) + `"]}}}`),
		ResultSchema: json.RawMessage(`{"description":"` + xss + `"}`)}}
	h.Methods = []streams.MethodStats{{Method: "m" + xss, Calls: 1, SuccessRate: 1, Histogram: hist(1)}}
	h.Consumers = []streams.ConsumerInfo{{Name: xss, Host: xss, Kind: xss, Version: xss, Online: true, Concurrency: 1}}
	f.activity = []streams.Activity{{ID: "A" + xss, Handler: h.Name, Method: "m" + xss, Outcome: xss, Consumer: xss, Caller: xss, Error: xss, Time: testNow}}
	e := &streams.Error{Code: 1, Message: xss, Data: json.RawMessage(`{"why":"` + xss + `"}`)}
	f.calls["X"] = streams.CallStory{
		CallStatus: streams.CallStatus{ID: "X", State: streams.StateDead, Handler: h.Name, Consumer: xss, Reply: streams.ErrorReply("X", e)},
		Method:     "m" + xss, Params: json.RawMessage(`{"p":"` + xss + `"}`),
		Events: []streams.StoryEvent{{Time: testNow, Event: xss, Consumer: xss, Outcome: xss, Detail: xss, Params: json.RawMessage(`"` + xss + `"`)}},
	}
	f.calls["R"] = streams.CallStory{CallStatus: streams.CallStatus{ID: "R", State: streams.StateDone, Reply: streams.ResultReply("R", json.RawMessage(`"`+xss+`"`))}}
	f.dead[h.Name] = []streams.DeadLetter{{StreamID: "1-0" + xss, ID: "X", Method: "m" + xss, Params: json.RawMessage(`["` + xss + `"]`), Error: e, Consumer: xss}}
	return f
}

func TestEscaping(t *testing.T) {
	app := newApp(xssSource())
	name := "evil" + xss
	paths := []string{
		"/ui/", "/ui/calls/X", "/ui/calls/R",
		"/ui/handlers/" + strings.ReplaceAll(urlPath(name), "/", "%2F"),
		"/ui/handlers/" + strings.ReplaceAll(urlPath(name), "/", "%2F") + "/methods",
	}
	for _, path := range paths {
		p := fetch(t, app, path)
		if p.status != 200 && p.status != 404 {
			t.Fatalf("GET %s: %d\n%s", path, p.status, p.body)
		}
		if strings.Contains(p.body, xss) || strings.Contains(strings.ToLower(p.body), "<script>alert") {
			t.Errorf("GET %s: unescaped script:\n%s", path, p.body)
		}
		if n := strings.Count(p.body, "<script"); n != 1 {
			t.Errorf("GET %s: %d script tags, want only app.js", path, n)
		}
		if !strings.Contains(p.body, "&lt;script&gt;alert(1)&lt;/script&gt;") && !strings.Contains(p.body, "%3cscript%3ealert") {
			t.Errorf("GET %s: the escaped value is not shown", path)
		}
		t.Logf("GET %s: %d", path, p.status)
	}
}

func TestEscapingNotFound(t *testing.T) {
	// The 404 page names the id it did not find.
	p := fetch(t, newApp(xssSource()), "/ui/calls/"+urlPath(`<img src=x onerror=alert(1)>`))
	wantHTML(t, p, 404)
	p.has(t, `&lt;img src=x onerror=alert(1)&gt;`)
	p.hasNot(t, `<img`)
}

func urlPath(s string) string {
	r := strings.NewReplacer("<", "%3C", ">", "%3E", "(", "%28", ")", "%29", " ", "%20", "=", "%3D")
	return r.Replace(s)
}

// The pages run under a CSP without 'unsafe-inline': no inline script,
// style or event handler may appear.
func TestNoInlineScriptOrStyle(t *testing.T) {
	app := newApp(newFakeSource())
	inline := regexp.MustCompile(`(?i)<style|\sstyle=|\son[a-z]+=|javascript:|<script>`)
	for _, path := range []string{"/ui/", "/ui/handlers/echo", "/ui/handlers/echo/methods", "/ui/calls/01JPB3Z7K90000000000009000",
		"/ui/calls/01JPB3Z7K90000000000008995", "/ui/handlers/nope"} {
		p := fetch(t, app, path)
		if m := inline.FindString(p.body); m != "" {
			t.Errorf("GET %s: inline %q", path, m)
		}
	}
}

func TestStatic(t *testing.T) {
	u := New(newFakeSource(), Options{})
	app := fiber.New()
	u.Register(app)
	for name, ct := range map[string]string{"app.js": "javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"} {
		p := fetch(t, app, "/ui/static/"+name+"?v="+u.version)
		if p.status != 200 || !strings.Contains(p.header.Get("Content-Type"), ct) {
			t.Errorf("%s: %d %q", name, p.status, p.header.Get("Content-Type"))
		}
		if cc := p.header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: versioned asset Cache-Control %q", name, cc)
		}
		if p = fetch(t, app, "/ui/static/"+name); p.header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: unversioned Cache-Control %q", name, p.header.Get("Cache-Control"))
		}
	}
	for _, path := range []string{"/ui/static/nope.js", "/ui/static/../ui.go", "/ui/static/%2e%2e/ui.go", "/ui/static/"} {
		if p := fetch(t, app, path); p.status != 404 {
			t.Errorf("GET %s: %d", path, p.status)
		}
	}
}

func TestPagesUseEveryLiveHook(t *testing.T) {
	// static/app.js finds what it updates by these attributes; a page that
	// lost one would silently stop updating.
	js := fetch(t, newApp(newFakeSource()), "/ui/static/app.js").body
	for _, hook := range []string{"[data-h]", "[data-stat]", "[data-online]", "svg[data-spark]", "[data-rate-chart]", "[data-totals]", "[data-total]",
		"tbody[data-feed]", "template[data-feed-row]", "form[data-tryit]", "form[data-replay]", "button[data-delete]", "[data-call-waiting]",
		"'/events'", "'stats'", "'activity'"} {
		if !strings.Contains(js, hook) {
			t.Errorf("app.js does not use %s", hook)
		}
	}
}
