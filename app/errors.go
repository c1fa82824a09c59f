package app

import (
	"encoding/json"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// writeError answers with the error body {"error":{code,message,data}} and
// the status the code table gives.
func writeError(c *fiber.Ctx, e *streams.Error) error {
	if retryable(e.Code) && len(c.Response().Header.Peek(fiber.HeaderRetryAfter)) == 0 {
		c.Set(fiber.HeaderRetryAfter, "1")
	}
	if c.Path() == jsonrpcPath {
		return writeJSONRPCError(c, e) // the same error, as a JSON-RPC response
	}
	body, err := json.Marshal(struct {
		Error *streams.Error `json:"error"`
	}{e})
	if err != nil {
		body = []byte(`{"error":{"code":-32603,"message":"error encoding failed"}}`)
	}
	c.Status(streams.HTTPStatus(e.Code))
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
}

// retryable codes are answered with Retry-After (1 second unless the route
// set its own): Redis unavailable (503), overloaded (503), rate limited (429).
func retryable(code int) bool {
	switch code {
	case streams.CodeUnavailable, streams.CodeOverloaded, streams.CodeRateLimited:
		return true
	}
	return false
}

// errorData builds an error's data member from key/value pairs.
func errorData(kv ...any) json.RawMessage {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		m[k] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

func newError(code int, msg string, kv ...any) *streams.Error {
	e := streams.NewError(code, msg)
	if len(kv) > 0 {
		e.Data = errorData(kv...)
	}
	return e
}

// fiberError turns the errors Fiber itself raises (body over the limit, no
// route) into the same JSON error body as everything else.
func (e *Edge) fiberError(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusRequestEntityTooLarge:
			tooLarge := newError(streams.CodeBodyTooLarge, "request body is over the limit", "limit_bytes", e.cfg.MaxBody)
			if _, ok := e.chunkedJSONRPC.LoadAndDelete(&c.Context().Request.Header); ok {
				// fasthttp reset the request of a chunked body over the
				// limit: its path is gone, but headerReceived saw it.
				return writeJSONRPCError(c, tooLarge)
			}
			return writeError(c, tooLarge)
		case fiber.StatusNotFound:
			return writeError(c, newError(streams.CodeNotFound, "no such route: "+c.Method()+" "+c.Path()))
		case fiber.StatusMethodNotAllowed:
			c.Status(fe.Code)
			return c.JSON(fiber.Map{"error": fiber.Map{"code": streams.CodeInvalidRequest, "message": "method not allowed: " + c.Method() + " " + c.Path()}})
		}
		if fe.Code >= 400 && fe.Code < 500 {
			c.Status(fe.Code)
			return c.JSON(fiber.Map{"error": fiber.Map{"code": streams.CodeInvalidRequest, "message": fe.Message}})
		}
	}
	e.log.Error("request failed", "path", c.Path(), "err", err)
	return writeError(c, streams.NewError(streams.CodeInternal, "internal error"))
}
