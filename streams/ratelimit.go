package streams

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

// RateLimit is one subject's allowance: Rate requests per second on average,
// and up to Burst at once after a quiet spell.
type RateLimit struct {
	Rate  float64
	Burst int
}

// RateDecision is what RateLimit decided for one request.
type RateDecision struct {
	Allowed bool
	// RetryAfter is, for a refused request, how long until one would be
	// allowed.
	RetryAfter time.Duration
	// Remaining is, for an allowed request, how many more would be allowed
	// right now.
	Remaining int
}

// rateLimitScript is a GCRA (generic cell rate algorithm) limiter: the key
// holds the subject's "theoretical arrival time" (TAT) in µs; a request is
// allowed if it would not push the TAT more than Burst intervals past now.
// One key per subject, one string, expiring when it no longer limits
// anything. The clock is Redis's (TIME), so that edges with skewed clocks
// share one view.
//
//	KEYS[1] the subject's key, srpc:{rl:<subject>}
//	ARGV[1] emission interval µs (1e6 / rate), ARGV[2] burst
//	returns {1, remaining} if allowed, {0, retry after µs} if not
var rateLimitScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new = tat + interval
local allow_at = new - burst * interval
if allow_at > now then return {0, math.ceil(allow_at - now)} end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.max(1, math.ceil((new - now) / 1000)))
return {1, math.floor((now - allow_at) / interval)}
`)

// RateLimit counts one request of subject against limit, shared by every
// edge on this Redis, and says whether it may go on. subject is the caller's
// identity as the edge sees it ("ip:…", "p:…"); it must not hold '}'.
func (c *Client) RateLimit(ctx context.Context, subject string, limit RateLimit) (RateDecision, error) {
	if limit.Rate <= 0 {
		return RateDecision{Allowed: true}, nil
	}
	burst := max(limit.Burst, 1)
	interval := math.Max(1, math.Round(1e6/limit.Rate))
	res, err := runScript(ctx, c.finish, rateLimitScript, []string{rateLimitKey(subject)}, int64(interval), burst)
	if err != nil {
		return RateDecision{}, unavailable(err)
	}
	out, _ := res.([]any)
	if len(out) != 2 {
		return RateDecision{}, fmt.Errorf("streams: rate limit: unexpected reply %v", res)
	}
	ok, _ := out[0].(int64)
	n, _ := out[1].(int64)
	if ok == 1 {
		return RateDecision{Allowed: true, Remaining: int(n)}, nil
	}
	return RateDecision{RetryAfter: time.Duration(n) * time.Microsecond}, nil
}
