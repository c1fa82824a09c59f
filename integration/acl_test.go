package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

const aclPassword = "correct horse battery staple"

// aclUser creates user on r with rules (through the default user, as an
// operator would) and returns a REDIS_URL that logs in as it.
func aclUser(t *testing.T, r *RedisServer, user string, rules []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// ACL users are per node: on a cluster, every master and replica gets it.
	err := r.forEachNode(t, ctx, func(ctx context.Context, node *redis.Client) error {
		return node.Do(ctx, streams.ACLSetUser(user, aclPassword, rules)...).Err()
	})
	if err != nil {
		t.Fatalf("ACL SETUSER %s: %v", user, err)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, aclPassword)
	return u.String()
}

// aclLog returns Redis's record of commands the ACLs refused.
func aclLog(t *testing.T, r *RedisServer) []any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var mu sync.Mutex
	var all []any
	err := r.forEachNode(t, ctx, func(ctx context.Context, node *redis.Client) error {
		v, err := node.Do(ctx, "ACL", "LOG").Slice()
		mu.Lock()
		all = append(all, v...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestACLLeastPrivilege runs a real edge and two consumers, each as a Redis
// user with only the rules streams gives it, through sync, async, cancelled
// and dead-lettered calls and the registry API; then shows what a consumer
// of one handler cannot do to another's keys.
func TestACLLeastPrivilege(t *testing.T) {
	r := startRedis(t)
	consumerRules := func(h string) []string {
		rules, err := streams.ConsumerACL(h)
		if err != nil {
			t.Fatal(err)
		}
		return rules
	}
	edgeURL := aclUser(t, r, "edge", streams.EdgeACL())
	echoURL := aclUser(t, r, "echo-consumer", consumerRules(echo.Name))
	otherURL := aclUser(t, r, "other-consumer", consumerRules("other"))

	st := stackOn(&RedisServer{URL: edgeURL})
	// A rate limit high enough never to refuse, so that its script runs
	// under the edge's ACL too.
	edge := st.startEdge(t, app.Config{RateLimitIP: 1000, RateLimitIPBurst: 1000})
	(&stack{redis: &RedisServer{URL: echoURL}, cmds: st.cmds}).startConsumer(t,
		consumers.Config{MaxAttempts: 2, RetryBaseDelay: 10 * time.Millisecond}, echo.Mux())
	(&stack{redis: &RedisServer{URL: otherURL}, cmds: st.cmds}).startConsumer(t,
		consumers.Config{Handler: "other"}, echo.Mux())

	if g := get(t, st.url+"/readyz"); g.status != http.StatusOK {
		t.Fatalf("readyz: %d %s", g.status, g.body)
	}
	sync := post(t, st.url, "/rpc/echo/echo", []byte(`{"n":1}`), nil)
	if sync.status != http.StatusOK || string(sync.Result) != `{"n":1}` {
		t.Fatalf("sync call: %d %s", sync.status, sync.body)
	}
	if sync.header.Get("RateLimit-Remaining") == "" {
		t.Fatal("no RateLimit-Remaining: the rate limit script did not run under the edge's ACL")
	}
	otherCall := post(t, st.url, "/rpc/other/echo", []byte(`{"secret":"of other"}`), nil)
	if otherCall.status != http.StatusOK {
		t.Fatalf("call to other: %d %s", otherCall.status, otherCall.body)
	}

	// A handler limit through the admin API: the consumer's heartbeat
	// learns of it and the calls below are read through the limited read.
	if p := putHandlerLimits(t, st.url, "echo", `{"max_concurrency":100,"rate":1000}`); p.status != http.StatusOK {
		t.Fatalf("PUT limits: %d %s", p.status, p.body)
	}
	// A scheduled call: the enqueue script's schedule, the forwarder.
	sched := post(t, st.url, "/rpc/echo/echo", []byte(`{"n":3}`), scheduleIn(300*time.Millisecond))
	if g := get(t, st.url+"/rpc/calls/"+sched.requestID+"?wait=20s"); g.State != "done" || string(g.Result) != `{"n":3}` {
		t.Fatalf("scheduled call: %d %s", g.status, g.body)
	}
	async := post(t, st.url, "/rpc/echo/echo", []byte(`{"n":2}`), preferAsync)
	if async.status != http.StatusAccepted {
		t.Fatalf("async call: %d %s", async.status, async.body)
	}
	waitUntil(t, 10*time.Second, func() error {
		if g := get(t, st.url+"/rpc/calls/"+async.requestID); g.State != "done" || string(g.Result) != `{"n":2}` {
			return fmt.Errorf("async call: %d %s", g.status, g.body)
		}
		return nil
	})

	// Calls with a priority: the enqueue script creates the priority
	// streams under the edge's ACL; the consumer reads, settles and sweeps
	// them under its own (every call below is read so).
	high := post(t, st.url, "/rpc/echo/echo", []byte(`{"n":4}`), map[string]string{"Prefer": "respond-async", "Streamrpc-Priority": "high"})
	if low := post(t, st.url, "/rpc/echo/echo", []byte(`{"n":5}`), map[string]string{"Streamrpc-Priority": "low"}); low.status != http.StatusOK || string(low.Result) != `{"n":5}` {
		t.Fatalf("low call: %d %s", low.status, low.body)
	}
	if g := get(t, st.url+"/rpc/calls/"+high.requestID+"?wait=20s"); g.State != "done" || string(g.Result) != `{"n":4}` {
		t.Fatalf("high call: %d %s", g.status, g.body)
	}

	// A running call cancelled: the edge publishes on the handler's cancel
	// channel, the consumer hears it on its subscription.
	slow := post(t, st.url, "/rpc/echo/sleep", []byte(`{"ms":20000}`), preferAsync)
	waitUntil(t, 10*time.Second, func() error {
		if g := get(t, st.url+"/rpc/calls/"+slow.requestID); g.State != "running" {
			return fmt.Errorf("state %q", g.State)
		}
		return nil
	})
	if d := do(t, mustRequest(t, http.MethodDelete, st.url+"/rpc/calls/"+slow.requestID)); d.status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", d.status, d.body)
	}
	waitUntil(t, 10*time.Second, func() error {
		if g := get(t, st.url+"/rpc/calls/"+slow.requestID); g.State != "cancelled" {
			return fmt.Errorf("state %q", g.State)
		}
		return nil
	})

	// Retry, then dead letter: the delayed set, the forwarder and the dead
	// letter stream, and the dead-letter API.
	dead := post(t, st.url, "/rpc/echo/fail", []byte(`{"retryable":true}`), nil)
	if dead.status != http.StatusBadGateway || dead.Error == nil || dead.Error.Code != streams.CodeDeadLettered {
		t.Fatalf("failing call: %d %s, want 502 dead_lettered", dead.status, dead.body)
	}
	if l := get(t, st.url+"/handlers/echo/dead-letters"); l.status != http.StatusOK || !strings.Contains(string(l.body), `"total":1`) {
		t.Fatalf("dead letters: %d %s", l.status, l.body)
	}
	if rp := post(t, st.url, "/handlers/echo/dead-letters/replay", nil, nil); rp.status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", rp.status, rp.body)
	}
	for _, path := range []string{"/handlers", "/handlers/echo", "/activity", "/rpc/calls/" + sync.requestID} {
		if g := get(t, st.url+path); g.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, g.status, g.body)
		}
	}
	for _, path := range []string{"/ui/", "/ui/handlers/echo", "/ui/calls/" + sync.requestID} { // HTML, not JSON
		res, err := httpClient.Get(st.url + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, res.StatusCode)
		}
	}
	if l := aclLog(t, r); len(l) != 0 {
		t.Fatalf("the edge or a consumer was refused something: ACL LOG %v", l)
	}

	// Now as the echo consumer's user: the other handler's keys (its calls'
	// results and stories among them), the edge's reply stream and the
	// registry are out of reach, except for appending a reply.
	rdb, err := streams.Connect(streams.RedisOptions{URL: echoURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rdb.Do(ctx, "XPENDING", "srpc:{echo}:calls", streams.Group).Err(); err != nil {
		t.Fatalf("the consumer cannot read its own stream: %v", err)
	}
	otherOwn := otherCall.requestID[strings.LastIndexByte(otherCall.requestID, '.')+1:]
	result := "srpc:{other}:result:" + otherOwn
	story := "srpc:{other}:story:" + otherOwn
	replies := "srpc:edge:{" + edge.ID() + "}:replies"
	denied := []struct {
		name string
		cmd  []any
	}{
		{"read other's calls", []any{"XRANGE", "srpc:{other}:calls", "-", "+"}},
		{"take other's calls", []any{"XREADGROUP", "GROUP", streams.Group, "thief", "STREAMS", "srpc:{other}:calls", ">"}},
		{"claim other's calls", []any{"XAUTOCLAIM", "srpc:{other}:calls", streams.Group, "thief", 0, "0-0"}},
		{"forge a call to other", []any{"XADD", "srpc:{other}:calls", "*", "id", "x"}},
		{"read other's stats", []any{"HGETALL", "srpc:{other}:stats"}},
		{"rewrite other's methods", []any{"HSET", "srpc:{other}:methods", "evil", "{}"}},
		{"read other's dead letters", []any{"XRANGE", "srpc:{other}:dead", "-", "+"}},
		{"read a result", []any{"GET", result}},
		{"read a result while writing it", []any{"SET", result, "x", "GET"}},
		{"overwrite a result", []any{"SET", result, "x"}},
		{"read a story", []any{"LRANGE", story, 0, -1}},
		{"add to a story", []any{"RPUSH", story, "{}"}},
		{"read an edge's replies", []any{"XRANGE", replies, "-", "+"}},
		{"join an edge's replies as a group", []any{"XGROUP", "CREATE", replies, "thief", "0"}},
		{"read a result in a script", []any{"EVAL", "return redis.call('GET', KEYS[1])", 1, result}},
		{"read other's calls in a script", []any{"EVAL", "return redis.call('XRANGE', KEYS[1], '-', '+')", 1, "srpc:{other}:calls"}},
		{"list the handlers", []any{"SMEMBERS", "srpc:handlers"}},
		{"read its own registry entry", []any{"HGETALL", "srpc:{echo}:methods"}},
		{"list keys", []any{"KEYS", "*"}},
		{"scan keys", []any{"SCAN", 0}},
		{"flush", []any{"FLUSHALL"}},
		{"reconfigure", []any{"CONFIG", "GET", "*"}},
		{"a key outside streamrpc", []any{"SET", "unrelated", "x"}},
	}
	for _, tc := range denied {
		t.Run(tc.name, func(t *testing.T) {
			err := rdb.Do(ctx, tc.cmd...).Err()
			if !isACLDenial(err) {
				t.Fatalf("%v: got %v, want a NOPERM denial", tc.cmd, err)
			}
		})
	}
	t.Run("listen to other's cancels", func(t *testing.T) {
		sub := rdb.Subscribe(ctx, "srpc:{other}:cancel")
		defer sub.Close()
		if _, err := sub.Receive(ctx); !isACLDenial(err) {
			t.Fatalf("got %v, want a NOPERM denial", err)
		}
	})
	if v, _ := rdb.Get(ctx, result).Result(); v != "" {
		t.Fatalf("the consumer read a result: %q", v)
	}
}

// isACLDenial: Redis answers NOPERM to a refused command, and a script's
// refused command fails the script with an error naming the ACL.
func isACLDenial(err error) bool {
	if err == nil {
		return false
	}
	return redis.HasErrorPrefix(err, "NOPERM") || strings.Contains(err.Error(), "The user executing the script can't")
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
