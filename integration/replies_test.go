package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
)

// The edge's reply stream is bounded by age, not only by count: large
// results do not stay in Redis memory after nobody can wait for them.
func TestReplyStreamBoundedByAge(t *testing.T) {
	const callTimeout = 2 * time.Second
	st := newStack(t, stackOptions{edge: app.Config{CallTimeout: callTimeout}})
	rdb := st.connect(t)
	key := "srpc:edge:{" + st.edge.ID() + "}:replies"
	big := []byte(`{"blob":"` + strings.Repeat("x", 512<<10) + `"}`)
	// The largest the stream grew, sampled after each call: under load the
	// first results may already be trimmed when the last is answered.
	ctx := context.Background()
	var full int64
	for i := range 20 {
		if r := post(t, st.url, "/rpc/echo/echo", big, nil); r.status != 200 {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
		n, err := rdb.MemoryUsage(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		full = max(full, n)
	}
	if full < 512<<10 {
		t.Fatalf("the reply stream held at most %d bytes during 20 results of 512 KiB: the test proves nothing", full)
	}
	// Within the call timeout plus a trim period (a fifth of it), and some slack.
	waitUntil(t, callTimeout+callTimeout/5+5*time.Second, func() error {
		n, err := rdb.MemoryUsage(ctx, key).Result()
		if err != nil {
			return err
		}
		if n > 64<<10 {
			return fmt.Errorf("the reply stream still holds %d bytes (was %d)", n, full)
		}
		return nil
	})
	// The edge still answers after its stream was trimmed empty.
	if r := post(t, st.url, "/rpc/echo/echo", []byte(`{"after":1}`), nil); r.status != 200 {
		t.Fatalf("after the trim: %d %s", r.status, r.body)
	}
}
