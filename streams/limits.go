package streams

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler-wide limits across every consumer of a handler: max_concurrency
// (calls taken and not yet settled, i.e. the group's pending entries) and
// rate (calls started per second, GCRA). A consumer of a handler with a limit
// reads through limitedReadScript instead of XREADGROUP: calls over the limit
// stay in the stream. See docs/flow-control.md.

// Every limit lives in the handler's limits hash (a key consumers may read,
// unlike the registry): the registered ones under reg_*, which registration
// rewrites, those set through the admin API under their own names, which it
// never touches, so they win and survive consumers registering again.
const (
	settingMaxConcurrency = "reg_max_concurrency"
	settingRate           = "reg_rate"
	limitMaxConcurrency   = "max_concurrency"
	limitRate             = "rate"
	limitTAT              = "tat" // GCRA theoretical arrival time, µs (Redis's clock)
)

// luaLimits reads the effective limits from the limits hash at KEYS[lk] into
// the Lua locals maxc and rate (the API's value, else the registered one, else
// 0), and the GCRA state into tat0. Shared by limitedReadScript and
// heartbeatScript.
func luaLimits(lk string) string {
	return `
local lim = redis.call('HMGET', KEYS[` + lk + `], '` + limitMaxConcurrency + `', '` + limitRate + `', '` + settingMaxConcurrency + `', '` + settingRate + `', '` + limitTAT + `', '` + limitPriorities + `')
local maxc = tonumber(lim[1] or lim[3] or '0') or 0
local rate = tonumber(lim[2] or lim[4] or '0') or 0
local tat0 = tonumber(lim[5] or '0') or 0
local prio = lim[6]
`
}

// MaxRate bounds a rate limit (calls per second).
const MaxRate = 1e6

// ErrBadLimit is returned for a limit out of range.
var ErrBadLimit = errors.New("invalid limit")

// Limits are a handler's limits. Zero is no limit. In a LimitsUpdate a nil
// pointer means "unchanged" and a Clear flag removes the API's value.
type Limits struct {
	MaxConcurrency int64   `json:"max_concurrency"`
	Rate           float64 `json:"rate"` // calls started per second
}

// Any reports whether l limits anything.
func (l Limits) Any() bool { return l.MaxConcurrency > 0 || l.Rate > 0 }

// Validate checks l's ranges.
func (l Limits) Validate() error {
	switch {
	case l.MaxConcurrency < 0:
		return fmt.Errorf("%w: max_concurrency must be 0 (none) or more", ErrBadLimit)
	case l.Rate < 0 || l.Rate > MaxRate || math.IsNaN(l.Rate):
		return fmt.Errorf("%w: rate must be from 0 (none) to %g calls per second", ErrBadLimit, float64(MaxRate))
	}
	return nil
}

// LimitSettings are what is known of a handler's limits: the registered
// ones, those set through the API (nil: not set), and the effective ones.
type LimitSettings struct {
	Registered Limits `json:"registered"`
	API        struct {
		MaxConcurrency *int64   `json:"max_concurrency"`
		Rate           *float64 `json:"rate"`
	} `json:"api"`
	Effective Limits `json:"effective"`
}

// HandlerLimits reads handler's limits: one HMGET.
func (c *Client) HandlerLimits(ctx context.Context, handler string) (LimitSettings, error) {
	var ls LimitSettings
	if err := ValidateName("handler", handler); err != nil {
		return ls, err
	}
	v, err := c.rdb.HMGet(ctx, limitsKey(handler), limitMaxConcurrency, limitRate, settingMaxConcurrency, settingRate).Result()
	if err != nil {
		return ls, unavailable(err)
	}
	return effectiveLimits(v), nil
}

// effectiveLimits reads an HMGET of the limits hash's max_concurrency, rate,
// reg_max_concurrency and reg_rate.
func effectiveLimits(v []any) LimitSettings {
	var ls LimitSettings
	if len(v) != 4 {
		return ls
	}
	a := v[:2]
	ls.Registered.MaxConcurrency, _ = strconv.ParseInt(str(v[2]), 10, 64)
	ls.Registered.Rate, _ = strconv.ParseFloat(str(v[3]), 64)
	ls.Effective = ls.Registered
	if s := str(a[0]); s != "" {
		n, _ := strconv.ParseInt(s, 10, 64)
		ls.API.MaxConcurrency, ls.Effective.MaxConcurrency = &n, n
	}
	if s := str(a[1]); s != "" {
		f, _ := strconv.ParseFloat(s, 64)
		ls.API.Rate, ls.Effective.Rate = &f, f
	}
	return ls
}

func str(v any) string { s, _ := v.(string); return s }

// LimitsUpdate changes the limits set through the API: a field that is nil
// is left as it is; Clear* removes the API's value (the registered one
// applies again).
type LimitsUpdate struct {
	MaxConcurrency      *int64
	Rate                *float64
	ClearMaxConcurrency bool
	ClearRate           bool
}

// SetHandlerLimits applies u to handler's API limits, in one round trip.
func (c *Client) SetHandlerLimits(ctx context.Context, handler string, u LimitsUpdate) error {
	if err := ValidateName("handler", handler); err != nil {
		return err
	}
	var l Limits
	if u.MaxConcurrency != nil {
		l.MaxConcurrency = *u.MaxConcurrency
	}
	if u.Rate != nil {
		l.Rate = *u.Rate
	}
	if err := l.Validate(); err != nil {
		return err
	}
	var set []any
	var del []string
	switch {
	case u.ClearMaxConcurrency:
		del = append(del, limitMaxConcurrency)
	case u.MaxConcurrency != nil:
		set = append(set, limitMaxConcurrency, *u.MaxConcurrency)
	}
	switch {
	case u.ClearRate:
		del = append(del, limitRate, limitTAT)
	case u.Rate != nil:
		set = append(set, limitRate, strconv.FormatFloat(*u.Rate, 'g', -1, 64))
	}
	pipe := c.rdb.Pipeline()
	if len(del) > 0 {
		pipe.HDel(ctx, limitsKey(handler), del...)
	}
	if len(set) > 0 {
		pipe.HSet(ctx, limitsKey(handler), set...)
	}
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// limitedReadScript reads up to n new calls for one consumer, as many as the
// handler's limits allow now: max_concurrency minus the group's pending
// entries (every consumer's calls taken and not yet settled), and the rate's
// GCRA allowance (burst: a tenth of a second's calls, at least 1). The
// limits are read here, every time, so a change applies to the next read.
// With priorities (priority.go), KEYS[3..] are more streams: the calls are
// taken from the streams in the order given, as many as allowed from the
// first, the rest from the next…; those that do not exist are skipped.
//
//	KEYS[1] calls stream (the first to read), KEYS[2] limits hash,
//	KEYS[3..] the next streams to read, in order
//	ARGV[1] group, ARGV[2] consumer, ARGV[3] n
//	returns {entries, wait ms, last entry ids, stream of each entry}:
//	entries as XREADGROUP's; when none, wait > 0 if a limit held them back
//	(the rate: until the next call may start; the concurrency: 0 < wait,
//	unknown, so -1), else the ids of the last entries of KEYS[1], KEYS[3]…
//	(0-0 for one that does not exist), space separated, to wait for newer ones without taking them; the stream of
//	each entry as its key index
var limitedReadScript = redis.NewScript(luaLimits("2") + `
local ks = {1}
for k = 3, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then ks[#ks + 1] = k end
end
local n = tonumber(ARGV[3])
if maxc > 0 then
  local busy = 0
  for _, k in ipairs(ks) do busy = busy + redis.call('XPENDING', KEYS[k], ARGV[1])[1] end
  if maxc - busy < n then n = maxc - busy end
  if n <= 0 then return {{}, -1, '', {}} end
end
local T, tat = 0, 0
if rate > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  T = 1000000 / rate
  local burst = math.max(1, math.floor(rate / 10))
  tat = math.max(tat0, now)
  local k = math.floor((burst * T - (tat - now)) / T)
  if k < n then n = k end
  if n <= 0 then return {{}, math.max(1, math.ceil((tat + T - burst * T - now) / 1000)), '', {}} end
end
local entries, from = {}, {}
for _, k in ipairs(ks) do
  if #entries < n then
    local res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', n - #entries, 'STREAMS', KEYS[k], '>')
    if res then
      for _, e in ipairs(res[1][2]) do
        entries[#entries + 1] = e
        from[#from + 1] = k
      end
    end
  end
end
if #entries == 0 then
  local lasts = {}
  for k = 1, #KEYS do
    if k ~= 2 then
      local last = redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', 1)
      if last[1] then lasts[#lasts + 1] = last[1][1] else lasts[#lasts + 1] = '0-0' end
    end
  end
  return {{}, 0, table.concat(lasts, ' '), {}}
end
if rate > 0 then
  redis.call('HSET', KEYS[2], '` + limitTAT + `', string.format('%.0f', tat + #entries * T))
end
return {entries, 0, '', from}
`)

// LimitedRead is what ReadLimited got.
type LimitedRead struct {
	Deliveries []Delivery
	// Wait > 0: a limit held calls back; try again after Wait (the rate's
	// next start), or when a call settles (the concurrency: Wait is then
	// the caller's own poll). Zero with no deliveries: the stream has no new
	// call; WaitForCalls(LastID) waits for one.
	Wait   time.Duration
	LastID string
}

// ReadLimited reads up to count new calls for consumer from handler's stream
// within the handler's limits, without blocking. concurrencyPoll is the
// Wait it returns when the concurrency limit is reached (no time is known).
func (c *Client) ReadLimited(ctx context.Context, handler, consumer string, count int64, concurrencyPoll time.Duration) (LimitedRead, error) {
	return c.readLimited(ctx, handler, consumer, count, concurrencyPoll, []Priority{PriorityNormal})
}

// ReadPriorities is ReadLimited for a handler with priorities (priority.go):
// it takes the calls from the priority streams in the given order.
func (c *Client) ReadPriorities(ctx context.Context, handler, consumer string, count int64, concurrencyPoll time.Duration, order [3]Priority) (LimitedRead, error) {
	return c.readLimited(ctx, handler, consumer, count, concurrencyPoll, order[:])
}

func (c *Client) readLimited(ctx context.Context, handler, consumer string, count int64, concurrencyPoll time.Duration, order []Priority) (LimitedRead, error) {
	keys := make([]string, 0, 1+len(order))
	keys = append(keys, priorityStreamKey(handler, order[0]), limitsKey(handler))
	for _, p := range order[1:] {
		keys = append(keys, priorityStreamKey(handler, p))
	}
	res, err := limitedReadScript.Run(ctx, c.rdb, keys, Group, consumer, count).Slice()
	if redis.HasErrorPrefix(err, "NOGROUP") {
		if len(order) > 1 {
			return LimitedRead{}, c.ensurePriorityGroups(ctx, handler)
		}
		return LimitedRead{}, c.EnsureGroup(ctx, handler)
	}
	if err != nil {
		return LimitedRead{}, unavailable(err)
	}
	if len(res) != 4 {
		return LimitedRead{}, fmt.Errorf("streams: limited read: unexpected reply %v", res)
	}
	var out LimitedRead
	entries, _ := res[0].([]any)
	from, _ := res[3].([]any)
	for i, e := range entries {
		m, err := xMessage(e)
		if err != nil {
			return LimitedRead{}, err
		}
		if i < len(from) {
			if k, _ := from[i].(int64); k >= 3 && int(k)-2 < len(order) {
				m.ID = entryRef(order[k-2], m.ID)
			} else {
				m.ID = entryRef(order[0], m.ID)
			}
		}
		out.Deliveries = append(out.Deliveries, newDelivery(handler, m, 1))
	}
	switch wait, _ := res[1].(int64); {
	case wait < 0:
		out.Wait = concurrencyPoll
	case wait > 0:
		out.Wait = time.Duration(wait) * time.Millisecond
	}
	if last, _ := res[2].(string); last != "" {
		ids := strings.Fields(last)
		for i := range ids {
			if i < len(order) {
				ids[i] = entryRef(order[i], ids[i])
			}
		}
		out.LastID = strings.Join(ids, " ")
	}
	return out, nil
}

// xMessage converts one stream entry of a script's reply ({id, {field,
// value, …}}) as go-redis does for XREADGROUP.
func xMessage(v any) (redis.XMessage, error) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return redis.XMessage{}, fmt.Errorf("streams: unexpected stream entry %v", v)
	}
	id, _ := pair[0].(string)
	fv, _ := pair[1].([]any)
	values := make(map[string]any, len(fv)/2)
	for i := 0; i+1 < len(fv); i += 2 {
		k, _ := fv[i].(string)
		values[k] = fv[i+1]
	}
	return redis.XMessage{ID: id, Values: values}, nil
}

// WaitForCalls blocks up to block until handler's stream has an entry after
// lastID, taking none: a consumer of a limited handler waits so, then reads
// through ReadLimited. lastID is LimitedRead.LastID: with priorities, one
// reference per stream, space separated.
func (c *Client) WaitForCalls(ctx context.Context, handler, lastID string, block time.Duration) error {
	refs := strings.Fields(lastID)
	if len(refs) == 0 {
		refs = []string{"$"}
	}
	args := make([]string, 2*len(refs))
	for i, ref := range refs {
		p, id := splitRef(ref)
		args[i], args[len(refs)+i] = priorityStreamKey(handler, p), id
	}
	err := c.rdb.XRead(ctx, &redis.XReadArgs{Streams: args, Count: 1, Block: block}).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return unavailable(err)
}
