package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

type wsAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *streams.Error  `json:"error"`
}

// readAnswers reads n messages and indexes them by JSON-RPC id.
func readAnswers(t *testing.T, conn *fastws.Conn, n int) map[string]wsAnswer {
	t.Helper()
	out := map[string]wsAnswer{}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for range n {
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var a wsAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		out[string(a.ID)] = a
	}
	return out
}

func send(t *testing.T, conn *fastws.Conn, msg string) {
	t.Helper()
	if err := conn.WriteMessage(fastws.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func (st *stack) waitBacklog(t *testing.T, handler string, want int64) {
	t.Helper()
	sc := st.streamsClient(t)
	waitUntil(t, 10*time.Second, func() error {
		if n, err := sc.Backlog(context.Background(), handler); err != nil || n != want {
			return fmt.Errorf("backlog %d (%v), want %d", n, err, want)
		}
		return nil
	})
}

// TestWSCancel cancels, with $/cancel, a call no consumer has taken (it never
// runs) and a running one (its handler's context ends); both callers get -32006.
func TestWSCancel(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var queuedRuns atomic.Int64
	st.register(t, consumers.Config{Handler: "counted"}, countingMux(&queuedRuns, 0))
	conn := rawWS(t, st.wsURL())

	send(t, conn, `{"jsonrpc":"2.0","id":1,"method":"counted.run","params":{}}`)
	st.waitBacklog(t, "counted", 1)
	send(t, conn, `{"jsonrpc":"2.0","id":2,"method":"$/cancel","params":{"id":1}}`)
	got := readAnswers(t, conn, 2)
	if a := got["1"]; a.Error == nil || a.Error.Code != streams.CodeCancelled {
		t.Fatalf("the cancelled call's answer: %+v", a)
	}
	if a := got["2"]; string(a.Result) != `{"was":"queued"}` {
		t.Fatalf("the $/cancel answer: %+v", a)
	}
	st.waitBacklog(t, "counted", 0)

	var runs atomic.Int64
	srv := st.startConsumer(t, consumers.Config{Handler: "counted"}, countingMux(&runs, time.Minute))
	send(t, conn, `{"jsonrpc":"2.0","id":"slow","method":"counted.run","params":{}}`)
	sc := st.streamsClient(t)
	waitUntil(t, 10*time.Second, func() error {
		if n, _ := sc.Pending(context.Background(), "counted"); n != 1 {
			return fmt.Errorf("pending %d", n)
		}
		return nil
	})
	send(t, conn, `{"jsonrpc":"2.0","method":"$/cancel","params":{"id":"slow"}}`)
	if a := readAnswers(t, conn, 1)[`"slow"`]; a.Error == nil || a.Error.Code != streams.CodeCancelled {
		t.Fatalf("the running call's answer: %+v", a)
	}
	waitUntil(t, 10*time.Second, func() error { // the handler saw its context end
		if s := srv.Stats().Methods; len(s) != 1 || s[0].Errors != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		if n, _ := sc.Pending(context.Background(), "counted"); n != 0 {
			return fmt.Errorf("pending %d", n)
		}
		return nil
	})
	if queuedRuns.Load() != 0 || runs.Load() != 1 {
		t.Fatalf("runs: %d of the call cancelled while queued, %d of the running one", queuedRuns.Load(), runs.Load())
	}
	if a := wsExchange(t, conn, `{"jsonrpc":"2.0","id":9,"method":"$/cancel","params":{"id":12345}}`); !json.Valid(a) || !containsCode(a, streams.CodeInvalidParams) {
		t.Fatalf("cancelling an unknown id: %s", a)
	}
}

func containsCode(b []byte, code int) bool {
	var a wsAnswer
	return json.Unmarshal(b, &a) == nil && a.Error != nil && a.Error.Code == code
}

// TestWSCloseCancelsOnlyWhenAsked: by default a closed socket's calls still
// run (their results stay readable by id); with ?cancel_on_close=true they are
// cancelled.
func TestWSCloseCancelsOnlyWhenAsked(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var runs atomic.Int64
	st.register(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))

	keep := rawWS(t, st.wsURL())
	send(t, keep, `{"jsonrpc":"2.0","id":1,"method":"counted.run","params":{"keep":1}}`)
	st.waitBacklog(t, "counted", 1)
	_ = keep.Close()

	drop := rawWS(t, st.wsURL()+"?cancel_on_close=true")
	send(t, drop, `{"jsonrpc":"2.0","id":1,"method":"counted.run","params":{"drop":1}}`)
	st.waitBacklog(t, "counted", 2)
	_ = drop.Close()
	st.waitBacklog(t, "counted", 1) // the second call was removed

	st.startConsumer(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))
	st.waitBacklog(t, "counted", 0)
	waitUntil(t, 10*time.Second, func() error {
		if runs.Load() != 1 {
			return fmt.Errorf("runs %d", runs.Load())
		}
		return nil
	})
}
