package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/internal/outage"
	"github.com/streamrpc/streamrpc/streams"
)

// settings are the settings of `edge` and `dev`, read from the environment.
// `consumer` has its own (consumerSettings): it reads nothing of the edge's.
type settings struct {
	Redis streams.RedisOptions
	Edge  app.Config
	Log   logSettings
}

// logSettings are the logging settings every subcommand reads.
type logSettings struct {
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `env:"STREAMRPC_LOG_LEVEL" envDefault:"info"`
	// LogFormat is text or json. Default: json for `edge` and `consumer`
	// (what log pipelines parse), text for `dev` (what people read).
	LogFormat string `env:"STREAMRPC_LOG_FORMAT"`
}

// Log formats of STREAMRPC_LOG_FORMAT.
const (
	logJSON = "json"
	logText = "text"
)

func loadSettings() (settings, error) {
	var s settings
	if err := env.Parse(&s); err != nil {
		return s, fmt.Errorf("reading settings: %w", err)
	}
	if err := s.Edge.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// logger is the process's logger on w: STREAMRPC_LOG_FORMAT, or
// defaultFormat when it is unset, at STREAMRPC_LOG_LEVEL.
func (s logSettings) logger(w io.Writer, defaultFormat string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return nil, fmt.Errorf("STREAMRPC_LOG_LEVEL %q: want debug, info, warn or error", s.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := strings.ToLower(s.LogFormat)
	if format == "" {
		format = defaultFormat
	}
	var log *slog.Logger
	switch format {
	case logText:
		log = slog.New(slog.NewTextHandler(w, opts))
	case logJSON:
		log = slog.New(slog.NewJSONHandler(w, opts))
	default:
		return nil, fmt.Errorf("STREAMRPC_LOG_FORMAT %q: want text or json", s.LogFormat)
	}
	// go-redis's own lines too, in the same format; its per-command dial
	// failures at debug level (an outage is logged once, by the edge and the
	// consumer themselves).
	redis.SetLogger(outage.RedisLogger(log))
	return log, nil
}
