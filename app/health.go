package app

import (
	"context"
	"encoding/json"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// readyPingTimeout bounds the PING of GET /readyz: a Redis slower than this is
// as good as down for calls, and probes must answer well within their own
// timeout (Kubernetes' default is 1s).
const readyPingTimeout = 800 * time.Millisecond

// The checks GET /readyz runs, by the names its body reports them under.
const (
	checkRedis       = "redis"        // Redis answers PING within readyPingTimeout
	checkReplyReader = "reply_reader" // the loop that hands replies to waiting calls runs
	checkDraining    = "draining"     // the edge is not shutting down
)

// checkState is one readiness check in the /readyz body.
type checkState struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// readiness is the /readyz body. Error is set when not ready, in the edge's
// usual error shape, so clients that read {"error":…} keep working.
type readiness struct {
	Status string                `json:"status"` // "ready" or "unavailable"
	Edge   string                `json:"edge"`
	Failed []string              `json:"failed,omitempty"` // names of the failed checks
	Checks map[string]checkState `json:"checks"`
	Error  *streams.Error        `json:"error,omitempty"`
}

// handleHealth serves GET /healthz: the process is alive and serving HTTP.
// It never touches Redis: a Redis outage must not get live edges restarted.
func (e *Edge) handleHealth(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

// handleReady serves GET /readyz: 200 when this edge can take calls, else 503
// with the checks that failed.
func (e *Edge) handleReady(c *fiber.Ctx) error {
	// Not c.Context(): fasthttp's RequestCtx.Done races with server shutdown.
	r := e.ready(context.Background())
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "no-store")
	if r.Error != nil {
		c.Status(fiber.StatusServiceUnavailable)
	}
	return c.Send(body)
}

// ready runs every readiness check. The cheap in-process checks come first,
// but the PING always runs so that the body tells the whole story.
func (e *Edge) ready(parent context.Context) readiness {
	r := readiness{Status: "ready", Edge: e.id, Checks: make(map[string]checkState, 3)}
	fail := func(name, why string) {
		r.Failed = append(r.Failed, name)
		r.Checks[name] = checkState{Error: why}
	}
	if e.draining.Load() {
		fail(checkDraining, "the edge is shutting down")
	} else {
		r.Checks[checkDraining] = checkState{OK: true}
	}
	if !e.replies.running.Load() {
		fail(checkReplyReader, "the reply reader is not running")
	} else {
		r.Checks[checkReplyReader] = checkState{OK: true}
	}
	ctx, cancel := context.WithTimeout(parent, readyPingTimeout)
	defer cancel()
	if err := e.streams.Redis().Ping(ctx).Err(); err != nil {
		e.metrics.redisError(opPing)
		fail(checkRedis, "redis unavailable: "+err.Error())
	} else {
		r.Checks[checkRedis] = checkState{OK: true}
	}
	if len(r.Failed) > 0 {
		r.Status = "unavailable"
		msg := "not ready:"
		for i, name := range r.Failed {
			if i > 0 {
				msg += ";"
			}
			msg += " " + r.Checks[name].Error
		}
		r.Error = newError(streams.CodeUnavailable, msg, "failed", r.Failed)
	}
	return r
}

// Drain marks the edge as shutting down: GET /readyz answers 503 from now
// on, so load balancers stop sending it new calls, while it keeps serving
// those that still come. Shutdown drains first; call Drain earlier to give
// the load balancer time to notice (e.g. on SIGTERM, then wait, then
// Shutdown).
func (e *Edge) Drain() { e.draining.Store(true) }

// Draining reports whether Drain or Shutdown was called.
func (e *Edge) Draining() bool { return e.draining.Load() }
