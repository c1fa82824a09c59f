// Command echo serves the example echo handler as a standalone consumer,
// written only against the public consumers SDK:
//
//	REDIS_URL=redis://localhost:6379/0 go run ./examples/echo
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
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
	srv, err := consumers.NewServer(rdb, consumers.Config{Handler: echo.Name, Description: "the example echo handler"}, echo.Mux())
	if err != nil {
		slog.Error("echo: config", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx, 30*time.Second); err != nil {
		slog.Error("echo: stopped", "err", err)
		os.Exit(1)
	}
}
