package app

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// The operator's routes, under a handler:
//
//	GET  /handlers/{h}/calls?state=&method=&outcome=&limit=&cursor=   calls by state (read)
//	POST /handlers/{h}/pause, /resume                                  consumers stop / start taking calls
//	POST /handlers/{h}/calls/{id}/cancel?stream_id=                    cancel a queued or running call
//	POST /handlers/{h}/calls/{id}/run-now                              move a delayed call to the queue
//	POST /handlers/{h}/purge       {"confirm":"<h>"}                   cancel every queued call
//	POST /handlers/{h}/dead-letters/bulk {"action":"replay|delete","ids":[…]}
//
// Every action needs the admin scope (and, from the dashboard's session, its
// CSRF token: see auth.go), and lands in the stories of the calls it touched.
func (e *Edge) operateRoutes() {
	read, admin := e.need(ScopeRead), e.need(ScopeAdmin)
	e.fiber.Get("/handlers/:handler/calls", read, e.listCalls)
	e.fiber.Post("/handlers/:handler/pause", admin, e.pauseHandler(true))
	e.fiber.Post("/handlers/:handler/resume", admin, e.pauseHandler(false))
	e.fiber.Post("/handlers/:handler/calls/:id/cancel", admin, e.cancelByOperator)
	e.fiber.Post("/handlers/:handler/calls/:id/run-now", admin, e.runNow)
	e.fiber.Post("/handlers/:handler/purge", admin, e.purge)
	e.fiber.Post("/handlers/:handler/dead-letters/bulk", admin, e.bulkDeadLetters)
}

// operator names who acts, for the calls' stories: "api_key ops-1"; "" with
// authentication off.
func operator(c *fiber.Ctx) string {
	if p := PrincipalOf(c); p != nil {
		return p.Method + " " + p.ID
	}
	return ""
}

func (e *Edge) listCalls(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	limit, bad := limitParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	q := streams.CallQuery{State: c.Query("state"), Method: c.Query("method"), Outcome: c.Query("outcome"), Limit: limit, Cursor: c.Query("cursor")}
	if q.State == "" {
		return writeError(c, newError(streams.CodeInvalidRequest, "state is required: one of "+statesList(), "states", streams.CallListStates()))
	}
	if q.Method != "" {
		if err := streams.ValidateName("method", q.Method); err != nil {
			return writeError(c, newError(streams.CodeInvalidRequest, err.Error()))
		}
	}
	ctx, cancel := apiContext()
	defer cancel()
	page, err := e.streams.ListCalls(ctx, h, q)
	if errors.Is(err, streams.ErrBadQuery) {
		return writeError(c, newError(streams.CodeInvalidRequest, err.Error(), "states", streams.CallListStates()))
	}
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	return c.JSON(page)
}

func statesList() string {
	s := ""
	for i, st := range streams.CallListStates() {
		if i > 0 {
			s += ", "
		}
		s += st
	}
	return s
}

func (e *Edge) pauseHandler(pause bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		h, bad := handlerParam(c)
		if bad != nil {
			return writeError(c, bad)
		}
		ctx, cancel := apiContext()
		defer cancel()
		err := e.streams.Resume(ctx, h)
		if pause {
			err = e.streams.Pause(ctx, h)
		}
		if errors.Is(err, streams.ErrNotFound) {
			return writeError(c, newError(streams.CodeNotFound, "unknown handler "+strconv.Quote(h)+": no consumer has registered it", "handler", h))
		}
		if err != nil {
			return writeError(c, unavailableError(err))
		}
		return c.JSON(fiber.Map{"handler": h, "paused": pause})
	}
}

// handlerCallParams validates the :handler and :id route parameters: a call
// of that handler.
func handlerCallParams(c *fiber.Ctx) (handler, id string, bad *streams.Error) {
	handler, bad = handlerParam(c)
	if bad != nil {
		return "", "", bad
	}
	id = c.Params("id")
	h, err := streams.ValidateCallID(id)
	if err != nil {
		return "", "", newError(streams.CodeInvalidRequest, err.Error(), "id", id)
	}
	if h != handler {
		return "", "", newError(streams.CodeInvalidRequest, "call "+id+" is not a call of handler "+handler, "id", id)
	}
	return handler, id, nil
}

func conflict(c *fiber.Ctx, msg string, kv ...any) error {
	e := newError(streams.CodeInvalidRequest, msg, kv...)
	c.Status(fiber.StatusConflict)
	return c.JSON(fiber.Map{"error": e})
}

// cancelByOperator cancels a queued or running call. Its stream entry comes
// from ?stream_id= (the state lists give it), else from the call's async
// state.
func (e *Edge) cancelByOperator(c *fiber.Ctx) error {
	h, id, bad := handlerCallParams(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	streamID := c.Query("stream_id")
	if streamID == "" {
		st, err := e.streams.CallStatus(ctx, id)
		switch {
		case errors.Is(err, streams.ErrNotFound):
			return writeError(c, newError(streams.CodeNotFound, "call "+id+" is unknown, or a sync call: give its stream_id (GET /handlers/"+h+"/calls lists it)", "id", id))
		case err != nil:
			return writeError(c, unavailableError(err))
		case st.Final():
			return conflict(c, "call "+id+" is "+string(st.State)+": only a queued or running call can be cancelled", "id", id, "state", st.State)
		}
		streamID = st.StreamID
	} else if _, _, ok := parseStreamID(streamID); !ok {
		return writeError(c, newError(streams.CodeInvalidRequest, "stream_id must look like 1700000000000-0", "stream_id", streamID))
	}
	was, err := e.streams.CancelByOperator(ctx, h, id, streamID, operator(c))
	switch {
	case errors.Is(err, streams.ErrNotFound):
		return writeError(c, newError(streams.CodeNotFound, "call "+id+" is not in the queue of "+h+" (settled, or waiting for a retry)", "id", id))
	case errors.Is(err, streams.ErrNotCancellable):
		return conflict(c, "call "+id+" was settled meanwhile", "id", id)
	case err != nil:
		return writeError(c, unavailableError(err))
	}
	return c.JSON(fiber.Map{"id": id, "was": was, "cancelled": was == streams.StateQueued, "cancel_requested": was == streams.StateRunning})
}

func (e *Edge) runNow(c *fiber.Ctx) error {
	h, id, bad := handlerCallParams(c)
	if bad != nil {
		return writeError(c, bad)
	}
	ctx, cancel := apiContext()
	defer cancel()
	err := e.streams.RunNow(ctx, h, id, operator(c))
	if errors.Is(err, streams.ErrNotFound) {
		return writeError(c, newError(streams.CodeNotFound, "call "+id+" is not waiting for a retry", "id", id))
	}
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	return c.JSON(fiber.Map{"id": id, "queued": true})
}

// purgeLimit bounds one purge: a bigger queue is purged by repeating it.
const purgeLimit = 100_000

func (e *Edge) purge(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	var body struct {
		Confirm string `json:"confirm"`
	}
	if err := c.BodyParser(&body); err != nil || body.Confirm != h {
		return writeError(c, newError(streams.CodeInvalidRequest, `purging cancels every queued call: confirm with {"confirm":"`+h+`"}`, "handler", h))
	}
	ctx, cancel := apiContext()
	defer cancel()
	n, err := e.streams.Purge(ctx, h, operator(c), purgeLimit)
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	return c.JSON(fiber.Map{"handler": h, "purged": n})
}

func (e *Edge) bulkDeadLetters(c *fiber.Ctx) error {
	h, bad := handlerParam(c)
	if bad != nil {
		return writeError(c, bad)
	}
	var body struct {
		Action string   `json:"action"`
		IDs    []string `json:"ids"`
	}
	if err := c.BodyParser(&body); err != nil {
		return writeError(c, newError(streams.CodeParseError, "body must be JSON: "+err.Error()))
	}
	action := streams.DeadLetterAction(body.Action)
	if action != streams.ActionReplay && action != streams.ActionDelete {
		return writeError(c, newError(streams.CodeInvalidRequest, `action must be "replay" or "delete"`, "action", body.Action))
	}
	if len(body.IDs) == 0 || len(body.IDs) > 1000 {
		return writeError(c, newError(streams.CodeInvalidRequest, "ids must list 1 to 1000 dead-letter ids"))
	}
	ctx, cancel := apiContext()
	defer cancel()
	res, err := e.streams.DeadLettersAct(ctx, h, action, body.IDs, time.Now().Add(e.cfg.CallTimeout), operator(c))
	if err != nil {
		return writeError(c, unavailableError(err))
	}
	done := 0
	for _, r := range res {
		if r.OK {
			done++
		}
	}
	return c.JSON(fiber.Map{"action": action, "done": done, "results": res})
}

// The dashboard's state lists and time windows (ui.Operations).

func (s uiSource) ListCalls(ctx context.Context, handler string, q streams.CallQuery) (streams.CallPage, error) {
	return s.e.streams.ListCalls(ctx, handler, q)
}

func (s uiSource) HandlersIn(ctx context.Context, w streams.WindowDef) ([]streams.HandlerSummary, error) {
	return s.e.streams.HandlerSummariesIn(ctx, w)
}

func (s uiSource) HandlerIn(ctx context.Context, name string, w streams.WindowDef) (streams.HandlerDetail, error) {
	return s.e.streams.HandlerDetailIn(ctx, name, w)
}
