package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/streams"
)

// runEdge runs the edge until ctx ends.
func runEdge(ctx context.Context, stderr io.Writer) error {
	s, err := loadSettings()
	if err != nil {
		return err
	}
	log, err := s.Log.logger(stderr, logJSON)
	if err != nil {
		return err
	}
	if s.Redis.URL == "" {
		return errors.New("REDIS_URL is not set (streamrpc dev runs without one, on an embedded Redis)")
	}
	if err := checkEdgeAuth(s.Edge, log); err != nil {
		return err
	}
	rdb, err := streams.Connect(s.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	s.Edge.Logger = log
	tp, stopTracing, err := setupTracing(ctx, "streamrpc-edge")
	if err != nil {
		return err
	}
	defer stopTracing()
	s.Edge.TracerProvider = tp
	edge, err := app.New(rdb, s.Edge)
	if err != nil {
		return err
	}
	return serveUntil(ctx, edge, s.Edge, log)
}

// ErrNoAuth: the edge would run open without having been told to.
var ErrNoAuth = errors.New("no authentication configured: set STREAMRPC_API_KEYS (see streamrpc hash-key) or a JWT key (STREAMRPC_JWT_*), or STREAMRPC_AUTH=none to run open on purpose")

// checkEdgeAuth is the edge's safe default: it refuses to run open unless
// the operator says so, and then says so at every start. (The library's zero
// Config stays open, for tests and embedding; the binary is what gets
// deployed.)
func checkEdgeAuth(cfg app.Config, log *slog.Logger) error {
	switch {
	case cfg.AuthEnabled():
		log.Info("authentication on", "api_keys", cfg.APIKeys != "", "jwt", cfg.JWTHS256Secret != "" || cfg.JWTPublicKeyFile != "" || cfg.JWTJWKSFile != "")
		return nil
	case cfg.Auth == app.AuthNone:
		warnOpen(log)
		return nil
	}
	return ErrNoAuth
}

// warnOpen is the loud line of an edge that runs without authentication.
func warnOpen(log *slog.Logger) {
	log.Warn("AUTHENTICATION IS OFF: anyone who can reach this edge can call every handler, read the dashboard and replay or delete dead letters; configure STREAMRPC_API_KEYS or a JWT key (docs/security.md)")
}

// serveUntil serves the edge until ctx ends, then drains it: readiness
// fails at once, new calls are still served for cfg.DrainDelay, then the
// listener closes and the calls in flight get cfg.ShutdownGrace.
func serveUntil(ctx context.Context, edge *app.Edge, cfg app.Config, log *slog.Logger) error {
	grace := cfg.ShutdownGrace
	errc := make(chan error, 1)
	go func() { errc <- edge.ListenAndServe() }()
	select {
	case err := <-errc:
		_ = edge.Close()
		return err
	case <-ctx.Done():
	}
	if grace <= 0 {
		grace = 30 * time.Second
	}
	edge.Drain()
	if cfg.DrainDelay > 0 {
		log.Info("draining: /readyz answers 503; still serving until the load balancers notice", "drain_delay", cfg.DrainDelay)
		select {
		case <-time.After(cfg.DrainDelay):
		case err := <-errc: // the server stopped by itself meanwhile
			_ = edge.Close()
			return err
		}
	}
	log.Info("shutting down; draining calls in flight", "grace", grace, "waiting", edge.Waiting())
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := edge.Shutdown(sctx)
	<-errc
	return err
}
