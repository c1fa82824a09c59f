package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"
)

// readyz is GET /readyz, decoded.
type readyz struct {
	status int
	Status string   `json:"status"`
	Failed []string `json:"failed"`
}

func getReadyz(t testing.TB, url string) readyz {
	t.Helper()
	r := get(t, url+"/readyz")
	var out readyz
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("/readyz body %q: %v", r.body, err)
	}
	out.status = r.status
	return out
}

// TestReadinessFollowsRedis: /readyz is 200 while Redis answers, 503 naming
// the redis check while it is stopped, 200 again once it is back (same
// port), and 503 naming draining once the edge drains. /healthz stays 200
// throughout: liveness never depends on Redis.
func TestReadinessFollowsRedis(t *testing.T) {
	st := newStack(t, stackOptions{noConsume: true})
	want := func(status int, failed ...string) func() error {
		return func() error {
			r := getReadyz(t, st.url)
			if r.status != status || !slices.Equal(r.Failed, failed) {
				return fmt.Errorf("/readyz %d failed=%v (%s), want %d failed=%v", r.status, r.Failed, r.Status, status, failed)
			}
			if h := get(t, st.url+"/healthz"); h.status != http.StatusOK {
				return fmt.Errorf("/healthz %d, want 200", h.status)
			}
			return nil
		}
	}
	waitUntil(t, 10*time.Second, want(http.StatusOK))
	st.redis.Stop(t)
	waitUntil(t, 10*time.Second, want(http.StatusServiceUnavailable, "redis"))
	st.redis.Start(t)
	waitUntil(t, 30*time.Second, want(http.StatusOK))
	st.edge.Drain()
	waitUntil(t, 10*time.Second, want(http.StatusServiceUnavailable, "draining"))
}

// TestEdgeDrainDelay runs `streamrpc edge` with STREAMRPC_DRAIN_DELAY: after
// SIGTERM, /readyz answers 503 naming draining while calls are still
// served, then the edge exits 0.
func TestEdgeDrainDelay(t *testing.T) {
	rs := startRedis(t)
	addr := freeAddr(t)
	edge := startProcess(t, binary(t, "streamrpc"), []string{"REDIS_URL=" + rs.URL, "STREAMRPC_ADDR=" + addr, "STREAMRPC_DRAIN_DELAY=3s", "STREAMRPC_AUTH=none"}, "edge")
	startProcess(t, binary(t, "echo"), []string{"REDIS_URL=" + rs.URL})
	url := "http://" + addr
	waitForEcho(t, url)
	if r := getReadyz(t, url); r.status != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: %d %v", r.status, r.Failed)
	}
	if err := edge.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, func() error {
		if r := getReadyz(t, url); r.status != http.StatusServiceUnavailable || !slices.Equal(r.Failed, []string{"draining"}) {
			return fmt.Errorf("/readyz while draining: %d %v", r.status, r.Failed)
		}
		return nil
	})
	if r := post(t, url, "/rpc/echo/echo", []byte(`{"during":"drain"}`), nil); r.status != http.StatusOK {
		t.Fatalf("a call during the drain delay: %d %s", r.status, r.body)
	}
	select {
	case <-edge.exited:
		if edge.err != nil {
			t.Fatalf("edge exited with %v", edge.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the edge did not exit within 30s of SIGTERM")
	}
}
