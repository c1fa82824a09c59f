// Command echo serves the example echo handler as a standalone consumer,
// written only against the public consumers SDK:
//
//	REDIS_URL=redis://localhost:6379/0 go run ./examples/echo
//
// Consumer settings (STREAMRPC_CONCURRENCY, STREAMRPC_MAX_ATTEMPTS, ...) come
// from the environment; see .env.example. ECHO_TRACE=1 prints a line per
// handler run ("run <id> <attempt>"), which the fault-injection tests count.
// ECHO_HANDLERS=a,b,c serves the echo methods under each of those handler
// names instead of "echo", from this one process (the scaling tests spread
// handlers over a Redis Cluster's masters this way).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
)

func main() {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://localhost:6379/0"
	}
	rdb, err := consumers.ConnectRedis(url)
	if err != nil {
		slog.Error("echo: bad REDIS_URL", "err", err)
		os.Exit(2)
	}
	defer rdb.Close()
	cfg, err := consumers.ConfigFromEnv()
	if err != nil {
		slog.Error("echo: settings", "err", err)
		os.Exit(2)
	}
	cfg.Description = "the example echo handler"
	mux := newMux()
	if os.Getenv("ECHO_TRACE") == "1" {
		mux.Use(trace)
	}
	names := []string{"echo"}
	if v := os.Getenv("ECHO_HANDLERS"); v != "" {
		names = strings.Split(v, ",")
	}
	servers := make([]*consumers.Server, len(names))
	for i, name := range names {
		cfg.Handler = name
		if servers[i], err = consumers.NewServer(rdb, cfg, mux); err != nil {
			slog.Error("echo: config", "handler", name, "err", err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errs := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { errs <- srv.Run(ctx, 30*time.Second) }()
	}
	failed := false
	for range servers {
		if err := <-errs; err != nil {
			slog.Error("echo: stopped", "err", err)
			failed = true
			stop() // one server failing stops the others
		}
	}
	if failed {
		os.Exit(1)
	}
}

// trace is middleware that prints each run before the handler starts.
func trace(next consumers.Handler) consumers.Handler {
	return consumers.HandlerFunc(func(ctx context.Context, r *consumers.Request) (any, error) {
		fmt.Printf("run %s %d\n", r.ID, r.Attempt)
		return next.ServeRPC(ctx, r)
	})
}

// The sleep method's JSON Schemas: the edge rejects params that do not match
// (422, -32602) before they are enqueued.
var (
	sleepParams = json.RawMessage(`{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":600000}},"required":["ms"]}`)
	sleepResult = json.RawMessage(`{"type":"object","properties":{"slept":{"type":"integer"}},"required":["slept"]}`)
)

// newMux returns the example's methods.
func newMux() *consumers.Mux {
	mux := consumers.NewMux()
	mux.HandleFunc("echo", func(_ context.Context, r *consumers.Request) (any, error) {
		return r.Params, nil // raw: the caller gets its bytes back exactly
	}, consumers.Describe("returns its params unchanged"))

	mux.HandleFunc("sleep", func(ctx context.Context, r *consumers.Request) (any, error) {
		var p struct {
			MS int64 `json:"ms"`
		}
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		if p.MS < 0 {
			return nil, consumers.Errorf(consumers.CodeInvalidParams, "ms must not be negative")
		}
		t := time.NewTimer(time.Duration(p.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return map[string]int64{"slept": p.MS}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, consumers.Describe(`sleeps {"ms":N} milliseconds, then returns {"slept":N}`),
		consumers.Schemas(sleepParams, sleepResult))

	mux.HandleFunc("fail", func(_ context.Context, r *consumers.Request) (any, error) {
		var p struct {
			Message   string `json:"message"`
			Retryable bool   `json:"retryable"`
		}
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		if p.Message == "" {
			p.Message = "failed on request"
		}
		return nil, &consumers.Error{Code: consumers.CodeHandlerError, Message: p.Message, Retryable: p.Retryable}
	}, consumers.Describe(`returns the error {"message":"…","retryable":bool}`))

	// count streams: progress values the caller sees as they come (a
	// WebSocket $/progress, an SSE "progress" event), or with "partial":true
	// partial results (none lost, in order), then the result.
	mux.HandleFunc("count", func(ctx context.Context, r *consumers.Request) (any, error) {
		var p struct {
			N       int  `json:"n"`
			MS      int  `json:"ms"`
			Partial bool `json:"partial"`
		}
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		send := r.Progress // latest wins: a slow caller may skip values
		if p.Partial {
			send = r.Partial
		}
		for i := 1; i <= p.N; i++ {
			if err := send(map[string]int{"i": i}); err != nil {
				return nil, err
			}
			if p.MS == 0 {
				continue
			}
			select {
			case <-time.After(time.Duration(p.MS) * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err() // cancelled by the caller, or past the deadline
			}
		}
		return map[string]int{"counted": p.N}, nil
	}, consumers.Describe(`sends {"n":N,"ms":M}: N progress values {"i":k} M ms apart (partial results with "partial":true), then {"counted":N}`))
	return mux
}
