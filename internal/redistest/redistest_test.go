package redistest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// recoverTimeout bounds a failover. Sentinels that split their votes retry
// only after 2 x failover-timeout (20 s), and a loaded CI machine stretches
// every step, so the bound is generous: it is a deadline, not a wait.
const recoverTimeout = 60 * time.Second

// eventually polls f until it returns nil, or fails the test with f's last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	if err := poll(context.Background(), timeout, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func setGet(ctx context.Context, c redis.Cmdable, key, value string) error {
	if err := c.Set(ctx, key, value, 0).Err(); err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	got, err := c.Get(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if got != value {
		return fmt.Errorf("get %s = %q, want %q", key, got, value)
	}
	return nil
}

func TestClusterRoundTrip(t *testing.T) {
	c := StartCluster(t)
	if len(c.Addrs) != 6 {
		t.Fatalf("Addrs = %v, want 6", c.Addrs)
	}
	for _, a := range c.Addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Fatalf("address %s is not on 127.0.0.1", a)
		}
	}
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("Masters = %v, want 3", masters)
	}
	cc := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Write keys until every master holds at least one.
	served := map[string]bool{}
	var keys []string
	for i := 0; len(served) < len(masters); i++ {
		if i == 1000 {
			t.Fatalf("1000 keys reached only masters %v of %v", served, masters)
		}
		key := fmt.Sprintf("key:%d", i)
		keys = append(keys, key)
		if err := setGet(ctx, cc, key, "v"+key); err != nil {
			t.Fatal(err)
		}
		served[c.MasterFor(t, key)] = true
	}
	for m := range served {
		if !slices.Contains(masters, m) {
			t.Fatalf("key served by %s, not a master of %v", m, masters)
		}
	}

	// Two keys in one hash slot: a script may use both.
	script := redis.NewScript(`
		redis.call('SET', KEYS[1], ARGV[1])
		redis.call('SET', KEYS[2], ARGV[1])
		return redis.call('MGET', KEYS[1], KEYS[2])`)
	got, err := script.Run(ctx, cc, []string{"{h}.a", "{h}.b"}, "x").StringSlice()
	if err != nil {
		t.Fatalf("same-slot script: %v", err)
	}
	if !slices.Equal(got, []string{"x", "x"}) {
		t.Fatalf("same-slot script = %v, want [x x]", got)
	}

	// Keys in two slots: the cluster refuses the script. The client routes it by its first
	// key; the server checks all keys. A plain client to the first key's master shows that the
	// refusal comes from the server, not from a check in go-redis.
	cross := []string{"{a}.k", "{b}.k"}
	err = script.Run(ctx, cc, cross, "x").Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot script via cluster client: error %v, want CROSSSLOT", err)
	}
	err = onNode(ctx, c.MasterFor(t, cross[0]), func(ctx context.Context, rc *redis.Client) error {
		return script.Run(ctx, rc, cross, "x").Err()
	})
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot script on the first key's master: error %v, want CROSSSLOT", err)
	}

	// FlushAll empties every master (EXISTS key by key: keys of several slots are CROSSSLOT).
	c.FlushAll(t)
	for _, key := range append(keys, "{h}.a", "{h}.b") {
		n, err := cc.Exists(ctx, key).Result()
		if err != nil || n != 0 {
			t.Fatalf("after FlushAll, EXISTS %s = %d, %v; want 0", key, n, err)
		}
	}
}

func TestClusterFailover(t *testing.T) {
	c := StartCluster(t)
	cc := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const key = "failover:key"
	victim := c.MasterFor(t, key)
	// Write on the victim directly and wait for the replica to acknowledge, so the value must
	// survive the failover.
	err := onNode(ctx, victim, func(ctx context.Context, rc *redis.Client) error {
		if err := rc.Set(ctx, key, "before", 0).Err(); err != nil {
			return err
		}
		acked, err := rc.Do(ctx, "WAIT", 1, 5000).Int()
		if err != nil {
			return err
		}
		if acked != 1 {
			return fmt.Errorf("WAIT: %d replicas acknowledged, want 1", acked)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := setGet(ctx, cc, fmt.Sprintf("other:%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	before := c.Masters(t)

	start := time.Now()
	c.Kill(t, victim)
	c.WaitHealthy(t, recoverTimeout)
	t.Logf("cluster healthy %s after kill", time.Since(start).Round(time.Millisecond))

	after := c.Masters(t)
	if len(after) != 3 || slices.Contains(after, victim) || slices.Equal(before, after) {
		t.Fatalf("masters before %v, after %v; want 3 without %s", before, after, victim)
	}
	promoted := c.MasterFor(t, key)
	if promoted == victim || !slices.Contains(c.Addrs, promoted) {
		t.Fatalf("key's master after failover is %s", promoted)
	}

	// go-redis reloads its slot map on MOVED/ASK or every ClusterStateReloadInterval (60 s by
	// default), not on connection errors: the dead master's port is still published by the
	// anchor and answers with EOF, so without ReloadState the client would retry it for a minute.
	eventually(t, recoverTimeout, "cluster client after failover", func(ctx context.Context) error {
		got, err := cc.Get(ctx, key).Result()
		if err != nil {
			cc.ReloadState(ctx)
			return err
		}
		if got != "before" {
			return fmt.Errorf("get %s = %q, want before", key, got)
		}
		return setGet(ctx, cc, key, "after")
	})
	t.Logf("client served again %s after kill", time.Since(start).Round(time.Millisecond))
}

func TestSentinelFailover(t *testing.T) {
	s := StartSentinel(t)
	if s.MasterName != "mymaster" || len(s.SentinelAddrs) != 3 {
		t.Fatalf("MasterName %q, SentinelAddrs %v", s.MasterName, s.SentinelAddrs)
	}
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// WAIT counts the writes of its own connection: write and wait on one connection, so
	// that the replica has the value and it survives the failover.
	conn := c.Conn()
	if err := setGet(ctx, conn, "k", "before"); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Do(ctx, "WAIT", 1, 5000).Int()
	if err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v; want 1 replica", n, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	old := s.KillPrimary(t)
	primary := s.WaitPrimaryChanged(t, old, recoverTimeout)
	t.Logf("sentinels switched %s -> %s in %s", old, primary, time.Since(start).Round(time.Millisecond))
	if primary == old || !strings.HasPrefix(primary, "127.0.0.1:") {
		t.Fatalf("new primary %s (old %s)", primary, old)
	}
	if got := s.Primary(t); got != primary {
		t.Fatalf("Primary = %s, want %s", got, primary)
	}

	eventually(t, recoverTimeout, "failover client after failover", func(ctx context.Context) error {
		got, err := c.Get(ctx, "k").Result()
		if err != nil {
			return err
		}
		if got != "before" {
			return fmt.Errorf("get k = %q, want before", got)
		}
		return setGet(ctx, c, "k", "after")
	})
	t.Logf("client served again %s after kill", time.Since(start).Round(time.Millisecond))
}
