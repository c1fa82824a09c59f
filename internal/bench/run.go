package bench

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

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
