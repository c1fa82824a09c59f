package redistest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// MasterName is the name under which the sentinels monitor the primary.
	MasterName = "mymaster"

	sentinelCount  = 3
	sentinelQuorum = 2
	// sentinelDownAfter is down-after-milliseconds: a primary unreachable this long is
	// subjectively down; with the quorum agreeing, a failover starts.
	sentinelDownAfter       = 2 * time.Second
	sentinelFailoverTimeout = 10 * time.Second
	sentinelReadyTimeout    = 60 * time.Second
)

// Sentinel is a Redis primary with one replica, monitored by three sentinels (quorum 2),
// running in containers.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the primary under ("mymaster").
	MasterName string
	// SentinelAddrs are the addresses of the three sentinels, reachable from the host.
	SentinelAddrs []string

	// Servers are the two Redis servers: the primary and the replica as started (their roles
	// change with a failover).
	Servers []*Node

	pod *pod
}

// StartSentinel starts a Sentinel topology for this test and terminates it in t.Cleanup. It
// skips the test when no Docker engine answers (fails it when STREAMRPC_REQUIRE_DOCKER=1).
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	start := time.Now()
	s, err := NewSentinel(ctx)
	if err != nil {
		t.Fatalf("start redis sentinel: %v", err)
	}
	t.Logf("redis sentinel %v ready in %s", s.SentinelAddrs, time.Since(start).Round(time.Millisecond))
	terminateAtCleanup(t, "redis sentinel", s.Terminate)
	return s
}

// NewSentinel starts a primary, a replica and three sentinels and returns once the replica is
// in sync and every sentinel knows the primary, the replica and the two other sentinels. The
// caller must call Terminate when done. Without a Docker engine it returns an error wrapping
// ErrNoDocker; without its image (missing and not pullable), one wrapping
// ErrNoImage.
func NewSentinel(ctx context.Context) (s *Sentinel, err error) {
	if err := checkDocker(); err != nil {
		return nil, err
	}
	p, err := newPod(ctx, 2+sentinelCount)
	if err != nil {
		return nil, err
	}
	s = &Sentinel{MasterName: MasterName, pod: p}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.terminate(context.WithoutCancel(ctx)))
			s = nil
		}
	}()

	primaryPort, replicaPort, sentinelPorts := p.ports[0], p.ports[1], p.ports[2:]
	server := func(port int, extra ...string) []string {
		return append([]string{"redis-server",
			"--port", strconv.Itoa(port),
			"--save", "",
			"--appendonly", "no",
			"--protected-mode", "no",
			// The replica syncs at once instead of after the default 5 s wait for more replicas.
			"--repl-diskless-sync-delay", "0",
		}, extra...)
	}
	ctrs, err := p.runAll(ctx, [][]string{
		server(primaryPort),
		server(replicaPort, "--replicaof", "127.0.0.1", strconv.Itoa(primaryPort)),
	})
	if err != nil {
		return nil, err
	}
	s.Servers = []*Node{{Addr: addr(primaryPort), ctr: ctrs[0]}, {Addr: addr(replicaPort), ctr: ctrs[1]}}

	// The sentinels learn of the replica from the primary's INFO, which they ask for every 10 s
	// in steady state but at once on connecting: start them when the replica is attached.
	err = poll(ctx, sentinelReadyTimeout, func(ctx context.Context) error {
		return onNode(ctx, s.Servers[1].Addr, func(ctx context.Context, rc *redis.Client) error {
			info, err := rc.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if st := infoField(info, "master_link_status"); st != "up" {
				return fmt.Errorf("replica link to primary is %q", st)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}

	cmds := make([][]string, len(sentinelPorts))
	for i, port := range sentinelPorts {
		s.SentinelAddrs = append(s.SentinelAddrs, addr(port))
		conf := []string{
			"port " + strconv.Itoa(port),
			// Clients reach the sentinel through Docker's port proxy, not from loopback.
			"protected-mode no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", MasterName, primaryPort, sentinelQuorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", MasterName, sentinelDownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", MasterName, sentinelFailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", MasterName),
		}
		// The sentinel rewrites its config file, so it is written inside the container.
		script := "printf '%s\\n' '" + strings.Join(conf, "' '") + "' > /tmp/s.conf && exec redis-server /tmp/s.conf --sentinel"
		cmds[i] = []string{"sh", "-c", script}
	}
	if _, err := p.runAll(ctx, cmds); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("sentinels did not become ready: %w", err)
	}
	return s, nil
}

// waitReady polls until every sentinel sees the primary as up with one replica (link ok) and
// two other sentinels.
func (s *Sentinel) waitReady(ctx context.Context) error {
	primary := s.Servers[0].Addr
	return poll(ctx, sentinelReadyTimeout, func(ctx context.Context) error {
		for _, a := range s.SentinelAddrs {
			sc := sentinelClient(a)
			err := func() error {
				m, err := sc.Master(ctx, s.MasterName).Result()
				if err != nil {
					return err
				}
				if got := m["ip"] + ":" + m["port"]; got != primary {
					return fmt.Errorf("primary is %s, want %s", got, primary)
				}
				if m["flags"] != "master" {
					return fmt.Errorf("primary flags %q", m["flags"])
				}
				if m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(sentinelCount-1) {
					return fmt.Errorf("knows %s replicas and %s other sentinels", m["num-slaves"], m["num-other-sentinels"])
				}
				replicas, err := sc.Replicas(ctx, s.MasterName).Result()
				if err != nil {
					return err
				}
				if len(replicas) != 1 || replicas[0]["flags"] != "slave" || replicas[0]["master-link-status"] != "ok" {
					return fmt.Errorf("replicas %v", replicas)
				}
				return nil
			}()
			_ = sc.Close()
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", a, err)
			}
		}
		return nil
	})
}

// Terminate removes all containers and the network of the topology. It may be called again.
func (s *Sentinel) Terminate(ctx context.Context) error {
	return s.pod.terminate(ctx)
}

// Client returns a new failover client (redis.NewFailoverClient) that finds the primary
// through the sentinels and follows failovers; it is closed in t.Cleanup.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName,
		SentinelAddrs: s.SentinelAddrs,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Primary returns the address of the current primary, as the first sentinel that answers
// SENTINEL get-master-addr-by-name reports it.
func (s *Sentinel) Primary(t testing.TB) string {
	t.Helper()
	var errs []error
	for _, a := range s.SentinelAddrs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		primary, err := s.primaryPer(ctx, a)
		cancel()
		if err == nil {
			return primary
		}
		errs = append(errs, err)
	}
	t.Fatalf("primary: no sentinel answered: %v", errors.Join(errs...))
	return ""
}

// KillPrimary stops the current primary's container with SIGKILL and returns its address.
// The sentinels notice after down-after-milliseconds (2 s) and then promote the replica.
func (s *Sentinel) KillPrimary(t testing.TB) (old string) {
	t.Helper()
	old = s.Primary(t)
	killNode(t, s.Servers, old)
	return old
}

// WaitPrimaryChanged waits until all sentinels report the same primary other than old and
// that server answers as a master; it returns the new primary's address, or fails the test
// after timeout.
func (s *Sentinel) WaitPrimaryChanged(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	var primary string
	err := poll(context.Background(), timeout, func(ctx context.Context) error {
		var seen string
		for _, a := range s.SentinelAddrs {
			got, err := s.primaryPer(ctx, a)
			if err != nil {
				return err
			}
			if got == old {
				return fmt.Errorf("sentinel %s still reports %s", a, old)
			}
			if seen != "" && got != seen {
				return fmt.Errorf("sentinels disagree: %s vs %s", seen, got)
			}
			seen = got
		}
		err := onNode(ctx, seen, func(ctx context.Context, rc *redis.Client) error {
			info, err := rc.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if role := infoField(info, "role"); role != "master" {
				return fmt.Errorf("role %s", role)
			}
			return nil
		})
		if err != nil {
			return err
		}
		primary = seen
		return nil
	})
	if err != nil {
		t.Fatalf("primary did not change from %s: %v", old, err)
	}
	return primary
}

func (s *Sentinel) primaryPer(ctx context.Context, sentinelAddr string) (string, error) {
	sc := sentinelClient(sentinelAddr)
	defer func() { _ = sc.Close() }()
	hp, err := sc.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", sentinelAddr, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: get-master-addr-by-name: %v", sentinelAddr, hp)
	}
	return hp[0] + ":" + hp[1], nil
}

// URL is the group's REDIS_URL for streamrpc: redis+sentinel:// with every sentinel.
func (s *Sentinel) URL() string {
	return seedsURL("redis+sentinel://", s.SentinelAddrs, "master_name="+s.MasterName)
}

func sentinelClient(address string) *redis.SentinelClient {
	return redis.NewSentinelClient(adminOptions(address))
}
