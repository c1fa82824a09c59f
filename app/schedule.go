package app

import (
	"math"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Delayed calls: Prefer: respond-async with Schedule-At (RFC 3339) or
// Schedule-In (seconds) runs the call at that time (docs/flow-control.md).

// parseSchedule reads a call's Schedule-At or Schedule-In header: the zero
// time when it has neither. A time in the past (or Schedule-In: 0) is due at
// once; more than streams.MaxScheduleAhead ahead is refused.
func parseSchedule(c *fiber.Ctx) (time.Time, *streams.Error) {
	at, in := c.Get("Schedule-At"), c.Get("Schedule-In")
	if at == "" && in == "" {
		return time.Time{}, nil // a plain call: not even a clock read
	}
	now := time.Now()
	var due time.Time
	switch {
	case at != "" && in != "":
		return time.Time{}, newError(streams.CodeInvalidRequest, "send Schedule-At or Schedule-In, not both")
	case at != "":
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return time.Time{}, newError(streams.CodeInvalidRequest, "Schedule-At must be an RFC 3339 time like 2026-01-02T15:04:05Z", "value", at)
		}
		due = t
	default:
		secs, err := strconv.ParseFloat(in, 64)
		if err != nil || secs < 0 || math.IsNaN(secs) || math.IsInf(secs, 0) || secs > streams.MaxScheduleAhead.Seconds() {
			return time.Time{}, newError(streams.CodeInvalidRequest, "Schedule-In must be a number of seconds from 0 to "+strconv.Itoa(int(streams.MaxScheduleAhead.Seconds())), "value", in)
		}
		due = now.Add(time.Duration(secs * float64(time.Second)))
	}
	if due.Sub(now) > streams.MaxScheduleAhead {
		return time.Time{}, newError(streams.CodeInvalidRequest, "a call may be scheduled at most "+streams.MaxScheduleAhead.String()+" ahead", "value", at)
	}
	if due.Before(now) {
		return now, nil
	}
	return due, nil
}

// errSyncSchedule refuses a schedule on a call whose caller waits for it.
func errSyncSchedule() *streams.Error {
	return newError(streams.CodeInvalidRequest, "a scheduled call must be asynchronous: send Prefer: respond-async with Schedule-At or Schedule-In")
}
