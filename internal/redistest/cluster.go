package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
)

const (
	clusterMasters  = 3
	clusterReplicas = 1 // per master
	clusterSlots    = 16384
	// clusterBusBase is the first cluster bus port. Bus ports live only inside the pod's
	// namespace (they are not published), and P+10000 would overflow for high client ports.
	clusterBusBase = 16001
	// clusterNodeTimeout is --cluster-node-timeout: a master unreachable this long is marked
	// failing and its replica is promoted.
	clusterNodeTimeout  = 2 * time.Second
	clusterReadyTimeout = 60 * time.Second
)

// Node is one Redis server in its own container.
type Node struct {
	// Addr is "127.0.0.1:P"; it works from the test process and from the other nodes.
	Addr string

	ctr    *testcontainers.DockerContainer
	killed atomic.Bool
}

// Killed reports whether the node's container was killed (Cluster.Kill, Sentinel.KillPrimary).
func (n *Node) Killed() bool { return n.killed.Load() }

// Cluster is a Redis Cluster of 3 masters with one replica each, running in containers.
type Cluster struct {
	// Addrs are the client addresses of all 6 nodes, as first started (masters and replicas
	// alike, in no particular role order), reachable from the host.
	Addrs []string
	// Nodes are the 6 nodes, in the order of Addrs.
	Nodes []*Node

	pod *pod
}

// URL is the cluster's REDIS_URL for streamrpc: redis+cluster:// with every node as a seed.
func (c *Cluster) URL() string { return seedsURL("redis+cluster://", c.Addrs, "") }

// seedsURL is scheme + the first address, the others as addr= query parameters, then extra.
func seedsURL(scheme string, addrs []string, extra string) string {
	u := scheme + addrs[0]
	sep := "?"
	if extra != "" {
		u, sep = u+"?"+extra, "&"
	}
	for _, a := range addrs[1:] {
		u += sep + "addr=" + a
		sep = "&"
	}
	return u
}

// StartCluster starts a Redis Cluster for this test and terminates it in t.Cleanup. It skips
// the test when no Docker engine answers (fails it when STREAMRPC_REQUIRE_DOCKER=1).
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	start := time.Now()
	c, err := NewCluster(ctx)
	if err != nil {
		t.Fatalf("start redis cluster: %v", err)
	}
	t.Logf("redis cluster %v ready in %s", c.Addrs, time.Since(start).Round(time.Millisecond))
	terminateAtCleanup(t, "redis cluster", c.Terminate)
	return c
}

// NewCluster starts a Redis Cluster of 3 masters and 3 replicas and returns once every node
// reports cluster_state:ok, all 16384 slots are served and every replica is in sync with its
// master. The caller must call Terminate when done; this suits a cluster shared by a whole
// test package (started in TestMain). Without a Docker engine it returns an error wrapping
// ErrNoDocker; without its image (missing and not pullable), one wrapping
// ErrNoImage.
func NewCluster(ctx context.Context) (c *Cluster, err error) {
	if err := checkDocker(); err != nil {
		return nil, err
	}
	n := clusterMasters * (1 + clusterReplicas)
	p, err := newPod(ctx, n)
	if err != nil {
		return nil, err
	}
	c = &Cluster{pod: p}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.terminate(context.WithoutCancel(ctx)))
			c = nil
		}
	}()

	busPorts := make([]int, 0, n)
	for b := clusterBusBase; len(busPorts) < n; b++ {
		if !slices.Contains(p.ports, b) {
			busPorts = append(busPorts, b)
		}
	}
	cmds := make([][]string, n)
	for i, port := range p.ports {
		cmds[i] = []string{"redis-server",
			"--port", strconv.Itoa(port),
			"--cluster-enabled", "yes",
			"--cluster-config-file", "/tmp/nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout / time.Millisecond)),
			"--cluster-announce-ip", "127.0.0.1",
			"--cluster-port", strconv.Itoa(busPorts[i]),
			"--save", "",
			"--appendonly", "no",
			"--protected-mode", "no",
			// Replicas sync at once instead of after the default 5 s wait for more replicas.
			"--repl-diskless-sync-delay", "0",
		}
	}
	ctrs, err := p.runAll(ctx, cmds)
	if err != nil {
		return nil, err
	}
	for i, ctr := range ctrs {
		a := addr(p.ports[i])
		c.Addrs = append(c.Addrs, a)
		c.Nodes = append(c.Nodes, &Node{Addr: a, ctr: ctr})
	}
	if err := waitPing(ctx, clusterReadyTimeout, c.Addrs); err != nil {
		return nil, fmt.Errorf("cluster nodes: %w", err)
	}

	create := append([]string{"redis-cli", "--cluster", "create"}, c.Addrs...)
	create = append(create, "--cluster-replicas", strconv.Itoa(clusterReplicas), "--cluster-yes")
	if _, err := exec(ctx, ctrs[0], create...); err != nil {
		return nil, fmt.Errorf("create cluster: %w", err)
	}
	if err := c.waitHealthy(ctx, clusterReadyTimeout, true); err != nil {
		return nil, fmt.Errorf("cluster did not become ready: %w", err)
	}
	return c, nil
}

// Terminate removes all containers and the network of the cluster. It may be called again.
func (c *Cluster) Terminate(ctx context.Context) error {
	return c.pod.terminate(ctx)
}

// Client returns a new cluster client with go-redis's default options, seeded with the
// addresses of the live nodes; it is closed in t.Cleanup.
//
// After Kill of a master, go-redis keeps sending that master's slots to the dead address (the
// anchor still accepts the connection, which then ends in EOF) until it reloads its slot map:
// on a MOVED or ASK reply, on ReloadState, or every ClusterStateReloadInterval (60 s by
// default). A test that expects quick recovery calls ReloadState when a command fails.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.liveAddrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Masters returns the sorted addresses of the masters that serve slots, per CLUSTER SHARDS of
// a live node.
func (c *Cluster) Masters(t testing.TB) []string {
	t.Helper()
	var masters []string
	for _, r := range c.slotMap(t) {
		if !slices.Contains(masters, r.master) {
			masters = append(masters, r.master)
		}
	}
	slices.Sort(masters)
	return masters
}

// MasterFor returns the address of the master that serves the hash slot of key, per a live
// node's view.
func (c *Cluster) MasterFor(t testing.TB, key string) string {
	t.Helper()
	var slot int64
	var ranges []slotRange
	err := c.onLiveNode(func(ctx context.Context, rc *redis.Client) error {
		var err error
		if slot, err = rc.ClusterKeySlot(ctx, key).Result(); err != nil {
			return err
		}
		ranges, err = slotMap(ctx, rc)
		return err
	})
	if err != nil {
		t.Fatalf("master for key %q: %v", key, err)
	}
	for _, r := range ranges {
		if r.start <= slot && slot <= r.end {
			return r.master
		}
	}
	t.Fatalf("master for key %q: slot %d is not served", key, slot)
	return ""
}

// Kill stops the container of the node at addr with SIGKILL: the node crashes without a
// graceful shutdown. A killed node stays dead; the cluster's failure detection takes
// cluster-node-timeout (2 s) plus the replica election before a replica serves its slots.
func (c *Cluster) Kill(t testing.TB, addr string) {
	t.Helper()
	killNode(t, c.Nodes, addr)
}

// WaitHealthy waits until every live node reports cluster_state:ok and all 16384 slots are
// served by live masters, the same on every live node; it fails the test after timeout.
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := c.waitHealthy(context.Background(), timeout, false); err != nil {
		t.Fatalf("redis cluster not healthy: %v", err)
	}
}

// FlushAll runs FLUSHALL on every master, for isolation between tests that share a cluster.
// The replicas follow through replication.
func (c *Cluster) FlushAll(t testing.TB) {
	t.Helper()
	for _, m := range c.Masters(t) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := onNode(ctx, m, func(ctx context.Context, rc *redis.Client) error {
			return rc.FlushAll(ctx).Err()
		})
		cancel()
		if err != nil {
			t.Fatalf("flushall: %v", err)
		}
	}
}

func (c *Cluster) liveAddrs() []string {
	var addrs []string
	for _, n := range c.Nodes {
		if !n.Killed() {
			addrs = append(addrs, n.Addr)
		}
	}
	return addrs
}

// onLiveNode runs f against the live nodes in turn until one succeeds.
func (c *Cluster) onLiveNode(f func(ctx context.Context, rc *redis.Client) error) error {
	var errs []error
	for _, a := range c.liveAddrs() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := onNode(ctx, a, f)
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no live node answered: %w", errors.Join(errs...))
}

// slotMap returns the slot map of the first live node that answers.
func (c *Cluster) slotMap(t testing.TB) []slotRange {
	t.Helper()
	var ranges []slotRange
	err := c.onLiveNode(func(ctx context.Context, rc *redis.Client) error {
		var err error
		ranges, err = slotMap(ctx, rc)
		return err
	})
	if err != nil {
		t.Fatalf("cluster slot map: %v", err)
	}
	return ranges
}

// slotRange is a range of hash slots and the nodes that serve it, in one node's view.
type slotRange struct {
	start, end int64
	master     string   // address of the master that owns the range
	health     string   // the master's health: "online", "failed" or "loading"
	replicas   []string // addresses of the master's replicas that are not failed
}

// slotMap returns rc's view of the slot map from CLUSTER SHARDS, sorted by slot.
func slotMap(ctx context.Context, rc *redis.Client) ([]slotRange, error) {
	shards, err := rc.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	var ranges []slotRange
	for _, sh := range shards {
		if len(sh.Slots) == 0 {
			continue // e.g. a failed former master
		}
		var master, health string
		var replicas []string
		for _, n := range sh.Nodes {
			a := net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
			switch {
			case n.Role == "master":
				master, health = a, n.Health
			case n.Health != "failed":
				// A replica is "loading" until gossip reports a replication offset above 0,
				// which with no writes takes one repl-ping-replica-period (10 s); whether it is
				// in sync is checked with INFO replication instead.
				replicas = append(replicas, a)
			}
		}
		if master == "" {
			return nil, fmt.Errorf("shard with slots %v has no master", sh.Slots)
		}
		for _, sr := range sh.Slots {
			ranges = append(ranges, slotRange{start: sr.Start, end: sr.End, master: master, health: health, replicas: replicas})
		}
	}
	slices.SortFunc(ranges, func(a, b slotRange) int { return int(a.start - b.start) })
	return ranges, nil
}

// waitHealthy polls until every live node reports cluster_state:ok and the same slot map,
// covering all slots with live masters. With initial, it also requires 3 masters with one
// in-sync replica each (the freshly created cluster).
func (c *Cluster) waitHealthy(ctx context.Context, timeout time.Duration, initial bool) error {
	return poll(ctx, timeout, func(ctx context.Context) error {
		live := c.liveAddrs()
		var first, firstAddr string
		for _, a := range live {
			var view string
			err := onNode(ctx, a, func(ctx context.Context, rc *redis.Client) error {
				info, err := rc.ClusterInfo(ctx).Result()
				if err != nil {
					return err
				}
				if st := infoField(info, "cluster_state"); st != "ok" {
					return fmt.Errorf("cluster_state:%s", st)
				}
				ranges, err := slotMap(ctx, rc)
				if err != nil {
					return err
				}
				view, err = checkSlots(ranges, live, initial)
				if err != nil {
					return err
				}
				if initial {
					return replicaInSync(ctx, rc)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if firstAddr == "" {
				first, firstAddr = view, a
			} else if view != first {
				return fmt.Errorf("nodes disagree on the slot map: %s has %s, %s has %s", firstAddr, first, a, view)
			}
		}
		return nil
	})
}

// checkSlots checks that ranges cover 0..16383 exactly, each range served by a live, online
// master, and returns a canonical text of the slot-to-master map. With initial, it also
// requires 3 masters each with exactly one replica that is not failed.
func checkSlots(ranges []slotRange, live []string, initial bool) (string, error) {
	var next int64
	masters := map[string]bool{}
	var view strings.Builder
	for _, r := range ranges {
		if r.start != next {
			return "", fmt.Errorf("slots %d..%d not served", next, r.start-1)
		}
		next = r.end + 1
		if !slices.Contains(live, r.master) {
			return "", fmt.Errorf("slots %d..%d served by dead node %s", r.start, r.end, r.master)
		}
		if r.health != "online" {
			return "", fmt.Errorf("slots %d..%d served by %s, which is %s", r.start, r.end, r.master, r.health)
		}
		if initial && len(r.replicas) != clusterReplicas {
			return "", fmt.Errorf("slots %d..%d have replicas %v, want %d", r.start, r.end, r.replicas, clusterReplicas)
		}
		masters[r.master] = true
		fmt.Fprintf(&view, "%d-%d:%s ", r.start, r.end, r.master)
	}
	if next != clusterSlots {
		return "", fmt.Errorf("slots %d..%d not served", next, clusterSlots-1)
	}
	if initial && len(masters) != clusterMasters {
		return "", fmt.Errorf("%d masters, want %d", len(masters), clusterMasters)
	}
	return view.String(), nil
}

// replicaInSync returns an error when rc is a replica whose link to its master is not up
// (initial sync not done), so a failover would not find a usable replica.
func replicaInSync(ctx context.Context, rc *redis.Client) error {
	info, err := rc.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if infoField(info, "role") != "slave" {
		return nil
	}
	if st := infoField(info, "master_link_status"); st != "up" {
		return fmt.Errorf("replica link to master is %q", st)
	}
	if infoField(info, "master_sync_in_progress") != "0" {
		return errors.New("replica sync in progress")
	}
	return nil
}

// killNode SIGKILLs the container of the node at addr and marks it killed.
func killNode(t testing.TB, nodes []*Node, addr string) {
	t.Helper()
	i := slices.IndexFunc(nodes, func(n *Node) bool { return n.Addr == addr })
	if i < 0 {
		t.Fatalf("kill %s: no such node", addr)
	}
	if !nodes[i].killed.CompareAndSwap(false, true) {
		t.Fatalf("kill %s: already killed", addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kill(ctx, nodes[i].ctr); err != nil {
		t.Fatalf("kill %s: %v", addr, err)
	}
}
