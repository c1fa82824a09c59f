package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/streamrpc/streamrpc/consumers"
	"github.com/streamrpc/streamrpc/streams"
)

// consumerSettings are the settings of `streamrpc consumer` besides the
// consumers SDK's Config and SidecarConfig. None of the edge's is read.
type consumerSettings struct {
	Redis streams.RedisOptions
	Log   logSettings
	// ShutdownGrace is how long a stopping consumer (SIGTERM) lets the calls
	// it runs finish. Default 30s.
	ShutdownGrace time.Duration `env:"STREAMRPC_SHUTDOWN_GRACE" envDefault:"30s"`
	// HealthAddr is where the consumer answers GET /healthz (200 once it has
	// registered and takes calls, 503 before, while its app is down and while
	// it drains), for
	// `streamrpc healthcheck`; "off" serves nothing. Default :8081.
	HealthAddr string `env:"STREAMRPC_HEALTH_ADDR" envDefault:":8081"`
	// MetricsAddr is where the consumer serves GET /metrics (Prometheus).
	// Default "": on the health endpoint's address; "off" serves none.
	MetricsAddr string `env:"STREAMRPC_METRICS_ADDR"`
}

// defaultHealthAddr is consumerSettings.HealthAddr's default.
const defaultHealthAddr = ":8081"

// runConsumer runs the sidecar consumer: it serves a handler by forwarding
// each call to the HTTP upstream next to it, until ctx ends, then drains.
func runConsumer(ctx context.Context, stderr io.Writer) error {
	var cs consumerSettings
	if err := env.Parse(&cs); err != nil {
		return fmt.Errorf("reading settings: %w", err)
	}
	if cs.ShutdownGrace < 0 {
		return fmt.Errorf("STREAMRPC_SHUTDOWN_GRACE %s is negative", cs.ShutdownGrace)
	}
	log, err := cs.Log.logger(stderr, logJSON)
	if err != nil {
		return err
	}
	if cs.Redis.URL == "" {
		return errors.New("REDIS_URL is not set")
	}
	cfg, err := consumers.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Logger = log
	var metrics http.Handler
	if cs.MetricsAddr != "off" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Registerer = reg
		metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	tp, stopTracing, err := setupTracing(ctx, "streamrpc-consumer")
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg.TracerProvider = tp
	scfg, err := consumers.SidecarConfigFromEnv()
	if err != nil {
		return err
	}
	side, err := consumers.NewSidecar(scfg)
	if err != nil {
		return err
	}
	defer side.Close()
	rdb, err := streams.Connect(cs.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	srv, err := consumers.NewServer(rdb, cfg, side)
	if err != nil {
		return err
	}
	log = log.With("handler", cfg.Handler, "consumer", srv.Name())

	var ready atomic.Bool
	if cs.HealthAddr != "off" {
		withMetrics := metrics
		if cs.MetricsAddr != "" {
			withMetrics = nil // served on its own address, or off
		}
		live := func() error {
			if !ready.Load() {
				return errors.New("not ready")
			}
			return nil
		}
		takesCalls := func() error {
			if srv.State() == streams.ConsumerWaitingForApp {
				return errors.New("waiting for the app: it refuses connections or fails its ready path")
			}
			return live()
		}
		stop, err := serveHealth(cs.HealthAddr, live, takesCalls, withMetrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cs.MetricsAddr != "" && cs.MetricsAddr != "off" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		stop, err := serveHTTP(cs.MetricsAddr, mux, "metrics endpoint (STREAMRPC_METRICS_ADDR)", log)
		if err != nil {
			return err
		}
		defer stop()
	}

	log.Info("waiting for the upstream", "upstream", scfg.UpstreamURL)
	if err := side.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			_ = srv.Close()
			return nil // stopped before the upstream was ready: nothing to drain
		}
		_ = srv.Close()
		return err
	}
	log.Info("the upstream is ready; registering")
	if err := startWhileRedisFails(ctx, srv, log); err != nil {
		_ = srv.Close()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	ready.Store(true)
	<-ctx.Done()
	ready.Store(false)
	grace := cs.ShutdownGrace
	log.Info("shutting down; draining calls in flight", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return srv.Shutdown(sctx)
}

// startWhileRedisFails starts srv, retrying with backoff while Redis does not
// answer (it may start after this process), until ctx ends. A config error
// is returned at once.
func startWhileRedisFails(ctx context.Context, srv *consumers.Server, log *slog.Logger) error {
	backoff := 100 * time.Millisecond
	for {
		err := srv.Start(ctx)
		if err == nil || errors.Is(err, consumers.ErrConfig) || errors.Is(err, consumers.ErrServerClosed) {
			return err
		}
		log.Warn("registering failed; retrying", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// serveHealth serves GET /healthz on addr: 200 while live returns nil, else
// 503 with its reason; GET /readyz the same with ready; and GET /metrics if
// metrics is not nil. The returned func stops the server and waits for it.
func serveHealth(addr string, live, ready func() error, metrics http.Handler, log *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	check := func(fn func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			if err := fn(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		}
	}
	// A sidecar is useless until it takes calls, so both are 503 until it
	// registered and while it drains. While its app is down it takes no
	// calls (/readyz 503) but is alive (/healthz 200): restarting it would
	// not bring the app back.
	mux.HandleFunc("GET /healthz", check(live))
	mux.HandleFunc("GET /readyz", check(ready))
	return serveHTTP(addr, mux, "health endpoint (STREAMRPC_HEALTH_ADDR)", log)
}

// serveHTTP serves mux on addr until the returned func is called; that func
// stops the server and waits for it.
func serveHTTP(addr string, mux *http.ServeMux, what string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}, nil
}
