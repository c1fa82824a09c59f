package streams

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Priorities (docs/flow-control.md): a call may be high, normal or low. Each
// priority has its own stream: normal calls stay in srpc:{h}:calls, high and
// low ones go to srpc:{h}:calls:high and srpc:{h}:calls:low, created (with
// the consumer group) only when the first call with a priority arrives,
// which also sets the marker that heartbeats report, so that consumers of a
// handler that never saw a priority keep their single XREADGROUP.
//
// Outside this package an entry of a priority stream is named by its
// reference, the entry id with a one-letter prefix ("h1700000000000-0",
// "l…"); a normal call's reference is its plain entry id. Delivery.StreamID,
// Enqueued.StreamID and CallStatus.StreamID are references, so that every
// path that settles, renews, cancels or inspects a call finds its stream.

// Priority is a call's priority: PriorityNormal (""), PriorityHigh or PriorityLow.
type Priority string

// The priorities.
const (
	PriorityNormal Priority = ""
	PriorityHigh   Priority = "high"
	PriorityLow    Priority = "low"
)

// ErrBadPriority is returned for a priority other than high, normal or low.
var ErrBadPriority = fmt.Errorf("%w: priority must be high, normal or low", ErrInvalidName)

// ParsePriority parses "high", "normal" (or "") and "low".
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "", "normal":
		return PriorityNormal, nil
	case "high":
		return PriorityHigh, nil
	case "low":
		return PriorityLow, nil
	}
	return "", ErrBadPriority
}

// String is the priority's name ("normal" for PriorityNormal).
func (p Priority) String() string {
	if p == PriorityNormal {
		return "normal"
	}
	return string(p)
}

// limitPriorities is the marker field in the limits hash: set once a call
// with a priority arrived (the priority streams exist).
const limitPriorities = "priorities"

// priorityStreamKey is the stream of handler's calls of priority p.
func priorityStreamKey(handler string, p Priority) string {
	if p == PriorityNormal {
		return callsKey(handler)
	}
	return callsKey(handler) + ":" + string(p)
}

// allPriorities are the priorities in the order sweeps cover their streams:
// the priority streams first, the normal one last (rescueScript may remove a
// dead consumer that holds nothing more in the stream it sweeps).
var allPriorities = [...]Priority{PriorityHigh, PriorityLow, PriorityNormal}

// refPrefix is the prefix of a reference to an entry of p's stream.
func refPrefix(p Priority) string {
	if p == PriorityNormal {
		return ""
	}
	return string(p[0])
}

// entryRef is the reference to entry id of p's stream.
func entryRef(p Priority, id string) string { return refPrefix(p) + id }

// splitRef splits a reference into its priority and entry id.
func splitRef(ref string) (Priority, string) {
	switch {
	case strings.HasPrefix(ref, "h"):
		return PriorityHigh, ref[1:]
	case strings.HasPrefix(ref, "l"):
		return PriorityLow, ref[1:]
	}
	return PriorityNormal, ref
}

// Priority is the priority of the stream the call was delivered from.
func (d *Delivery) Priority() Priority { p, _ := splitRef(d.StreamID); return p }

// entryID is the delivery's entry id in its stream.
func (d *Delivery) entryID() string { _, id := splitRef(d.StreamID); return id }

// streamKey is the stream the delivery came from.
func (d *Delivery) streamKey() string { return priorityStreamKey(d.Handler, d.Priority()) }

// readOrder is the fixed cycle of read orders of a handler with priorities:
// 6 turns high first, 3 normal first, 1 low first, no two turns that do not
// start with high adjacent (also across the wrap), so a high call waits
// behind at most one batch of other calls, and neither normal nor low calls
// starve under a steady stream of high ones.
var readOrder = [10][3]Priority{
	{PriorityHigh, PriorityNormal, PriorityLow},
	{PriorityNormal, PriorityHigh, PriorityLow},
	{PriorityHigh, PriorityNormal, PriorityLow},
	{PriorityNormal, PriorityHigh, PriorityLow},
	{PriorityHigh, PriorityNormal, PriorityLow},
	{PriorityNormal, PriorityHigh, PriorityLow},
	{PriorityHigh, PriorityNormal, PriorityLow},
	{PriorityLow, PriorityHigh, PriorityNormal},
	{PriorityHigh, PriorityNormal, PriorityLow},
	{PriorityHigh, PriorityNormal, PriorityLow},
}

// ReadOrder is the read order of turn (any counter a reader increments at
// each read).
func ReadOrder(turn uint64) [3]Priority { return readOrder[turn%uint64(len(readOrder))] }

// ensurePriorityGroups creates the priority streams and their group if
// missing (a Redis that lost its data while the marker survived).
func (c *Client) ensurePriorityGroups(ctx context.Context, handler string) error {
	for _, p := range allPriorities {
		err := c.rdb.XGroupCreateMkStream(ctx, priorityStreamKey(handler, p), Group, "0").Err()
		if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return unavailable(err)
		}
	}
	return nil
}
