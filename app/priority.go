package app

import (
	"encoding/json"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Call priorities (docs/flow-control.md): Streamrpc-Priority: high|normal|low
// on HTTP, "_meta":{"priority":…} on JSON-RPC. Not Priority, which RFC 9218
// gives to browsers and proxies.
const priorityHeader = "Streamrpc-Priority"

// parsePriority reads a call's Streamrpc-Priority header: normal without one.
func parsePriority(c *fiber.Ctx) (streams.Priority, *streams.Error) {
	return checkPriority(c.Get(priorityHeader), priorityHeader)
}

// checkPriority parses a priority given as where (a header, _meta.priority).
func checkPriority(v, where string) (streams.Priority, *streams.Error) {
	p, err := streams.ParsePriority(v)
	if err != nil {
		return "", newError(streams.CodeInvalidRequest, where+" must be high, normal or low", "value", v)
	}
	return p, nil
}

// metaPriority parses a JSON-RPC request's "_meta.priority": absent is
// normal; anything but one of the three strings is an invalid request.
func metaPriority(raw json.RawMessage) (streams.Priority, *streams.Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return streams.PriorityNormal, nil
	}
	var v string
	if json.Unmarshal(raw, &v) != nil {
		v = string(raw)
	}
	return checkPriority(v, `"_meta.priority"`)
}
