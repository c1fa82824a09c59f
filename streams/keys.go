package streams

import (
	"errors"
	"fmt"
)

// Every Redis key streamrpc uses is built in this file, and nowhere else.
//
// All keys of one handler share the hash tag {handler}, so they live in one Redis
// Cluster slot and a Lua script may touch several of them. Keys that belong to a
// call (its result) or to an edge (its reply stream) carry their own tag.
//
//	key                          type     holds
//	srpc:handlers                set      names of every handler a consumer registered
//	srpc:{h}:calls               stream   the handler's queue; consumer group "workers"
//	srpc:{h}:methods             hash     method name -> JSON MethodInfo (the registry);
//	                                      fields starting with '$' are handler settings
//	srpc:{h}:delayed             zset     calls waiting to be retried, scored by due time
//	srpc:{h}:dead                stream   dead letters: calls that failed every attempt
//	srpc:{h}:idem:{sha256}       string   an Idempotency-Key's call id and params fingerprint
//	srpc:{h}:info                string   JSON HandlerInfo the consumers registered
//	srpc:{h}:consumers           zset     consumer name -> last heartbeat (ms)
//	srpc:{h}:consumer-info       hash     consumer name -> JSON ConsumerInfo
//	srpc:{h}:stats               hash     "<method>:<counter>" -> count (calls, errors, ...)
//	srpc:{h}:rate                hash     "<bucket>" and "<method>:<bucket>" -> calls per 10s
//	srpc:{h}:activity            stream   the latest settled calls (capped)
//	srpc:story:{id}              list     a call's story: JSON events, kept for the result TTL
//	srpc:result:{id}             string   a call's reply, kept for the result TTL
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

// ValidateID checks a call id (or an edge id) before it becomes part of a key.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("%w: call id must be 1 to 64 bytes", ErrInvalidName)
	}
	for i := 0; i < len(id); i++ {
		if !nameByte(id[i]) {
			return fmt.Errorf("%w: call id %q has %q at byte %d", ErrInvalidName, id, id[i], i)
		}
	}
	return nil
}

func handlersKey() string              { return keyPrefix + "handlers" }
func callsKey(handler string) string   { return keyPrefix + "{" + handler + "}:calls" }
func methodsKey(handler string) string { return keyPrefix + "{" + handler + "}:methods" }
func delayedKey(handler string) string { return keyPrefix + "{" + handler + "}:delayed" }
func deadKey(handler string) string    { return keyPrefix + "{" + handler + "}:dead" }
func infoKey(handler string) string    { return keyPrefix + "{" + handler + "}:info" }
func statsKey(handler string) string   { return keyPrefix + "{" + handler + "}:stats" }
func rateKey(handler string) string    { return keyPrefix + "{" + handler + "}:rate" }
func activityKey(handler string) string {
	return keyPrefix + "{" + handler + "}:activity"
}
func consumersKey(handler string) string { return keyPrefix + "{" + handler + "}:consumers" }
func consumerInfoKey(handler string) string {
	return keyPrefix + "{" + handler + "}:consumer-info"
}
func storyKey(id string) string { return keyPrefix + "story:{" + id + "}" }
func idemKey(handler, keyHash string) string {
	return keyPrefix + "{" + handler + "}:idem:" + keyHash
}

// cancelChannel is a pub/sub channel, not a key: the edge publishes the ids
// of running calls their callers cancelled.
func cancelChannel(handler string) string { return keyPrefix + "{" + handler + "}:cancel" }

// rateLimitKey is one rate-limited caller's key; its own hash tag, as it
// belongs to no handler.
func rateLimitKey(subject string) string { return keyPrefix + "{rl:" + subject + "}" }

func resultKey(id string) string    { return keyPrefix + "result:{" + id + "}" }
func replyKey(edgeID string) string { return keyPrefix + "edge:{" + edgeID + "}:replies" }
