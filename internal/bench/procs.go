package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
)

// ProcCPU is one process's CPU time (user + system) during a measured run,
// per answered call: the edge's, the consumer's, Redis's (INFO cpu), the
// baseline echo server's.
type ProcCPU struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid,omitempty"`      // 0 for Redis (INFO cpu)
	CPUPerCall float64 `json:"cpu_us_per_call"`    // microseconds
	Cores      float64 `json:"cores"`              // CPU seconds per second of the run
	CPUSeconds float64 `json:"cpu_seconds_in_run"` // the raw reading
	// SleepsPerCall is how often the process's threads blocked (voluntary
	// context switches, every thread, /proc/PID/task/*/status) per call: each
	// is a sleep that a wake-up ends. Not for Redis.
	SleepsPerCall float64 `json:"sleeps_per_call,omitempty"`
	Source        string  `json:"source,omitempty"` // "/proc/PID/stat" or "INFO cpu"
	Err           string  `json:"error,omitempty"`  // a reading that failed
}

// Proc names a process to read CPU time from: -pid edge=1234.
type Proc struct {
	Name string
	PID  int
}

// ParseProc parses name=PID.
func ParseProc(s string) (Proc, error) {
	name, pid, ok := strings.Cut(s, "=")
	n, err := strconv.Atoi(pid)
	if !ok || name == "" || err != nil || n <= 0 {
		return Proc{}, fmt.Errorf("-pid %q: want name=PID, e.g. edge=1234", s)
	}
	return Proc{Name: name, PID: n}, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's utime and stime: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// procStatCPU reads a process's utime + stime (every thread) from
// /proc/PID/stat. Resolution 10 ms: enough over a run of seconds.
func procStatCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// parseProcStat reads fields 14 and 15 (utime, stime) of a /proc/PID/stat
// line; the command name (field 2, in parentheses) may hold spaces.
func parseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("/proc stat: bad utime/stime")
	}
	return time.Duration(u+st) * time.Second / clockTicks, nil
}

// procSleeps adds up voluntary_ctxt_switches over a process's threads
// (threads that have exited are not counted: Go rarely ends one).
func procSleeps(pid int) (int64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/status")
		if err != nil {
			continue // the thread ended meanwhile
		}
		n += parseVoluntary(string(b))
	}
	return n, nil
}

func parseVoluntary(status string) int64 {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// redisCPU reads INFO cpu's used_cpu_sys + used_cpu_user (the whole
// redis-server process, every thread), added up over a Cluster's masters.
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (time.Duration, error) {
	one := func(ctx context.Context, c redis.Cmdable) (time.Duration, error) {
		s, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return 0, fmt.Errorf("INFO cpu: %w", err)
		}
		return parseInfoCPU(s)
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return one(ctx, rdb)
	}
	var mu sync.Mutex
	var sum time.Duration
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		d, err := one(ctx, node)
		mu.Lock()
		sum += d
		mu.Unlock()
		return err
	})
	return sum, err
}

func parseInfoCPU(s string) (time.Duration, error) {
	var total float64
	found := 0
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
		}
		total += f
		found++
	}
	if found != 2 {
		return 0, errors.New("INFO cpu: no used_cpu_sys/used_cpu_user")
	}
	return time.Duration(total * float64(time.Second)), nil
}

// procWatch reads the CPU time of processes (and Redis) around a run.
type procWatch struct {
	procs  []Proc
	rdb    redis.UniversalClient // nil: no Redis reading
	before []time.Duration
	errs   []error
	sleeps []int64
	t0     time.Time
}

func newProcWatch(procs []Proc, rdb redis.UniversalClient) *procWatch {
	if len(procs) == 0 && rdb == nil {
		return nil
	}
	return &procWatch{procs: procs, rdb: rdb}
}

func (w *procWatch) read(ctx context.Context) ([]time.Duration, []error) {
	n := len(w.procs)
	out, errs := make([]time.Duration, n+1), make([]error, n+1)
	for i, p := range w.procs {
		out[i], errs[i] = procStatCPU(p.PID)
	}
	if w.rdb != nil {
		out[n], errs[n] = redisCPU(ctx, w.rdb)
	}
	return out, errs
}

func (w *procWatch) readSleeps() []int64 {
	out := make([]int64, len(w.procs))
	for i, p := range w.procs {
		out[i], _ = procSleeps(p.PID)
	}
	return out
}

func (w *procWatch) start(ctx context.Context) {
	w.sleeps = w.readSleeps()
	w.before, w.errs = w.read(ctx)
	w.t0 = time.Now()
}

// finish returns each process's CPU per call over the run.
func (w *procWatch) finish(ctx context.Context, calls int64) []ProcCPU {
	after, errs := w.read(ctx)
	sleeps := w.readSleeps()
	secs := time.Since(w.t0).Seconds()
	var out []ProcCPU
	add := func(i int, p ProcCPU) {
		if err := errors.Join(w.errs[i], errs[i]); err != nil {
			p.Err = err.Error()
		} else {
			d := after[i] - w.before[i]
			p.CPUSeconds = math.Round(d.Seconds()*1000) / 1000
			if calls > 0 {
				p.CPUPerCall = math.Round(float64(d)/float64(time.Microsecond)/float64(calls)*10) / 10
			}
			if secs > 0 {
				p.Cores = math.Round(d.Seconds()/secs*100) / 100
			}
		}
		out = append(out, p)
	}
	for i, p := range w.procs {
		pc := ProcCPU{Name: p.Name, PID: p.PID, Source: "/proc/PID/stat"}
		if d := sleeps[i] - w.sleeps[i]; d > 0 && calls > 0 {
			pc.SleepsPerCall = math.Round(float64(d)/float64(calls)*100) / 100
		}
		add(i, pc)
	}
	if w.rdb != nil {
		add(len(w.procs), ProcCPU{Name: "redis", Source: "INFO cpu"})
	}
	return out
}

// child is a process the bench started (-spawn): the edge, the echo
// consumer or the baseline echo server.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

// startChild starts argv with env added to this process's; ready reads its
// stdout until it is ready and returns what it said.
func startChild(name string, argv, env []string, ready func(*bufio.Reader) (string, error)) (*child, string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	said := ""
	if ready != nil {
		if said, err = ready(bufio.NewReader(stdout)); err != nil {
			c.stop()
			return nil, "", fmt.Errorf("%s did not get ready: %w", name, err)
		}
	}
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		c.done <- cmd.Wait()
	}()
	return c, said, nil
}

// stop asks the child to end (stdin closed, then SIGINT) and waits for it,
// killing it after 15 s.
func (c *child) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) proc() Proc { return Proc{Name: c.name, PID: c.cmd.Process.Pid} }

// readLine is a ready func: the child's first stdout line, e.g. its URL.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// freeAddr is a loopback address nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls url until it answers 200, for at most 30 s.
func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 30s", url)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// spawned is the edge and the echo consumer run as their own processes.
type spawned struct {
	edge, consumer *child
	url            string
}

// spawnStack starts `streamrpc edge` and an echo consumer (the SDK with its
// defaults, as examples/echo) as child processes on cfg.RedisURL, with their
// default settings, and waits until the edge is ready.
func spawnStack(ctx context.Context, cfg Config) (*spawned, error) {
	exe := cfg.Self[0]
	cons, _, err := startChild("consumer", []string{exe, "bench", "-child", "consumer"},
		[]string{"REDIS_URL=" + cfg.RedisURL}, func(r *bufio.Reader) (string, error) {
			line, err := readLine(r)
			if err == nil && line != "ready" {
				err = fmt.Errorf("said %q", line)
			}
			return line, err
		})
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		cons.stop()
		return nil, err
	}
	edge, _, err := startChild("edge", []string{exe, "edge"}, []string{
		"REDIS_URL=" + cfg.RedisURL, "STREAMRPC_ADDR=" + addr, "STREAMRPC_AUTH=none",
		"STREAMRPC_LOG_LEVEL=error", "STREAMRPC_HEALTH_ADDR=off",
	}, nil)
	if err != nil {
		cons.stop()
		return nil, err
	}
	s := &spawned{edge: edge, consumer: cons, url: "http://" + addr}
	if err := waitReady(ctx, s.url+"/readyz"); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *spawned) stop() {
	s.edge.stop()
	s.consumer.stop()
}

// spawnBaseline starts the baseline echo server as a child process.
func spawnBaseline(cfg Config) (*child, string, error) {
	return startChild("echo", []string{cfg.Self[0], "bench", "-child", "echo"}, nil, readLine)
}

// Child is the child process of -spawn: role "echo" serves the baseline echo
// and writes its URL, role "consumer" serves the echo handler with the SDK's
// settings from the environment (REDIS_URL, STREAMRPC_*) and writes "ready";
// either runs until in ends (EOF) or ctx does.
func Child(ctx context.Context, role string, in io.Reader, out io.Writer) error {
	ended := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, in)
		close(ended)
	}()
	wait := func() {
		select {
		case <-ended:
		case <-ctx.Done():
		}
	}
	switch role {
	case "echo":
		b, err := startBaseline()
		if err != nil {
			return err
		}
		fmt.Fprintln(out, b.url)
		wait()
		b.stop()
		return nil
	case "consumer":
		rdb, err := consumers.ConnectRedis(os.Getenv("REDIS_URL"))
		if err != nil {
			return err
		}
		defer rdb.Close()
		ccfg, err := consumers.ConfigFromEnv()
		if err != nil {
			return err
		}
		ccfg.Handler, ccfg.Description = echo.Name, "the example echo handler"
		ccfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		srv, err := consumers.NewServer(rdb, ccfg, echo.Mux())
		if err != nil {
			return err
		}
		if err := srv.Start(ctx); err != nil {
			return err
		}
		fmt.Fprintln(out, "ready")
		wait()
		return srv.Close()
	}
	return fmt.Errorf("-child %q: want echo or consumer", role)
}
