package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/client"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

// Report is everything one `streamrpc bench` run measured.
type Report struct {
	Load     string  `json:"load"`
	Config   Config  `json:"config"`
	Result   Result  `json:"result"`
	Baseline *Result `json:"baseline,omitempty"`
	Ratios   *Ratios `json:"ratios,omitempty"` // ours / baseline
	// Floor is the same load on bare Redis streams (floor.go), FloorRatios
	// its ratios to the baseline.
	Floor       *Result `json:"floor,omitempty"`
	FloorRatios *Ratios `json:"floor_ratios,omitempty"`
	Redis       *Redis  `json:"redis,omitempty"`
	Edge        *Edge   `json:"edge,omitempty"` // -inprocess only
	Idle        *Idle   `json:"idle,omitempty"`
}

// Redis is what Redis did during the measured run.
type Redis struct {
	// Commands is the growth of INFO commandstats: every command Redis ran,
	// those run inside Lua scripts (redis.call) included.
	Commands        int64            `json:"commands"`
	CommandsPerCall float64          `json:"commands_per_call"`
	ByCommand       map[string]int64 `json:"by_command"`
	// ClientCommands counts the commands the in-process edge and consumer
	// sent (each pipelined command counts, blocking reads included): the
	// round-trip cost. -inprocess only.
	ClientCommands        int64   `json:"client_commands,omitempty"`
	ClientCommandsPerCall float64 `json:"client_commands_per_call,omitempty"`
}

// Edge is what the in-process edge showed during the measured run.
type Edge struct {
	MaxWaiting        int `json:"max_waiting"`          // most calls it waited on at once (sampled)
	MaxRedisConns     int `json:"max_redis_conns"`      // its go-redis pool's largest size (sampled)
	RedisPoolSize     int `json:"redis_pool_size"`      // the pool's bound
	ConsumerPoolConns int `json:"consumer_redis_conns"` // the consumer's pool at the end
}

// Idle is the edge's cost per idle WebSocket.
type Idle struct {
	Conns         int     `json:"conns"`
	BytesPerConn  float64 `json:"heap_and_stack_bytes_per_conn"`
	GoroutinesPer float64 `json:"goroutines_per_conn"`
}

// Run runs cfg and reports. Progress goes to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Report, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Load: cfg.Describe(), Config: cfg}

	var rdb redis.UniversalClient
	if cfg.RedisURL != "" {
		var err error
		rdb, err = streams.Connect(streams.RedisOptions{URL: cfg.RedisURL, PoolSize: 2})
		if err != nil {
			return nil, err
		}
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("redis %s: %w", cfg.RedisURL, err)
		}
	}

	target := cfg.URL
	var st *stack
	if cfg.InProcess {
		var err error
		if st, err = startStack(ctx, cfg); err != nil {
			return nil, err
		}
		defer st.stop()
		target = st.url
		fmt.Fprintf(log, "in-process edge %s and echo consumer on %s\n", st.url, cfg.RedisURL)
	}

	procs := append([]Proc{}, cfg.Procs...)
	if cfg.Spawn {
		sp, err := spawnStack(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer sp.stop()
		target = sp.url
		procs = append(procs, sp.edge.proc(), sp.consumer.proc())
		fmt.Fprintf(log, "edge (pid %d) on %s and echo consumer (pid %d), child processes, on %s\n",
			sp.edge.cmd.Process.Pid, sp.url, sp.consumer.cmd.Process.Pid, cfg.RedisURL)
	}

	if cfg.Baseline {
		var (
			res   Result
			err   error
			where string
		)
		if cfg.Spawn {
			var c *child
			if c, where, err = spawnBaseline(cfg); err != nil {
				return nil, err
			}
			fmt.Fprintf(log, "baseline (queue-less Fiber echo, pid %d) on %s ...\n", c.cmd.Process.Pid, where)
			res, err = measure(ctx, cfg, where, "baseline", nil, newProcWatch([]Proc{c.proc()}, nil))
			c.stop()
		} else {
			b, berr := startBaseline()
			if berr != nil {
				return nil, berr
			}
			fmt.Fprintf(log, "baseline (queue-less Fiber echo) on %s ...\n", b.url)
			res, err = measure(ctx, cfg, b.url, "baseline", nil, nil)
			b.stop()
		}
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		rep.Baseline = &res
	}

	if cfg.Floor {
		fmt.Fprintf(log, "floor (bare Redis streams, no edge) on %s ...\n", cfg.RedisURL)
		res, err := measureFloor(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		rep.Floor = &res
	}

	fmt.Fprintf(log, "streamrpc on %s ...\n", target)
	var around *aroundRun
	if rdb != nil || st != nil {
		around = &aroundRun{rdb: rdb, st: st}
	}
	res, err := measure(ctx, cfg, target, "streamrpc", around, newProcWatch(procs, rdb))
	if err != nil {
		return nil, err
	}
	rep.Result = res
	if rep.Baseline != nil {
		r := Compare(res, *rep.Baseline)
		rep.Ratios = &r
		if rep.Floor != nil {
			fr := Compare(*rep.Floor, *rep.Baseline)
			rep.FloorRatios = &fr
		}
	}
	if around != nil {
		rep.Redis, rep.Edge = around.redis, around.edge
	}
	if cfg.IdleConns > 0 && ctx.Err() == nil {
		idle, err := measureIdle(ctx, cfg, st)
		if err != nil {
			return rep, fmt.Errorf("idle sockets: %w", err)
		}
		rep.Idle = idle
	}
	return rep, ctx.Err()
}

// aroundRun takes Redis and edge readings around the measured run.
type aroundRun struct {
	rdb   redis.UniversalClient
	st    *stack
	redis *Redis
	edge  *Edge

	before            map[string]int64
	clientBefore      int64
	stopSample, ended chan struct{}
	maxWaiting        atomic.Int64
	maxConns          atomic.Int64
}

func (a *aroundRun) start(ctx context.Context) error {
	if a.rdb != nil {
		var err error
		if a.before, err = commandStats(ctx, a.rdb); err != nil {
			return err
		}
	}
	if a.st != nil {
		a.clientBefore = a.st.edgeCmds.n.Load() + a.st.consumerCmds.n.Load()
		// Sample the edge's waiters and Redis pool every 10 ms: a reading,
		// not a synchronisation.
		a.stopSample, a.ended = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(a.ended)
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			for {
				if w := int64(a.st.edge.Waiting()); w > a.maxWaiting.Load() {
					a.maxWaiting.Store(w)
				}
				if c := int64(a.st.edgeRDB.PoolStats().TotalConns); c > a.maxConns.Load() {
					a.maxConns.Store(c)
				}
				select {
				case <-t.C:
				case <-a.stopSample:
					return
				}
			}
		}()
	}
	return nil
}

func (a *aroundRun) finish(ctx context.Context, calls int64) error {
	if a.st != nil {
		close(a.stopSample)
		<-a.ended
		a.edge = &Edge{
			MaxWaiting: int(a.maxWaiting.Load()), MaxRedisConns: int(a.maxConns.Load()),
			RedisPoolSize:     poolSize(a.st.edgeRDB),
			ConsumerPoolConns: int(a.st.consumerRDB.PoolStats().TotalConns),
		}
	}
	r := &Redis{}
	if a.rdb != nil {
		after, err := commandStats(ctx, a.rdb)
		if err != nil {
			return err
		}
		r.ByCommand = map[string]int64{}
		for k, v := range after {
			if d := v - a.before[k]; d > 0 {
				r.ByCommand[k] = d
			}
		}
		// The INFO that took the first reading is counted in the second.
		if r.ByCommand["info"]--; r.ByCommand["info"] <= 0 {
			delete(r.ByCommand, "info")
		}
		for _, v := range r.ByCommand {
			r.Commands += v
		}
		r.CommandsPerCall = perCall(r.Commands, calls)
	}
	if a.st != nil {
		r.ClientCommands = a.st.edgeCmds.n.Load() + a.st.consumerCmds.n.Load() - a.clientBefore
		r.ClientCommandsPerCall = perCall(r.ClientCommands, calls)
	}
	a.redis = r
	return nil
}

func perCall(n, calls int64) float64 {
	if calls == 0 {
		return 0
	}
	return math2(float64(n) / float64(calls))
}

func math2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// measure connects, warms up, then runs the measured load.
func measure(ctx context.Context, cfg Config, base, target string, around *aroundRun, procs *procWatch) (Result, error) {
	cl, err := newCaller(ctx, cfg, base)
	if err != nil {
		return Result{}, err
	}
	defer cl.close()
	if cfg.Warmup > 0 {
		load(ctx, cfg, cl, cfg.Warmup, target)
	}
	if around != nil {
		if err := around.start(ctx); err != nil {
			return Result{}, err
		}
	}
	if procs != nil {
		procs.start(ctx)
	}
	res := load(ctx, cfg, cl, cfg.Duration, target)
	if procs != nil {
		res.Procs = procs.finish(ctx, res.Calls)
	}
	if around != nil {
		if err := around.finish(ctx, res.Calls); err != nil {
			return res, err
		}
	}
	return res, ctx.Err()
}

// commandStats reads INFO commandstats: calls per command, added up over
// every master of a Cluster.
func commandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		s, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats: %w", err)
		}
		return parseCommandStats(s), nil
	}
	var mu sync.Mutex
	sum := map[string]int64{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		s, err := node.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for k, v := range parseCommandStats(s) {
			sum[k] += v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return sum, nil
}

// poolSize is a client's pool bound (per node, for a Cluster).
func poolSize(rdb redis.UniversalClient) int {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().PoolSize
	case *redis.ClusterClient:
		return c.Options().PoolSize
	}
	return 0
}

// parseCommandStats parses lines like
// "cmdstat_evalsha:calls=12,usec=34,usec_per_call=2.83,...".
func parseCommandStats(s string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err == nil {
					out[strings.TrimPrefix(name, "cmdstat_")] = n
				}
			}
		}
	}
	return out
}

// SortedCommands lists by-command counts, largest first.
func SortedCommands(m map[string]int64) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	return names
}

// stack is an edge and an echo consumer in this process.
type stack struct {
	edge                   *app.Edge
	consumer               *consumers.Server
	edgeRDB, consumerRDB   redis.UniversalClient
	edgeCmds, consumerCmds *cmdCounter
	url                    string
	served                 chan struct{}
	once                   sync.Once
}

func startStack(ctx context.Context, cfg Config) (*stack, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	connect := func() (redis.UniversalClient, *cmdCounter, error) {
		u, err := streams.Connect(streams.RedisOptions{URL: cfg.RedisURL})
		if err != nil {
			return nil, nil, err
		}
		c := &cmdCounter{}
		u.AddHook(c)
		return u, c, nil
	}
	durable := streams.Durability{Replicas: cfg.DurableReplicas}
	st := &stack{served: make(chan struct{})}
	var err error
	if st.edgeRDB, st.edgeCmds, err = connect(); err != nil {
		return nil, err
	}
	if st.consumerRDB, st.consumerCmds, err = connect(); err != nil {
		_ = st.edgeRDB.Close()
		return nil, err
	}
	fail := func(err error) (*stack, error) {
		st.stop()
		return nil, err
	}
	st.consumer, err = consumers.NewServer(st.consumerRDB, consumers.Config{
		Handler: echo.Name, Description: "the example echo handler", Concurrency: cfg.ConsumerConcurrency, Logger: log,
		Durability: durable,
	}, echo.Mux())
	if err != nil {
		return fail(err)
	}
	if err := st.consumer.Start(ctx); err != nil {
		return fail(err)
	}
	st.edge, err = app.New(st.edgeRDB, app.Config{Logger: log, Durability: durable})
	if err != nil {
		return fail(err)
	}
	if err := st.edge.Start(ctx); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	st.url = "http://" + ln.Addr().String()
	go func() {
		defer close(st.served)
		_ = st.edge.Serve(ln)
	}()
	return st, nil
}

func (st *stack) stop() {
	st.once.Do(func() {
		if st.edge != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = st.edge.Shutdown(ctx)
			cancel()
			if st.url != "" {
				<-st.served
			}
		}
		if st.consumer != nil {
			_ = st.consumer.Close()
		}
		_ = st.edgeRDB.Close()
		_ = st.consumerRDB.Close()
	})
}

// cmdCounter counts the commands a go-redis client sends.
type cmdCounter struct{ n atomic.Int64 }

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// measureIdle opens cfg.IdleConns idle WebSockets to the in-process edge from
// a child process (so that the client side's memory is not in this heap) and
// reads this process's heap and stacks before and after.
func measureIdle(ctx context.Context, cfg Config, st *stack) (*Idle, error) {
	before := heapAndStacks()
	g0 := runtime.NumGoroutine()
	open0 := st.edge.WebSockets().Open
	args := append(append([]string{}, cfg.IdleClient[1:]...), strconv.Itoa(cfg.IdleConns), st.url)
	cmd := exec.CommandContext(ctx, cfg.IdleClient[0], args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = stdin.Close() // the child closes its sockets and exits
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		return nil, fmt.Errorf("the idle client did not get ready: %q %v", line, err)
	}
	// The child has its N upgrades answered; the edge registers each socket
	// right after answering it. Wait (bounded) until it shows all of them.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for st.edge.WebSockets().Open < open0+cfg.IdleConns {
		if time.Now().After(deadline) {
			return nil, errors.New("the edge did not register every idle socket within 30s")
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	after := heapAndStacks()
	g1 := runtime.NumGoroutine()
	n := float64(cfg.IdleConns)
	return &Idle{Conns: cfg.IdleConns, BytesPerConn: float64(int64(after-before)) / n, GoroutinesPer: float64(g1-g0) / n}, nil
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// IdleClient opens n WebSockets to the edge at url, writes "ready" to out,
// and keeps them open, idle, until in ends (EOF); then it closes them. It is
// the child process of -idle.
func IdleClient(ctx context.Context, n int, url string, in io.Reader, out io.Writer) error {
	conns := make([]*client.WS, 0, n)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Close() }()
		}
		wg.Wait()
	}()
	for range n {
		c, err := client.DialWS(ctx, url)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	fmt.Fprintln(out, "ready")
	_, _ = io.Copy(io.Discard, in)
	return nil
}
