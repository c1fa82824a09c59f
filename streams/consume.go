package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// HandlerSettings are a handler's settings that the edge enforces.
type HandlerSettings struct {
	// MaxBacklog refuses calls once this many are queued or running (0: the
	// edge's own limit applies).
	MaxBacklog int64
	// Limits are the handler's registered limits across every consumer; a
	// limit set through the admin API wins (SetHandlerLimits).
	Limits Limits
}

// Register records that info.Name serves info.Methods, so that the edge
// accepts calls to them, and what the registry shows of it. Consumers call it
// on start.
func (c *Client) Register(ctx context.Context, info HandlerInfo, settings HandlerSettings) error {
	if err := ValidateName("handler", info.Name); err != nil {
		return err
	}
	if len(info.Methods) == 0 {
		return fmt.Errorf("%w: handler %q registers no methods", ErrInvalidName, info.Name)
	}
	fields := make([]any, 0, 2*len(info.Methods)+2)
	for _, m := range info.Methods {
		if err := ValidateName("method", m.Name); err != nil {
			return err
		}
		fields = append(fields, m.Name, mustJSON(m))
	}
	meta := info
	meta.Methods = nil // kept in the methods hash
	pipe := c.rdb.Pipeline()
	if settings.MaxBacklog > 0 {
		fields = append(fields, settingMaxBacklog, settings.MaxBacklog)
	} else {
		pipe.HDel(ctx, methodsKey(info.Name), settingMaxBacklog)
	}
	if err := settings.Limits.Validate(); err != nil {
		return err
	}
	// The registered limits (limits.go): rewritten at every registration.
	var limits []any
	var unset []string
	if settings.Limits.MaxConcurrency > 0 {
		limits = append(limits, settingMaxConcurrency, settings.Limits.MaxConcurrency)
	} else {
		unset = append(unset, settingMaxConcurrency)
	}
	if settings.Limits.Rate > 0 {
		limits = append(limits, settingRate, strconv.FormatFloat(settings.Limits.Rate, 'g', -1, 64))
	} else {
		unset = append(unset, settingRate)
	}
	if len(unset) > 0 {
		pipe.HDel(ctx, limitsKey(info.Name), unset...)
	}
	if len(limits) > 0 {
		pipe.HSet(ctx, limitsKey(info.Name), limits...)
	}
	pipe.HSet(ctx, methodsKey(info.Name), fields...)
	pipe.Set(ctx, infoKey(info.Name), mustJSON(meta), 0)
	pipe.SAdd(ctx, handlersKey(), info.Name)
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// EnsureGroup creates the handler's stream and consumer group if missing. The
// group starts at the stream's beginning, so calls enqueued before the first
// consumer are served.
func (c *Client) EnsureGroup(ctx context.Context, handler string) error {
	err := c.rdb.XGroupCreateMkStream(ctx, callsKey(handler), Group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return unavailable(err)
	}
	return nil
}

// Delivery is one call handed to a consumer.
type Delivery struct {
	Handler  string
	StreamID string
	// Deliveries is how often this stream entry was handed to a consumer: 1
	// on a first read, more after crash redeliveries.
	Deliveries int
	Call       *Call          // nil if Err is set and nothing usable was decoded
	Err        error          // ErrBadEnvelope when the entry could not be decoded
	Raw        map[string]any // the entry's fields, kept only when Err is set
	// Claimed says why this consumer took the call over from another (empty
	// on a first read): the call's story shows it.
	Claimed   string
	ClaimedAt time.Time
}

// Attempt is the call's attempt number counting retries and redeliveries.
func (d *Delivery) Attempt() int {
	if d.Call == nil {
		return d.Deliveries
	}
	return d.Call.Attempt + max(d.Deliveries, 1) - 1
}

func newDelivery(handler string, m redis.XMessage, deliveries int) Delivery {
	call, err := decodeCall(handler, m.Values)
	d := Delivery{Handler: handler, StreamID: m.ID, Deliveries: deliveries, Call: call, Err: err}
	if err != nil {
		d.Raw = m.Values
	}
	return d
}

// ReadCalls reads up to count new calls for consumer from the handler's stream,
// blocking up to block. A group lost with Redis's data is recreated.
func (c *Client) ReadCalls(ctx context.Context, handler, consumer string, count int64, block time.Duration) ([]Delivery, error) {
	res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    Group,
		Consumer: consumer,
		Streams:  []string{callsKey(handler), ">"},
		Count:    count,
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return nil, c.EnsureGroup(ctx, handler)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	var out []Delivery
	for _, s := range res {
		for _, m := range s.Messages {
			out = append(out, newDelivery(handler, m, 1))
		}
	}
	return out, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// AppendRaw appends an entry with arbitrary fields to handler's stream,
// bypassing every check. It exists for fault injection (a poison entry) in
// tests and tools; callers enqueue with Enqueue.
func (c *Client) AppendRaw(ctx context.Context, handler string, fields ...any) error {
	return unavailable(c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: callsKey(handler), Values: fields}).Err())
}
