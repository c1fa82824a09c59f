package app

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
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
	// BacklogLimit refuses calls with 503 once a handler has this many calls
	// queued or running. Default 0: no limit.
	BacklogLimit int64 `env:"STREAMRPC_BACKLOG_LIMIT"`
	// Logger receives the edge's logs. Default slog.Default().
	Logger *slog.Logger `env:"-"`
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
	case c.BacklogLimit < 0:
		return fmt.Errorf("%w: STREAMRPC_BACKLOG_LIMIT %d is negative", ErrConfig, c.BacklogLimit)
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
