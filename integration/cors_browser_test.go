package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamrpc/streamrpc/app"
)

// corsProbe runs in a page of another origin: it calls base's /rpc and
// /jsonrpc with fetch (both preflighted: JSON content type, Idempotency-Key),
// opens /events as an EventSource and /ws as a WebSocket, and reports what
// the browser let it see ("refused" when fetch threw, "error" when the
// EventSource or WebSocket failed).
const corsProbe = `(async (base) => {
  const out = {};
  try {
    const r = await fetch(base + "/rpc/echo/echo", {method: "POST",
      headers: {"Content-Type": "application/json", "Idempotency-Key": "cors-" + Math.random()},
      body: '{"from":"another origin"}'});
    out.rpc = r.status + " " + await r.text();
    out.rid = r.headers.get("X-Request-Id") || "";
  } catch (e) { out.rpc = "refused"; }
  try {
    const r = await fetch(base + "/jsonrpc", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({jsonrpc: "2.0", id: 7, method: "echo.echo", params: {n: 7}})});
    out.jsonrpc = r.status + " " + await r.text();
  } catch (e) { out.jsonrpc = "refused"; }
  out.events = await new Promise(done => {
    const es = new EventSource(base + "/events");
    es.onopen = () => { es.close(); done("open"); };
    es.onerror = () => { es.close(); done("error"); };
  });
  out.ws = await new Promise(done => {
    const ws = new WebSocket(base.replace(/^http/, "ws") + "/ws");
    ws.onopen = () => { ws.close(); done("open"); };
    ws.onerror = () => done("error");
  });
  return out;
})(%q)`

// TestCORSBrowser has Chromium, on a page of another origin (a second
// server, another port), call two edges on one Redis: one that lists the
// page's origin in STREAMRPC_CORS_ORIGINS, whose /rpc, /jsonrpc, /events and
// /ws the page reaches, and one that lists nothing (auth none), which the
// browser refuses every one of them.
func TestCORSBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>another origin</title><p>another origin</p>`))
	}))
	t.Cleanup(page.Close)

	st := newStack(t, stackOptions{edge: app.Config{Auth: app.AuthNone, CORSOrigins: page.URL}})
	allowed := st.url
	st.startEdge(t, app.Config{Auth: app.AuthNone})
	refused := st.url

	testCtx, cancelTest := context.WithTimeout(context.Background(), time.Minute)
	defer cancelTest()
	allocCtx, cancelAlloc := chromiumAllocator(testCtx, t, chrome)
	defer cancelAlloc()
	tab, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	// The first action starts the browser, which lives as long as its
	// context: the test's.
	if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	step(t, tab, 30*time.Second, "open the page of another origin", chromedp.Navigate(page.URL+"/"))

	probe := func(t *testing.T, base string) map[string]string {
		t.Helper()
		return value(t, tab, "probe "+base, chromedp.Evaluate[map[string]string](
			fmt.Sprintf(corsProbe, base), chromedp.EvalAwaitPromise))
	}

	t.Run("origin listed", func(t *testing.T) {
		got := probe(t, allowed)
		if !strings.HasPrefix(got["rpc"], "200 ") || !strings.Contains(got["rpc"], `"from":"another origin"`) {
			t.Errorf("POST /rpc/echo/echo: %q, want 200 and the echo", got["rpc"])
		}
		if got["rid"] == "" {
			t.Error("X-Request-Id not readable: Access-Control-Expose-Headers lacks it")
		}
		if !strings.HasPrefix(got["jsonrpc"], "200 ") || !strings.Contains(got["jsonrpc"], `"id":7`) || !strings.Contains(got["jsonrpc"], `"result"`) {
			t.Errorf("POST /jsonrpc: %q, want 200 and a result for id 7", got["jsonrpc"])
		}
		if got["events"] != "open" {
			t.Errorf("EventSource /events: %s, want open", got["events"])
		}
		if got["ws"] != "open" {
			t.Errorf("WebSocket /ws: %s, want open", got["ws"])
		}
	})
	t.Run("origin not listed", func(t *testing.T) {
		got := probe(t, refused)
		want := map[string]string{"rpc": "refused", "jsonrpc": "refused", "events": "error", "ws": "error"}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %q, want %q", k, got[k], w)
			}
		}
	})
}
