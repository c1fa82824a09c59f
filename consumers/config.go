package consumers

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamrpc/streamrpc/streams"
)

// ErrConfig wraps every error Config.Validate returns.
var ErrConfig = errors.New("consumers: invalid config")

// Config configures a Server. Only Handler is required; every other zero
// value means the default given on the field. The env tags are the settings'
// names for ConfigFromEnv (see .env.example).
type Config struct {
	// Handler is the handler name this server serves. Required.
	Handler string `env:"STREAMRPC_HANDLER"`
	// Description is shown in the registry and the UI.
	Description string `env:"STREAMRPC_HANDLER_DESCRIPTION"`
	// Version is the handler's version, shown in the registry and the UI.
	Version string `env:"STREAMRPC_HANDLER_VERSION"`
	// Concurrency is how many handlers run at once. Default 16. A call's
	// slot is free again when its handler returns: its outcome then waits for
	// its batch to reach Redis without holding it (at most 4 × Concurrency
	// outcomes wait so at once; beyond that, the reader waits).
	Concurrency int `env:"STREAMRPC_CONCURRENCY"`
	// Name identifies this consumer in the group. Default host-pid-random.
	Name string `env:"STREAMRPC_CONSUMER_NAME"`
	// MaxAttempts is how often a call is tried, counting retries of
	// retryable errors and redeliveries after a crash, before it goes to the
	// dead letters. Default 5.
	MaxAttempts int `env:"STREAMRPC_MAX_ATTEMPTS"`
	// RetryBaseDelay is the backoff before the first retry; it doubles with
	// each attempt, with jitter, up to RetryMaxDelay. Default 1s.
	RetryBaseDelay time.Duration `env:"STREAMRPC_RETRY_BASE_DELAY"`
	// RetryMaxDelay caps the backoff. Default 1m.
	RetryMaxDelay time.Duration `env:"STREAMRPC_RETRY_MAX_DELAY"`
	// VisibilityTimeout is how long a call may go without its consumer
	// renewing the lease before another consumer claims it. A running call's
	// lease is renewed every VisibilityTimeout/3, so only a dead or stuck
	// consumer loses its calls. Default 30s.
	VisibilityTimeout time.Duration `env:"STREAMRPC_VISIBILITY_TIMEOUT"`
	// HeartbeatInterval is how often the consumer tells the registry it is
	// alive, and how often it looks for consumers of its handler that were
	// declared dead, to claim their calls (one script run each: per-consumer
	// periodic work, nothing per call). At most 2s, so that the registry
	// (streams.ConsumerOnlineAfter, 5s) shows a live consumer online.
	// Default 1s.
	HeartbeatInterval time.Duration `env:"STREAMRPC_HEARTBEAT_INTERVAL"`
	// DeadAfter is how long a consumer may go without heartbeating before
	// the others declare it dead and claim its calls at once, whatever their
	// lease: with the defaults a killed consumer's calls are running again
	// elsewhere 2 to 4 seconds after the kill. A consumer paused longer than
	// this (a stop-the-world pause, a SIGSTOP, a network partition from
	// Redis) loses its calls to the others; what it settles when it wakes is
	// dropped, and the caller gets one answer. At least twice
	// HeartbeatInterval. VisibilityTimeout stays the backstop for a consumer
	// that heartbeats but stopped renewing its calls. Default 3s.
	DeadAfter time.Duration `env:"STREAMRPC_DEAD_AFTER"`
	// MaxBacklog makes the edge refuse calls (503) once this many are queued
	// or running for the handler. Default 0: the edge's STREAMRPC_BACKLOG_LIMIT.
	MaxBacklog int64 `env:"STREAMRPC_MAX_BACKLOG"`
	// HandlerMaxConcurrency registers a limit on the calls of the handler
	// running at once across every consumer (0: none). HandlerRate registers
	// a limit on the calls started per second across every consumer (0:
	// none). A limit set through PUT /handlers/{name}/limits wins. See
	// docs/flow-control.md.
	HandlerMaxConcurrency int64   `env:"STREAMRPC_HANDLER_MAX_CONCURRENCY"`
	HandlerRate           float64 `env:"STREAMRPC_HANDLER_RATE"`
	// ReadBlock is how long one read waits for calls, at most
	// HeartbeatInterval (so that claiming a dead consumer's calls is never
	// late by more than that). It bounds how long a Shutdown waits for the
	// reader to stop. Default 2s, so 1s with the default heartbeat.
	ReadBlock time.Duration `env:"STREAMRPC_READ_BLOCK"`
	// ResultTTL is how long replies stay readable by id when the edge did
	// not say. Default 10m.
	ResultTTL time.Duration `env:"STREAMRPC_CONSUMER_RESULT_TTL"`
	// StreamMaxPartials caps the partial results one attempt of a call may
	// send (Request.Partial); past it Partial fails with ErrStreamLimit.
	// Default 10000.
	StreamMaxPartials int `env:"STREAMRPC_STREAM_MAX_PARTIALS"`
	// StreamMaxPartialBytes caps the encoded size of one partial result or
	// progress value. Default 65536 (64 KiB).
	StreamMaxPartialBytes int `env:"STREAMRPC_STREAM_MAX_PARTIAL_BYTES"`
	// Durability makes the consumer confirm each settled call with replicas
	// (Redis WAIT) before it takes the next. Default: off.
	Durability streams.Durability
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger `env:"-"`
	// Registerer, if set, gets the server's Prometheus metrics
	// (streamrpc_consumer_*; see docs/observability.md). Default nil: none kept.
	Registerer prometheus.Registerer `env:"-"`
	// TracerProvider, if set, gives each handler run a span, the child of
	// the edge's span of the call (its context travels in the envelope); the
	// handler's context carries it. Default nil: no spans, at no cost.
	TracerProvider trace.TracerProvider `env:"-"`
}

// ConfigFromEnv reads a Config from the environment variables named by its
// env tags; unset ones keep their defaults.
func ConfigFromEnv() (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return c, nil
}

// Validate reports a config that cannot work; errors wrap ErrConfig.
func (c Config) Validate() error {
	if err := streams.ValidateName("handler", c.Handler); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	switch {
	case c.Concurrency < 0:
		return fmt.Errorf("%w: Concurrency %d is negative", ErrConfig, c.Concurrency)
	case c.MaxAttempts < 0:
		return fmt.Errorf("%w: MaxAttempts %d is negative", ErrConfig, c.MaxAttempts)
	case c.HandlerMaxConcurrency < 0 || c.HandlerRate < 0 || c.HandlerRate > streams.MaxRate || c.HandlerRate != c.HandlerRate:
		return fmt.Errorf("%w: HandlerMaxConcurrency %d and HandlerRate %g must be 0 (none) or more, the rate at most %g", ErrConfig, c.HandlerMaxConcurrency, c.HandlerRate, float64(streams.MaxRate))
	case c.StreamMaxPartials < 0 || c.StreamMaxPartialBytes < 0:
		return fmt.Errorf("%w: StreamMaxPartials and StreamMaxPartialBytes must not be negative", ErrConfig)
	case c.MaxBacklog < 0:
		return fmt.Errorf("%w: MaxBacklog %d is negative", ErrConfig, c.MaxBacklog)
	case c.ReadBlock < 0 || c.ResultTTL < 0 || c.RetryBaseDelay < 0 || c.RetryMaxDelay < 0 || c.VisibilityTimeout < 0 ||
		c.HeartbeatInterval < 0 || c.DeadAfter < 0:
		return fmt.Errorf("%w: durations must not be negative", ErrConfig)
	case c.HeartbeatInterval > 0 && (c.HeartbeatInterval < 100*time.Millisecond || c.HeartbeatInterval > 2*time.Second):
		return fmt.Errorf("%w: HeartbeatInterval %s is not between 100ms and 2s", ErrConfig, c.HeartbeatInterval)
	case c.DeadAfter > 0 && c.DeadAfter < 2*c.heartbeatInterval():
		return fmt.Errorf("%w: DeadAfter %s is under twice the heartbeat interval %s", ErrConfig, c.DeadAfter, c.heartbeatInterval())
	case c.VisibilityTimeout > 0 && c.VisibilityTimeout < 300*time.Millisecond:
		return fmt.Errorf("%w: VisibilityTimeout %s is under 300ms", ErrConfig, c.VisibilityTimeout)
	case c.RetryBaseDelay > 0 && c.RetryMaxDelay > 0 && c.RetryMaxDelay < c.RetryBaseDelay:
		return fmt.Errorf("%w: RetryMaxDelay %s is under RetryBaseDelay %s", ErrConfig, c.RetryMaxDelay, c.RetryBaseDelay)
	}
	if c.Name != "" {
		if err := streams.ValidateName("consumer", c.Name); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	return nil
}

// Defaults of the liveness settings (see HeartbeatInterval and DeadAfter).
const (
	defaultHeartbeatInterval = time.Second
	defaultDeadAfter         = 3 * time.Second
)

// heartbeatInterval is HeartbeatInterval or its default.
func (c Config) heartbeatInterval() time.Duration {
	if c.HeartbeatInterval > 0 {
		return c.HeartbeatInterval
	}
	return defaultHeartbeatInterval
}

func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		c.Name = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBaseDelay == 0 {
		c.RetryBaseDelay = time.Second
	}
	if c.RetryMaxDelay == 0 {
		c.RetryMaxDelay = time.Minute
	}
	c.RetryMaxDelay = max(c.RetryMaxDelay, c.RetryBaseDelay)
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = 30 * time.Second
	}
	if c.ReadBlock == 0 {
		c.ReadBlock = 2 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = defaultHeartbeatInterval
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = max(defaultDeadAfter, 2*c.HeartbeatInterval)
	}
	if c.StreamMaxPartials == 0 {
		c.StreamMaxPartials = defaultStreamMaxPartials
	}
	if c.StreamMaxPartialBytes == 0 {
		c.StreamMaxPartialBytes = defaultStreamMaxPartialBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
