package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// localPrincipalID is the Fiber local that authentication sets to the
// caller's identity; a request with one is limited per principal, one
// without per client IP address.
const localPrincipalID = "streamrpc.principal_id"

// rateLimiter limits requests per principal or per client IP address with
// one GCRA state per caller in Redis, shared by every edge replica: one
// EVALSHA per request, pipelined with the edge's other scripts.
//
// A caller refused once is refused locally, without asking Redis, until its
// Retry-After has passed: the shared state cannot allow it earlier (its
// arrival time only moves forward), so a caller hammering a limit costs
// Redis nothing.
type rateLimiter struct {
	streams   *streams.Client
	principal streams.RateLimit
	ip        streams.RateLimit
	log       *slog.Logger

	mu      sync.Mutex
	blocked map[string]time.Time // subject -> refused until
	lastLog atomic.Int64         // unix ns of the last "Redis failed" warning
}

// maxBlocked bounds the local refusals remembered; past it, expired ones are
// dropped, then all (the shared state in Redis still limits).
const maxBlocked = 100_000

func newRateLimiter(s *streams.Client, cfg Config, log *slog.Logger) *rateLimiter {
	rl := &rateLimiter{
		streams:   s,
		principal: streams.RateLimit{Rate: cfg.RateLimitPrincipal, Burst: burstOrDefault(cfg.RateLimitPrincipalBurst, cfg.RateLimitPrincipal)},
		ip:        streams.RateLimit{Rate: cfg.RateLimitIP, Burst: burstOrDefault(cfg.RateLimitIPBurst, cfg.RateLimitIP)},
		log:       log,
		blocked:   make(map[string]time.Time),
	}
	return rl
}

// burstOrDefault: one second's worth of requests, at least 1.
func burstOrDefault(burst int, rate float64) int {
	if burst > 0 {
		return burst
	}
	return max(1, int(math.Ceil(rate)))
}

func (rl *rateLimiter) enabled() bool { return rl.principal.Rate > 0 || rl.ip.Rate > 0 }

// exempt are paths never limited: probes, and the dashboard's static files.
func exempt(path string) bool {
	return path == "/healthz" || path == "/readyz" || strings.HasPrefix(path, "/ui/static/")
}

// subject names the caller: its principal if authentication set one, else
// its address. A principal id is hashed: it may be long or hold any byte,
// and it need not appear in Redis.
func subject(c *fiber.Ctx) (scope, subj string) {
	if p, ok := c.Locals(localPrincipalID).(string); ok && p != "" {
		sum := sha256.Sum256([]byte(p))
		return "principal", "p:" + hex.EncodeToString(sum[:16])
	}
	return "ip", "ip:" + c.IP()
}

// middleware answers 429 to a caller over its limit. It fails open: with
// Redis unreachable the request goes on (and most likely answers 503 for the
// same reason), so that the limiter never makes an outage worse.
func (rl *rateLimiter) middleware(c *fiber.Ctx) error { return rl.check(c, c.Next) }

// check runs next if the caller is within its limit, and answers 429 otherwise.
func (rl *rateLimiter) check(c *fiber.Ctx, next func() error) error {
	if exempt(c.Path()) {
		return next()
	}
	scope, subj := subject(c)
	limit := rl.ip
	if scope == "principal" {
		limit = rl.principal
	}
	if limit.Rate <= 0 {
		return next()
	}
	now := time.Now()
	rl.mu.Lock()
	until, ok := rl.blocked[subj]
	if ok && !now.Before(until) {
		delete(rl.blocked, subj)
		ok = false
	}
	rl.mu.Unlock()
	if ok {
		return rl.refuse(c, scope, limit, until.Sub(now))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, err := rl.streams.RateLimit(ctx, subj, limit)
	if err != nil {
		if last := rl.lastLog.Load(); now.UnixNano()-last > int64(10*time.Second) && rl.lastLog.CompareAndSwap(last, now.UnixNano()) {
			rl.log.Warn("rate limit check failed; letting requests through", "err", err)
		}
		return next()
	}
	if d.Allowed {
		c.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
		return next()
	}
	rl.block(subj, now.Add(d.RetryAfter))
	return rl.refuse(c, scope, limit, d.RetryAfter)
}

func (rl *rateLimiter) block(subj string, until time.Time) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.blocked) >= maxBlocked {
		now := time.Now()
		for s, u := range rl.blocked {
			if !now.Before(u) {
				delete(rl.blocked, s)
			}
		}
		if len(rl.blocked) >= maxBlocked {
			clear(rl.blocked)
		}
	}
	rl.blocked[subj] = until
}

func (rl *rateLimiter) refuse(c *fiber.Ctx, scope string, limit streams.RateLimit, wait time.Duration) error {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	c.Set(fiber.HeaderRetryAfter, strconv.Itoa(secs))
	return writeError(c, newError(streams.CodeRateLimited,
		"too many requests from this "+scope+"; retry after "+strconv.Itoa(secs)+"s",
		"scope", scope, "rate_per_second", limit.Rate, "burst", limit.Burst, "retry_after_ms", wait.Milliseconds()))
}
