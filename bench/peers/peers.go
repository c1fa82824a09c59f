package main

import (
	"context"
	"fmt"
)

// startRole starts one role of this binary on a fresh loopback port.
func (e *env) startRole(ctx context.Context, name, role string, extra ...string) (*child, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"role", role, "-addr", addr, "-redis", e.redisAddr, "-id", e.id,
		"-timeout", e.o.timeout.String(), "-poll", e.o.poll.String()}, extra...)
	c, err := e.cs.start(name, e.self, args, nil)
	if err != nil {
		return nil, "", err
	}
	return c, addr, nil
}

// edgeURL is the call URL of a Go peer's edge.
func edgeURL(addr string) string { return "http://" + addr + "/rpc" }

func startEcho(ctx context.Context, e *env) (running, error) {
	c, addr, err := e.startRole(ctx, "echo-edge", "echo-edge")
	if err != nil {
		return running{}, err
	}
	return running{url: edgeURL(addr), procs: []proc{{"edge", c}}}, nil
}

func startNATS(ctx context.Context, e *env) (running, error) {
	var r running
	broker, baddr, err := e.startRole(ctx, "nats-server", "nats-server")
	if err != nil {
		return r, err
	}
	r.procs = append(r.procs, proc{"nats", broker})
	if err := waitTCP(ctx, baddr, broker); err != nil {
		return r, err
	}
	url := "nats://" + baddr
	// Stopped in this order: edge, worker, broker.
	worker, _, err := e.startRole(ctx, "nats-worker", "nats-worker", "-nats", url)
	if err != nil {
		return r, err
	}
	r.procs = append([]proc{{"worker", worker}}, r.procs...)
	edge, eaddr, err := e.startRole(ctx, "nats-edge", "nats-edge", "-nats", url)
	if err != nil {
		return r, err
	}
	r.procs = append([]proc{{"edge", edge}}, r.procs...)
	r.url = edgeURL(eaddr)
	return r, nil
}

// startPair starts a Redis-backed Go peer: its worker, then its edge.
func (e *env) startPair(ctx context.Context, prefix string) (running, error) {
	r := running{redis: true}
	worker, _, err := e.startRole(ctx, prefix+"-worker", prefix+"-worker")
	if err != nil {
		return r, err
	}
	r.procs = append(r.procs, proc{"worker", worker})
	edge, addr, err := e.startRole(ctx, prefix+"-edge", prefix+"-edge")
	if err != nil {
		return r, err
	}
	r.procs = append([]proc{{"edge", edge}}, r.procs...)
	r.url = edgeURL(addr)
	return r, nil
}

func startWatermill(ctx context.Context, e *env) (running, error) { return e.startPair(ctx, "wm") }

func startAsynq(ctx context.Context, e *env) (running, error) { return e.startPair(ctx, "asynq") }

// startStreamrpc runs the product as a user would: `streamrpc edge` (open,
// STREAMRPC_AUTH=none) and the examples/echo consumer, every other setting
// at its default.
func startStreamrpc(ctx context.Context, e *env) (running, error) {
	r := running{redis: true}
	redisURL := fmt.Sprintf("REDIS_URL=redis://%s/0", e.redisAddr)
	consumer, err := e.cs.start("streamrpc-echo", e.echo, nil, []string{redisURL})
	if err != nil {
		return r, err
	}
	r.procs = append(r.procs, proc{"worker", consumer})
	addr, err := freeAddr()
	if err != nil {
		return r, err
	}
	edge, err := e.cs.start("streamrpc-edge", e.streamrpc, []string{"edge"},
		[]string{redisURL, "STREAMRPC_AUTH=none", "STREAMRPC_ADDR=" + addr})
	if err != nil {
		return r, err
	}
	r.procs = append([]proc{{"edge", edge}}, r.procs...)
	r.url = "http://" + addr + "/rpc/echo/echo"
	return r, nil
}
