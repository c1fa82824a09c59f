package client

import (
	"testing"

	"github.com/streamrpc/streamrpc/streams"
)

// The client repeats the wire codes so that callers do not import go-redis
// through streams; this test keeps the two lists equal.
func TestCodesMatchTheEdgeTable(t *testing.T) {
	ours := map[string][2]int{
		"parse_error":            {CodeParseError, streams.CodeParseError},
		"invalid_request":        {CodeInvalidRequest, streams.CodeInvalidRequest},
		"method_not_found":       {CodeMethodNotFound, streams.CodeMethodNotFound},
		"invalid_params":         {CodeInvalidParams, streams.CodeInvalidParams},
		"internal_error":         {CodeInternal, streams.CodeInternal},
		"handler_error":          {CodeHandlerError, streams.CodeHandlerError},
		"timeout":                {CodeTimeout, streams.CodeTimeout},
		"unavailable":            {CodeUnavailable, streams.CodeUnavailable},
		"body_too_large":         {CodeBodyTooLarge, streams.CodeBodyTooLarge},
		"unsupported_media_type": {CodeUnsupportedMedia, streams.CodeUnsupportedMedia},
		"overloaded":             {CodeOverloaded, streams.CodeOverloaded},
		"cancelled":              {CodeCancelled, streams.CodeCancelled},
		"dead_lettered":          {CodeDeadLettered, streams.CodeDeadLettered},
		"not_found":              {CodeNotFound, streams.CodeNotFound},
		"idempotency_mismatch":   {CodeIdempotencyMismatch, streams.CodeIdempotencyMismatch},
		"unauthenticated":        {CodeUnauthenticated, streams.CodeUnauthenticated},
		"forbidden":              {CodeForbidden, streams.CodeForbidden},
		"rate_limited":           {CodeRateLimited, streams.CodeRateLimited},
	}
	if len(ours) != len(streams.Codes) {
		t.Fatalf("the client knows %d codes, the edge's table has %d", len(ours), len(streams.Codes))
	}
	for _, c := range streams.Codes {
		pair, ok := ours[c.Name]
		if !ok || pair[0] != pair[1] || pair[1] != c.Code {
			t.Errorf("code %s: client %v, edge table %d", c.Name, pair, c.Code)
		}
	}
}
