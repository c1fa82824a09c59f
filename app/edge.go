// Package app is the streamrpc edge: a Fiber app that accepts calls over
// HTTP, appends each to its handler's Redis stream, and answers with the reply
// a consumer writes back. It keeps no state of its own beyond the calls it is
// waiting on, so any number of edges can run behind a load balancer.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamrpc/streamrpc/streams"
)

// Edge is one edge replica.
type Edge struct {
	cfg      Config
	id       string // names this replica's reply stream
	streams  *streams.Client
	waiters  *waiters
	watchers *watchers // long-polls on GET /rpc/calls/{id}
	replies  *replyReader
	fiber    *fiber.App
	log      *slog.Logger
	ws       *wsHub         // open WebSocket connections; Shutdown closes them
	events   *eventHub      // the live feed behind GET /events
	schemas  *schemas       // params schemas the consumers registered
	auth     *authenticator // nil: auth is off
	limiter  *rateLimiter
	metrics  *metrics     // served at GET /metrics
	tracer   trace.Tracer // nil: tracing off
	// corsPolicy is STREAMRPC_CORS_ORIGINS (cors.go).
	corsPolicy corsPolicy
	// discovery serves the OpenAPI and OpenRPC documents (discovery.go).
	discovery *discovery

	draining atomic.Bool // set by Drain and Shutdown: /readyz answers 503
	// chunkedJSONRPC: the request headers of chunked POST /jsonrpc being
	// read (headerReceived), for the shape of their 413.
	chunkedJSONRPC sync.Map

	wg        sync.WaitGroup
	mu        sync.Mutex
	started   bool
	stopping  bool           // Shutdown began: Serve serves nothing more
	listeners []net.Listener // what Serve was given, closed by Shutdown
	stopOnce  sync.Once
	stopErr   error
}

// New returns an edge over rdb. The go-redis client stays the caller's to close.
func New(rdb redis.UniversalClient, cfg Config) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	auth, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	e := &Edge{
		auth:     auth,
		cfg:      cfg,
		id:       ulid.Make().String(),
		streams:  streams.New(rdb, streams.Options{ResultTTL: cfg.ResultTTL, Durability: cfg.Durability}),
		waiters:  newWaiters(),
		watchers: newWatchers(),
		ws:       newWSHub(cfg.WSMaxConns, cfg.WSMaxConnsPerIP),
	}
	e.log = cfg.Logger.With("edge", e.id)
	e.corsPolicy, _ = parseCORSOrigins(cfg.CORSOrigins) // checked by Validate
	e.replies = newReplyReader(e.streams, e.id, e.waiters, e.watchers, e.log)
	e.replies.maxAge = min(cfg.CallTimeout, replyMaxAge)
	e.events = newEventHub(e.streams, e.log)
	e.schemas = newSchemas(e.streams, e.log)
	e.limiter = newRateLimiter(e.streams, cfg, e.log)
	e.metrics = newMetrics(e)
	if cfg.TracerProvider != nil {
		e.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	e.replies.metrics = e.metrics
	e.fiber = fiber.New(fiber.Config{
		AppName:   "streamrpc",
		BodyLimit: cfg.MaxBody,
		// fasthttp reads the request line and headers into this buffer;
		// larger ones are answered 431 (Fiber's ErrRequestHeaderFieldsTooLarge).
		ReadBufferSize: cfg.MaxHeaderBytes,
		// Slow clients: a request (header and body) must be read within
		// ReadTimeout, and a keep-alive connection is closed after
		// IdleTimeout without a next request. Neither bounds an answer being
		// written (long-polls, /events); a WebSocket's deadlines are cleared
		// at the upgrade and set by its ping loop.
		ReadTimeout:           cfg.ReadTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		DisableStartupMessage: true,
		ErrorHandler:          e.fiberError,
	})
	e.fiber.Server().HeaderReceived = e.headerReceived
	e.routes()
	return e, nil
}

// ID is this edge replica's id.
func (e *Edge) ID() string { return e.id }

// Fiber returns the edge's Fiber app, e.g. for app.Test in tests.
func (e *Edge) Fiber() *fiber.App { return e.fiber }

// Start opens this edge's reply stream and starts its reply reader. An
// unreachable Redis is logged, not fatal: the edge answers 503 until Redis is
// back and then recovers by itself.
func (e *Edge) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return nil
	}
	if err := e.streams.OpenReplyStream(ctx, e.id); err != nil {
		e.log.Warn("redis unavailable at start; calls answer 503 until it is back", "err", err)
	}
	e.replies.start(&e.wg)
	e.events.start(&e.wg)
	e.started = true
	return nil
}

// Serve starts the edge if needed and serves HTTP on ln until Shutdown.
func (e *Edge) Serve(ln net.Listener) error {
	if err := e.Start(context.Background()); err != nil {
		return err
	}
	if e.cfg.MaxConnsPerIP > 0 {
		ln = newPerIPListener(ln, e.cfg.MaxConnsPerIP)
	}
	// A Shutdown that comes before the server is up would not stop it
	// (fasthttp closes only the listeners it already serves): Shutdown closes
	// every listener registered here too, and one that comes after it is
	// closed at once.
	e.mu.Lock()
	if e.stopping {
		e.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	e.listeners = append(e.listeners, ln)
	e.mu.Unlock()
	err := e.fiber.Listener(ln)
	e.mu.Lock()
	stopping := e.stopping
	e.mu.Unlock()
	if stopping && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ListenAndServe serves on cfg.Addr.
func (e *Edge) ListenAndServe() error {
	ln, err := net.Listen("tcp", e.cfg.Addr)
	if err != nil {
		return fmt.Errorf("app: listen on %s: %w", e.cfg.Addr, err)
	}
	e.log.Info("edge listening", "addr", ln.Addr().String())
	return e.Serve(ln)
}

// Shutdown stops accepting connections, waits for calls in flight to be
// answered until ctx ends, then stops the reply reader. Safe to call twice.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() {
		e.Drain()
		// Live feeds never end by themselves: end them first, so that
		// Fiber's shutdown only waits for calls.
		e.mu.Lock()
		started := e.started
		e.mu.Unlock()
		if started {
			e.events.shutdown()
		}
		e.mu.Lock()
		e.stopping = true
		listeners := e.listeners
		e.mu.Unlock()
		err := e.fiber.ShutdownWithContext(ctx)
		for _, ln := range listeners {
			_ = ln.Close()
		}
		// Fiber does not wait for hijacked (WebSocket) connections: close them
		// here, after their calls in flight, before the reply reader stops.
		e.ws.shutdown(ctx)
		// The reply reader runs only after Start: waiting for it otherwise
		// would block forever. Marking the edge started keeps a Start after
		// Shutdown from running it.
		e.mu.Lock()
		e.started = true
		e.mu.Unlock()
		if started {
			e.replies.shutdown()
		}
		e.wg.Wait()
		_ = e.streams.Close()
		if err != nil && !errors.Is(err, context.Canceled) {
			e.stopErr = fmt.Errorf("app: shutdown: %w", err)
		}
	})
	return e.stopErr
}

// Close stops the edge without waiting for calls in flight.
func (e *Edge) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return e.Shutdown(ctx)
}

// Waiting is the number of calls this edge is waiting on.
func (e *Edge) Waiting() int { return e.waiters.len() }
