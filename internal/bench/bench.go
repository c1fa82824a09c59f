// Package bench is the load generator behind `streamrpc bench`: it calls an
// edge over HTTP or WebSocket (the client package) in a closed loop (a fixed
// number of calls in flight) or an open loop (a fixed rate, latency measured
// from each call's intended send time, so that a stall is not hidden by
// coordinated omission), optionally against a queue-less Fiber echo server run
// in the same process as the baseline, and optionally against an edge and an
// echo consumer it starts itself.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamrpc/streamrpc/client"
)

// Config is one benchmark.
type Config struct {
	Mode        string        // "http" or "ws"
	Concurrency int           // closed loop: calls in flight (Rate == 0)
	Rate        float64       // open loop: calls per second (> 0)
	MaxInFlight int           // open loop: the most calls outstanding; later ones wait (their wait counts)
	Duration    time.Duration // the measured run
	Warmup      time.Duration // run, unmeasured, before it
	Size        int           // params bytes
	Handler     string
	Method      string
	URL         string        // the edge's base URL (ignored with InProcess)
	Conns       int           // WebSocket mode: sockets the calls are spread over
	Timeout     time.Duration // one call's deadline
	Baseline    bool          // also run the same load against a queue-less Fiber echo
	RedisURL    string        // read INFO commandstats there before and after
	InProcess   bool          // start an edge and an echo consumer on RedisURL
	// Floor also runs the same closed loop on bare Redis streams (floor.go):
	// XADD, XREADGROUP, a tiny answer script and a blocking XREAD, no edge.
	Floor bool
	// ConsumerConcurrency of the in-process consumer (0: the SDK default).
	ConsumerConcurrency int
	// DurableReplicas > 0 (InProcess only) runs the edge and the consumer in
	// durable mode: WAIT for that many replicas after each batch.
	DurableReplicas int
	// IdleConns > 0 (InProcess only): measure the edge's memory per idle
	// WebSocket by opening that many from a child process (IdleClient).
	IdleConns int
	// Spawn starts the edge (`streamrpc edge`, defaults) and an echo consumer
	// (the SDK's defaults) as child processes on RedisURL, and the baseline
	// echo as a third, and reports each one's CPU time per call (Self runs
	// them).
	Spawn bool
	// Procs are more processes to read CPU time from around the run
	// (/proc/PID/stat), e.g. an edge and a consumer started by hand.
	Procs []Proc `json:"-"`
	// Self is this binary, [os.Executable(), ...]: what -spawn starts.
	Self []string `json:"-"`
	// IdleClient is the command that opens idle sockets, e.g.
	// [os.Executable(), "bench", "-idle-client"]; the URL and count are appended.
	IdleClient []string
}

// Defaults fills the zero fields.
func (c Config) Defaults() Config {
	if c.Mode == "" {
		c.Mode = "http"
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 10000
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Size <= 0 {
		c.Size = 256
	}
	if c.Handler == "" {
		c.Handler = "echo"
	}
	if c.Method == "" {
		c.Method = "echo"
	}
	if c.URL == "" {
		c.URL = "http://localhost:8080"
	}
	if c.Conns <= 0 {
		c.Conns = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	return c
}

// MinSize is the smallest params: {"data":""}.
const MinSize = len(`{"data":""}`)

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	switch {
	case c.Mode != "http" && c.Mode != "ws":
		return fmt.Errorf("mode %q: want http or ws", c.Mode)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("rate %v: want a positive number of calls per second", c.Rate)
	case c.Size < MinSize:
		return fmt.Errorf("size %d: params are at least %d bytes ({\"data\":\"\"})", c.Size, MinSize)
	case c.Duration > 24*time.Hour || c.Warmup < 0 || c.Warmup > time.Hour:
		return errors.New("duration and warmup must be positive and under a day")
	case c.InProcess && c.RedisURL == "":
		return errors.New("-inprocess needs -redis URL")
	case c.Floor && (c.RedisURL == "" || c.Rate > 0):
		return errors.New("-floor needs -redis URL and a closed loop (no -rate)")
	case c.Floor && c.Concurrency > 1024:
		return errors.New("-floor runs a worker and a connection per call in flight: at most 1024")
	case c.Spawn && (c.RedisURL == "" || c.InProcess || len(c.Self) == 0):
		return errors.New("-spawn needs -redis URL (and not -inprocess)")
	case c.IdleConns > 0 && !c.InProcess:
		return errors.New("-idle measures the edge's memory, so it needs -inprocess")
	case c.IdleConns > 0 && len(c.IdleClient) == 0:
		return errors.New("-idle needs a command to open idle sockets")
	case c.Concurrency > 100000 || c.Conns > 100000 || c.IdleConns > 100000:
		return errors.New("concurrency, conns and idle are at most 100000")
	}
	return nil
}

// Params returns params of exactly size bytes: {"data":"xxx…"}.
func Params(size int) json.RawMessage {
	size = max(size, MinSize)
	b := make([]byte, 0, size)
	b = append(b, `{"data":"`...)
	b = append(b, bytes.Repeat([]byte{'x'}, size-MinSize)...)
	return append(b, `"}`...)
}

// Latency is a latency summary, in microseconds (JSON) .
type Latency struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

func us(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

// Summarize reads h's percentiles.
func Summarize(h *Histogram) Latency {
	return Latency{
		P50: us(h.Quantile(0.5)), P90: us(h.Quantile(0.9)), P99: us(h.Quantile(0.99)),
		P999: us(h.Quantile(0.999)), Max: us(h.Max()), Mean: us(h.Mean()),
	}
}

// Result is one run against one server.
type Result struct {
	Target     string           `json:"target"` // "streamrpc" or "baseline"
	Calls      int64            `json:"calls"`  // answered (ok + errors)
	OK         int64            `json:"ok"`
	Errors     int64            `json:"errors"`
	ErrorCodes map[string]int64 `json:"errors_by_code,omitempty"`
	Seconds    float64          `json:"seconds"`
	Throughput float64          `json:"throughput_per_s"` // ok calls per second
	Latency    Latency          `json:"latency"`
	// CPUPerCall is this process's CPU time (user + system, every thread)
	// during the run, per answered call, in microseconds: with -inprocess the
	// edge's, the consumer's and the load generator's; Redis's is not in it.
	CPUPerCall float64 `json:"cpu_us_per_call"`
	// Procs is the CPU time per call of each other process measured (-spawn,
	// -pid; Redis's from INFO cpu with -redis).
	Procs []ProcCPU `json:"processes,omitempty"`
}

// ProcsPerCall adds up the CPU per call of r.Procs (Redis included).
func (r Result) ProcsPerCall() float64 {
	var t float64
	for _, p := range r.Procs {
		t += p.CPUPerCall
	}
	return math.Round(t*10) / 10
}

// Ratios compares a run with its baseline: throughput ours/baseline (higher
// is better), latency ours/baseline (lower is better).
type Ratios struct {
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50"`
	P99        float64 `json:"p99"`
}

// Ratio is a/b rounded to 3 decimals, 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

// Compare computes the ratios of ours to base.
func Compare(ours, base Result) Ratios {
	return Ratios{
		Throughput: Ratio(ours.Throughput, base.Throughput),
		P50:        Ratio(ours.Latency.P50, base.Latency.P50),
		P99:        Ratio(ours.Latency.P99, base.Latency.P99),
	}
}

// caller makes one call; worker is the calling goroutine's index.
type caller interface {
	call(ctx context.Context, worker int) error
	close()
}

type httpCaller struct {
	c               *client.Client
	t               *http.Transport
	handler, method string
	params          json.RawMessage
	check           bool
}

func (h *httpCaller) call(ctx context.Context, _ int) error {
	var out json.RawMessage
	if err := h.c.Call(ctx, h.handler, h.method, h.params, &out); err != nil {
		return err
	}
	if h.check && !bytes.Equal(out, h.params) {
		return errMismatch
	}
	return nil
}

// close drops the kept-alive connections, so that the server's shutdown does
// not wait for them to time out.
func (h *httpCaller) close() { h.t.CloseIdleConnections() }

type wsCaller struct {
	conns  []*client.WS
	method string
	params json.RawMessage
	check  bool
}

func (w *wsCaller) call(ctx context.Context, worker int) error {
	var out json.RawMessage
	if err := w.conns[worker%len(w.conns)].Call(ctx, w.method, w.params, &out); err != nil {
		return err
	}
	if w.check && !bytes.Equal(out, w.params) {
		return errMismatch
	}
	return nil
}

func (w *wsCaller) close() {
	var wg sync.WaitGroup
	for _, c := range w.conns {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Close() }()
	}
	wg.Wait()
}

var errMismatch = errors.New("the echo's result differs from the params")

// newCaller connects to the server at base (http://host:port).
func newCaller(ctx context.Context, cfg Config, base string) (caller, error) {
	params := Params(cfg.Size)
	check := cfg.Handler == "echo" && cfg.Method == "echo"
	if cfg.Mode == "http" {
		t := client.NewTransport()
		t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, cfg.Concurrency)
		t.MaxIdleConns = max(t.MaxIdleConns, cfg.Concurrency)
		return &httpCaller{c: client.New(base, client.WithHTTPClient(newHTTPClient(t))), t: t, handler: cfg.Handler, method: cfg.Method, params: params, check: check}, nil
	}
	w := &wsCaller{method: cfg.Handler + "." + cfg.Method, params: params, check: check}
	for range cfg.Conns {
		c, err := client.DialWS(ctx, base)
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, c)
	}
	return w, nil
}

// errorCode names an error for the report: the wire code, or a kind.
func errorCode(err error) string {
	var e *client.Error
	switch {
	case errors.As(err, &e):
		return strconv.Itoa(e.Code)
	case errors.Is(err, errMismatch):
		return "mismatch"
	case errors.Is(err, context.DeadlineExceeded):
		return "client_timeout"
	case errors.Is(err, client.ErrClosed):
		return "ws_closed"
	}
	return "transport"
}

// recorder collects one run's outcomes.
type recorder struct {
	hist   Histogram
	ok     atomic.Int64
	errs   atomic.Int64
	mu     sync.Mutex
	byCode map[string]int64
}

func (r *recorder) record(ctx context.Context, since time.Time, err error) {
	if err != nil && ctx.Err() != nil {
		return // the run was interrupted: not the server's error
	}
	r.hist.Record(time.Since(since))
	if err == nil {
		r.ok.Add(1)
		return
	}
	r.errs.Add(1)
	r.mu.Lock()
	if r.byCode == nil {
		r.byCode = map[string]int64{}
	}
	r.byCode[errorCode(err)]++
	r.mu.Unlock()
}

// load runs cfg's load on cl for d and returns what it saw. Every goroutine
// it starts has returned when it returns.
func load(ctx context.Context, cfg Config, cl caller, d time.Duration, target string) Result {
	var rec recorder
	cpu0 := processCPU()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	one := func(worker int, since time.Time) {
		cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		err := cl.call(cctx, worker)
		cancel()
		rec.record(ctx, since, err)
	}
	if cfg.Rate == 0 {
		for w := range cfg.Concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					t0 := time.Now()
					if !t0.Before(end) {
						return
					}
					one(w, t0)
				}
			}()
		}
	} else {
		openLoop(ctx, cfg, start, end, &wg, one)
	}
	wg.Wait()
	cpu := processCPU() - cpu0
	secs := time.Since(start).Seconds()
	if cfg.Rate == 0 {
		secs = d.Seconds() // calls started in the window, whose last ones may end after it
	}
	res := Result{
		Target: target, OK: rec.ok.Load(), Errors: rec.errs.Load(), ErrorCodes: rec.byCode,
		Seconds: math.Round(secs*1000) / 1000, Latency: Summarize(&rec.hist),
	}
	res.Calls = res.OK + res.Errors
	if res.Calls > 0 {
		res.CPUPerCall = math.Round(float64(cpu)/float64(time.Microsecond)/float64(res.Calls)*10) / 10
	}
	if secs > 0 {
		res.Throughput = math.Round(float64(res.OK) / secs)
	}
	return res
}

// openLoop sends call i at start + i/rate, each in its own goroutine, at most
// cfg.MaxInFlight outstanding. Latency counts from the intended time: a call
// that waits for a slot, or a sender that falls behind, shows in it.
func openLoop(ctx context.Context, cfg Config, start, end time.Time, wg *sync.WaitGroup, one func(int, time.Time)) {
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	slots := make(chan struct{}, cfg.MaxInFlight)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if !due.Before(end) {
			return
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			one(i, due)
		}()
	}
}

// Describe is a one-line summary of the load, for reports.
func (c Config) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s.%s, %d-byte params, ", c.Mode, c.Handler, c.Method, c.Size)
	if c.Rate > 0 {
		fmt.Fprintf(&b, "open loop at %g calls/s (latency from the intended send time)", c.Rate)
	} else {
		fmt.Fprintf(&b, "closed loop, %d in flight", c.Concurrency)
	}
	if c.Mode == "ws" {
		fmt.Fprintf(&b, " over %d socket(s)", c.Conns)
	}
	fmt.Fprintf(&b, ", %s (+%s warm-up)", c.Duration, c.Warmup)
	return b.String()
}
