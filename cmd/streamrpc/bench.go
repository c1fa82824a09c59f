package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/streamrpc/streamrpc/internal/bench"
)

const benchUsage = `usage: streamrpc bench [flags]

Loads an edge with calls and reports throughput, latency percentiles and
errors; with -baseline, also a queue-less Fiber echo in the same run, and
our figures as ratios to it. See docs/performance.md.

flags:
`

// benchFlags is what the command line asked for.
type benchFlags struct {
	cfg        bench.Config
	json       bool
	cpuProfile string
	idleClient int    // hidden: be the child process of -idle
	child      string // hidden: be a child process of -spawn
}

// procFlags is -pid, repeatable.
type procFlags struct{ procs *[]bench.Proc }

func (p procFlags) String() string {
	if p.procs == nil {
		return ""
	}
	var s []string
	for _, x := range *p.procs {
		s = append(s, fmt.Sprintf("%s=%d", x.Name, x.PID))
	}
	return strings.Join(s, ",")
}

func (p procFlags) Set(v string) error {
	x, err := bench.ParseProc(v)
	if err != nil {
		return err
	}
	*p.procs = append(*p.procs, x)
	return nil
}

// parseBenchFlags parses bench's arguments. A usage error's message is
// written to stderr by the flag package; flag.ErrHelp means -h.
func parseBenchFlags(args []string, stderr io.Writer) (benchFlags, error) {
	var f benchFlags
	fs := flag.NewFlagSet("streamrpc bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	c := &f.cfg
	fs.StringVar(&c.Mode, "mode", "http", "http (POST /rpc/{handler}/{method}) or ws (JSON-RPC over GET /ws)")
	fs.IntVar(&c.Concurrency, "c", 64, "closed loop: calls in flight")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: calls per second (latency counts from each call's intended send time); 0: closed loop")
	fs.IntVar(&c.MaxInFlight, "max-inflight", 10000, "open loop: the most calls outstanding")
	fs.DurationVar(&c.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "unmeasured warm-up before it")
	fs.IntVar(&c.Size, "size", 256, "params bytes ({\"data\":\"xxx…\"})")
	fs.StringVar(&c.Handler, "handler", "echo", "handler")
	fs.StringVar(&c.Method, "method", "echo", "method")
	fs.StringVar(&c.URL, "url", "http://localhost:8080", "the edge")
	fs.IntVar(&c.Conns, "conns", 1, "ws: WebSockets the calls are spread over")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "one call's deadline")
	fs.BoolVar(&c.Baseline, "baseline", false, "also run the load against a queue-less Fiber echo on loopback, and print ratios to it")
	fs.BoolVar(&c.Floor, "floor", false, "also run the same closed loop on bare Redis streams of -redis (XADD, XREADGROUP, an XACK+XADD script, a blocking XREAD; no edge): the least this design can cost here")
	fs.StringVar(&c.RedisURL, "redis", "", "Redis URL: print Redis commands per call from INFO commandstats")
	fs.BoolVar(&c.InProcess, "inprocess", false, "start an edge and an echo consumer in this process on -redis (ignores -url)")
	fs.IntVar(&c.ConsumerConcurrency, "consumer-concurrency", 0, "-inprocess: the consumer's concurrency (0: the SDK's default)")
	fs.IntVar(&c.DurableReplicas, "durable", 0, "-inprocess: durable mode, WAIT for this many replicas after each batch (STREAMRPC_DURABLE_REPLICAS)")
	fs.IntVar(&c.IdleConns, "idle", 0, "-inprocess: after the run, measure the edge's memory per idle WebSocket with this many sockets")
	fs.BoolVar(&c.Spawn, "spawn", false, "start streamrpc edge and an echo consumer (defaults) as child processes on -redis, and the baseline as a third; report each process's CPU per call (and Redis's, INFO cpu)")
	fs.Var(procFlags{&c.Procs}, "pid", "name=PID: also report this process's CPU per call over the run (/proc/PID/stat); repeatable")
	fs.StringVar(&f.child, "child", "", "internal: be the -spawn child process echo or consumer")
	fs.BoolVar(&f.json, "json", false, "print the report as JSON")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (with -inprocess: edge, consumer and load) to this file")
	fs.IntVar(&f.idleClient, "idle-client", 0, "internal: open this many idle sockets to the URL argument")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.idleClient > 0 {
		if fs.NArg() != 1 {
			return f, usageError(fs, stderr, "-idle-client wants one URL argument")
		}
		c.URL = fs.Arg(0)
		return f, nil
	}
	if f.child != "" {
		return f, nil
	}
	if fs.NArg() > 0 {
		return f, usageError(fs, stderr, "unexpected arguments: "+strings.Join(fs.Args(), " "))
	}
	if c.Concurrency <= 0 || c.Duration <= 0 || c.Conns <= 0 || c.Timeout <= 0 || c.MaxInFlight <= 0 || c.IdleConns < 0 || c.ConsumerConcurrency < 0 || c.DurableReplicas < 0 {
		return f, usageError(fs, stderr, "-c, -d, -conns, -timeout and -max-inflight must be positive")
	}
	if c.Spawn {
		exe, err := os.Executable()
		if err != nil {
			return f, err
		}
		c.Self = []string{exe}
	}
	if c.IdleConns > 0 {
		// The idle sockets are opened by this same binary, in a child process.
		exe, err := os.Executable()
		if err != nil {
			return f, err
		}
		c.IdleClient = []string{exe, "bench", "-idle-client"}
	}
	if err := c.Validate(); err != nil {
		return f, usageError(fs, stderr, err.Error())
	}
	return f, nil
}

func usageError(fs *flag.FlagSet, stderr io.Writer, msg string) error {
	fmt.Fprintf(stderr, "streamrpc bench: %s\n", msg)
	fs.Usage()
	return errors.New(msg)
}

// runBench is `streamrpc bench`; it returns the exit code: 2 for bad flags.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseBenchFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if f.idleClient > 0 {
		if err := bench.IdleClient(ctx, f.idleClient, f.cfg.URL, os.Stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "streamrpc bench: %v\n", err)
			return 1
		}
		return 0
	}
	if f.child != "" {
		if err := bench.Child(ctx, f.child, os.Stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "streamrpc bench: %v\n", err)
			return 1
		}
		return 0
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "streamrpc bench: %v\n", err)
			return 1
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintf(stderr, "streamrpc bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, f.cfg, stderr)
	if rep != nil {
		if f.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
		} else {
			printReport(stdout, rep)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamrpc bench: %v\n", err)
		return 1
	}
	return 0
}

func printReport(w io.Writer, rep *bench.Report) {
	fmt.Fprintf(w, "load: %s\n\n", rep.Load)
	fmt.Fprintf(w, "%-10s %10s %8s %12s %9s %9s %9s %9s %9s %12s\n", "", "calls", "errors", "calls/s", "p50", "p90", "p99", "p99.9", "max", "cpu/call")
	row := func(r bench.Result) {
		l := r.Latency
		fmt.Fprintf(w, "%-10s %10d %8d %12.0f %9s %9s %9s %9s %9s %12s\n", r.Target, r.Calls, r.Errors, r.Throughput,
			fmtUS(l.P50), fmtUS(l.P90), fmtUS(l.P99), fmtUS(l.P999), fmtUS(l.Max), fmtUS(r.CPUPerCall))
	}
	row(rep.Result)
	if rep.Baseline != nil {
		row(*rep.Baseline)
	}
	if rep.Floor != nil {
		row(*rep.Floor)
	}
	procs := func(r *bench.Result) {
		if r == nil || len(r.Procs) == 0 {
			return
		}
		fmt.Fprintf(w, "%-10s cpu/call by process:", r.Target)
		for _, p := range r.Procs {
			if p.Err != "" {
				fmt.Fprintf(w, " %s (%s)", p.Name, p.Err)
				continue
			}
			fmt.Fprintf(w, " %s %s (%.2f cores", p.Name, fmtUS(p.CPUPerCall), p.Cores)
			if p.SleepsPerCall > 0 {
				fmt.Fprintf(w, ", %.2f sleeps/call", p.SleepsPerCall)
			}
			fmt.Fprint(w, ")")
		}
		if len(r.Procs) > 1 {
			fmt.Fprintf(w, "; all %s", fmtUS(r.ProcsPerCall()))
		}
		fmt.Fprintln(w)
	}
	procs(&rep.Result)
	procs(rep.Baseline)
	procs(rep.Floor)
	if f := rep.Floor; f != nil && len(f.Procs) > 0 && f.CPUPerCall > 0 {
		// The floor's callers and workers run in this process: its cpu/call
		// is theirs (and the load's), Redis's is beside it.
		fmt.Fprintf(w, "floor, this process and Redis together: %s per call\n", fmtUS(f.CPUPerCall+f.ProcsPerCall()))
	}
	if b := rep.Baseline; b != nil && len(b.Procs) > 0 && len(rep.Result.Procs) > 0 && b.ProcsPerCall() > 0 {
		fmt.Fprintf(w, "cpu/call, all processes measured ÷ the baseline echo's: %.2f×\n", rep.Result.ProcsPerCall()/b.ProcsPerCall())
	}
	if len(rep.Result.ErrorCodes) > 0 {
		fmt.Fprint(w, "errors by code:")
		for _, k := range bench.SortedCommands(rep.Result.ErrorCodes) {
			fmt.Fprintf(w, " %s×%d", k, rep.Result.ErrorCodes[k])
		}
		fmt.Fprintln(w)
	}
	if r := rep.Ratios; r != nil {
		fmt.Fprintf(w, "\nratios to the baseline: throughput %.3f×, p50 latency %.2f×, p99 latency %.2f×\n", r.Throughput, r.P50, r.P99)
	}
	if r := rep.FloorRatios; r != nil {
		fmt.Fprintf(w, "floor's ratios to the baseline: throughput %.3f×, p50 latency %.2f×, p99 latency %.2f×\n", r.Throughput, r.P50, r.P99)
	}
	if r := rep.Redis; r != nil {
		fmt.Fprintln(w)
		if r.ByCommand != nil {
			fmt.Fprintf(w, "redis commands per call (INFO commandstats, commands inside Lua scripts included): %.2f (%d commands)\n", r.CommandsPerCall, r.Commands)
			fmt.Fprint(w, "  ")
			for i, k := range bench.SortedCommands(r.ByCommand) {
				if i == 12 {
					fmt.Fprint(w, " …")
					break
				}
				fmt.Fprintf(w, " %s %.2f", strings.ToUpper(k), float64(r.ByCommand[k])/float64(max(rep.Result.Calls, 1)))
			}
			fmt.Fprintln(w)
		}
		if r.ClientCommands > 0 {
			fmt.Fprintf(w, "redis commands per call sent by the edge and consumer (round trips' contents): %.2f (%d commands)\n", r.ClientCommandsPerCall, r.ClientCommands)
		}
	}
	if e := rep.Edge; e != nil {
		fmt.Fprintf(w, "edge: at most %d calls waited at once; its Redis pool peaked at %d connections (bound %d); consumer pool %d\n",
			e.MaxWaiting, e.MaxRedisConns, e.RedisPoolSize, e.ConsumerPoolConns)
	}
	if i := rep.Idle; i != nil {
		fmt.Fprintf(w, "idle WebSockets: %d; the edge's heap+stacks grew %.0f bytes and %.1f goroutines per socket\n", i.Conns, i.BytesPerConn, i.GoroutinesPer)
	}
}

func fmtUS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}
