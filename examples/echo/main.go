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
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/examples/echo/echo"
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
	mux := echo.Mux()
	if os.Getenv("ECHO_TRACE") == "1" {
		mux.Use(trace)
	}
	names := []string{echo.Name}
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
