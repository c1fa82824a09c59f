package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/alicebob/miniredis/v2"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/internal/echo"
	"github.com/streamrpc/streamrpc/streams"
)

// devAddr is where `streamrpc dev` listens without STREAMRPC_ADDR.
const devAddr = "127.0.0.1:8080"

// runDev runs the edge and the example echo consumer in one process. With no
// REDIS_URL it starts miniredis, an in-memory Redis written in Go: fine to try
// streamrpc, not durable, and not what the tests claim behaviour against.
func runDev(ctx context.Context, stdout, stderr io.Writer) error {
	s, err := loadSettings()
	if err != nil {
		return err
	}
	log, err := s.Log.logger(stderr, logText)
	if err != nil {
		return err
	}
	if s.Edge.Addr == "" {
		// dev runs open unless told otherwise: reachable from this machine
		// only, unless STREAMRPC_ADDR says where else.
		s.Edge.Addr = devAddr
	}
	if s.Redis.URL == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("starting the embedded redis: %w", err)
		}
		defer mr.Close()
		s.Redis.URL = "redis://" + mr.Addr() + "/0"
		log.Warn("REDIS_URL is not set: using an embedded in-memory Redis (miniredis); it is NOT durable, every call and result is lost when this process exits; set REDIS_URL for a real Redis",
			"addr", mr.Addr())
	} else {
		log.Info("using the Redis that REDIS_URL names")
	}
	rdb, err := streams.Connect(s.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()

	tp, stopTracing, err := setupTracing(ctx, "streamrpc-dev")
	if err != nil {
		return err
	}
	defer stopTracing()
	// dev may run open, for trying streamrpc on a laptop; it says so.
	if s.Edge.AuthEnabled() {
		log.Info("authentication on")
	} else {
		warnOpen(log)
	}
	s.Edge.Logger = log
	s.Edge.TracerProvider = tp
	// A page served by the developer's own app (any localhost port) may
	// open the dev edge's WebSocket; other sites may not.
	s.Edge.AllowLocalOrigins = true
	edge, err := app.New(rdb, s.Edge)
	if err != nil {
		return err
	}
	// The consumer runs in this process, so its metrics (streamrpc_consumer_*)
	// are served with the edge's on the edge's GET /metrics.
	srv, err := consumers.NewServer(rdb, consumers.Config{Handler: echo.Name, Description: "the example echo handler",
		Logger: log, TracerProvider: tp, Registerer: edge.Registry()}, echo.Mux())
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()
	authHeader := ""
	if s.Edge.AuthEnabled() {
		authHeader = " -H 'Authorization: Bearer <your API key or token>'"
	}
	fmt.Fprintf(stdout, "streamrpc dev is up. Call it:\n  curl -s -X POST http://%s/rpc/echo/echo -H 'content-type: application/json'%s -d '{\"msg\":\"hi\"}'\n", callHost(s.Edge.Addr), authHeader)
	return serveUntil(ctx, edge, s.Edge, log)
}

// callHost turns a listen address into one to call: ":8080" -> "localhost:8080".
func callHost(addr string) string {
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
