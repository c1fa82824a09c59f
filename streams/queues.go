package streams

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// What the registry and a handler's queues hold: handlers, methods, and the
// backlog, pending and delayed counts.

// Handlers lists the names of every registered handler.
func (c *Client) Handlers(ctx context.Context) ([]string, error) {
	names, err := c.rdb.SMembers(ctx, handlersKey()).Result()
	return names, unavailable(err)
}

// Methods returns a handler's registered methods (name -> JSON description).
func (c *Client) Methods(ctx context.Context, handler string) (map[string]string, error) {
	if err := ValidateName("handler", handler); err != nil {
		return nil, err
	}
	m, err := c.rdb.HGetAll(ctx, methodsKey(handler)).Result()
	for k := range m {
		if strings.HasPrefix(k, "$") {
			delete(m, k)
		}
	}
	return m, unavailable(err)
}

// Backlog is the number of calls queued or running for handler (retries
// waiting for their time are not in it).
func (c *Client) Backlog(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.XLen(ctx, callsKey(handler)).Result()
	return n, unavailable(err)
}

// Pending is the number of calls consumers have taken and not yet settled.
func (c *Client) Pending(ctx context.Context, handler string) (int64, error) {
	p, err := c.rdb.XPending(ctx, callsKey(handler), Group).Result()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable(err)
	}
	return p.Count, nil
}

// Delayed is the number of calls waiting for a retry.
func (c *Client) Delayed(ctx context.Context, handler string) (int64, error) {
	n, err := c.rdb.ZCard(ctx, delayedKey(handler)).Result()
	return n, unavailable(err)
}
