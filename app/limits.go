package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Handler-wide limits through the admin API (docs/flow-control.md):
//
//	GET    /handlers/{name}/limits   registered, API and effective limits (read)
//	PUT    /handlers/{name}/limits   {"max_concurrency":3,"rate":10}: set (admin);
//	                                 null clears one, an absent field is unchanged
//	DELETE /handlers/{name}/limits   clear both: the registered limits apply (admin)
func (e *Edge) limitsRoutes(read, admin fiber.Handler) {
	e.fiber.Get("/handlers/:handler/limits", read, e.getLimits)
	e.fiber.Put("/handlers/:handler/limits", admin, e.putLimits)
	e.fiber.Delete("/handlers/:handler/limits", admin, e.deleteLimits)
}

// registeredHandler reads the handler path parameter of a handler some
// consumer registered.
func (e *Edge) registeredHandler(c *fiber.Ctx) (string, *streams.Error) {
	h, bad := handlerParam(c)
	if bad != nil {
		return "", bad
	}
	ctx, cancel := apiContext()
	defer cancel()
	m, err := e.streams.Methods(ctx, h)
	if err != nil {
		return "", unavailableError(err)
	}
	if len(m) == 0 {
		return "", newError(streams.CodeNotFound, "unknown handler "+strconv.Quote(h)+": no consumer has registered it", "handler", h)
	}
	return h, nil
}

func (e *Edge) getLimits(c *fiber.Ctx) error {
	h, bad := e.registeredHandler(c)
	if bad != nil {
		return writeError(c, bad)
	}
	return e.writeLimits(c, h)
}

func (e *Edge) writeLimits(c *fiber.Ctx, h string) error {
	ctx, cancel := apiContext()
	defer cancel()
	ls, err := e.streams.HandlerLimits(ctx, h)
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	return c.JSON(ls)
}

func (e *Edge) putLimits(c *fiber.Ctx) error {
	h, bad := e.registeredHandler(c)
	if bad != nil {
		return writeError(c, bad)
	}
	u, bad := parseLimitsUpdate(c.Body())
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	if err := e.streams.SetHandlerLimits(ctx, h, u); err != nil {
		if errors.Is(err, streams.ErrBadLimit) {
			return writeError(c, newError(streams.CodeInvalidRequest, err.Error()))
		}
		return writeError(c, unavailableError(err))
	}
	return e.writeLimits(c, h)
}

func (e *Edge) deleteLimits(c *fiber.Ctx) error {
	h, bad := e.registeredHandler(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	if err := e.streams.SetHandlerLimits(ctx, h, streams.LimitsUpdate{ClearMaxConcurrency: true, ClearRate: true}); err != nil {
		return writeError(c, unavailableError(err))
	}
	return e.writeLimits(c, h)
}

// parseLimitsUpdate reads a PUT body: an object with max_concurrency (an
// integer ≥ 0) and/or rate (calls per second ≥ 0), each possibly null.
func parseLimitsUpdate(body []byte) (streams.LimitsUpdate, *streams.Error) {
	var u streams.LimitsUpdate
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return u, newError(streams.CodeInvalidRequest, `the body must be a JSON object like {"max_concurrency":3,"rate":10}`)
	}
	if len(fields) == 0 {
		return u, newError(streams.CodeInvalidRequest, "set max_concurrency, rate, or both (null clears one)")
	}
	for name, raw := range fields {
		null := bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
		switch name {
		case "max_concurrency":
			if null {
				u.ClearMaxConcurrency = true
				continue
			}
			var n int64
			if json.Unmarshal(raw, &n) != nil {
				return u, newError(streams.CodeInvalidRequest, "max_concurrency must be a whole number (0: no limit) or null", "value", string(raw))
			}
			u.MaxConcurrency = &n
		case "rate":
			if null {
				u.ClearRate = true
				continue
			}
			var f float64
			if json.Unmarshal(raw, &f) != nil {
				return u, newError(streams.CodeInvalidRequest, "rate must be a number of calls per second (0: no limit) or null", "value", string(raw))
			}
			u.Rate = &f
		default:
			return u, newError(streams.CodeInvalidRequest, "unknown field "+strconv.Quote(name)+": the limits are max_concurrency and rate")
		}
	}
	return u, nil
}
