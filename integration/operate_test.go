package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// The operator's API (app/operate.go) on a real Redis: the state lists with
// paging and filters, pause and resume, and the actions on calls, each
// noted in the call's story.

func listCalls(t *testing.T, url, handler, query string) streams.CallPage {
	t.Helper()
	var p streams.CallPage
	getJSON(t, url+"/handlers/"+handler+"/calls?"+query, &p)
	return p
}

func handlerDetail(t *testing.T, url, handler string) streams.HandlerDetail {
	t.Helper()
	var d streams.HandlerDetail
	getJSON(t, url+"/handlers/"+handler, &d)
	return d
}

func storyEvents(t *testing.T, url, id string) []streams.StoryEvent {
	t.Helper()
	var s struct{ Story []streams.StoryEvent }
	getJSON(t, url+"/rpc/calls/"+id, &s)
	return s.Story
}

func hasEvent(events []streams.StoryEvent, name, detail string) bool {
	for _, e := range events {
		if e.Event == name && strings.Contains(e.Detail, detail) {
			return true
		}
	}
	return false
}

// readBlockOf is the read block of a consumer with default settings: a read
// started before the consumer learnt of a pause returns within it.
const readBlockOf = time.Second

// waitPaused waits until every online consumer of handler has seen the
// pause (its state) and any read it had waiting has returned: from then on
// none takes a call.
func waitPaused(t *testing.T, url, handler string) {
	t.Helper()
	var seen time.Time
	waitUntil(t, 10*time.Second, func() error {
		d := handlerDetail(t, url, handler)
		if !d.Paused {
			return errors.New("the handler is not paused")
		}
		for _, c := range d.Consumers {
			if c.Online && c.State != streams.ConsumerPaused {
				return fmt.Errorf("consumer %s is %s", c.Name, c.State)
			}
		}
		seen = time.Now()
		return nil
	})
	waitUntil(t, 10*time.Second, func() error {
		for _, c := range handlerDetail(t, url, handler).Consumers {
			if c.Online && !c.LastHeartbeat.After(seen.Add(readBlockOf)) {
				return fmt.Errorf("consumer %s has not heartbeat since the pause's read block", c.Name)
			}
		}
		return nil
	})
}

func asyncCall(t *testing.T, url, path, body string) string {
	t.Helper()
	r := post(t, url, path, []byte(body), preferAsync)
	if r.status != http.StatusAccepted || r.requestID == "" {
		t.Fatalf("POST %s: %d %s, want 202 with an id", path, r.status, r.body)
	}
	return r.requestID
}

func callState(t *testing.T, url, id string) string {
	t.Helper()
	return get(t, url+"/rpc/calls/"+id).State
}

func waitState(t *testing.T, url, id, want string) {
	t.Helper()
	waitUntil(t, 20*time.Second, func() error {
		if s := callState(t, url, id); s != want {
			return fmt.Errorf("call %s is %q, want %q", id, s, want)
		}
		return nil
	})
}

// TestOperatePauseQueueCancelPurge: a paused handler's consumers take no
// call while the edge keeps queueing; the queued list pages by position and
// filters by method; a queued call is cancelled, the rest purged (with a
// confirmation), and a call queued while paused runs after resume.
func TestOperatePauseQueueCancelPurge(t *testing.T) {
	st := newStack(t, stackOptions{})
	if r := post(t, st.url, "/handlers/echo/pause", nil, nil); r.status != 200 {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	waitPaused(t, st.url, "echo")
	var hs struct{ Handlers []streams.HandlerSummary }
	getJSON(t, st.url+"/handlers", &hs)
	if len(hs.Handlers) != 1 || !hs.Handlers[0].Paused {
		t.Fatalf("/handlers: %+v, want echo paused", hs.Handlers)
	}

	var ids []string
	for i := range 5 {
		path := "/rpc/echo/echo"
		if i%2 == 1 {
			path = "/rpc/echo/sleep"
		}
		ids = append(ids, asyncCall(t, st.url, path, fmt.Sprintf(`{"ms":%d}`, i)))
	}
	// None is taken while paused: the consumer heartbeats twice more and the
	// calls are still all queued.
	since := time.Now()
	waitUntil(t, 10*time.Second, func() error {
		for _, c := range handlerDetail(t, st.url, "echo").Consumers {
			if !c.LastHeartbeat.After(since.Add(2 * time.Second)) {
				return errors.New("waiting for two more heartbeats")
			}
		}
		return nil
	})
	if d := handlerDetail(t, st.url, "echo"); d.Pending != 0 || d.Backlog != 5 {
		t.Fatalf("paused: pending %d backlog %d, want 0 and 5", d.Pending, d.Backlog)
	}

	t.Run("queued list pages with positions", func(t *testing.T) {
		p1 := listCalls(t, st.url, "echo", "state=queued&limit=2")
		if p1.Total != 5 || len(p1.Calls) != 2 || p1.Next == "" {
			t.Fatalf("page 1: total %d, %d calls, next %q", p1.Total, len(p1.Calls), p1.Next)
		}
		p2 := listCalls(t, st.url, "echo", "state=queued&limit=2&cursor="+p1.Next)
		p3 := listCalls(t, st.url, "echo", "state=queued&limit=2&cursor="+p2.Next)
		all := append(append(p1.Calls, p2.Calls...), p3.Calls...)
		if len(all) != 5 || p3.Next != "" {
			t.Fatalf("pages: %d calls, last next %q", len(all), p3.Next)
		}
		for i, c := range all {
			if c.ID != ids[i] || c.Position != int64(i+1) || c.StreamID == "" || c.EnqueuedAt.IsZero() {
				t.Fatalf("call %d: %+v, want %s at position %d", i, c, ids[i], i+1)
			}
		}
	})
	t.Run("method filter", func(t *testing.T) {
		p := listCalls(t, st.url, "echo", "state=queued&method=sleep")
		if len(p.Calls) != 2 || p.Calls[0].ID != ids[1] || p.Calls[1].ID != ids[3] || p.Calls[1].Position != 4 {
			t.Fatalf("sleep calls: %+v", p.Calls)
		}
	})
	t.Run("bad queries", func(t *testing.T) {
		for _, q := range []string{"", "state=nope", "state=queued&cursor=zz", "state=queued&limit=0", "state=done&outcome=dead", "state=queued&method=a%20b"} {
			if r := get(t, st.url+"/handlers/echo/calls?"+q); r.status != http.StatusBadRequest || r.Error == nil {
				t.Errorf("?%s: %d %s, want 400 with an error", q, r.status, r.body)
			}
		}
	})

	first := listCalls(t, st.url, "echo", "state=queued&limit=1").Calls[0]
	r := post(t, st.url, "/handlers/echo/calls/"+first.ID+"/cancel?stream_id="+first.StreamID, nil, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"cancelled":true`) {
		t.Fatalf("cancel a queued call: %d %s", r.status, r.body)
	}
	if s := callState(t, st.url, first.ID); s != "cancelled" {
		t.Fatalf("cancelled call is %q", s)
	}
	if ev := storyEvents(t, st.url, first.ID); !hasEvent(ev, streams.EventCancelled, "by an operator") || ev[0].Event != "queued" {
		t.Fatalf("story of the cancelled call: %+v", ev)
	}
	if r := post(t, st.url, "/handlers/echo/calls/"+first.ID+"/cancel", nil, nil); r.status != http.StatusConflict {
		t.Fatalf("cancel it again: %d %s, want 409", r.status, r.body)
	}

	// Purge needs its confirmation, then cancels all but the last call.
	if r := post(t, st.url, "/handlers/echo/purge", []byte(`{}`), nil); r.status != http.StatusBadRequest {
		t.Fatalf("purge without confirm: %d %s", r.status, r.body)
	}
	last := ids[4]
	if r := post(t, st.url, "/handlers/echo/purge", []byte(`{"confirm":"echo"}`), nil); r.status != 200 || !strings.Contains(string(r.body), `"purged":4`) {
		t.Fatalf("purge: %d %s, want 4 purged", r.status, r.body)
	}
	if s := callState(t, st.url, last); s != "cancelled" {
		t.Fatalf("purged call is %q", s)
	}
	if ev := storyEvents(t, st.url, last); !hasEvent(ev, streams.EventCancelled, "purged") {
		t.Fatalf("story of a purged call: %+v", ev)
	}

	// A call queued while paused runs after resume.
	after := asyncCall(t, st.url, "/rpc/echo/echo", `{"queued":"while paused"}`)
	if r := post(t, st.url, "/handlers/echo/resume", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `"paused":false`) {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	waitState(t, st.url, after, "done")
	if d := handlerDetail(t, st.url, "echo"); d.Paused {
		t.Fatal("still paused after resume")
	}
	if r := post(t, st.url, "/handlers/nobody/pause", nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("pause an unknown handler: %d %s", r.status, r.body)
	}
}

// TestOperateRunningDelayedDead: the running list names the consumer and is
// cancelled from there; the delayed list has the due time, attempt and last
// error, and run-now runs it at once; dead letters page, and are replayed
// and deleted in bulk; done and failed come from the activity record.
func TestOperateRunningDelayedDead(t *testing.T) {
	// Calls may wait an hour: a retry due after a call's deadline is not made.
	st := newStack(t, stackOptions{edge: app.Config{CallTimeout: time.Hour}})
	retrier := consumers.NewMux()
	retrier.HandleFunc("flaky", func(context.Context, *consumers.Request) (any, error) {
		return nil, consumers.Retryable(errors.New("gateway down"))
	})
	st.startConsumer(t, consumers.Config{Handler: "retrier", MaxAttempts: 5, RetryBaseDelay: 10 * time.Minute, RetryMaxDelay: 10 * time.Minute}, retrier)
	billing := consumers.NewMux()
	billing.HandleFunc("charge", func(context.Context, *consumers.Request) (any, error) {
		return nil, consumers.Retryable(errors.New("card declined"))
	})
	billing.HandleFunc("refund", func(context.Context, *consumers.Request) (any, error) {
		return nil, consumers.Retryable(errors.New("refund refused"))
	})
	st.startConsumer(t, consumers.Config{Handler: "billing", MaxAttempts: 1}, billing)

	t.Run("running, cancelled from the list", func(t *testing.T) {
		id := asyncCall(t, st.url, "/rpc/echo/sleep", `{"ms":60000}`)
		var running streams.ListedCall
		waitUntil(t, 10*time.Second, func() error {
			p := listCalls(t, st.url, "echo", "state=running")
			if len(p.Calls) != 1 {
				return fmt.Errorf("%d running", len(p.Calls))
			}
			running = p.Calls[0]
			return nil
		})
		if running.ID != id || running.Consumer == "" || running.LeasedAt.IsZero() || running.Attempt != 1 {
			t.Fatalf("running: %+v", running)
		}
		r := post(t, st.url, "/handlers/echo/calls/"+id+"/cancel?stream_id="+running.StreamID, nil, nil)
		if r.status != 200 || !strings.Contains(string(r.body), `"cancel_requested":true`) {
			t.Fatalf("cancel a running call: %d %s", r.status, r.body)
		}
		waitState(t, st.url, id, "cancelled")
		waitUntil(t, 10*time.Second, func() error {
			if ev := storyEvents(t, st.url, id); !hasEvent(ev, streams.EventCancelRequested, "operator") || !hasEvent(ev, "finished", "") {
				return fmt.Errorf("story: %+v", ev)
			}
			return nil
		})
	})

	t.Run("delayed, run now", func(t *testing.T) {
		id := asyncCall(t, st.url, "/rpc/retrier/flaky", `{}`)
		var d streams.ListedCall
		waitUntil(t, 10*time.Second, func() error {
			p := listCalls(t, st.url, "retrier", "state=delayed")
			if len(p.Calls) != 1 {
				return fmt.Errorf("%d delayed", len(p.Calls))
			}
			d = p.Calls[0]
			return nil
		})
		if d.ID != id || d.Attempt != 2 || time.Until(d.DueAt) < 5*time.Minute || d.LastError != "gateway down" {
			t.Fatalf("delayed: %+v", d)
		}
		if r := post(t, st.url, "/handlers/retrier/calls/"+id+"/run-now", nil, nil); r.status != 200 {
			t.Fatalf("run now: %d %s", r.status, r.body)
		}
		// It runs at once, fails again, and waits for attempt 3.
		waitUntil(t, 10*time.Second, func() error {
			p := listCalls(t, st.url, "retrier", "state=delayed")
			if len(p.Calls) != 1 || p.Calls[0].Attempt != 3 {
				return fmt.Errorf("delayed: %+v", p.Calls)
			}
			return nil
		})
		if ev := storyEvents(t, st.url, id); !hasEvent(ev, streams.EventRunNow, "operator") {
			t.Fatalf("story: %+v", ev)
		}
		if r := post(t, st.url, "/handlers/retrier/calls/"+id+"/run-now", nil, nil); r.status != 200 {
			t.Fatalf("run now again: %d %s", r.status, r.body)
		}
		if r := post(t, st.url, "/handlers/retrier/calls/retrier.01HZZZZZZZZZZZZZZZZZZZZZZZ/run-now", nil, nil); r.status != http.StatusNotFound {
			t.Fatalf("run now, no such call: %d %s", r.status, r.body)
		}
		if r := post(t, st.url, "/handlers/retrier/calls/echo.01HZZZZZZZZZZZZZZZZZZZZZZZ/run-now", nil, nil); r.status != http.StatusBadRequest {
			t.Fatalf("run now, another handler's call: %d %s", r.status, r.body)
		}
	})

	t.Run("dead letters, bulk", func(t *testing.T) {
		var ids []string
		for i := range 3 {
			m := "charge"
			if i == 2 {
				m = "refund"
			}
			// One at a time: dead letters are listed in the order the
			// calls died, which is the order of the calls only if each
			// dies before the next is made (run at once, the refund can
			// fail before a charge).
			id := asyncCall(t, st.url, "/rpc/billing/"+m, fmt.Sprintf(`{"n":%d}`, i))
			waitState(t, st.url, id, "dead")
			ids = append(ids, id)
		}
		p1 := listCalls(t, st.url, "billing", "state=dead&limit=2")
		if p1.Total != 3 || len(p1.Calls) != 2 || p1.Next == "" || p1.Calls[0].DeadLetter == nil || p1.Calls[0].LastError != "card declined" {
			t.Fatalf("dead page 1: %+v", p1)
		}
		p2 := listCalls(t, st.url, "billing", "state=dead&limit=2&cursor="+p1.Next)
		if len(p2.Calls) != 1 || p2.Calls[0].ID != ids[2] || p2.Next != "" {
			t.Fatalf("dead page 2: %+v", p2)
		}
		if p := listCalls(t, st.url, "billing", "state=dead&method=refund"); len(p.Calls) != 1 || p.Calls[0].ID != ids[2] {
			t.Fatalf("dead, refund only: %+v", p.Calls)
		}
		body, _ := json.Marshal(map[string]any{"action": "replay", "ids": []string{p1.Calls[0].DeadLetter.StreamID, p1.Calls[1].DeadLetter.StreamID, "1-1"}})
		r := post(t, st.url, "/handlers/billing/dead-letters/bulk", body, nil)
		var res struct {
			Done    int
			Results []streams.BulkResult
		}
		if r.status != 200 || json.Unmarshal(r.body, &res) != nil || res.Done != 2 || res.Results[2].OK {
			t.Fatalf("bulk replay: %d %s", r.status, r.body)
		}
		// Replayed, they fail again: dead again, with the replay in their story.
		waitUntil(t, 10*time.Second, func() error {
			ev := storyEvents(t, st.url, ids[0])
			if !hasEvent(ev, streams.EventReplayed, "operator") || ev[len(ev)-1].Event != "dead_lettered" {
				return fmt.Errorf("story: %+v", ev)
			}
			return nil
		})
		waitUntil(t, 10*time.Second, func() error {
			if p := listCalls(t, st.url, "billing", "state=dead"); p.Total != 3 {
				return fmt.Errorf("%d dead", p.Total)
			}
			return nil
		})
		var dlids []string
		for _, c := range listCalls(t, st.url, "billing", "state=dead").Calls {
			dlids = append(dlids, c.DeadLetter.StreamID)
		}
		body, _ = json.Marshal(map[string]any{"action": "delete", "ids": dlids})
		if r := post(t, st.url, "/handlers/billing/dead-letters/bulk", body, nil); r.status != 200 || !strings.Contains(string(r.body), `"done":3`) {
			t.Fatalf("bulk delete: %d %s", r.status, r.body)
		}
		if p := listCalls(t, st.url, "billing", "state=dead"); p.Total != 0 {
			t.Fatalf("%d dead after delete", p.Total)
		}
		if ev := storyEvents(t, st.url, ids[2]); !hasEvent(ev, streams.EventDeleted, "operator") {
			t.Fatalf("story: %+v", ev)
		}
		for _, b := range []string{`{"action":"burn","ids":["1-1"]}`, `{"action":"delete","ids":[]}`, `nope`} {
			if r := post(t, st.url, "/handlers/billing/dead-letters/bulk", []byte(b), nil); r.status != http.StatusBadRequest {
				t.Errorf("bulk %s: %d %s, want 400", b, r.status, r.body)
			}
		}
	})

	t.Run("done and failed", func(t *testing.T) {
		okID := asyncCall(t, st.url, "/rpc/echo/echo", `{"ok":1}`)
		failID := asyncCall(t, st.url, "/rpc/echo/fail", `{"message":"nope"}`)
		waitState(t, st.url, okID, "done")
		waitState(t, st.url, failID, "failed")
		waitUntil(t, 10*time.Second, func() error {
			done := listCalls(t, st.url, "echo", "state=done&method=echo")
			failed := listCalls(t, st.url, "echo", "state=failed&outcome=error")
			if len(done.Calls) == 0 || done.Calls[0].ID != okID || len(failed.Calls) == 0 || failed.Calls[0].ID != failID || failed.Calls[0].LastError != "nope" {
				return fmt.Errorf("done %+v, failed %+v", done.Calls, failed.Calls)
			}
			return nil
		})
	})
}

// TestOperateScopes: every action needs the admin scope; the lists need read.
func TestOperateScopes(t *testing.T) {
	readKey, readHash, err := app.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	adminKey, adminHash, err := app.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	st := newStack(t, stackOptions{edge: app.Config{APIKeys: "reader:" + readHash + ":read;ops:" + adminHash + ":read admin"}})
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	const missing = "echo.01HZZZZZZZZZZZZZZZZZZZZZZZ"
	cases := []struct {
		name, path, body string
		adminStatus      int // what the admin key gets (the read key gets 403)
	}{
		{"pause", "/handlers/echo/pause", "", 200},
		{"resume", "/handlers/echo/resume", "", 200},
		{"cancel", "/handlers/echo/calls/" + missing + "/cancel?stream_id=1-1", "", 404},
		{"run now", "/handlers/echo/calls/" + missing + "/run-now", "", 404},
		{"purge", "/handlers/echo/purge", `{"confirm":"echo"}`, 200},
		{"bulk", "/handlers/echo/dead-letters/bulk", `{"action":"delete","ids":["1-1"]}`, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r := post(t, st.url, c.path, []byte(c.body), bearer(readKey)); r.status != http.StatusForbidden {
				t.Fatalf("read key: %d %s, want 403", r.status, r.body)
			}
			if r := post(t, st.url, c.path, []byte(c.body), nil); r.status != http.StatusUnauthorized {
				t.Fatalf("no key: %d %s, want 401", r.status, r.body)
			}
			if r := post(t, st.url, c.path, []byte(c.body), bearer(adminKey)); r.status != c.adminStatus {
				t.Fatalf("admin key: %d %s, want %d", r.status, r.body, c.adminStatus)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodGet, st.url+"/handlers/echo/calls?state=queued", nil)
	req.Header.Set("Authorization", "Bearer "+readKey)
	if r := do(t, req); r.status != 200 {
		t.Fatalf("list with the read key: %d %s", r.status, r.body)
	}

	// From the dashboard's session cookie, an action also needs the CSRF
	// token the pages carry.
	form := strings.NewReader(url.Values{"credential": {adminKey}}.Encode())
	req, _ = http.NewRequest(http.MethodPost, st.url+"/ui/sign-in", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == app.SessionCookie {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("sign-in: %d, no session cookie", res.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, st.url+"/ui/handlers/echo", nil)
	req.AddCookie(session)
	res, err = httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("the handler page carries no CSRF token: %d", res.StatusCode)
	}
	pause := func(token string) *response {
		req, _ := http.NewRequest(http.MethodPost, st.url+"/handlers/echo/pause", nil)
		req.AddCookie(session)
		if token != "" {
			req.Header.Set("X-CSRF-Token", token)
		}
		return do(t, req)
	}
	if r := pause(""); r.status != http.StatusForbidden {
		t.Fatalf("pause from the session without its CSRF token: %d %s, want 403", r.status, r.body)
	}
	if r := pause(string(m[1])); r.status != 200 {
		t.Fatalf("pause from the session with its CSRF token: %d %s", r.status, r.body)
	}
}
