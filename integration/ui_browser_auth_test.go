package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// TestUIBrowserSignIn drives the dashboard with authentication on: a page
// sends the browser to the sign-in; pasting an API key signs in and comes
// back; the session cookie is out of the page's reach (HttpOnly); the live
// feed, the try-it form and a dead-letter replay work through the cookie
// (the last two with the page's CSRF token); sign-out ends the session.
func TestUIBrowserSignIn(t *testing.T) {
	chrome := chromiumPath(t)
	opsKey, opsHash, err := app.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	st := newStack(t, stackOptions{edge: app.Config{APIKeys: "ops:" + opsHash + ":call:*.* admin"}})
	flaky := consumers.NewMux()
	flaky.HandleFunc("charge", func(context.Context, *consumers.Request) (any, error) {
		return nil, consumers.Retryable(errors.New("card gateway unreachable"))
	})
	st.startConsumer(t, consumers.Config{Handler: "billing", MaxAttempts: 1}, flaky)
	auth := map[string]string{"Authorization": "Bearer " + opsKey}
	dead := post(t, st.url, "/rpc/billing/charge", []byte(`{"order":1}`), auth)
	if dead.status != http.StatusBadGateway || dead.Error == nil || dead.Error.Code != streams.CodeDeadLettered {
		t.Fatalf("billing.charge: %d %s, want 502 dead_lettered", dead.status, dead.body)
	}
	deadLetterID := deadLetterWithKey(t, st.url, opsKey, "billing", dead.requestID)
	if deadLetterID == "" {
		t.Fatal("the dead call is not in the dead letters")
	}

	testCtx, cancelTest := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancelTest()
	allocCtx, cancelAlloc := chromiumAllocator(testCtx, t, chrome, chromedp.WindowSize(1360, 900))
	defer cancelAlloc()
	tab, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1360, 900)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}

	row := fmt.Sprintf(`tr[data-dead-letter=%q]`, deadLetterID)
	step(t, tab, 20*time.Second, "a page without a session goes to the sign-in",
		chromedp.Navigate(st.url+"/ui/handlers/billing"),
		chromedp.WaitVisible(chromedp.CSS(`form.signin-form`)),
	)
	if loc := value(t, tab, "read the location", chromedp.Location()); !strings.Contains(loc, "/ui/sign-in?next=") {
		t.Fatalf("at %q, want the sign-in page", loc)
	}
	step(t, tab, 20*time.Second, "sign in with the API key, back to the page",
		chromedp.SetValue(chromedp.CSS(`#credential`), opsKey),
		chromedp.Click(chromedp.CSS(`form.signin-form button`)),
		chromedp.WaitVisible(chromedp.CSS(row+` form[data-replay] button`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-live].on`)), // /events, through the cookie
	)
	if value(t, tab, "read document.cookie", chromedp.Evaluate[bool](`document.cookie.indexOf('streamrpc_session') >= 0`)) {
		t.Fatal("the page's script can read the session cookie; it must be HttpOnly")
	}
	step(t, tab, 20*time.Second, "replay the dead letter (POST with the CSRF token)",
		chromedp.Click(chromedp.CSS(row+` form[data-replay] button`)),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelector('%s [data-action-status]').textContent === 'replayed'`, row),
			chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)),
	)
	step(t, tab, 20*time.Second, "call echo.echo from the try-it form",
		chromedp.Navigate(st.url+"/ui/handlers/echo/methods"),
		chromedp.WaitVisible(chromedp.CSS(`#m-echo form[data-tryit]`)),
		chromedp.SetValue(chromedp.CSS(`#m-echo textarea[data-params]`), `{"msg":"signed in"}`),
		chromedp.Click(chromedp.CSS(`#m-echo button[data-call]`)),
		chromedp.WaitVisible(chromedp.CSS(`#m-echo [data-result-link]`)),
	)
	if status := value(t, tab, "read the status", chromedp.Text(chromedp.CSS(`#m-echo [data-result-status]`))); !strings.HasPrefix(status, "200") {
		t.Fatalf("try it answered %q, want 200", status)
	}
	step(t, tab, 20*time.Second, "sign out",
		chromedp.Click(chromedp.CSS(`form.signout button`)),
		chromedp.WaitVisible(chromedp.CSS(`form.signin-form`)),
		chromedp.Navigate(st.url+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`form.signin-form`)),
	)
}

// deadLetterWithKey is deadLetterOf on an edge that needs a key.
func deadLetterWithKey(t *testing.T, url, key, handler, id string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/handlers/"+handler+"/dead-letters?limit=1000", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	r := do(t, req)
	var list struct {
		DeadLetters []streams.DeadLetter `json:"dead_letters"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != http.StatusOK {
		t.Fatalf("dead letters of %s: %d %s", handler, r.status, r.body)
	}
	for _, dl := range list.DeadLetters {
		if dl.ID == id {
			return dl.StreamID
		}
	}
	return ""
}
