package streams

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The reply path: each edge's reply stream (opened, kept, trimmed, read), and
// results read by call id.

// replyStreamMarker is the field of the entry that creates a reply stream.
const replyStreamMarker = "open"

// OpenReplyStream creates the reply stream of edge edgeID (with a marker entry
// that ReadReplies skips) and gives it ReplyStreamTTL. Consumers only write to
// a reply stream that exists, so an edge that is gone collects no replies.
func (c *Client) OpenReplyStream(ctx context.Context, edgeID string) error {
	key := replyKey(edgeID)
	pipe := c.rdb.Pipeline()
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: c.opts.ReplyStreamMaxLen, Approx: true, Values: []any{replyStreamMarker, "1"}})
	pipe.Expire(ctx, key, ReplyStreamTTL)
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// KeepReplyStream extends the reply stream's TTL, and recreates it if Redis
// lost it (a restart without persistence).
func (c *Client) KeepReplyStream(ctx context.Context, edgeID string) error {
	ok, err := c.rdb.Expire(ctx, replyKey(edgeID), ReplyStreamTTL).Result()
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		return c.OpenReplyStream(ctx, edgeID)
	}
	return nil
}

// TrimReplyStream removes the entries of edge edgeID's reply stream older
// than age (XTRIM MINID, exact): a reply stream is bounded by count
// (ReplyStreamMaxLen) when replies are appended, and by age by this, which
// the edge runs on a timer, so that large results do not stay in it after
// nobody can wait for them, whatever the traffic.
func (c *Client) TrimReplyStream(ctx context.Context, edgeID string, age time.Duration) error {
	minID := strconv.FormatInt(time.Now().Add(-age).UnixMilli(), 10) + "-0"
	return unavailable(c.rdb.XTrimMinID(ctx, replyKey(edgeID), minID).Err())
}

// ReadReplies reads up to count replies after stream id `after` from edge
// edgeID's reply stream, blocking up to block. It returns the replies and the
// id to read after next time.
func (c *Client) ReadReplies(ctx context.Context, edgeID, after string, count int64, block time.Duration) ([]Reply, string, error) {
	res, err := c.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{replyKey(edgeID), after},
		Count:   count,
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, after, nil
	}
	if err != nil {
		return nil, after, unavailable(err)
	}
	var replies []Reply
	for _, s := range res {
		for _, m := range s.Messages {
			after = m.ID
			// An entry holds the replies one consumer settled together:
			// call id -> encoded reply. The marker entry holds "open".
			for id, raw := range m.Values {
				v, _ := raw.(string)
				if id == replyStreamMarker {
					continue
				}
				if callID, ok := strings.CutPrefix(id, eventField); ok {
					if evs, err := decodeEvents(v); err == nil {
						replies = append(replies, Reply{ID: callID, Events: evs})
					}
					continue
				}
				if r, err := decodeReply(id, v); err == nil {
					replies = append(replies, r)
				}
			}
		}
	}
	return replies, after, nil
}

// Result reads the reply kept under call id. ErrNotFound if there is none
// (unknown id, not finished yet, or expired).
func (c *Client) Result(ctx context.Context, id string) (Reply, error) {
	if _, err := ValidateCallID(id); err != nil {
		return Reply{}, err
	}
	v, err := c.rdb.Get(ctx, resultKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return Reply{}, ErrNotFound
	}
	if err != nil {
		return Reply{}, unavailable(err)
	}
	if _, _, queued := parseQueuedState(v); queued {
		return Reply{}, ErrNotFound
	}
	return decodeReply(id, v)
}

// Results reads the replies kept for calls ids, in one pipeline, and returns
// those found (answered and not expired); the rest are skipped.
func (c *Client) Results(ctx context.Context, ids []string) ([]Reply, error) {
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, 0, len(ids))
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, err := ValidateCallID(id); err != nil {
			continue
		}
		valid = append(valid, id)
		cmds = append(cmds, pipe.Get(ctx, resultKey(id)))
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(err)
	}
	var out []Reply
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			continue
		}
		if _, _, queued := parseQueuedState(v); queued {
			continue
		}
		if r, err := decodeReply(valid[i], v); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
