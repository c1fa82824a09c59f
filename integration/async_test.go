package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

var preferAsync = map[string]string{"Prefer": "respond-async"}

// asyncCallFetchedAfterCompletion: an async call answers 202 with its Location, where its
// result is found once done. A case of TestTopologies.
func asyncCallFetchedAfterCompletion(t *testing.T, tp *topology) {
	st := tp.newStack(t, stackOptions{})
	r := post(t, st.url, "/rpc/echo/echo", []byte(`{"later":true}`), preferAsync)
	if r.status != http.StatusAccepted || r.header.Get("Location") != "/rpc/calls/"+r.requestID || r.State != "queued" {
		t.Fatalf("got %d %s (Location %q)", r.status, r.body, r.header.Get("Location"))
	}
	waitUntil(t, 10*time.Second, func() error {
		g := get(t, st.url+r.header.Get("Location"))
		if g.status != 200 || g.State != "done" || string(g.Result) != `{"later":true}` {
			return fmt.Errorf("%d %s", g.status, g.body)
		}
		return nil
	})
}

// asyncLongPollWokenByCompletion: a long poll on a running call is woken by its completion.
// A case of TestTopologies.
func asyncLongPollWokenByCompletion(t *testing.T, tp *topology) {
	st := tp.newStack(t, stackOptions{})
	r := post(t, st.url, "/rpc/echo/sleep", []byte(`{"ms":700}`), preferAsync)
	if r.status != http.StatusAccepted {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	waitUntil(t, 5*time.Second, func() error { // visible as running first
		if g := get(t, st.url+"/rpc/calls/"+r.requestID); g.State != "running" {
			return fmt.Errorf("state %q", g.State)
		}
		return nil
	})
	start := time.Now()
	g := get(t, st.url+"/rpc/calls/"+r.requestID+"?wait=20s")
	if g.status != 200 || g.State != "done" || string(g.Result) != `{"slept":700}` {
		t.Fatalf("long-poll: %d %s", g.status, g.body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("long-poll took %s: it was not woken by the completion", took)
	}
}

// Prefer is read per RFC 7240: tokens in any case, and wait=N with
// respond-async waits up to N seconds for the result before answering 202.
func TestAsyncPreferWait(t *testing.T) {
	st := newStack(t, stackOptions{})
	cases := []struct {
		name       string
		path, body string
		prefer     string
		wantStatus int
		wantResult string
		maxTook    time.Duration
	}{
		{"any case is async", "/rpc/echo/sleep", `{"ms":2000}`, "Respond-Async", http.StatusAccepted, "", time.Second},
		{"result within the wait: 200", "/rpc/echo/echo", `{"a":1}`, "respond-async, wait=10", http.StatusOK, `{"a":1}`, 5 * time.Second},
		{"slower than the wait: 202 after it", "/rpc/echo/sleep", `{"ms":5000}`, "RESPOND-ASYNC; x=y, Wait=1", http.StatusAccepted, "", 4 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := post(t, st.url, tc.path, []byte(tc.body), map[string]string{"Prefer": tc.prefer})
			took := time.Since(start)
			if r.status != tc.wantStatus || string(r.Result) != tc.wantResult {
				t.Fatalf("got %d %s, want %d with result %q", r.status, r.body, tc.wantStatus, tc.wantResult)
			}
			if r.requestID == "" {
				t.Fatal("no X-Request-Id")
			}
			if took > tc.maxTook {
				t.Fatalf("answered after %s, want within %s", took, tc.maxTook)
			}
			if tc.wantStatus == http.StatusAccepted && strings.Contains(strings.ToLower(tc.prefer), "wait=1") && took < 900*time.Millisecond {
				t.Fatalf("answered 202 after %s: the wait=1 was not honoured", took)
			}
		})
	}
}

func TestAsyncErrors(t *testing.T) {
	st := newStack(t, stackOptions{edge: app.Config{ResultTTL: time.Second}})
	cases := []struct {
		name       string
		url        string
		wantStatus int
		wantCode   int
	}{
		{"unknown id", "/rpc/calls/" + streams.NewCallID("echo"), 404, streams.CodeNotFound},
		{"bad id", "/rpc/calls/no%7Bway%7D", 400, streams.CodeInvalidRequest},
		{"bad wait", "/rpc/calls/" + streams.NewCallID("echo") + "?wait=forever", 400, streams.CodeInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := get(t, st.url+tc.url)
			if g.status != tc.wantStatus || g.Error == nil || g.Error.Code != tc.wantCode {
				t.Fatalf("got %d %s", g.status, g.body)
			}
		})
	}
	t.Run("expired id", func(t *testing.T) {
		r := post(t, st.url, "/rpc/echo/echo", []byte(`1`), preferAsync)
		waitUntil(t, 10*time.Second, func() error {
			if g := get(t, st.url+"/rpc/calls/"+r.requestID); g.status != 404 || !strings.Contains(g.Error.Message, "expired") {
				return fmt.Errorf("%d %s", g.status, g.body)
			}
			return nil
		})
	})
}

// TestCancelQueuedAndRunning cancels an async call before any consumer took
// it (it never runs) and one that is running (its handler's context ends).
func TestCancelQueuedAndRunning(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var runs atomic.Int64
	st.register(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))

	queued := post(t, st.url, "/rpc/counted/run", []byte(`{}`), preferAsync)
	d := del(t, st.url+"/rpc/calls/"+queued.requestID)
	if d.status != http.StatusAccepted || !strings.Contains(string(d.body), `"state":"cancelled"`) {
		t.Fatalf("cancel queued: %d %s", d.status, d.body)
	}
	var slowRuns atomic.Int64
	srv := st.startConsumer(t, consumers.Config{Handler: "counted"}, countingMux(&slowRuns, time.Minute))
	running := post(t, st.url, "/rpc/counted/run", []byte(`{}`), preferAsync)
	waitUntil(t, 10*time.Second, func() error {
		if g := get(t, st.url+"/rpc/calls/"+running.requestID); g.State != "running" {
			return fmt.Errorf("state %q", g.State)
		}
		return nil
	})
	d = del(t, st.url+"/rpc/calls/"+running.requestID)
	if d.status != http.StatusAccepted || !strings.Contains(string(d.body), `"state":"cancelling"`) {
		t.Fatalf("cancel running: %d %s", d.status, d.body)
	}
	g := get(t, st.url+"/rpc/calls/"+running.requestID+"?wait=20s")
	if g.State != "cancelled" || g.Error == nil || g.Error.Code != streams.CodeCancelled {
		t.Fatalf("running call after cancel: %d %s", g.status, g.body)
	}
	if q := get(t, st.url+"/rpc/calls/"+queued.requestID); q.State != "cancelled" {
		t.Fatalf("queued call after cancel: %s", q.body)
	}
	if slowRuns.Load() != 1 || runs.Load() != 0 {
		t.Fatalf("runs: cancelled-while-queued ran %d times; running call ran %d times (want 0 and 1)", runs.Load(), slowRuns.Load())
	}
	if n, _ := st.streamsClient(t).Backlog(context.Background(), "counted"); n != 0 {
		t.Fatalf("backlog %d after cancelling", n)
	}
	_ = srv
	if d := del(t, st.url+"/rpc/calls/"+running.requestID); d.status != http.StatusConflict {
		t.Fatalf("cancel a finished call: %d %s", d.status, d.body)
	}
}

// TestClientAsync drives async calls through the Go client package.
func TestClientAsync(t *testing.T) {
	st := newStack(t, stackOptions{})
	c := client.New(st.url)
	ctx := context.Background()
	id, err := c.CallAsync(ctx, "echo", "sleep", map[string]int{"ms": 300})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Slept int }
	state, err := c.Result(ctx, id, 20*time.Second, &out)
	if err != nil || state != "done" || out.Slept != 300 {
		t.Fatalf("Result: %q %+v %v", state, out, err)
	}
	failing, err := c.CallAsync(ctx, "echo", "fail", map[string]string{"message": "nope"})
	if err != nil {
		t.Fatal(err)
	}
	state, err = c.Result(ctx, failing, 20*time.Second, nil)
	var ce *client.Error
	if state != "failed" || !errors.As(err, &ce) || ce.Message != "nope" {
		t.Fatalf("failed call: %q %v", state, err)
	}
	if _, err := c.Result(ctx, streams.NewCallID("echo"), 0, nil); !errors.As(err, &ce) || ce.Code != streams.CodeNotFound {
		t.Fatalf("unknown id: %v", err)
	}
	if got, err := c.Cancel(ctx, failing); !errors.As(err, &ce) || got != "" {
		t.Fatalf("cancel of a finished call: %q %v", got, err)
	}
}

// An async call's reply is appended to no edge's reply stream (no request
// waits for it there: it is enqueued with no ReplyTo), and a long-poll still
// gets its result promptly by reading the result key with backoff. A call
// with Prefer: respond-async, wait=N, whose caller waits on the edge, does
// get its reply there.
func TestAsyncReplyNotAppended(t *testing.T) {
	st := newStack(t, stackOptions{})
	other := stackOn(st.redis).startEdge(t, app.Config{}) // a second edge on the same Redis
	rdb := st.connect(t)
	ctx := context.Background()
	// The replies in an edge's stream: its entries but the marker that
	// opened it (field "open").
	xlen := func(edgeID string) int64 {
		t.Helper()
		entries, err := rdb.XRange(ctx, "srpc:edge:{"+edgeID+"}:replies", "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, e := range entries {
			if _, marker := e.Values["open"]; !marker {
				n++
			}
		}
		return n
	}
	for i := range 5 {
		r := post(t, st.url, "/rpc/echo/sleep", []byte(`{"ms":100}`), preferAsync)
		if r.status != http.StatusAccepted {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
		start := time.Now()
		g := get(t, st.url+"/rpc/calls/"+r.requestID+"?wait=20s")
		if g.status != 200 || g.State != "done" || string(g.Result) != `{"slept":100}` {
			t.Fatalf("long-poll %d: %d %s", i, g.status, g.body)
		}
		// Run time 100 ms; the backoff's reads at 0, 25, 75, 175, 375 ms
		// see it by about 375 ms; a second is generous under -race.
		if took := time.Since(start); took > time.Second {
			t.Fatalf("long-poll %d took %s for a 100 ms call", i, took)
		}
	}
	if n, m := xlen(st.edge.ID()), xlen(other.ID()); n != 0 || m != 0 {
		t.Fatalf("reply streams hold %d and %d replies after async calls only, want 0", n, m)
	}
	// The caller that waits with Prefer wait=N is answered through its edge's stream.
	r := post(t, st.url, "/rpc/echo/echo", []byte(`{"w":1}`), map[string]string{"Prefer": "respond-async, wait=10"})
	if r.status != http.StatusOK || string(r.Result) != `{"w":1}` {
		t.Fatalf("Prefer wait: %d %s", r.status, r.body)
	}
	// On a Cluster the consumer appends replies in a pipeline after its
	// settle script, so the edge's poll of the result key may answer first.
	waitUntil(t, 5*time.Second, func() error {
		if n := xlen(st.edge.ID()); n != 1 {
			return fmt.Errorf("the reply stream holds %d replies after one call waited on, want 1", n)
		}
		return nil
	})
}
