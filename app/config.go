package app

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// ErrConfig wraps every error Config.Validate returns.
var ErrConfig = errors.New("app: invalid config")

// Config configures the edge. The zero value works: each field's default is
// given beside it. The env tags are the settings' names (see .env.example).
type Config struct {
	// Addr is the address the edge listens on. Default ":8080".
	Addr string `env:"STREAMRPC_ADDR"`
	// CallTimeout is the longest a call waits for its reply; a call may ask
	// for less with a Request-Timeout header (seconds). Default 30s.
	CallTimeout time.Duration `env:"STREAMRPC_CALL_TIMEOUT"`
	// MaxBody is the largest request body accepted, in bytes. Default 1 MiB.
	MaxBody int `env:"STREAMRPC_MAX_BODY"`
	// ResultTTL is how long a call's result stays readable by id. Default 10m.
	ResultTTL time.Duration `env:"STREAMRPC_RESULT_TTL"`
	// ShutdownGrace is how long a stopping edge waits for calls in flight. Default 30s.
	ShutdownGrace time.Duration `env:"STREAMRPC_SHUTDOWN_GRACE"`
	// DrainDelay is how long a stopping edge (`streamrpc edge` on SIGTERM)
	// keeps serving everything while GET /readyz answers 503, before it stops
	// accepting connections: the time load balancers need to notice. Set it
	// to the readiness probe's period times its failure threshold. Default 0.
	DrainDelay time.Duration `env:"STREAMRPC_DRAIN_DELAY"`
	// BacklogLimit refuses calls with 503 once a handler has this many calls
	// queued or running. Default 0: no limit.
	BacklogLimit int64 `env:"STREAMRPC_BACKLOG_LIMIT"`
	// JSONRPCMaxBatch is the most calls one JSON-RPC batch may hold (POST
	// /jsonrpc and /ws); a larger batch is answered with one -32600. Default 1000.
	JSONRPCMaxBatch int `env:"STREAMRPC_JSONRPC_MAX_BATCH"`
	// WSMaxMessage is the largest WebSocket message accepted, in bytes; a
	// larger one closes the connection with 1009. Default 1 MiB.
	WSMaxMessage int64 `env:"STREAMRPC_WS_MAX_MESSAGE"`
	// WSMaxInFlight is how many calls one WebSocket connection may have in
	// flight; a call past it is answered at once with -32005. Default 1024.
	WSMaxInFlight int `env:"STREAMRPC_WS_MAX_IN_FLIGHT"`
	// WSMaxConns is how many WebSocket connections this edge holds; an
	// upgrade past it is refused with 503. Default 10000.
	WSMaxConns int `env:"STREAMRPC_WS_MAX_CONNS"`
	// WSWriteQueue bounds the bytes of answers queued for one WebSocket
	// connection; past it the connection is closed with 4008. Default 8 MiB.
	WSWriteQueue int `env:"STREAMRPC_WS_WRITE_QUEUE"`
	// WSWriteTimeout is the longest one write to a WebSocket may take before
	// the connection is dropped. Default 10s.
	WSWriteTimeout time.Duration `env:"STREAMRPC_WS_WRITE_TIMEOUT"`
	// WSPingInterval is how often the edge pings each WebSocket. Default 30s.
	WSPingInterval time.Duration `env:"STREAMRPC_WS_PING_INTERVAL"`
	// WSPongTimeout: a peer that sends nothing (no pong, no message) for
	// WSPingInterval+WSPongTimeout is dead and its connection is dropped. Default 10s.
	WSPongTimeout time.Duration `env:"STREAMRPC_WS_PONG_TIMEOUT"`
	// Logger receives the edge's logs. Default slog.Default().
	Logger *slog.Logger `env:"-"`
	// TracerProvider, if set, traces every call: a server span per call,
	// child of the caller's W3C traceparent, whose context travels in the
	// call's envelope to the consumer. Default nil: tracing off, at no cost.
	TracerProvider trace.TracerProvider `env:"-"`
}

// Validate reports settings that cannot work; errors wrap ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.CallTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_CALL_TIMEOUT %s is negative", ErrConfig, c.CallTimeout)
	case c.MaxBody < 0:
		return fmt.Errorf("%w: STREAMRPC_MAX_BODY %d is negative", ErrConfig, c.MaxBody)
	case c.ResultTTL < 0:
		return fmt.Errorf("%w: STREAMRPC_RESULT_TTL %s is negative", ErrConfig, c.ResultTTL)
	case c.ResultTTL > 0 && c.ResultTTL < time.Second:
		return fmt.Errorf("%w: STREAMRPC_RESULT_TTL %s is under 1s", ErrConfig, c.ResultTTL)
	case c.ShutdownGrace < 0:
		return fmt.Errorf("%w: STREAMRPC_SHUTDOWN_GRACE %s is negative", ErrConfig, c.ShutdownGrace)
	case c.DrainDelay < 0:
		return fmt.Errorf("%w: STREAMRPC_DRAIN_DELAY %s is negative", ErrConfig, c.DrainDelay)
	case c.BacklogLimit < 0:
		return fmt.Errorf("%w: STREAMRPC_BACKLOG_LIMIT %d is negative", ErrConfig, c.BacklogLimit)
	case c.JSONRPCMaxBatch < 0:
		return fmt.Errorf("%w: STREAMRPC_JSONRPC_MAX_BATCH %d is negative", ErrConfig, c.JSONRPCMaxBatch)
	case c.WSMaxMessage < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_MAX_MESSAGE %d is negative", ErrConfig, c.WSMaxMessage)
	case c.WSMaxInFlight < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_MAX_IN_FLIGHT %d is negative", ErrConfig, c.WSMaxInFlight)
	case c.WSMaxConns < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_MAX_CONNS %d is negative", ErrConfig, c.WSMaxConns)
	case c.WSWriteQueue < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_WRITE_QUEUE %d is negative", ErrConfig, c.WSWriteQueue)
	case c.WSWriteTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_WRITE_TIMEOUT %s is negative", ErrConfig, c.WSWriteTimeout)
	case c.WSPingInterval < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_PING_INTERVAL %s is negative", ErrConfig, c.WSPingInterval)
	case c.WSPongTimeout < 0:
		return fmt.Errorf("%w: STREAMRPC_WS_PONG_TIMEOUT %s is negative", ErrConfig, c.WSPongTimeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.MaxBody == 0 {
		c.MaxBody = 1 << 20
	}
	if c.ResultTTL == 0 {
		c.ResultTTL = 10 * time.Minute
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.JSONRPCMaxBatch == 0 {
		c.JSONRPCMaxBatch = 1000
	}
	if c.WSMaxMessage == 0 {
		c.WSMaxMessage = 1 << 20
	}
	if c.WSMaxInFlight == 0 {
		c.WSMaxInFlight = 1024
	}
	if c.WSMaxConns == 0 {
		c.WSMaxConns = 10000
	}
	if c.WSWriteQueue == 0 {
		c.WSWriteQueue = 8 << 20
	}
	if c.WSWriteTimeout == 0 {
		c.WSWriteTimeout = 10 * time.Second
	}
	if c.WSPingInterval == 0 {
		c.WSPingInterval = 30 * time.Second
	}
	if c.WSPongTimeout == 0 {
		c.WSPongTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
