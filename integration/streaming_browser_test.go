package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestStreamUIProgress: the page of a running async call shows its streamed
// progress live, then reloads into the call's outcome.
func TestStreamUIProgress(t *testing.T) {
	chrome := chromiumPath(t)
	st := newStack(t, stackOptions{})
	testCtx, cancelTest := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelTest()
	allocCtx, cancelAlloc := chromiumAllocator(testCtx, t, chrome)
	defer cancelAlloc()
	page, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	// The first action starts the browser, which lives as long as the
	// context of that call: this one, not a step's.
	if err := chromedp.Do(page, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	// Started once the browser is up, so that it is still running when the page opens.
	r := post(t, st.url, "/rpc/echo/count", []byte(`{"n":60,"ms":100}`), map[string]string{"Prefer": "respond-async"})
	if r.status != 202 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	step(t, page, 20*time.Second, "open the running call's page",
		chromedp.Navigate(st.url+"/ui/calls/"+r.requestID),
		chromedp.WaitVisible(chromedp.CSS(`[data-call-waiting]`)),
	)
	step(t, page, 20*time.Second, "see its progress move",
		chromedp.Poll[chromedp.Void](`/"i":\d+/.test((document.querySelector('[data-progress]') || {}).textContent || '')`,
			chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)),
	)
	// The page reloads under a poll: read the state until it says done.
	waitUntil(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(page, 2*time.Second)
		defer cancel()
		state, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-call-state]`)))
		if err != nil {
			return err
		}
		if state != "done" {
			return fmt.Errorf("state %q", state)
		}
		return nil
	})
}
