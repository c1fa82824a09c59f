// Package outage paces retries against an unavailable Redis and logs each
// outage once when it starts and once when it ends, not once per failure.
package outage

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Log logs a Redis outage once when it starts and once when it ends,
// not once per failed command, and paces retries with capped backoff.
type Log struct {
	log   *slog.Logger
	down  bool
	since time.Time
	delay time.Duration
}

// New returns a Log that writes to log.
func New(log *slog.Logger) *Log { return &Log{log: log} }

// Failed records a failure.
func (o *Log) Failed(err error) {
	if !o.down {
		o.down, o.since, o.delay = true, time.Now(), 0
		o.log.Warn("redis unavailable; retrying with backoff", "err", err)
	}
}

// OK records a success; it reports whether it ended an outage.
func (o *Log) OK() bool {
	if o.down {
		o.down = false
		o.log.Info("redis available again", "outage", time.Since(o.since).Round(time.Millisecond))
		return true
	}
	return false
}

// Backoff is how long to wait before the next try: 50ms doubling to 2s.
func (o *Log) Backoff() time.Duration {
	if o.delay == 0 {
		o.delay = 50 * time.Millisecond
	} else {
		o.delay = min(o.delay*2, 2*time.Second)
	}
	return o.delay
}

// RedisLogger returns go-redis's logger (redis.SetLogger) writing through
// log, so that its lines come out in the process's format (JSON or text)
// instead of plain text on stderr. Its connection failures ("failed to dial
// after 5 attempts", one per command during an outage) go out at debug
// level: the outage itself is logged once, when it starts and when it ends,
// by Log. Its other lines, rare and worth seeing, go out as warnings.
func RedisLogger(log *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLog{log: log.With("component", "go-redis")}
}

type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	level := slog.LevelWarn
	if strings.Contains(format, "dial") || strings.Contains(format, "connection pool") {
		level = slog.LevelDebug
	}
	if !r.log.Enabled(ctx, level) {
		return
	}
	r.log.Log(ctx, level, strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}
