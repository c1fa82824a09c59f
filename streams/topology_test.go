package streams

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/streamrpc/streamrpc/internal/redistest"
)

// The protocol tests run one suite (protocolCases) against each Redis
// topology the product supports with a different code path: one node (the
// scripts append replies themselves) and a Redis Cluster (every key of a
// script in one slot; replies published in a second round trip). Sentinel
// and TLS change how the client connects, not what the scripts do: their
// tests stay in integration/.
//
// Each topology is started once per package run, on first use, and removed
// by TestMain. STREAMRPC_TEST_REDIS=single or =cluster runs the suite on
// that topology only (CI may run them in parallel processes); unset, both.
// Without Docker (or without the redis:7-alpine image) the suite skips, or
// fails under STREAMRPC_REQUIRE_DOCKER=1, as integration/ does.

// topology is one Redis topology, started at most once.
type topology struct {
	name  string
	start func(ctx context.Context) (redis.UniversalClient, func(context.Context) error, error)

	once sync.Once
	rdb  redis.UniversalClient
	stop func(context.Context) error
	err  error
}

var topologies = []*topology{
	{name: "single", start: startSingle},
	{name: "cluster", start: startCluster},
}

const topologyStartTimeout = 3 * time.Minute

// client returns the topology's shared go-redis client, starting the
// topology on first use; it skips t without Docker.
func (tp *topology) client(t *testing.T) redis.UniversalClient {
	t.Helper()
	if only := os.Getenv("STREAMRPC_TEST_REDIS"); only != "" && only != tp.name {
		t.Skipf("STREAMRPC_TEST_REDIS=%s: not run on %s", only, tp.name)
	}
	redistest.RequireDocker(t)
	tp.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), topologyStartTimeout)
		defer cancel()
		begin := time.Now()
		tp.rdb, tp.stop, tp.err = tp.start(ctx)
		if tp.err == nil {
			t.Logf("redis %s ready in %s", tp.name, time.Since(begin).Round(time.Millisecond))
		}
	})
	if tp.err != nil {
		t.Fatalf("start redis %s: %v", tp.name, tp.err)
	}
	return tp.rdb
}

func (tp *topology) terminate() error {
	if tp.rdb == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return errors.Join(tp.rdb.Close(), tp.stop(ctx))
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, tp := range topologies {
		if err := tp.terminate(); err != nil {
			fmt.Fprintf(os.Stderr, "terminate redis %s: %v\n", tp.name, err)
		}
	}
	os.Exit(code)
}

// startSingle starts one Redis in a container, without persistence.
func startSingle(ctx context.Context) (redis.UniversalClient, func(context.Context) error, error) {
	r, err := redistest.NewSingle(ctx)
	if err != nil {
		return nil, nil, err
	}
	return r.Client(), r.Terminate, nil
}

// startCluster starts a Redis Cluster of 3 masters and 3 replicas.
func startCluster(ctx context.Context) (redis.UniversalClient, func(context.Context) error, error) {
	c, err := redistest.NewCluster(ctx)
	if err != nil {
		return nil, nil, err
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs}), c.Terminate, nil
}
