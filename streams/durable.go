package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated is returned when durable writes are asked for
// (Options.DurableReplicas) and fewer replicas than that acknowledged a write
// within Options.DurableTimeout. The write took effect on the primary: a call
// enqueued this way may still run.
var ErrNotReplicated = errors.New("write not acknowledged by enough replicas")

// Redis replicates asynchronously: a primary acknowledges a write before its
// replicas have it, so a failover can lose the last writes. With
// DurableReplicas > 0, every script run whose outcome a caller is told about
// (enqueueing a call, settling one) is followed by WAIT on the same connection,
// in the same pipeline: the caller hears back only once that many replicas
// have the write, or gets ErrNotReplicated. This narrows the window; it does
// not close it (a replica may acknowledge and still lose the write if it
// fails too), which is what WAIT promises and no more.

// runScriptsDurable is runScripts followed by WAIT for replicas replicas,
// sent to each primary that ran one of the scripts. A script whose primary
// did not confirm the write gets ErrNotReplicated in place of its reply
// error (its result, on cmd, is kept).
func runScriptsDurable(ctx context.Context, rdb redis.UniversalClient, calls []*scriptCall, replicas int, timeout time.Duration) []error {
	errs := make([]error, len(calls))
	// WAIT counts the writes of its own connection, so each primary gets one
	// pipeline of its scripts and the WAIT, sent over one connection.
	type group struct {
		node  *redis.Client
		calls []int
	}
	var groups []*group
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		byNode := map[*redis.Client]*group{}
		for i, sc := range calls {
			node, err := c.MasterForKey(ctx, sc.keys[0])
			if err != nil {
				sc.cmd = redis.NewCmd(ctx)
				sc.cmd.SetErr(err)
				continue
			}
			g := byNode[node]
			if g == nil {
				g = &group{node: node}
				byNode[node] = g
				groups = append(groups, g)
			}
			g.calls = append(g.calls, i)
		}
	case *redis.Client:
		g := &group{node: c}
		for i := range calls {
			g.calls = append(g.calls, i)
		}
		groups = append(groups, g)
	default:
		runScripts(ctx, rdb, calls)
		for i := range errs {
			errs[i] = fmt.Errorf("%w: durable writes need a single-node, Sentinel or Cluster client, not %T", ErrNotReplicated, rdb)
		}
		return errs
	}
	for _, g := range groups {
		sub := make([]*scriptCall, len(g.calls))
		for j, i := range g.calls {
			sub[j] = calls[i]
		}
		waitErr := waitAfterScripts(ctx, g.node, sub, replicas, timeout)
		for _, i := range g.calls {
			errs[i] = waitErr
		}
	}
	return errs
}

// waitAfterScripts runs calls on node as one pipeline ending with WAIT, and
// says whether replicas replicas confirmed them. Scripts Redis did not know
// (NOSCRIPT) are sent again with EVAL, and WAIT after them: replication is one
// stream, so replicas that have these later writes have the earlier ones.
func waitAfterScripts(ctx context.Context, node *redis.Client, calls []*scriptCall, replicas int, timeout time.Duration) error {
	run := func(calls []*scriptCall, load bool) *redis.Cmd {
		pipe := node.Pipeline()
		for _, sc := range calls {
			if load {
				sc.cmd = sc.script.Eval(ctx, pipe, sc.keys, sc.args...)
			} else {
				sc.cmd = sc.script.EvalSha(ctx, pipe, sc.keys, sc.args...)
			}
		}
		wait := pipe.Do(ctx, "wait", replicas, timeout.Milliseconds())
		_, _ = pipe.Exec(ctx) // errors are on each command
		return wait
	}
	wait := run(calls, false)
	var retry []*scriptCall
	for _, sc := range calls {
		if redis.HasErrorPrefix(sc.cmd.Err(), "NOSCRIPT") {
			retry = append(retry, sc)
		}
	}
	if len(retry) > 0 {
		wait = run(retry, true)
	}
	n, err := wait.Int64()
	switch {
	case err != nil:
		return fmt.Errorf("%w: WAIT: %v", ErrNotReplicated, err)
	case n < int64(replicas):
		return fmt.Errorf("%w: %d of %d replicas within %s", ErrNotReplicated, n, replicas, timeout)
	}
	return nil
}
