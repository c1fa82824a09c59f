package app

import (
	"context"
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// The registry and stats API:
//
//	GET /handlers                      every handler at a glance
//	GET /handlers/{name}               one handler: info, methods, stats, consumers
//	DELETE /handlers/{name}            forget a handler with no consumer online and no call waiting
//	GET /activity?handler=&limit=      the latest settled calls, newest first
//	GET /events                        Server-Sent Events: activity and stats, live
func (e *Edge) registryRoutes() {
	read, admin := e.need(ScopeRead), e.need(ScopeAdmin)
	e.fiber.Get("/handlers", read, e.listHandlers)
	e.fiber.Get("/handlers/:handler", read, e.getHandler)
	e.fiber.Delete("/handlers/:handler", admin, e.forgetHandler)
	e.limitsRoutes(read, admin) // limits.go
	e.fiber.Get("/activity", read, e.listActivity)
	e.fiber.Get("/events", read, e.serveEvents)
}

func (e *Edge) listHandlers(c *fiber.Ctx) error {
	ctx, cancel := apiContext()
	defer cancel()
	w, werr := streams.ParseWindow(c.Query("window"))
	if werr != nil {
		return writeError(c, newError(streams.CodeInvalidRequest, werr.Error()))
	}
	hs, err := e.streams.HandlerSummariesIn(ctx, w)
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	if hs == nil {
		hs = []streams.HandlerSummary{}
	}
	return c.JSON(fiber.Map{"handlers": hs})
}

func (e *Edge) getHandler(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	w, werr := streams.ParseWindow(c.Query("window"))
	if werr != nil {
		return writeError(c, newError(streams.CodeInvalidRequest, werr.Error()))
	}
	d, err := e.streams.HandlerDetailIn(ctx, h, w)
	if errors.Is(err, streams.ErrNotFound) {
		return writeError(c, newError(streams.CodeNotFound, "unknown handler "+strconv.Quote(h)+": no consumer has registered it", "handler", h))
	}
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	return c.JSON(d)
}

// forgetHandler serves DELETE /handlers/{name}: the handler leaves the
// registry and its calls answer 404 again. Refused (409) while a consumer is
// online or calls wait: they would be stranded.
func (e *Edge) forgetHandler(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	err := e.streams.Forget(ctx, h)
	if errors.Is(err, streams.ErrHandlerBusy) {
		c.Status(fiber.StatusConflict)
		return c.JSON(fiber.Map{"error": fiber.Map{"code": streams.CodeInvalidRequest, "message": "cannot forget " + strconv.Quote(h) + ": " + err.Error()}})
	}
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	return c.JSON(fiber.Map{"forgotten": h})
}

func (e *Edge) listActivity(c *fiber.Ctx) error {
	h := c.Query("handler")
	if h != "" {
		if err := streams.ValidateName("handler", h); err != nil {
			return writeError(c, newError(streams.CodeInvalidRequest, err.Error()))
		}
	}
	limit, bad := limitParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	list, err := e.streams.Activity(ctx, h, limit)
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	if list == nil {
		list = []streams.Activity{}
	}
	return c.JSON(fiber.Map{"activity": list})
}

// uiSource is what the dashboard reads, over the same streams client.
type uiSource struct{ e *Edge }

func (s uiSource) Handlers(ctx context.Context) ([]streams.HandlerSummary, error) {
	return s.e.streams.HandlerSummaries(ctx)
}

func (s uiSource) Handler(ctx context.Context, name string) (streams.HandlerDetail, error) {
	return s.e.streams.HandlerDetail(ctx, name)
}

func (s uiSource) Activity(ctx context.Context, handler string, limit int) ([]streams.Activity, error) {
	return s.e.streams.Activity(ctx, handler, int64(limit))
}

func (s uiSource) Call(ctx context.Context, id string) (streams.CallStory, error) {
	return s.e.streams.CallStory(ctx, id)
}

func (s uiSource) DeadLetters(ctx context.Context, handler string, limit int) ([]streams.DeadLetter, int64, error) {
	list, err := s.e.streams.DeadLetters(ctx, handler, "", int64(limit))
	if err != nil {
		return nil, 0, err
	}
	n, err := s.e.streams.DeadLetterCount(ctx, handler)
	return list, n, err
}
