package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/streamrpc/streamrpc/app"
	"github.com/streamrpc/streamrpc/streams"
)

// settings are every setting of the binary, read from the environment.
type settings struct {
	Redis streams.RedisOptions
	Edge  app.Config
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `env:"STREAMRPC_LOG_LEVEL" envDefault:"info"`
	// LogFormat is text or json. Default text.
	LogFormat string `env:"STREAMRPC_LOG_FORMAT" envDefault:"text"`
}

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

func (s settings) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return nil, fmt.Errorf("STREAMRPC_LOG_LEVEL %q: want debug, info, warn or error", s.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(s.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("STREAMRPC_LOG_FORMAT %q: want text or json", s.LogFormat)
}
