package streams

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A dead letter is the call's envelope plus these fields.
const (
	fieldError    = "error"     // the last error, JSON
	fieldAttempts = "attempts"  // how many attempts were made
	fieldFailedAt = "failed_at" // Unix ms
	fieldConsumer = "consumer"  // the consumer that gave up
)

// DeadLetter is a call that failed every attempt, or an entry that could not
// be decoded (then only Fields and Error are reliable).
type DeadLetter struct {
	StreamID   string            `json:"dead_letter_id"`
	ID         string            `json:"id"`
	Handler    string            `json:"handler"`
	Method     string            `json:"method"`
	Params     json.RawMessage   `json:"params,omitempty"`
	Error      *Error            `json:"error"`
	Attempts   int               `json:"attempts"`
	EnqueuedAt time.Time         `json:"enqueued_at"`
	FailedAt   time.Time         `json:"failed_at"`
	Consumer   string            `json:"consumer"`
	Fields     map[string]string `json:"fields,omitempty"` // set only for undecodable entries
}

func decodeDeadLetter(handler string, m redis.XMessage) DeadLetter {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	num := func(k string) int64 { n, _ := strconv.ParseInt(str(k), 10, 64); return n }
	dl := DeadLetter{
		StreamID: m.ID, ID: str(fieldID), Handler: handler, Method: str(fieldMethod),
		Attempts: int(num(fieldAttempts)), Consumer: str(fieldConsumer),
		EnqueuedAt: time.UnixMilli(num(fieldEnqueued)), FailedAt: time.UnixMilli(num(fieldFailedAt)),
	}
	var e Error
	if json.Unmarshal([]byte(str(fieldError)), &e) == nil {
		dl.Error = &e
	}
	if p := str(fieldParams); json.Valid([]byte(p)) {
		dl.Params = json.RawMessage(p)
	}
	if _, err := decodeCall(handler, m.Values); err != nil {
		dl.Fields = make(map[string]string, len(m.Values))
		for k := range m.Values {
			dl.Fields[k] = str(k)
		}
	}
	return dl
}

// DeadLetters lists up to limit dead letters of handler, oldest first,
// starting after the dead-letter id `after` ("" from the start).
func (c *Client) DeadLetters(ctx context.Context, handler, after string, limit int64) ([]DeadLetter, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := c.rdb.XRangeN(ctx, deadKey(handler), start, "+", limit).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decodeDeadLetter(handler, m))
	}
	return out, nil
}

// DeadLetterCount is the number of dead letters of handler.
func (c *Client) DeadLetterCount(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.XLen(ctx, deadKey(handler)).Result()
	return n, unavailable(err)
}

// replayScript moves dead letters back into the handler's stream as new
// calls: attempt 1, a new deadline, and no edge waiting (the result is
// readable by id). The call keeps its id.
//
//	KEYS[1] dead-letter stream, KEYS[2] calls stream
//	ARGV[1] dead-letter id, or '' for the oldest ARGV[4]
//	ARGV[2] new deadline ms, ARGV[3] now ms, ARGV[4] most to replay
//	returns the call ids replayed
var replayScript = redis.NewScript(`
local entries
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[4])
end
local keep = {id=true, m=true, p=true, r=true, dl=true, a=true, t=true, ttl=true, ip=true, tp=true, ts=true}
local ids = {}
for _, e in ipairs(entries) do
  local f, out, id = e[2], {}, ''
  for i = 1, #f, 2 do
    local k, v = f[i], f[i + 1]
    if k == 'a' then v = '1' elseif k == 'dl' then v = ARGV[2] elseif k == 't' then v = ARGV[3] elseif k == 'r' then v = '' end
    if k == 'id' then id = v end
    if keep[k] then table.insert(out, k); table.insert(out, v) end
  end
  redis.call('XADD', KEYS[2], '*', unpack(out))
  redis.call('XDEL', KEYS[1], e[1])
  table.insert(ids, id)
end
return ids
`)

// ReplayDeadLetter moves one dead letter (by its dead-letter id) back into the
// stream with a new deadline. It returns the replayed call's id, or
// ErrNotFound.
func (c *Client) ReplayDeadLetter(ctx context.Context, handler, deadLetterID string, deadline time.Time) (string, error) {
	ids, err := c.replay(ctx, handler, deadLetterID, deadline, 1)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", ErrNotFound
	}
	return ids[0], nil
}

// ReplayDeadLetters moves up to limit of the oldest dead letters back into
// the stream. It returns the replayed calls' ids.
func (c *Client) ReplayDeadLetters(ctx context.Context, handler string, deadline time.Time, limit int64) ([]string, error) {
	return c.replay(ctx, handler, "", deadline, limit)
}

func (c *Client) replay(ctx context.Context, handler, deadLetterID string, deadline time.Time, limit int64) ([]string, error) {
	if err := ValidateName("handler", handler); err != nil {
		return nil, err
	}
	ids, err := replayScript.Run(ctx, c.rdb, []string{deadKey(handler), callsKey(handler)},
		deadLetterID, deadline.UnixMilli(), time.Now().UnixMilli(), limit).StringSlice()
	// A malformed id: HasErrorPrefix drops Redis's "ERR " itself, so the
	// prefix names the message without it.
	if redis.HasErrorPrefix(err, "Invalid stream ID") {
		return nil, ErrNotFound
	}
	return ids, unavailable(err)
}

// DeleteDeadLetter deletes one dead letter; ErrNotFound if there was none.
func (c *Client) DeleteDeadLetter(ctx context.Context, handler, deadLetterID string) error {
	n, err := c.rdb.XDel(ctx, deadKey(handler), deadLetterID).Result()
	if redis.HasErrorPrefix(err, "Invalid stream ID") || (err == nil && n == 0) {
		return ErrNotFound
	}
	return unavailable(err)
}

// DeleteDeadLetters deletes every dead letter of handler and returns how many.
func (c *Client) DeleteDeadLetters(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.XLen(ctx, deadKey(handler)).Result()
	if err != nil {
		return 0, unavailable(err)
	}
	return n, unavailable(c.rdb.Del(ctx, deadKey(handler)).Err())
}
