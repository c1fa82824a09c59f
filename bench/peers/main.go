// Command peers runs the same HTTP load against streamrpc and against peer
// systems behind the same Fiber v2 edge, and prints throughput, latency and
// CPU per answered call per process (issue 14):
//
//	cd bench/peers && go run . -d 10s -c 64
//
// It builds what it needs (the streamrpc binary and the examples/echo
// consumer from the repository at -repo), starts one redis-server, then for
// each peer its processes (edge, worker, broker) as separate OS processes,
// runs the load, stops them, and prints markdown tables. Every child process
// is stopped on exit, on Ctrl-C, and by the kernel if this process dies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
)

type options struct {
	d, warmup, d1, timeout, poll time.Duration
	c, size, runs                int
	peers, repo, redisServer     string
	keep                         bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "role" {
		os.Exit(runRole(os.Args[2:]))
	}
	var o options
	flag.DurationVar(&o.d, "d", 10*time.Second, "measured duration of each run at -c")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measured run (not counted)")
	flag.DurationVar(&o.d1, "d1", 5*time.Second, "measured duration of each concurrency-1 run (0: skip them)")
	flag.IntVar(&o.c, "c", 64, "calls in flight (closed loop, one connection each)")
	flag.IntVar(&o.size, "size", 256, "bytes of JSON params per call")
	flag.StringVar(&o.peers, "peers", strings.Join(peerNames(), ","), "peers to run, in order")
	flag.StringVar(&o.repo, "repo", "../..", "the streamrpc repository (built for the streamrpc peer)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "longest one call may take")
	flag.DurationVar(&o.poll, "poll", time.Millisecond, "asynq: result poll interval")
	flag.IntVar(&o.runs, "runs", 1, "repeat the whole series this many times (tables per run, then ranges)")
	flag.BoolVar(&o.keep, "keep", false, "keep the processes' logs (their folder is printed)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// env is what the peers share in one invocation.
type env struct {
	o         options
	self      string // this binary: the peers' roles
	streamrpc string // built binaries
	echo      string
	redisAddr string
	rdb       *redis.Client
	cs        *children
	id        string
}

// running is a peer whose processes are up.
type running struct {
	url   string
	procs []proc // CPU read per process
	redis bool   // the peer uses Redis: its CPU is counted
}

type proc struct {
	column string // edge, worker, nats
	c      *child
}

type peer struct {
	name  string
	label string
	start func(ctx context.Context, e *env) (running, error)
}

var peers = []peer{
	{"echo", "queue-less Fiber echo", startEcho},
	{"nats", "Fiber + NATS request-reply", startNATS},
	{"streamrpc", "**streamrpc** (`streamrpc edge` + `examples/echo`, defaults)", startStreamrpc},
	{"watermill", "Fiber + watermill redisstream request-reply", startWatermill},
	{"asynq", "Fiber + asynq (poll for the result)", startAsynq},
}

func peerNames() []string {
	var n []string
	for _, p := range peers {
		n = append(n, p.name)
	}
	return n
}

// row is one peer's measurements.
type row struct {
	p     peer
	r     running
	hot   result                   // at -c
	cpu   map[string]time.Duration // CPU during the -c run per column
	lone  result                   // at concurrency 1
	loneC map[string]time.Duration
}

func run(o options) error {
	var chosen []peer
	for name := range strings.SplitSeq(o.peers, ",") {
		i := slices.IndexFunc(peers, func(p peer) bool { return p.name == strings.TrimSpace(name) })
		if i < 0 {
			return fmt.Errorf("unknown peer %q (known: %s)", name, strings.Join(peerNames(), ","))
		}
		chosen = append(chosen, peers[i])
	}
	if o.c < 1 || o.d <= 0 || o.runs < 1 {
		return errors.New("-c, -d and -runs must be positive")
	}
	// Bounded in time whatever happens: every run's length plus a minute per
	// peer for starting and stopping, plus five for the builds.
	per := 2*o.warmup + o.d + o.d1 + time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(o.runs*len(chosen))*per+5*time.Minute)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "streamrpc-peers-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "logs in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	cs := &children{logs: dir}
	defer cs.stopAll()

	e := &env{o: o, cs: cs, id: fmt.Sprintf("r%d", time.Now().UnixNano())}
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	if slices.ContainsFunc(chosen, func(p peer) bool { return p.name == "streamrpc" }) {
		if err := build(ctx, o.repo, dir, e); err != nil {
			return err
		}
	}
	if err := startRedis(ctx, e, dir); err != nil {
		return err
	}
	defer e.rdb.Close()

	var runs [][]row
	for i := range o.runs {
		var rows []row
		for _, p := range chosen {
			fmt.Fprintf(os.Stderr, "== run %d/%d: %s\n", i+1, o.runs, p.name)
			r, err := runPeer(ctx, e, p)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			rows = append(rows, r)
		}
		printTables(os.Stdout, o, rows)
		runs = append(runs, rows)
	}
	if o.runs > 1 {
		printRanges(os.Stdout, o, runs)
	}
	return nil
}

// build compiles the streamrpc binary and the examples/echo consumer.
func build(ctx context.Context, repo, dir string, e *env) error {
	e.streamrpc = filepath.Join(dir, "streamrpc")
	e.echo = filepath.Join(dir, "echo")
	for out, pkg := range map[string]string{e.streamrpc: "./cmd/streamrpc", e.echo: "./examples/echo"} {
		fmt.Fprintf(os.Stderr, "building %s\n", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = repo
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s in %s: %w", pkg, repo, err)
		}
	}
	return nil
}

// startRedis starts one redis-server with its defaults (only a port, and a
// folder of its own for the RDB file), shared by the peers that use Redis.
func startRedis(ctx context.Context, e *env, dir string) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	c, err := e.cs.start("redis", e.o.redisServer, []string{"--port", port, "--bind", "127.0.0.1", "--dir", dir}, nil)
	if err != nil {
		return fmt.Errorf("%w (apt-get install -y redis-server)", err)
	}
	if err := waitTCP(ctx, addr, c); err != nil {
		return err
	}
	e.redisAddr = addr
	e.rdb = redis.NewClient(&redis.Options{Addr: addr})
	return e.rdb.Ping(ctx).Err()
}

func runPeer(ctx context.Context, e *env, p peer) (row, error) {
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		return row{}, err
	}
	r, err := p.start(ctx, e)
	defer e.stopPeer(r)
	if err != nil {
		return row{}, err
	}
	out := row{p: p, r: r}
	l := &load{url: r.url, body: payload(e.o.size), c: e.o.c, timeout: e.o.timeout}
	l.want = append(append([]byte(`{"result":`), l.body...), '}')
	if err := waitReady(ctx, l, r); err != nil {
		return row{}, err
	}
	out.hot, out.cpu, err = measure(ctx, e, l, r, e.o.d)
	if err != nil {
		return row{}, err
	}
	if e.o.d1 > 0 {
		l.c = 1
		out.lone, out.loneC, err = measure(ctx, e, l, r, e.o.d1)
		if err != nil {
			return row{}, err
		}
	}
	return out, ctx.Err()
}

// stopPeer stops a peer's processes (edge first) and empties Redis.
func (e *env) stopPeer(r running) {
	for _, p := range r.procs {
		p.c.stop()
	}
	_ = e.rdb.FlushAll(context.Background()).Err()
}

// waitReady waits until the peer answers a call correctly.
func waitReady(ctx context.Context, l *load, r running) error {
	client := &fasthttp.Client{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := l.check(client)
		if err == nil {
			return nil
		}
		for _, p := range r.procs {
			if err := p.c.exited(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 30 s: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// measure runs the load and reads each process's CPU around the measured part.
func measure(ctx context.Context, e *env, l *load, r running, d time.Duration) (result, map[string]time.Duration, error) {
	var before, after map[string]time.Duration
	var snapErr error
	snap := func() {
		m := map[string]time.Duration{}
		for _, p := range r.procs {
			t, err := procCPU(p.c.cmd.Process.Pid)
			snapErr = errors.Join(snapErr, err)
			m[p.column] += t
		}
		if r.redis {
			t, err := redisCPU(ctx, e.rdb)
			snapErr = errors.Join(snapErr, err)
			m["redis"] = t
		}
		if before == nil {
			before = m
		} else {
			after = m
		}
	}
	res := l.run(ctx, e.o.warmup, d, snap)
	if err := ctx.Err(); err != nil {
		return res, nil, err
	}
	if snapErr != nil {
		return res, nil, fmt.Errorf("reading CPU: %w", snapErr)
	}
	for _, p := range r.procs {
		if err := p.c.exited(); err != nil {
			return res, nil, err
		}
	}
	cpu := map[string]time.Duration{}
	for k, v := range after {
		cpu[k] = v - before[k]
	}
	fmt.Fprintf(os.Stderr, "   c=%d: %.0f calls/s, %d errors\n", l.c, res.rate(), res.errors)
	return res, cpu, nil
}
