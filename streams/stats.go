package streams

import (
	"encoding/json"
	"time"
)

// The registry, statistics and activity that consumers keep in Redis, as the
// edge's API and the UI read them. Consumers add them up and write them a
// few times a second (recorder.go).

// DurationBuckets are the upper bounds, in milliseconds, of the duration
// histogram kept per method; a last bucket counts everything slower.
var DurationBuckets = []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}

// RateBucket is the width of one calls-per-second time bucket, and
// RateBuckets how many are kept (10 minutes).
const (
	RateBucket  = 10 * time.Second
	RateBuckets = 60
)

// ConsumerOnlineAfter is how long after its last heartbeat a consumer still
// counts as online in the registry. Consumers heartbeat every second by
// default (consumers.Config.HeartbeatInterval, at most 2s) and are declared
// dead, their calls claimed by live consumers, after 3s (DeadAfter).
const ConsumerOnlineAfter = 5 * time.Second

// Consumer states shown in the registry (ConsumerInfo.State).
const (
	// ConsumerRunning takes calls.
	ConsumerRunning = "running"
	// ConsumerWaitingForApp takes no calls: its app (a sidecar's upstream)
	// refuses connections or fails its ready path. Calls wait in the stream.
	ConsumerWaitingForApp = "waiting_for_app"
	// ConsumerPaused takes no calls: an operator paused its handler.
	ConsumerPaused = "paused"
)

// HandlerInfo is what a consumer registers about its handler.
type HandlerInfo struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Kind        string       `json:"kind,omitempty"` // "go" (the SDK) or "sidecar"
	Version     string       `json:"version,omitempty"`
	Concurrency int          `json:"concurrency,omitempty"`
	MaxAttempts int          `json:"max_attempts,omitempty"`
	Methods     []MethodInfo `json:"methods"`
}

// MethodInfo describes one method: the consumers SDK registers it.
type MethodInfo struct {
	Name         string          `json:"name"`
	Description  string          `json:"description,omitempty"`
	ParamsSchema json.RawMessage `json:"params_schema,omitempty"`
	ResultSchema json.RawMessage `json:"result_schema,omitempty"`
	// ResultEnforced: the consumer checks each result against ResultSchema
	// and never sends one that does not match (consumers.EnforceResult).
	ResultEnforced bool `json:"result_enforced,omitempty"`
}

// ConsumerInfo is one consumer instance of a handler.
type ConsumerInfo struct {
	Name          string    `json:"name"`
	Kind          string    `json:"kind,omitempty"`
	Version       string    `json:"version,omitempty"`
	Host          string    `json:"host,omitempty"`
	Concurrency   int       `json:"concurrency"`
	Running       int       `json:"running"`         // calls in flight at the last heartbeat
	State         string    `json:"state,omitempty"` // ConsumerRunning or ConsumerWaitingForApp
	Started       time.Time `json:"started"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Online        bool      `json:"online"`
}

// MethodStats are one method's counters since the handler's stats began.
type MethodStats struct {
	Method      string  `json:"method"`
	Calls       int64   `json:"calls"`   // answered calls (results and errors)
	Errors      int64   `json:"errors"`  // answered with an error
	Retries     int64   `json:"retries"` // retries scheduled
	DeadLetters int64   `json:"dead_letters"`
	Timeouts    int64   `json:"timeouts"`     // answered with a timeout (incl. expired while queued)
	SuccessRate float64 `json:"success_rate"` // (calls-errors)/calls, 1 when no calls
	AvgMS       float64 `json:"avg_ms"`
	P50MS       float64 `json:"p50_ms"`
	P95MS       float64 `json:"p95_ms"`
	P99MS       float64 `json:"p99_ms"`
	// Histogram counts handler runs per DurationBuckets bucket (+1 overflow).
	Histogram    []int64   `json:"histogram"`
	LastActivity time.Time `json:"last_activity,omitzero"`
}

// RatePoint is the number of calls answered in one RateBucket.
type RatePoint struct {
	Start time.Time `json:"start"`
	Calls int64     `json:"calls"`
}

// HandlerSummary is one handler at a glance: the overview's row.
type HandlerSummary struct {
	Name            string `json:"name"`
	Description     string `json:"description,omitempty"`
	Kind            string `json:"kind,omitempty"`
	Methods         int    `json:"methods"`
	ConsumersOnline int    `json:"consumers_online"`
	Backlog         int64  `json:"backlog"` // queued or running, every priority
	// BacklogHigh and BacklogLow are the part of Backlog in the priority
	// streams (priority.go); the rest is normal.
	BacklogHigh    int64       `json:"backlog_high,omitempty"`
	BacklogLow     int64       `json:"backlog_low,omitempty"`
	Pending        int64       `json:"pending"`   // running (taken by a consumer)
	Delayed        int64       `json:"delayed"`   // waiting for a retry
	Scheduled      int64       `json:"scheduled"` // waiting for their scheduled time
	DeadLetters    int64       `json:"dead_letters"`
	Totals         MethodStats `json:"totals"`           // all methods together
	CallsPerSecond float64     `json:"calls_per_second"` // over the last minute
	Rate           []RatePoint `json:"rate"`             // oldest first, RateBuckets points
	LastActivity   time.Time   `json:"last_activity,omitzero"`
	// Paused: an operator paused the handler; calls queue, consumers take none.
	Paused bool `json:"paused"`
	// Window is the stats over the window asked for (see windows.go).
	Window *WindowStats `json:"window,omitempty"`
}

// HandlerDetail is everything about one handler: its page.
type HandlerDetail struct {
	HandlerSummary
	// Limits are the handler-wide limits in effect (docs/flow-control.md).
	Limits    Limits         `json:"limits"`
	Info      HandlerInfo    `json:"info"`
	Methods   []MethodStats  `json:"method_stats"`
	Consumers []ConsumerInfo `json:"consumers"`
}

// Activity is one settled call in the live record.
type Activity struct {
	ID         string    `json:"id"`
	Handler    string    `json:"handler"`
	Method     string    `json:"method"`
	Outcome    string    `json:"outcome"` // ok, error, timeout, retry, dead, cancelled
	DurationMS float64   `json:"duration_ms"`
	Attempt    int       `json:"attempt"`
	Consumer   string    `json:"consumer"`
	Caller     string    `json:"caller,omitempty"` // the caller's address as the edge saw it
	Time       time.Time `json:"time"`
	Error      string    `json:"error,omitempty"` // the message, truncated
	// Pos is the entry's id in its handler's activity stream ("ms-seq"),
	// where a cursor may resume (NewActivityCursorAfter). Not part of the
	// recorded JSON.
	Pos string `json:"-"`
}

// StoryEvent is one step of a call's story.
type StoryEvent struct {
	Time     time.Time       `json:"time"`
	Event    string          `json:"event"` // queued, claimed, started, retried, finished, dead_lettered
	Attempt  int             `json:"attempt,omitempty"`
	Consumer string          `json:"consumer,omitempty"`
	Outcome  string          `json:"outcome,omitempty"`
	Detail   string          `json:"detail,omitempty"`
	Params   json.RawMessage `json:"params,omitempty"`  // on "queued"
	Handler  string          `json:"handler,omitempty"` // on "queued"
	Method   string          `json:"method,omitempty"`  // on "queued"
	// RequestID is the caller's X-Request-Id, on "queued": its correlation
	// id (the call's id is the story's).
	RequestID string `json:"request_id,omitempty"`
	// Partials and Progress count the streamed events the attempt sent, on
	// "finished" and "retried" (docs/streaming.md).
	Partials int `json:"partials,omitempty"`
	Progress int `json:"progress,omitempty"`
}

// CallStory is a call's status and everything that happened to it.
type CallStory struct {
	CallStatus
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"` // once done
	Error  *Error          `json:"error,omitempty"`  // once failed
	Events []StoryEvent    `json:"events"`
}
