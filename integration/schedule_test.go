package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// startTimes is a handler that records when each call started, by its
// params' "k".
type startTimes struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (s *startTimes) mux() *consumers.Mux {
	s.at = map[string]time.Time{}
	mux := consumers.NewMux()
	mux.HandleFunc("run", func(ctx context.Context, r *consumers.Request) (any, error) {
		var p struct{ K string }
		_ = json.Unmarshal(r.Params, &p)
		s.mu.Lock()
		s.at[p.K] = time.Now()
		s.mu.Unlock()
		return p.K, nil
	})
	return mux
}

func (s *startTimes) get(k string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[k]
	return t, ok
}

func scheduleIn(d time.Duration) map[string]string {
	return map[string]string{"Prefer": "respond-async", "Schedule-In": fmt.Sprintf("%.3f", d.Seconds())}
}

// scheduledCallRunsAtItsTime: a call scheduled 1.5 s ahead answers 202
// "scheduled", reads as scheduled with its time, is listed, and runs no
// earlier than its time (and within a second of it). A case of
// TestTopologies: on a Cluster, its keys stay in the handler's slot.
func scheduledCallRunsAtItsTime(t *testing.T, tp *topology) {
	st := tp.newStack(t, stackOptions{noConsume: true})
	var times startTimes
	st.startConsumer(t, consumers.Config{Handler: "stamped"}, times.mux())
	before := time.Now()
	r := post(t, st.url, "/rpc/stamped/run", []byte(`{"k":"a"}`), scheduleIn(1500*time.Millisecond))
	due := before.Add(1500 * time.Millisecond)
	if r.status != http.StatusAccepted || r.State != "scheduled" {
		t.Fatalf("scheduled call: %d %s", r.status, r.body)
	}
	g := get(t, st.url+"/rpc/calls/"+r.requestID)
	var status struct {
		State       string    `json:"state"`
		ScheduledAt time.Time `json:"scheduled_at"`
	}
	_ = json.Unmarshal(g.body, &status)
	if status.State != "scheduled" || status.ScheduledAt.Before(due.Add(-time.Second)) || status.ScheduledAt.After(time.Now().Add(1500*time.Millisecond)) {
		t.Fatalf("status of a scheduled call: %s", g.body)
	}
	sc := st.streamsClient(t)
	calls, next, err := sc.ScheduledCalls(context.Background(), "stamped", "", 10)
	if err != nil || len(calls) != 1 || calls[0].ID != r.requestID || calls[0].Method != "run" || next != "" {
		t.Fatalf("ScheduledCalls: %+v %q %v", calls, next, err)
	}
	done := get(t, st.url+"/rpc/calls/"+r.requestID+"?wait=20s")
	if done.State != "done" || string(done.Result) != `"a"` {
		t.Fatalf("scheduled call after its time: %s", done.body)
	}
	started, _ := times.get("a")
	if started.Before(status.ScheduledAt) || started.After(status.ScheduledAt.Add(time.Second)) {
		t.Fatalf("ran at %s, scheduled at %s", started.Format(time.StampMilli), status.ScheduledAt.Format(time.StampMilli))
	}
	if n, err := sc.Scheduled(context.Background(), "stamped"); err != nil || n != 0 {
		t.Fatalf("still scheduled: %d %v", n, err)
	}
}

// TestScheduledCallErrors: every bad schedule is a 400 with a JSON error
// naming the problem, and nothing is enqueued.
func TestScheduledCallErrors(t *testing.T) {
	st := newStack(t, stackOptions{})
	tests := []struct {
		name   string
		header map[string]string
		want   string
	}{
		{"sync call with Schedule-In", map[string]string{"Schedule-In": "5"}, "must be asynchronous"},
		{"sync call with Schedule-At", map[string]string{"Schedule-At": time.Now().Add(time.Hour).Format(time.RFC3339)}, "must be asynchronous"},
		{"both headers", map[string]string{"Prefer": "respond-async", "Schedule-In": "5", "Schedule-At": time.Now().Format(time.RFC3339)}, "not both"},
		{"negative seconds", map[string]string{"Prefer": "respond-async", "Schedule-In": "-1"}, "Schedule-In must be"},
		{"not a number", map[string]string{"Prefer": "respond-async", "Schedule-In": "soon"}, "Schedule-In must be"},
		{"too far", map[string]string{"Prefer": "respond-async", "Schedule-In": "1e12"}, "Schedule-In must be"},
		{"not RFC 3339", map[string]string{"Prefer": "respond-async", "Schedule-At": "tomorrow"}, "RFC 3339"},
		{"RFC 3339 too far", map[string]string{"Prefer": "respond-async", "Schedule-At": time.Now().AddDate(2, 0, 0).Format(time.RFC3339)}, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, st.url, "/rpc/echo/echo", []byte(`1`), tt.header)
			if r.status != http.StatusBadRequest || r.Error == nil || r.Error.Code != streams.CodeInvalidRequest || !strings.Contains(r.Error.Message, tt.want) {
				t.Fatalf("got %d %s, want 400 mentioning %q", r.status, r.body, tt.want)
			}
		})
	}
	if n, _ := st.streamsClient(t).Scheduled(context.Background(), "echo"); n != 0 {
		t.Fatalf("%d calls scheduled by refused requests", n)
	}
}

// TestScheduledCallCancelAndDeadline: a scheduled call cancelled before its
// time never runs; a scheduled call whose timeout is shorter than its delay
// still runs (its deadline counts from its time); both through the Go client.
func TestScheduledCallCancelAndDeadline(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var times startTimes
	st.startConsumer(t, consumers.Config{Handler: "stamped"}, times.mux())
	c := client.New(st.url)
	ctx := context.Background()
	cancelled, err := c.CallAsync(ctx, "stamped", "run", map[string]string{"k": "cancelled"}, client.ScheduleIn(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if state, err := c.Result(ctx, cancelled, 0, nil); err != nil || state != "scheduled" {
		t.Fatalf("before its time: %q %v", state, err)
	}
	// The operator's state lists show it as scheduled, not as a retry.
	for _, tc := range []struct {
		state string
		want  int
	}{{"scheduled", 1}, {"delayed", 0}} {
		g := get(t, st.url+"/handlers/stamped/calls?state="+tc.state)
		var page struct {
			Calls []struct {
				ID    string    `json:"id"`
				DueAt time.Time `json:"due_at"`
			} `json:"calls"`
			Total int64 `json:"total"`
		}
		if err := json.Unmarshal(g.body, &page); err != nil || g.status != 200 || len(page.Calls) != tc.want || page.Total != int64(tc.want) {
			t.Fatalf("state=%s: %d %s (%v), want %d call(s)", tc.state, g.status, g.body, err, tc.want)
		}
		if tc.want == 1 && (page.Calls[0].ID != cancelled || page.Calls[0].DueAt.IsZero()) {
			t.Fatalf("state=%s lists %s", tc.state, g.body)
		}
	}
	if got, err := c.Cancel(ctx, cancelled); err != nil || got != "cancelled" {
		t.Fatalf("cancel a scheduled call: %q %v", got, err)
	}
	// Request-Timeout 1 s, scheduled 2 s ahead: it runs, and after the first
	// call's time, so once it is done the cancelled one would have run.
	req, _ := http.NewRequest(http.MethodPost, st.url+"/rpc/stamped/run", strings.NewReader(`{"k":"late"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	req.Header.Set("Request-Timeout", "1")
	req.Header.Set("Schedule-At", time.Now().Add(2*time.Second).UTC().Format(time.RFC3339Nano))
	late := do(t, req)
	if late.status != http.StatusAccepted {
		t.Fatalf("scheduled call: %d %s", late.status, late.body)
	}
	var out string
	if state, err := c.Result(ctx, late.requestID, 20*time.Second, &out); err != nil || state != "done" || out != "late" {
		t.Fatalf("scheduled call with a short timeout: %q %q %v", state, out, err)
	}
	if _, ran := times.get("cancelled"); ran {
		t.Fatal("the cancelled scheduled call ran")
	}
	var ce *client.Error
	if state, err := c.Result(ctx, cancelled, 0, nil); state != "cancelled" || !errors.As(err, &ce) || ce.Code != streams.CodeCancelled {
		t.Fatalf("cancelled call: %q %v", state, err)
	}
	if got, err := c.Cancel(ctx, cancelled); err == nil {
		t.Fatalf("cancelling twice: %q", got)
	}
}

// TestScheduledCallsSurviveRedisRestart: calls scheduled while no consumer
// runs, and a handler limit set through the API, then Redis (AOF on)
// restarts: the limit is kept, and the calls all run after their time.
func TestScheduledCallsSurviveRedisRestart(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true, redisArgs: []string{"--appendonly", "yes"}})
	var times startTimes
	st.register(t, consumers.Config{Handler: "stamped"}, times.mux())
	const n = 20
	ids := make([]string, n)
	for i := range n {
		r := post(t, st.url, "/rpc/stamped/run", []byte(fmt.Sprintf(`{"k":"%d"}`, i)), scheduleIn(time.Second))
		if r.status != http.StatusAccepted {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
		ids[i] = r.requestID
	}
	// A limit set through the API survives too; the calls run through it.
	readLimits(t, putHandlerLimits(t, st.url, "stamped", `{"max_concurrency":2,"rate":1000}`))
	st.redis.Stop(t)
	st.redis.Start(t)
	if ls := readLimits(t, get(t, st.url+"/handlers/stamped/limits")); ls.Effective.MaxConcurrency != 2 || ls.Effective.Rate != 1000 {
		t.Fatalf("limits after the restart: %+v", ls)
	}
	st.startConsumer(t, consumers.Config{Handler: "stamped"}, times.mux())
	for i, id := range ids {
		g := get(t, st.url+"/rpc/calls/"+id+"?wait=20s")
		if g.State != "done" || string(g.Result) != fmt.Sprintf(`"%d"`, i) {
			t.Fatalf("call %d after the restart: %s", i, g.body)
		}
	}
}
