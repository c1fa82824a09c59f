package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

// stack is one edge and one echo consumer in this process, on a real Redis.
type stack struct {
	redis    *RedisServer
	edge     *app.Edge
	consumer *consumers.Server
	url      string // http://127.0.0.1:PORT
	cmds     *commandCounter
}

type stackOptions struct {
	edge      app.Config
	consumer  consumers.Config
	noConsume bool
	redisArgs []string
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("STREAMRPC_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// stackOn is a stack on r with nothing started yet.
func stackOn(r *RedisServer) *stack { return &stack{redis: r, cmds: &commandCounter{}} }

func newStack(t testing.TB, opts stackOptions) *stack {
	t.Helper()
	st := stackOn(startRedis(t, opts.redisArgs...))
	st.edge = st.startEdge(t, opts.edge)
	if !opts.noConsume {
		st.consumer = st.startConsumer(t, opts.consumer, echo.Mux())
	}
	return st
}

// connect returns a go-redis client to the stack's Redis that counts commands.
func (st *stack) connect(t testing.TB) redis.UniversalClient {
	t.Helper()
	o := st.redis.tls
	o.URL, o.DialTimeout = st.redis.URL, 500*time.Millisecond
	rdb, err := streams.Connect(o)
	if err != nil {
		t.Fatal(err)
	}
	rdb.AddHook(st.cmds)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func (st *stack) startEdge(t testing.TB, cfg app.Config) *app.Edge {
	t.Helper()
	cfg.Logger = testLogger(t)
	edge, err := app.New(st.connect(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st.url = "http://" + ln.Addr().String()
	go func() { _ = edge.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = edge.Shutdown(ctx)
	})
	return edge
}

func (st *stack) startConsumer(t testing.TB, cfg consumers.Config, h consumers.Handler) *consumers.Server {
	t.Helper()
	if cfg.Handler == "" {
		cfg.Handler = echo.Name
	}
	cfg.Logger = testLogger(t)
	srv, err := consumers.NewServer(st.connect(t), cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// response is an edge's answer, decoded.
type response struct {
	status    int
	header    http.Header
	body      []byte
	Result    json.RawMessage `json:"result"`
	Error     *streams.Error  `json:"error"`
	State     string          `json:"state"`
	requestID string
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

// post calls POST url+path with body and content type (application/json if empty).
func post(t testing.TB, url, path string, body []byte, header map[string]string) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func get(t testing.TB, url string) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) *response {
	t.Helper()
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := &response{status: res.StatusCode, header: res.Header, body: b, requestID: res.Header.Get("X-Request-Id")}
	if len(b) > 0 {
		if err := json.Unmarshal(b, r); err != nil {
			t.Fatalf("%s %s: answer is not JSON (%v): %q", req.Method, req.URL, err, b)
		}
	}
	return r
}

// commandCounter counts the commands a go-redis client sends, pipelined ones
// each, blocking reads included.
type commandCounter struct {
	n atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// waitUntil polls fn until it returns nil, failing the test after timeout.
func waitUntil(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		<-tick.C
	}
}
