package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// TestUIBrowserOperate drives the operator's side of the dashboard in
// Chromium against the real stack: the top bar's search finds a call and
// says why an id finds none; the handler page pauses echo, its queued list
// shows the calls that wait (by position) and cancels one; resume runs the
// others; the dead list replays dead letters in bulk.
//
// With STREAMRPC_SCREENSHOTS=1 it saves the call lists, the paused handler
// and a phone-width handler page under docs/screenshots/.
func TestUIBrowserOperate(t *testing.T) {
	chrome := chromiumPath(t)
	st := newStack(t, stackOptions{edge: app.Config{CallTimeout: 10 * time.Minute}})
	billing := consumers.NewMux()
	billing.HandleFunc("charge", func(context.Context, *consumers.Request) (any, error) {
		return nil, consumers.Retryable(errors.New("card gateway unreachable"))
	}, consumers.Describe("charges a card (this one always fails, retryably)"))
	st.startConsumer(t, consumers.Config{Handler: "billing", Description: "Charges cards. Fails on purpose, for the dead letters.", MaxAttempts: 1}, billing)
	shots := os.Getenv("STREAMRPC_SCREENSHOTS") == "1"

	done := asyncCall(t, st.url, "/rpc/echo/echo", `{"find":"me"}`)
	waitState(t, st.url, done, "done")

	testCtx, cancelTest := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancelTest()
	allocCtx, cancelAlloc := chromiumAllocator(testCtx, t, chrome, chromedp.Flag("hide-scrollbars", true), chromedp.WindowSize(1360, 900))
	defer cancelAlloc()
	tab, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1360, 900)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	poll := func(js string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
	}
	search := func(q string) {
		t.Helper()
		step(t, tab, 20*time.Second, "search "+q,
			chromedp.Navigate(st.url+"/ui/"),
			chromedp.WaitVisible(chromedp.CSS(`input[data-search]`)),
			chromedp.SendKeys(chromedp.CSS(`input[data-search]`), q+"\r"),
		)
	}

	// 1. The search box finds a call; an id that finds none says why.
	search(done)
	step(t, tab, 15*time.Second, "see the call found", chromedp.WaitVisible(chromedp.CSS(`[data-call-state="done"]`)))
	for _, c := range []struct{ name, q, want string }{
		{"not an id", "hello there", "Not a call id"},
		{"unknown handler", "nobody.01J00000000000000000000000", "no consumer has registered a handler named “nobody”"},
		{"expired", "echo.01J00000000000000000000000", "Call expired"},
		{"not known yet", streams.NewCallID("echo"), "Call not known yet"},
	} {
		search(c.q)
		step(t, tab, 15*time.Second, c.name, chromedp.WaitVisible(chromedp.CSS(`.error-page`)))
		if text := value(t, tab, "read "+c.name, chromedp.Text(chromedp.CSS(`main`))); !strings.Contains(text, c.want) {
			t.Errorf("search %q: page says %q, want %q", c.q, text, c.want)
		}
	}

	// 2. Pause echo from its page; the calls queued meanwhile wait, listed by
	// position; cancel the first from the list.
	step(t, tab, 20*time.Second, "pause echo",
		chromedp.Navigate(st.url+"/ui/handlers/echo"),
		chromedp.Click(chromedp.CSS(`button[data-pause]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-paused]`)),
	)
	waitPaused(t, st.url, "echo")
	var ids []string
	for i := range 3 {
		ids = append(ids, asyncCall(t, st.url, "/rpc/echo/echo", fmt.Sprintf(`{"waiting":%d}`, i)))
	}
	step(t, tab, 20*time.Second, "open the queued list",
		chromedp.Navigate(st.url+"/ui/handlers/echo/calls?state=queued"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-id=%q]`, ids[2]))),
	)
	if n := value(t, tab, "count the rows", chromedp.Evaluate[int](`document.querySelectorAll('table[data-calls="queued"] tbody tr').length`)); n != 3 {
		t.Fatalf("%d queued rows, want 3", n)
	}
	if pos := value(t, tab, "read the last position", chromedp.Text(chromedp.CSS(fmt.Sprintf(`tr[data-id=%q] td.num`, ids[2])))); pos != "3" {
		t.Fatalf("the last call is at position %q, want 3", pos)
	}
	screenshot(t, tab, shots, "calls-queued")
	first := fmt.Sprintf(`tr[data-id=%q]`, ids[0])
	step(t, tab, 20*time.Second, "cancel the first call",
		chromedp.Click(chromedp.CSS(first+` button[data-act]`)), // arms it
		chromedp.Click(chromedp.CSS(first+` button[data-act]`)), // confirms
		poll(fmt.Sprintf(`document.querySelector('%s [data-action-status]').textContent === 'cancelled'`, first)),
	)
	if s := callState(t, st.url, ids[0]); s != "cancelled" {
		t.Fatalf("the cancelled call is %q", s)
	}
	if d := handlerDetail(t, st.url, "echo"); d.Pending != 0 {
		t.Fatalf("%d calls taken while paused", d.Pending)
	}
	step(t, tab, 20*time.Second, "open the paused handler page",
		chromedp.Navigate(st.url+"/ui/handlers/echo"), chromedp.WaitVisible(chromedp.CSS(`[data-paused]`)))
	screenshot(t, tab, shots, "handler-paused")

	// 3. Resume: the calls that waited run.
	step(t, tab, 20*time.Second, "resume echo",
		chromedp.Click(chromedp.CSS(`button[data-resume]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-running]`)),
	)
	for _, id := range ids[1:] {
		waitState(t, st.url, id, "done")
	}

	// 4. Dead letters, replayed in bulk from the dead list.
	var dead []string
	for i := range 3 {
		r := post(t, st.url, "/rpc/billing/charge", []byte(fmt.Sprintf(`{"order":%d}`, 1040+i)), nil)
		if r.Error == nil || r.Error.Code != streams.CodeDeadLettered {
			t.Fatalf("billing.charge: %d %s, want dead_lettered", r.status, r.body)
		}
		dead = append(dead, r.requestID)
	}
	step(t, tab, 20*time.Second, "open the dead list",
		chromedp.Navigate(st.url+"/ui/handlers/billing/calls?state=dead"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-id=%q]`, dead[2]))),
		chromedp.Click(chromedp.CSS(`input[data-select-all]`)),
	)
	screenshot(t, tab, shots, "calls-dead")
	step(t, tab, 20*time.Second, "replay the selected dead letters",
		chromedp.Click(chromedp.CSS(`button[data-bulk-action="replay"]`)),
		poll(`document.querySelector('.bulkbar [data-action-status]').textContent === 'replayed 3'`),
	)
	for _, id := range dead {
		waitUntil(t, 15*time.Second, func() error {
			if !hasEvent(storyEvents(t, st.url, id), streams.EventReplayed, "operator") {
				return fmt.Errorf("call %s: no replay in its story", id)
			}
			return nil
		})
	}

	// 5. At a phone's width, the handler page's tables scroll inside their
	// cards: the page itself is no wider than the screen.
	step(t, tab, 20*time.Second, "a phone-width handler page",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(st.url+"/ui/handlers/echo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-rate-chart] svg.chart`)),
	)
	if w := value(t, tab, "read the page width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("at 390 px the page is %d px wide: something is clipped or overflows", w)
	}
	screenshot(t, tab, shots, "handler-mobile")
}
