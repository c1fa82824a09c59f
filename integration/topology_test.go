package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/internal/redistest"
	"github.com/streamrpc/streamrpc/streams"
)

// TestTopologies runs one suite of cases (topologyCases) on each Redis topology streamrpc
// supports, as TestTopologies/<topology>/<case>: one node, a Redis Cluster (3 masters, 3
// replicas), a Sentinel group (a primary, a replica, 3 sentinels) and one node over TLS. Each
// case runs an edge and a consumer in this process on the topology's Redis, flushed before the
// case. A case that needs what a topology lacks (replicas, a failover) is skipped there, saying
// so. Each topology is started once per test process, on first use, and removed by TestMain;
// a case that kills a node (failover) leaves its topology spent, and the next user starts a
// fresh one. STREAMRPC_TEST_REDIS=<topology name> runs the suite on that topology only.
//
// What stays bespoke: the TLS handshake cases (TestRedisTLS), the whole core suite on the
// cluster (TestSuiteOnRedisCluster) and the cluster load test (TestClusterManyEdgesAndConsumers,
// on the shared cluster).
func TestTopologies(t *testing.T) {
	for _, tp := range topologies {
		t.Run(tp.name, func(t *testing.T) {
			if testRedis != "" && testRedis != tp.name {
				t.Skipf("STREAMRPC_TEST_REDIS=%s: not run on %s", testRedis, tp.name)
			}
			for _, tc := range topologyCases {
				t.Run(tc.name, func(t *testing.T) {
					if tc.needs != nil {
						if missing := tc.needs(tp); missing != "" {
							t.Skipf("%s has no %s", tp.name, missing)
						}
					}
					tc.run(t, tp)
				})
			}
		})
	}
}

// topologyCases is the shared suite, in the order it runs: a case that spends its topology
// (failover) comes last.
var topologyCases = []struct {
	name  string
	needs func(tp *topology) (missing string) // nil: runs everywhere
	run   func(t *testing.T, tp *topology)
}{
	{name: "round trip over HTTP", run: roundTripHTTP},
	{name: "async call fetched by id after completion", run: asyncCallFetchedAfterCompletion},
	{name: "async long poll woken by completion", run: asyncLongPollWokenByCompletion},
	{name: "scheduled call runs at its time", run: scheduledCallRunsAtItsTime},
	{name: "same result through HTTP, JSON-RPC and WebSocket", run: jsonrpcThreeDoorsSameResult},
	{name: "retry then success", run: retryThenSuccess},
	{name: "dead letters and replay", run: deadLettersAndReplay},
	{name: "durable writes", needs: needsReplicas, run: durableWrites},
	{name: "failover", needs: needsFailover, run: failover},
}

func needsReplicas(tp *topology) string {
	if !tp.replicas {
		return "replicas"
	}
	return ""
}

func needsFailover(tp *topology) string {
	if tp.failover == nil {
		return "failover"
	}
	return ""
}

// topology is one Redis topology, started at most once per process (again after it is spent).
type topology struct {
	name string
	// start starts the topology; stop removes it. t is the first user's, for helpers that need
	// one; start must not leave anything behind in t.Cleanup.
	start func(t testing.TB, ctx context.Context) (r *RedisServer, stop func(context.Context) error, err error)
	// replicas: every master has a replica, so that writes can be confirmed (WAIT).
	replicas bool
	// failover, when not nil, kills the master that serves the keys of handler (SIGKILL), calls
	// killed, and waits until a replica has taken over; it returns the killed master's address
	// and the promoted one's.
	failover func(t *testing.T, r *RedisServer, handler string, killed func()) (victim, promoted string)

	mu    sync.Mutex
	srv   *RedisServer
	stop  func(context.Context) error
	err   error // the start failed: every user fails with it
	spent bool  // a node was killed: restart before the next use
}

var (
	singleTopology = &topology{name: "single", start: startSingleTopology}
	// clusterTopology is also the shared cluster of STREAMRPC_TEST_REDIS=cluster (startRedis).
	clusterTopology  = &topology{name: "cluster", start: startClusterTopology, replicas: true, failover: clusterFailover}
	sentinelTopology = &topology{name: "sentinel", start: startSentinelTopology, replicas: true, failover: sentinelFailover}
	tlsTopology      = &topology{name: "tls", start: startTLSTopology}

	topologies = []*topology{singleTopology, clusterTopology, sentinelTopology, tlsTopology}
)

const topologyStartTimeout = 3 * time.Minute

// redis returns the topology's Redis, flushed, starting it on first use (or after it was
// spent). It skips t without Docker (fails it under STREAMRPC_REQUIRE_DOCKER=1).
func (tp *topology) redis(t testing.TB) *RedisServer {
	t.Helper()
	requireDocker(t)
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.spent {
		if err := tp.terminate(); err != nil {
			t.Logf("remove the spent redis %s: %v", tp.name, err)
		}
		tp.spent = false
	}
	if tp.srv == nil && tp.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), topologyStartTimeout)
		defer cancel()
		begin := time.Now()
		tp.srv, tp.stop, tp.err = tp.start(t, ctx)
		if tp.err == nil {
			t.Logf("redis %s ready in %s", tp.name, time.Since(begin).Round(time.Millisecond))
		}
	}
	if tp.err != nil {
		t.Fatalf("start redis %s: %v", tp.name, tp.err)
	}
	tp.srv.flush(t)
	return tp.srv
}

// spend marks the topology as changed for good (a node killed): its next user gets a new one.
func (tp *topology) spend() {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.spent = true
}

// terminate removes the topology, if it runs. The caller holds tp.mu, or no test runs.
func (tp *topology) terminate() error {
	if tp.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := tp.stop(ctx)
	tp.srv, tp.stop = nil, nil
	return err
}

// newStack is newStack (one edge, one echo consumer) on the topology's Redis.
func (tp *topology) newStack(t testing.TB, opts stackOptions) *stack {
	t.Helper()
	if len(opts.redisArgs) > 0 {
		t.Fatalf("a shared topology cannot start Redis with %v", opts.redisArgs)
	}
	st := stackOn(tp.redis(t))
	st.edge = st.startEdge(t, opts.edge)
	if !opts.noConsume {
		st.consumer = st.startConsumer(t, opts.consumer, echo.Mux())
	}
	return st
}

// terminateTopologies removes every topology this process started (TestMain).
func terminateTopologies() {
	for _, tp := range topologies {
		if err := tp.terminate(); err != nil {
			fmt.Fprintf(os.Stderr, "remove redis %s: %v\n", tp.name, err)
		}
	}
}

// startSingleTopology starts one Redis container on a fixed host port.
func startSingleTopology(t testing.TB, _ context.Context) (*RedisServer, func(context.Context) error, error) {
	cmd := []string{"redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--port", "6379"}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freeLocalPort(t)
		ctr, err := runRedisContainer(cmd, port)
		stop := func(context.Context) error {
			if ctr == nil {
				return nil
			}
			return ctr.Terminate(context.Background())
		}
		if err != nil {
			lastErr = errors.Join(err, stop(context.Background()))
			if redistest.IsPortInUse(err) {
				continue
			}
			return nil, nil, lastErr
		}
		r := &RedisServer{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port), hostPort: port, container: ctr}
		r.waitForPing(t)
		return r, stop, nil
	}
	return nil, nil, fmt.Errorf("no free host port after 3 attempts: %w", lastErr)
}

func startClusterTopology(_ testing.TB, ctx context.Context) (*RedisServer, func(context.Context) error, error) {
	c, err := redistest.NewCluster(ctx)
	if err != nil {
		return nil, nil, err
	}
	return onCluster(c), c.Terminate, nil
}

func startSentinelTopology(_ testing.TB, ctx context.Context) (*RedisServer, func(context.Context) error, error) {
	s, err := redistest.NewSentinel(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &RedisServer{URL: s.URL(), sentinel: s}, s.Terminate, nil
}

// startTLSTopology starts one Redis with TLS only: the clients trust the test CA and expect
// the server's name (no client certificate is asked for; TestRedisTLS covers that).
func startTLSTopology(t testing.TB, ctx context.Context) (*RedisServer, func(context.Context) error, error) {
	dir, err := os.MkdirTemp("", "streamrpc-tls-")
	if err != nil {
		return nil, nil, err
	}
	p := newTestPKI(t, dir)
	ctr, url, err := runTLSRedis(ctx, p, "no")
	stop := func(context.Context) error {
		var err error
		if ctr != nil {
			err = ctr.Terminate(context.Background())
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	if err != nil {
		return nil, nil, errors.Join(err, stop(ctx))
	}
	r := &RedisServer{URL: url, tls: streams.RedisOptions{TLSCA: p.caCert, TLSServerName: tlsServerName}, pki: p}
	return r, stop, nil
}

// clusterFailover kills the master of the handler's hash slot and waits for the cluster.
func clusterFailover(t *testing.T, r *RedisServer, handler string, killed func()) (victim, promoted string) {
	t.Helper()
	victim = r.cluster.MasterFor(t, "{"+handler+"}")
	killedAt := time.Now()
	r.cluster.Kill(t, victim)
	killed()
	r.cluster.WaitHealthy(t, 30*time.Second)
	t.Logf("master %s killed; the cluster was healthy again after %s", victim, time.Since(killedAt).Round(time.Millisecond))
	return victim, r.cluster.MasterFor(t, "{"+handler+"}")
}

// sentinelFailover kills the primary and waits until the sentinels promoted the replica.
func sentinelFailover(t *testing.T, r *RedisServer, _ string, killed func()) (victim, promoted string) {
	t.Helper()
	killedAt := time.Now()
	victim = r.sentinel.KillPrimary(t)
	killed()
	promoted = r.sentinel.WaitPrimaryChanged(t, victim, 30*time.Second)
	t.Logf("primary %s killed, sentinels promoted %s after %s", victim, promoted, time.Since(killedAt).Round(time.Millisecond))
	return victim, promoted
}

// durableWrites runs the edge and the consumer with STREAMRPC_DURABLE_REPLICAS: with 1 (each
// master has one replica) calls work as ever; with 2, which no master can give, a call answers
// 503 naming the replicas, and it was queued all the same: it still runs, and its result is
// readable by id.
func durableWrites(t *testing.T, tp *topology) {
	st := stackOn(tp.redis(t))
	one := streams.Durability{Replicas: 1, Timeout: 2 * time.Second}
	st.edge = st.startEdge(t, app.Config{Durability: one})
	st.consumer = st.startConsumer(t, consumers.Config{Durability: one}, echo.Mux())
	waitForEcho(t, st.url)
	for i := 0; i < 20; i++ {
		body := fmt.Sprintf(`{"i":%d}`, i)
		if o := rawCall(st.url, "/rpc/echo/echo", []byte(body)); o.status != 200 || string(o.body) != `{"result":`+body+`}` {
			t.Fatalf("durable call %d: %d %s %v", i, o.status, o.body, o.err)
		}
	}

	strict := stackOn(st.redis)
	strict.startEdge(t, app.Config{Durability: streams.Durability{Replicas: 2, Timeout: 200 * time.Millisecond}})
	r := post(t, strict.url, "/rpc/echo/echo", []byte(`{"strict":true}`), nil)
	if r.status != http.StatusServiceUnavailable || r.Error == nil || !strings.Contains(r.Error.Message, "replicas did not confirm") {
		t.Fatalf("call needing 2 replicas: %d %s, want 503 naming the replicas", r.status, r.body)
	}
	if r.requestID == "" {
		t.Fatal("the 503 does not carry the call's id")
	}
	waitUntil(t, 30*time.Second, func() error {
		g := get(t, strict.url+"/rpc/calls/"+r.requestID)
		if g.status != 200 || string(g.Result) != `{"strict":true}` {
			return fmt.Errorf("GET the call: %d %s", g.status, g.body)
		}
		return nil
	})
}
