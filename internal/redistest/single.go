package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Single is one Redis server in a container, without persistence.
type Single struct {
	// Addr is "127.0.0.1:P", the container's published port.
	Addr string

	ctr *testcontainers.DockerContainer
}

// URL is the server's REDIS_URL, database 0.
func (s *Single) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a new client of the server; the caller closes it.
func (s *Single) Client() *redis.Client { return redis.NewClient(&redis.Options{Addr: s.Addr}) }

// StartSingle starts one Redis for this test and terminates it in t.Cleanup.
// It skips the test when no Docker engine answers (fails it when
// STREAMRPC_REQUIRE_DOCKER=1).
func StartSingle(t testing.TB) *Single {
	t.Helper()
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := NewSingle(ctx)
	if err != nil {
		t.Fatalf("start redis: %v", err)
	}
	terminateAtCleanup(t, "redis", s.Terminate)
	return s
}

// NewSingle starts one Redis in a container, without persistence, and
// returns once it answers PING on its published port. The caller must call
// Terminate when done.
func NewSingle(ctx context.Context) (*Single, error) {
	ctr, err := testcontainers.Run(ctx, Image,
		testcontainers.WithCmd("redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"),
		testcontainers.WithExposedPorts("6379/tcp"),
		testcontainers.WithWaitStrategy(wait.ForLog("Ready to accept connections").WithStartupTimeout(time.Minute)),
	)
	s := &Single{ctr: ctr}
	if err != nil {
		return nil, errors.Join(err, s.Terminate(ctx))
	}
	endpoint, err := ctr.PortEndpoint(ctx, "6379/tcp", "")
	if err != nil {
		return nil, errors.Join(err, s.Terminate(ctx))
	}
	// Dial the published port on 127.0.0.1: Docker's own idea of its host
	// address may not be reachable here.
	_, port, err := net.SplitHostPort(strings.TrimPrefix(endpoint, "tcp://"))
	if err != nil {
		return nil, errors.Join(err, s.Terminate(ctx))
	}
	s.Addr = net.JoinHostPort("127.0.0.1", port)
	if err := waitPing(ctx, time.Minute, []string{s.Addr}); err != nil {
		return nil, errors.Join(fmt.Errorf("redis at %s: %w", s.Addr, err), s.Terminate(ctx))
	}
	return s, nil
}

// Terminate stops and removes the container.
func (s *Single) Terminate(context.Context) error { return testcontainers.TerminateContainer(s.ctr) }
