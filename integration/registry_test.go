package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	r := get(t, url)
	if r.status != 200 {
		t.Fatalf("GET %s: %d %s", url, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func methodStat(d streams.HandlerDetail, m string) streams.MethodStats {
	for _, s := range d.Methods {
		if s.Method == m {
			return s
		}
	}
	return streams.MethodStats{}
}

// TestStatsMatchTheCalls makes calls of every outcome and checks that the
// registry, stats, activity and stories the edge serves match them.
func TestStatsMatchTheCalls(t *testing.T) {
	st := newStack(t, stackOptions{})
	var runs atomic.Int64
	flaky := st.startConsumer(t, consumers.Config{Handler: "flaky", MaxAttempts: 3, RetryBaseDelay: 20 * time.Millisecond, Version: "1.2.3"}, flakyMux(2, nil, &runs))
	for i := range 5 {
		post(t, st.url, "/rpc/echo/echo", []byte(fmt.Sprintf(`{"i":%d}`, i)), nil)
	}
	var failID string
	for range 2 {
		failID = post(t, st.url, "/rpc/echo/fail", []byte(`{"message":"no <b>way</b>"}`), nil).requestID
	}
	retried := post(t, st.url, "/rpc/flaky/flaky", []byte(`{}`), nil)
	if retried.status != 200 {
		t.Fatalf("flaky: %d %s", retried.status, retried.body)
	}

	// Consumers write stats a few times a second, not in each call's round
	// trip: wait for both handlers' to land, then check them exactly.
	var d, fd streams.HandlerDetail
	waitUntil(t, 10*time.Second, func() error {
		getJSON(t, st.url+"/handlers/echo", &d)
		getJSON(t, st.url+"/handlers/flaky", &fd)
		if d.Totals.Calls < 7 || fd.Totals.Calls < 1 {
			return fmt.Errorf("stats not written yet: echo %d calls, flaky %d", d.Totals.Calls, fd.Totals.Calls)
		}
		return nil
	})
	if d.ConsumersOnline != 1 || len(d.Consumers) != 1 || d.Consumers[0].Name != st.consumer.Name() || !d.Consumers[0].Online {
		t.Fatalf("consumers: %d online, %+v", d.ConsumersOnline, d.Consumers)
	}
	if d.Totals.Calls != 7 || d.Totals.Errors != 2 || d.Info.Kind != "go" || len(d.Info.Methods) != len(echo.Mux().Methods()) {
		t.Fatalf("echo totals %+v, info %+v", d.Totals, d.Info)
	}
	if e := methodStat(d, "echo"); e.Calls != 5 || e.Errors != 0 || e.SuccessRate != 1 || e.P50MS <= 0 || sum(e.Histogram) != 5 {
		t.Fatalf("echo.echo stats %+v", e)
	}
	if f := methodStat(d, "fail"); f.Calls != 2 || f.Errors != 2 || f.SuccessRate != 0 {
		t.Fatalf("echo.fail stats %+v", f)
	}
	if d.Rate[len(d.Rate)-1].Calls+d.Rate[len(d.Rate)-2].Calls != 7 || d.CallsPerSecond <= 0 {
		t.Fatalf("rate: last buckets %+v, %.2f/s", d.Rate[len(d.Rate)-2:], d.CallsPerSecond)
	}

	if s := methodStat(fd, "flaky"); s.Calls != 1 || s.Retries != 1 || s.Errors != 0 || sum(s.Histogram) != 2 || fd.Info.Version != "1.2.3" {
		t.Fatalf("flaky stats %+v (version %q)", s, fd.Info.Version)
	}

	var all struct{ Handlers []streams.HandlerSummary }
	getJSON(t, st.url+"/handlers", &all)
	if len(all.Handlers) != 2 || all.Handlers[0].Name != "echo" || all.Handlers[1].Name != "flaky" {
		t.Fatalf("handlers %+v", all.Handlers)
	}

	var act struct{ Activity []streams.Activity }
	getJSON(t, st.url+"/activity?handler=echo&limit=100", &act)
	if len(act.Activity) != 7 || act.Activity[0].ID != failID || act.Activity[0].Outcome != "error" ||
		act.Activity[0].Error != "no <b>way</b>" || !strings.HasPrefix(act.Activity[0].Caller, "127.0.0.1") || act.Activity[0].Consumer != st.consumer.Name() {
		t.Fatalf("activity %+v", act.Activity)
	}
	getJSON(t, st.url+"/activity?limit=100", &act)
	if len(act.Activity) != 9 { // 7 echo + 2 flaky attempts
		t.Fatalf("all activity: %d entries", len(act.Activity))
	}

	var story struct {
		State  string
		Method string
		Story  []streams.StoryEvent
	}
	getJSON(t, st.url+"/rpc/calls/"+retried.requestID, &story)
	var events []string
	for _, e := range story.Story {
		events = append(events, e.Event)
	}
	if story.State != "done" || story.Method != "flaky" || strings.Join(events, ",") != "queued,started,retried,started,finished" ||
		story.Story[2].Consumer != flaky.Name() || string(story.Story[0].Params) != `{}` {
		t.Fatalf("story of the retried call: %s %s %v", story.State, story.Method, events)
	}

	if err := flaky.Close(); err != nil {
		t.Fatal(err)
	}
	getJSON(t, st.url+"/handlers/flaky", &fd)
	if fd.ConsumersOnline != 0 {
		t.Fatalf("a stopped consumer is still online: %+v", fd.Consumers)
	}
	if r := get(t, st.url+"/handlers/nobody"); r.status != 404 || r.Error == nil || r.Error.Code != streams.CodeNotFound {
		t.Fatalf("unknown handler: %d %s", r.status, r.body)
	}
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

// TestEventsFeed reads the live feed: a call made after subscribing shows up
// as an activity event.
func TestEventsFeed(t *testing.T) {
	st := newStack(t, stackOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, st.url+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The feed starts at the present: keep calling until a call of ours is seen.
	seen := map[string]bool{}
	sawStats := false
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	event := ""
	for {
		select {
		case <-tick.C:
			seen[post(t, st.url, "/rpc/echo/echo", []byte(`{"live":true}`), nil).requestID] = true
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the feed ended")
			}
			switch {
			case strings.HasPrefix(l, "event: "):
				event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: ") && event == "stats":
				sawStats = true
			case strings.HasPrefix(l, "data: ") && event == "activity":
				var a streams.Activity
				if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &a); err != nil {
					t.Fatal(err)
				}
				if seen[a.ID] && sawStats {
					return
				}
			}
		case <-deadline:
			t.Fatalf("no activity event for our calls (stats seen: %v)", sawStats)
		}
	}
}

// sseEvent is one event of GET /events, parsed.
type sseEvent struct{ id, event, data string }

// openEvents opens GET /events (with Last-Event-ID if lastID is set) and
// returns its events; the feed is closed by close or at the end of the test.
func openEvents(t *testing.T, url, lastID string) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan sseEvent, 1024)
	go func() {
		defer close(events)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			l := sc.Text()
			switch {
			case l == "":
				if ev.event != "" {
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(l, "id: "):
				ev.id = strings.TrimPrefix(l, "id: ")
			case strings.HasPrefix(l, "event: "):
				ev.event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: "):
				ev.data = strings.TrimPrefix(l, "data: ")
			}
		}
	}()
	return events, cancel
}

// TestEventsResume: activity events carry their position as id:, stats
// events none, and a reconnect with Last-Event-ID gets what it missed.
func TestEventsResume(t *testing.T) {
	st := newStack(t, stackOptions{})
	events, closeFeed := openEvents(t, st.url, "")
	// The feed starts at the present: call until three calls of ours are seen.
	calls := map[string]bool{}
	var got []sseEvent // activity of our calls, in feed order
	sawStats := false
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for len(got) < 3 || !sawStats {
		select {
		case <-tick.C:
			if len(calls) < 3 {
				calls[post(t, st.url, "/rpc/echo/echo", []byte(`{"n":1}`), nil).requestID] = true
			}
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the feed ended")
			}
			switch ev.event {
			case "stats":
				sawStats = true
				if ev.id != "" {
					t.Fatalf("a stats event with id %q", ev.id)
				}
			case "activity":
				var a streams.Activity
				if err := json.Unmarshal([]byte(ev.data), &a); err != nil {
					t.Fatal(err)
				}
				if ev.id == "" {
					t.Fatalf("an activity event without id: %s", ev.data)
				}
				if calls[a.ID] {
					got = append(got, ev)
				}
			}
		case <-deadline:
			t.Fatalf("saw %d activity events of our calls, stats %v", len(got), sawStats)
		}
	}
	closeFeed()
	// Missed while disconnected.
	missed := map[string]bool{}
	for range 2 {
		missed[post(t, st.url, "/rpc/echo/echo", []byte(`{"n":2}`), nil).requestID] = true
	}
	var first streams.Activity
	_ = json.Unmarshal([]byte(got[0].data), &first)
	events, _ = openEvents(t, st.url, got[0].id)
	want := map[string]bool{}
	for id := range missed {
		want[id] = true
	}
	for _, ev := range got[1:] {
		var a streams.Activity
		_ = json.Unmarshal([]byte(ev.data), &a)
		want[a.ID] = true
	}
	deadline = time.After(20 * time.Second)
	for len(want) > 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the feed ended")
			}
			if ev.event != "activity" {
				continue
			}
			var a streams.Activity
			if err := json.Unmarshal([]byte(ev.data), &a); err != nil {
				t.Fatal(err)
			}
			if a.ID == first.ID {
				t.Fatalf("the event of Last-Event-ID %s was sent again", got[0].id)
			}
			delete(want, a.ID)
		case <-deadline:
			t.Fatalf("after reconnecting with Last-Event-ID, %d calls' events never came: %v", len(want), want)
		}
	}
}
