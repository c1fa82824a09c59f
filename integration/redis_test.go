package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/redis/go-redis/v9"
	"github.com/streamrpc/streamrpc/internal/redistest"
	"github.com/streamrpc/streamrpc/streams"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

const (
	redisImage        = "redis:7-alpine"
	redisPort         = "6379/tcp"
	redisReadyTimeout = 30 * time.Second
	redisStopTimeout  = 10 * time.Second
)

// RedisServer is a real Redis in a container, on a fixed host port so that it keeps its address
// across Stop/Start; or, with STREAMRPC_TEST_REDIS=cluster, the suite's shared Redis Cluster; or
// one of the topologies of TestTopologies (topology_test.go).
type RedisServer struct {
	// URL is redis://127.0.0.1:PORT/0, valid across Stop/Start; or a redis+cluster://,
	// redis+sentinel:// or rediss:// URL.
	URL string

	hostPort  int
	container *testcontainers.DockerContainer
	cluster   *redistest.Cluster
	sentinel  *redistest.Sentinel
	tls       streams.RedisOptions // the TLS settings a client needs (rediss:// only)
	pki       *testPKI             // what signed the TLS server's certificate (rediss:// only)
}

// The Redis the suite runs against: STREAMRPC_TEST_REDIS unset (a new Redis container per test),
// or "cluster" (one Redis Cluster of 3 masters and 3 replicas for the whole run, flushed before
// each test: the cluster of TestTopologies). The same tests run against both: .ci/run runs the
// round-trip, WebSocket and guarantees tests a second time against the cluster. Tests that
// restart Redis, or need one with other settings, skip themselves on the cluster; failover is a
// case of TestTopologies. A value naming another topology (single, sentinel, tls) only picks the
// topology TestTopologies runs on.
var testRedis = os.Getenv("STREAMRPC_TEST_REDIS")

// onCluster is the RedisServer of cluster c.
func onCluster(c *redistest.Cluster) *RedisServer { return &RedisServer{URL: c.URL(), cluster: c} }

// startRedis starts a new Redis container for this test and terminates it in t.Cleanup.
// args are extra redis-server arguments, e.g. "--appendonly", "yes".
func startRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	requireDocker(t)
	if testRedis == "cluster" {
		if len(args) > 0 {
			t.Skipf("needs a Redis started with %v; not run against the shared cluster", args)
		}
		return clusterTopology.redis(t)
	}

	cmd := append([]string{"redis-server", "--protected-mode", "no", "--dir", "/data", "--port", "6379"}, args...)

	// The host port is picked here and then handed to Docker, so another process may take it in
	// between; retry with a new port if Docker reports it as taken.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freeLocalPort(t)
		ctr, err := runRedisContainer(cmd, port)
		// Schedule the cleanup before the error check: a failed start may still leave a container.
		testcontainers.CleanupContainer(t, ctr)
		if err != nil {
			lastErr = err
			if redistest.IsPortInUse(err) {
				continue
			}
			t.Fatalf("start redis container: %v", err)
		}
		r := &RedisServer{
			URL:       fmt.Sprintf("redis://127.0.0.1:%d/0", port),
			hostPort:  port,
			container: ctr,
		}
		r.waitForPing(t)
		return r
	}
	t.Fatalf("start redis container: no free host port after 3 attempts: %v", lastErr)
	return nil
}

func runRedisContainer(cmd []string, hostPort int) (*testcontainers.DockerContainer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*redisReadyTimeout)
	defer cancel()
	return testcontainers.Run(ctx, redisImage,
		testcontainers.WithCmd(cmd...),
		testcontainers.WithExposedPorts(redisPort),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{
				network.MustParsePort(redisPort): {{
					HostIP:   netip.MustParseAddr("127.0.0.1"),
					HostPort: strconv.Itoa(hostPort),
				}},
			}
		}),
		testcontainers.WithWaitStrategy(
			wait.ForLog("Ready to accept connections").WithStartupTimeout(redisReadyTimeout),
		),
	)
}

// Stop stops the container gracefully (SIGTERM, as `docker stop`). The container and its host
// port binding are kept, so Start brings Redis back at the same URL.
func (r *RedisServer) Stop(t testing.TB) {
	t.Helper()
	r.skipOnCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), redisStopTimeout+20*time.Second)
	defer cancel()
	timeout := redisStopTimeout
	if err := r.container.Stop(ctx, &timeout); err != nil {
		t.Fatalf("stop redis container: %v", err)
	}
}

// Start starts the stopped container again, on the same host port, and waits until PING answers.
func (r *RedisServer) Start(t testing.TB) {
	t.Helper()
	r.skipOnCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), redisReadyTimeout)
	defer cancel()
	if err := r.container.Start(ctx); err != nil {
		t.Fatalf("start redis container again: %v", err)
	}
	r.waitForPing(t)
}

// skipOnCluster skips a test that restarts Redis: the shared cluster is not restarted, and
// failover has tests of its own.
func (r *RedisServer) skipOnCluster(t testing.TB) {
	t.Helper()
	if r.cluster != nil {
		t.Skip("restarts a single Redis; on the cluster, failover is tested by TestTopologies/cluster/failover")
	}
}

// Client returns a new go-redis client for this server (a ClusterClient on the cluster), closed
// in t.Cleanup.
func (r *RedisServer) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	o := r.tls
	o.URL = r.URL
	c, err := streams.Connect(o)
	if err != nil {
		t.Fatalf("connect to %q: %v", r.URL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// flush empties the Redis: every master of the cluster, or the one primary.
func (r *RedisServer) flush(t testing.TB) {
	t.Helper()
	if r.cluster != nil {
		r.cluster.FlushAll(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Client(t).FlushAll(ctx).Err(); err != nil {
		t.Fatalf("flush redis at %s: %v", r.URL, err)
	}
}

// forEachNode runs fn on every node: each master and replica of the cluster (all of them, also
// replicas the cluster does not list yet while they sync), or the one Redis. Per-node state (ACL
// users, their log) must be set and read this way.
func (r *RedisServer) forEachNode(t testing.TB, ctx context.Context, fn func(ctx context.Context, node *redis.Client) error) error {
	t.Helper()
	if r.cluster == nil {
		c := r.Client(t)
		return fn(ctx, c.(*redis.Client))
	}
	for _, n := range r.cluster.Nodes {
		if n.Killed() {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		err := fn(ctx, c)
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr, err)
		}
	}
	return nil
}

// waitForPing polls PING on a fresh connection until it answers PONG or the deadline passes.
// While Redis loads its AOF/RDB it answers -LOADING, which counts as not ready.
func (r *RedisServer) waitForPing(t testing.TB) {
	t.Helper()
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatalf("parse redis URL %q: %v", r.URL, err)
	}
	opts.MaxRetries = -1
	opts.DialTimeout = time.Second
	c := redis.NewClient(opts)
	defer func() { _ = c.Close() }()

	deadline := time.Now().Add(redisReadyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis at %s did not answer PING within %s: %v", r.URL, redisReadyTimeout, err)
		}
		<-tick.C
	}
}

// requireDocker skips the test when no Docker engine answers, or fails it when
// STREAMRPC_REQUIRE_DOCKER=1 (as in CI): see redistest.RequireDocker.
func requireDocker(t testing.TB) {
	t.Helper()
	redistest.RequireDocker(t)
}

// freeLocalPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLocalPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free host port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("release picked host port: %v", err)
	}
	return port
}
