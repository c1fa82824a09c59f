package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// TestScaleToZero: a handler whose consumers are all gone still accepts
// calls; they wait in its stream, and the first consumer that starts takes
// them. A call whose deadline passes first gets its timeout and is not run.
// Forgetting the handler (admin) makes the edge answer 404 for it again.
func TestScaleToZero(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	var runs atomic.Int64
	st.register(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))

	syncAnswer := asyncPost(t, st.url, "/rpc/counted/run", `{"kind":"sync"}`, map[string]string{"Request-Timeout": "60"})
	async := post(t, st.url, "/rpc/counted/run", []byte(`{"kind":"async"}`), preferAsync)
	if async.status != http.StatusAccepted {
		t.Fatalf("async call at zero consumers: %d %s", async.status, async.body)
	}
	short := post(t, st.url, "/rpc/counted/run", []byte(`{"kind":"short"}`), map[string]string{"Request-Timeout": "0.2"})
	if short.status != http.StatusGatewayTimeout {
		t.Fatalf("short call: %d %s, want 504", short.status, short.body)
	}
	st.waitBacklog(t, "counted", 3)

	srv := st.startConsumer(t, consumers.Config{Handler: "counted"}, countingMux(&runs, 0))
	if r := await(t, syncAnswer, 30*time.Second); r.status != 200 || !strings.Contains(string(r.Result), `"kind":"sync"`) {
		t.Fatalf("sync call after scale-up: %d %s", r.status, r.body)
	}
	if g := get(t, st.url+"/rpc/calls/"+async.requestID+"?wait=20s"); g.State != "done" || !strings.Contains(string(g.Result), `"kind":"async"`) {
		t.Fatalf("async call after scale-up: %d %s", g.status, g.body)
	}
	st.waitBacklog(t, "counted", 0)
	if g := get(t, st.url+"/rpc/calls/"+short.requestID); g.State != "failed" || g.Error == nil || g.Error.Code != streams.CodeTimeout {
		t.Fatalf("the expired call: %s", g.body)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("handler ran %d times, want 2 (the expired call is not run)", n)
	}

	if d := del(t, st.url+"/handlers/counted"); d.status != http.StatusConflict {
		t.Fatalf("forgetting a handler with a consumer online: %d %s", d.status, d.body)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if d := del(t, st.url+"/handlers/counted"); d.status != 200 {
		t.Fatalf("forget: %d %s", d.status, d.body)
	}
	waitUntil(t, 5*time.Second, func() error {
		r := post(t, st.url, "/rpc/counted/run", []byte(`{}`), nil)
		if r.status != 404 || r.Error == nil || !strings.Contains(r.Error.Message, "no consumer has registered it") {
			return fmt.Errorf("after forgetting: %d %s", r.status, r.body)
		}
		return nil
	})
}
