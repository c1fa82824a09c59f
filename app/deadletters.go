package app

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Dead-letter routes, under a handler:
//
//	GET    /handlers/{h}/dead-letters?after=&limit=   list, oldest first
//	POST   /handlers/{h}/dead-letters/replay?limit=   replay the oldest (all, up to limit)
//	POST   /handlers/{h}/dead-letters/{dlid}/replay   replay one
//	DELETE /handlers/{h}/dead-letters/{dlid}          delete one
//	DELETE /handlers/{h}/dead-letters                 delete all
//
// A replayed call keeps its id, starts again at attempt 1 with a new deadline
// of STREAMRPC_CALL_TIMEOUT, and nobody waits for it: its result is read with
// GET /rpc/calls/{id}.
func (e *Edge) deadLetterRoutes() {
	read, admin := e.need(ScopeRead), e.need(ScopeAdmin)
	g := e.fiber.Group("/handlers/:handler/dead-letters")
	g.Get("/", read, e.listDeadLetters)
	g.Post("/replay", admin, e.replayDeadLetters)
	g.Post("/:dlid/replay", admin, e.replayDeadLetter)
	g.Delete("/:dlid", admin, e.deleteDeadLetter)
	g.Delete("/", admin, e.deleteDeadLetters)
}

func apiContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// handlerParam validates the :handler route parameter.
func handlerParam(c *fiber.Ctx) (string, *streams.Error) {
	h := c.Params("handler")
	if err := streams.ValidateName("handler", h); err != nil {
		return "", newError(streams.CodeInvalidRequest, err.Error())
	}
	return h, nil
}

// limitParam reads ?limit= (1..1000, default 100).
func limitParam(c *fiber.Ctx) (int64, *streams.Error) {
	s := c.Query("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > 1000 {
		return 0, newError(streams.CodeInvalidRequest, "limit must be a whole number from 1 to 1000", "limit", s)
	}
	return n, nil
}

func deadLetterIDParam(c *fiber.Ctx) (string, *streams.Error) {
	id := c.Params("dlid")
	if _, _, ok := parseStreamID(id); !ok {
		return "", newError(streams.CodeInvalidRequest, "dead-letter id must look like 1700000000000-0", "dead_letter_id", id)
	}
	return id, nil
}

func parseStreamID(id string) (ms, seq uint64, ok bool) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			a, err1 := strconv.ParseUint(id[:i], 10, 64)
			b, err2 := strconv.ParseUint(id[i+1:], 10, 64)
			return a, b, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

func (e *Edge) listDeadLetters(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad == nil {
		var limit int64
		if limit, bad = limitParam(c); bad == nil {
			after := c.Query("after")
			if after != "" {
				if _, _, ok := parseStreamID(after); !ok {
					return writeError(c, newError(streams.CodeInvalidRequest, "after must be a dead-letter id", "after", after))
				}
			}
			ctx, cancel := apiContext()
			defer cancel()
			list, err := e.streams.DeadLetters(ctx, h, after, limit)
			if err != nil {
				return writeError(c, unavailableError(err))
			}
			total, err := e.streams.DeadLetterCount(ctx, h)
			if err != nil {
				return writeError(c, unavailableError(err))
			}
			return c.JSON(fiber.Map{"handler": h, "total": total, "dead_letters": list})
		}
	}
	return writeError(c, bad)
}

func (e *Edge) replayDeadLetter(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	dlid, bad := deadLetterIDParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	at := time.Now()
	id, err := e.streams.ReplayDeadLetter(ctx, h, dlid, at.Add(e.cfg.CallTimeout))
	if errors.Is(err, streams.ErrNotFound) {
		return writeError(c, newError(streams.CodeNotFound, "no dead letter "+dlid+" for handler "+h, "dead_letter_id", dlid))
	}
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	e.streams.NoteDeadLetter(ctx, id, streams.ActionReplay, operator(c), at)
	c.Status(fiber.StatusAccepted)
	return c.JSON(fiber.Map{"replayed": []string{id}, "location": "/rpc/calls/" + id})
}

func (e *Edge) replayDeadLetters(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	limit, bad := limitParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	ids, err := e.streams.ReplayDeadLetters(ctx, h, time.Now().Add(e.cfg.CallTimeout), limit)
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	if ids == nil {
		ids = []string{}
	}
	c.Status(fiber.StatusAccepted)
	return c.JSON(fiber.Map{"replayed": ids})
}

func (e *Edge) deleteDeadLetter(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	dlid, bad := deadLetterIDParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	// As a bulk action of one: the call's story notes the delete.
	res, err := e.streams.DeadLettersAct(ctx, h, streams.ActionDelete, []string{dlid}, time.Time{}, operator(c))
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	if !res[0].OK {
		return writeError(c, newError(streams.CodeNotFound, "no dead letter "+dlid+" for handler "+h, "dead_letter_id", dlid))
	}
	return c.JSON(fiber.Map{"deleted": 1})
}

func (e *Edge) deleteDeadLetters(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	n, err := e.streams.DeleteDeadLetters(ctx, h)
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	return c.JSON(fiber.Map{"deleted": n})
}

func unavailableError(err error) *streams.Error {
	if errors.Is(err, streams.ErrUnavailable) {
		return newError(streams.CodeUnavailable, "redis is unavailable")
	}
	return newError(streams.CodeInternal, err.Error())
}
