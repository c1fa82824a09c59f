package streams

import (
	"crypto/sha256"
	"encoding/hex"
)

// Least-privilege Redis ACL rules for the edge and for a consumer of one
// handler. They live here, beside keys.go and the scripts, because they are a
// function of exactly those: every key pattern below is one of keys.go's keys,
// and every command is one that a Client method or a script runs. Change a
// script or add a key, and change these rules in the same commit (the ACL
// integration test runs a real edge and consumer under them).
//
// Two Redis facts shape the rules (Redis 7, checked against 7.0):
//
//   - EVAL and EVALSHA are checked against every key they declare as if they
//     read and wrote it (Redis cannot know what the script does), and every
//     command a script runs is checked again, with its keys, as if the user
//     had sent it. So a user that runs a script needs read+write on all its
//     declared keys and each command the script calls.
//   - A command is allowed if the user's root permissions, or any one of its
//     selectors "(...)", allows the command together with all its keys. That
//     lets a consumer append to every edge's reply stream with XADD alone,
//     while it reads only its own handler's keys.

// aclConnection are the commands every client needs to hold a connection:
// go-redis sends HELLO (always allowed) and CLIENT SETINFO (its failure is
// ignored, so it is not granted), SELECT for a REDIS_URL with a database
// number, PING for /readyz and pub/sub health checks, and on Redis Cluster
// the slot map (go-redis reads CLUSTER SLOTS, newer versions CLUSTER SHARDS)
// and COMMAND (a Cluster client learns each command's keys from it).
var aclConnection = []string{"+ping", "+select", "+cluster|slots", "+cluster|shards", "+command"}

// edgeCommands are the commands the edge runs, directly or in its scripts
// (enqueueScript, cancelScript, forgetScript, replayScript, rateLimitScript).
var edgeCommands = []string{
	"+evalsha", "+eval",
	// calls, reply streams, dead letters, activity
	"+xadd", "+xread", "+xrange", "+xrevrange", "+xlen", "+xdel", "+xpending",
	// scheduled calls (enqueueScript, cancelScheduledScript) and limits (the admin API)
	"+hset", "+hdel", "+hlen", "+zadd", "+zrem",
	// the edge trims its own reply stream by age (TrimReplyStream)
	"+xtrim",
	// results, idempotency keys, async state, handler info, rate limits
	"+get", "+set", "+exists", "+expire", "+pexpire", "+del",
	// registry and stats
	"+smembers", "+srem", "+hgetall", "+hmget", "+zcard", "+zcount", "+zrange", "+lrange",
	// cancelScript tells consumers about cancelled calls
	"+publish",
	// rateLimitScript reads Redis's clock
	"+time",
	// enqueueScript creates the priority streams and their marker at the
	// first call with a priority (priority.go)
	"+hsetnx", "+xgroup|create",
}

// EdgeACL returns the ACL SETUSER rules (without the user name, "on" and a
// password) for an edge: every streamrpc key, the cancel channels to publish
// on, and only the commands the edge runs. The edge serves every handler, so
// it is trusted with all of them; what the rules take away is the rest of the
// server (other keys, FLUSHALL, CONFIG, KEYS, DEBUG, MODULE, ...).
func EdgeACL() []string {
	rules := []string{"resetkeys", "resetchannels", "-@all"}
	rules = append(rules, aclConnection...)
	rules = append(rules, edgeCommands...)
	return append(rules, "~"+keyPrefix+"*", "&"+keyPrefix+"*:cancel")
}

// consumerOwnCommands are what a consumer runs on its own handler's keys:
// EnsureGroup, Register, ReadCalls, ExtendLease, Heartbeat, Deregister, the
// recorder's stories, and in claimScript, rescueScript, leaseScript,
// heartbeatScript, answerScript, settleScript, poisonScript, forwardScript
// and flushScript.
var consumerOwnCommands = []string{
	"+xgroup|create", "+xgroup|delconsumer", "+xinfo|consumers", "+xreadgroup", "+xautoclaim", "+xclaim",
	"+xpending", "+xack", "+xdel", "+xadd",
	"+hset", "+hdel", "+hincrby", "+hkeys",
	"+zadd", "+zrem", "+zrange", "+zrangebyscore", "+zremrangebyscore", "+zscore", "+time",
	"+set", "+sadd", "+llen", "+rpush", "+pexpire",
	// forwardScript moves scheduled calls (their envelopes, their state);
	// limitedReadScript and the heartbeat read the limits, WaitForCalls
	// waits for a new entry, from the last one
	"+get", "+hget", "+hmget", "+xread", "+xrevrange",
	// the heartbeat reads the pause flag (pause.go)
	"+hexists",
	// claimScript, rescueScript and limitedReadScript skip priority streams
	// that do not exist (priority.go)
	"+exists",
	"+subscribe", "+unsubscribe",
}

// consumerOwnKeys are the handler's keys a consumer reads and writes, its
// calls' results and stories among them (a call id names its handler, see
// NewCallID).
func consumerOwnKeys(handler string) []string {
	return []string{
		callsKey(handler), delayedKey(handler), deadKey(handler), statsKey(handler), rateKey(handler),
		// the priority streams (priority.go)
		priorityStreamKey(handler, PriorityHigh), priorityStreamKey(handler, PriorityLow),
		activityKey(handler), consumersKey(handler), consumerInfoKey(handler),
		scheduledKey(handler), limitsKey(handler), windowMinuteKey(handler), windowQuarterKey(handler),
		// its own methods: Register writes them, the heartbeat reads the
		// operator's pause flag there
		methodsKey(handler),
		resultKey(handler + ".*"), storyKey(handler + ".*"),
	}
}

// consumerRegistryKeys a consumer only writes (Register): it never reads the
// registry, so it cannot list other handlers.
func consumerRegistryKeys(handler string) []string {
	return []string{infoKey(handler), handlersKey()}
}

// consumerReplyStreams is the pattern of the edges' reply streams, which a
// consumer appends its calls' replies to (publishReplies): write only, and
// only XADD. Edge ids are not known in advance.
var consumerReplyStreams = replyKey("*")

// ConsumerACL returns the ACL SETUSER rules (without the user name, "on" and
// a password) for a consumer of handler:
//
//   - root: its handler's keys (read+write), the handler's registry entry and
//     the handler set (write only), the handler's cancel channel, and the
//     commands of the consumer protocol;
//   - one selector for EVALSHA/EVAL, on its handler's keys and the edges'
//     reply streams (which the scripts append to on one Redis);
//   - one selector with XADD, write only, on the edges' reply streams: the
//     only command any rule allows there.
//
// What a consumer running under these rules can still do is described in
// docs/security.md ("Redis ACLs").
func ConsumerACL(handler string) ([]string, error) {
	if err := ValidateName("handler", handler); err != nil {
		return nil, err
	}
	// Handler names are [a-zA-Z0-9_.-]: nothing in them is a glob
	// character, so each key below matches only itself or, where it ends in
	// '*', only its handler's results or stories.
	rules := []string{"resetkeys", "resetchannels", "-@all"}
	rules = append(rules, aclConnection...)
	rules = append(rules, consumerOwnCommands...)
	for _, k := range consumerOwnKeys(handler) {
		rules = append(rules, "~"+k)
	}
	for _, k := range consumerRegistryKeys(handler) {
		rules = append(rules, "%W~"+k)
	}
	rules = append(rules, "&"+cancelChannel(handler))

	scripts := "(+evalsha +eval"
	for _, k := range consumerOwnKeys(handler) {
		scripts += " ~" + k
	}
	// On one Redis the settle scripts also append replies to the reply
	// streams; Redis checks a script's declared keys as read+write, but the
	// commands the script runs one by one, so XADD is all it can do there.
	rules = append(rules, scripts+" ~"+consumerReplyStreams+")")
	return append(rules, "(+xadd %W~"+consumerReplyStreams+")"), nil
}

// ACLSetUser returns the ACL SETUSER command that (re)creates user with
// rules, as arguments for a client's Do. It starts with "reset", so running
// it again after an upgrade drops permissions the rules no longer give. With
// a password the user is turned on and given the password's SHA-256 (so the
// plain password appears nowhere, not even in the command); without one it
// stays off until an operator sets one.
func ACLSetUser(user, password string, rules []string) []any {
	args := []any{"ACL", "SETUSER", user, "reset"}
	if password != "" {
		sum := sha256.Sum256([]byte(password))
		args = append(args, "on", "#"+hex.EncodeToString(sum[:]))
	}
	for _, r := range rules {
		args = append(args, r)
	}
	return args
}
