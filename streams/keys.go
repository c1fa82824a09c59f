package streams

import (
	"errors"
	"fmt"
	"strings"

	"github.com/oklog/ulid/v2"
)

// Every Redis key streamrpc uses is built in this file, and nowhere else.
//
// All keys of one handler share the hash tag {handler}, so they live in one Redis
// Cluster slot and a Lua script may touch several of them. A call's result and
// story are keys of its handler too: a call id names its handler
// ("<handler>.<ulid>", see NewCallID), so they can be found from the id alone.
// Only an edge's reply stream, which collects replies from every handler, has
// a tag of its own; consumers write to it with a command of its own, after the
// script that settled the calls (see sendAnswers).
//
//	key                          type     holds
//	srpc:handlers                set      names of every handler a consumer registered
//	srpc:{h}:calls               stream   the handler's queue; consumer group "workers"
//	srpc:{h}:methods             hash     method name -> JSON MethodInfo (the registry);
//	                                      fields starting with '$' are handler settings
//	srpc:{h}:delayed             zset     calls waiting to be retried (member: the envelope as
//	                                      a JSON array) or scheduled (member: the call id),
//	                                      scored by due time (ms)
//	srpc:{h}:scheduled           hash     scheduled call id -> its envelope (JSON array)
//	srpc:{h}:limits              hash     limits set through the admin API (max_concurrency,
//	                                      rate) and the rate's GCRA state (tat, µs)
//	srpc:{h}:dead                stream   dead letters: calls that failed every attempt
//	srpc:{h}:idem:{sha256}       string   an Idempotency-Key's call id and params fingerprint
//	srpc:{h}:info                string   JSON HandlerInfo the consumers registered
//	srpc:{h}:consumers           zset     consumer name -> last heartbeat (ms, Redis's clock)
//	srpc:{h}:consumer-info       hash     consumer name -> JSON ConsumerInfo
//	srpc:{h}:stats               hash     "<method>:<counter>" -> count (calls, errors, ...)
//	srpc:{h}:rate                hash     "<bucket>" and "<method>:<bucket>" -> calls per 10s
//	srpc:{h}:activity            stream   the latest settled calls (capped)
//	srpc:{h}:win-m, :win-q       hash     "<bucket>:<counter>" -> count per minute (last hour)
//	                                      and per quarter hour (last day): windows.go
//	srpc:{h}:story:<ulid>        list     a call's story: JSON events, kept for the result TTL
//	srpc:{h}:result:<ulid>       string   a call's reply, kept for the result TTL
//	srpc:{h}:events:<ulid>       stream   an async call's streamed events (capped), kept for the result TTL
//	srpc:edge:{e}:replies        stream   replies for the calls edge e is waiting on
//	srpc:{h}:cancel              channel  (pub/sub) ids of running calls to cancel
//	srpc:{rl:<subject>}          string   a caller's rate limit state (GCRA arrival time, µs),
//	                                      expiring when idle; subject "ip:<addr>" or "p:<hash>"
const keyPrefix = "srpc:"

// Group is the consumer group every consumer of a handler joins.
const Group = "workers"

// MaxNameLen bounds handler and method names before they reach a key.
const MaxNameLen = 64

// ErrInvalidName is returned for a handler or method name that may not be used.
var ErrInvalidName = errors.New("invalid name")

// ValidateName checks a handler or method name: 1 to MaxNameLen characters out
// of [a-zA-Z0-9_.-]. It runs before any name becomes part of a Redis key.
func ValidateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalidName, kind)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %s name is %d bytes, the limit is %d", ErrInvalidName, kind, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("%w: %s name %q has %q at byte %d; allowed are letters, digits, '_', '.' and '-'",
				ErrInvalidName, kind, name, name[i], i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// MaxIDLen bounds call and edge ids: a handler name, a dot and a ULID fit.
const MaxIDLen = MaxNameLen + 1 + 26

// ValidateID checks an edge id, or the characters of a call id, before it
// becomes part of a key.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("%w: id must be 1 to %d bytes", ErrInvalidName, MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !nameByte(id[i]) {
			return fmt.Errorf("%w: id %q has %q at byte %d", ErrInvalidName, id, id[i], i)
		}
	}
	return nil
}

// NewCallID returns a new call id for handler: "<handler>.<ULID>". The
// handler part puts the call's result and story in its handler's hash slot,
// so one script settles a call on Redis Cluster, and lets GET
// /rpc/calls/{id} find them from the id alone. The ULID part sorts by time.
func NewCallID(handler string) string { return handler + "." + ulid.Make().String() }

// ValidateCallID checks a call id and returns its handler: the part before
// the last dot, a valid handler name; after it, 1 to 26 id characters.
func ValidateCallID(id string) (handler string, err error) {
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("call id: %w", err)
	}
	dot := strings.LastIndexByte(id, '.')
	if dot < 0 || len(id)-dot-1 < 1 || len(id)-dot-1 > 26 {
		return "", fmt.Errorf("%w: call id %q is not <handler>.<id>", ErrInvalidName, id)
	}
	if err := ValidateName("handler", id[:dot]); err != nil {
		return "", fmt.Errorf("%w: call id %q names no valid handler", ErrInvalidName, id)
	}
	return id[:dot], nil
}

// splitCallID is ValidateCallID for ids already validated: handler and the
// id's own part. An invalid id yields an empty handler, whose keys no script
// of a handler declares.
func splitCallID(id string) (handler, own string) {
	dot := strings.LastIndexByte(id, '.')
	if dot < 0 {
		return "", id
	}
	return id[:dot], id[dot+1:]
}

func handlersKey() string              { return keyPrefix + "handlers" }
func callsKey(handler string) string   { return keyPrefix + "{" + handler + "}:calls" }
func methodsKey(handler string) string { return keyPrefix + "{" + handler + "}:methods" }
func delayedKey(handler string) string { return keyPrefix + "{" + handler + "}:delayed" }
func deadKey(handler string) string    { return keyPrefix + "{" + handler + "}:dead" }
func limitsKey(handler string) string  { return keyPrefix + "{" + handler + "}:limits" }
func scheduledKey(handler string) string {
	return keyPrefix + "{" + handler + "}:scheduled"
}
func infoKey(handler string) string  { return keyPrefix + "{" + handler + "}:info" }
func statsKey(handler string) string { return keyPrefix + "{" + handler + "}:stats" }
func rateKey(handler string) string  { return keyPrefix + "{" + handler + "}:rate" }
func windowMinuteKey(handler string) string {
	return keyPrefix + "{" + handler + "}:win-m"
}
func windowQuarterKey(handler string) string {
	return keyPrefix + "{" + handler + "}:win-q"
}
func activityKey(handler string) string {
	return keyPrefix + "{" + handler + "}:activity"
}
func consumersKey(handler string) string { return keyPrefix + "{" + handler + "}:consumers" }
func consumerInfoKey(handler string) string {
	return keyPrefix + "{" + handler + "}:consumer-info"
}

// storyKey and resultKey are keys of the call's handler: see NewCallID.
func storyKey(callID string) string {
	h, own := splitCallID(callID)
	return keyPrefix + "{" + h + "}:story:" + own
}
func resultKey(callID string) string {
	h, own := splitCallID(callID)
	return keyPrefix + "{" + h + "}:result:" + own
}
func eventsKey(callID string) string {
	h, own := splitCallID(callID)
	return keyPrefix + "{" + h + "}:events:" + own
}
func idemKey(handler, keyHash string) string {
	return keyPrefix + "{" + handler + "}:idem:" + keyHash
}

// cancelChannel is a pub/sub channel, not a key: the edge publishes the ids
// of running calls their callers cancelled.
func cancelChannel(handler string) string { return keyPrefix + "{" + handler + "}:cancel" }

// rateLimitKey is one rate-limited caller's key; its own hash tag, as it
// belongs to no handler.
func rateLimitKey(subject string) string { return keyPrefix + "{rl:" + subject + "}" }

// replyKey is an edge's reply stream, in a slot of its own.
func replyKey(edgeID string) string { return keyPrefix + "edge:{" + edgeID + "}:replies" }
