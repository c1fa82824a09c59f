package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// heartbeatScript records a consumer's heartbeat with Redis's clock, so that
// consumers on hosts whose clocks disagree judge each other's heartbeats
// alike (see rescueScript), and forgets consumers silent for an hour. It
// also tells the consumer whether its handler has a limit (limits.go) and
// whether an operator paused it (pause.go): a consumer learns of either
// within a heartbeat, at no extra round trip.
//
//	KEYS[1] consumers zset, KEYS[2] consumer info hash, KEYS[3] limits hash,
//	KEYS[4] methods hash
//	ARGV[1] consumer, ARGV[2] its ConsumerInfo (JSON), ARGV[3] forget after ms
//	returns a bit set: 1 if the handler has a limit, 2 while an operator paused it (pause.go)
var heartbeatScript = redis.NewScript(luaLimits("3") + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', now - tonumber(ARGV[3])))
local flags = 0
if maxc > 0 or rate > 0 then flags = 1 end
if redis.call('HEXISTS', KEYS[4], '` + settingPaused + `') == 1 then flags = flags + 2 end
if prio then flags = flags + 4 end
return flags
`)

// Heartbeat records that consumer c of handler is alive, with what it runs:
// one script run. Consumers call it every heartbeat interval (1s by
// default); one silent for the dead-after time is declared dead and its calls
// are claimed (ClaimFromDead); consumers silent for an hour are forgotten.
func (c *Client) Heartbeat(ctx context.Context, handler string, ci ConsumerInfo) error {
	_, err := c.HeartbeatControl(ctx, handler, ci)
	return err
}

// HandlerControl is what a heartbeat learns of its handler, from the round
// trip a consumer makes anyway.
type HandlerControl struct {
	Limited bool // a max_concurrency or rate applies: read through ReadLimited
	Paused  bool // an operator paused the handler: take no calls (pause.go)
	// Priorities: a call with a priority arrived once, the priority streams
	// exist: read through ReadPriorities (priority.go).
	Priorities bool
}

// HeartbeatControl is Heartbeat, also reporting whether the handler has a
// limit and whether an operator paused it.
func (c *Client) HeartbeatControl(ctx context.Context, handler string, ci ConsumerInfo) (HandlerControl, error) {
	ci.LastHeartbeat = time.Now()
	n, err := heartbeatScript.Run(ctx, c.rdb, []string{consumersKey(handler), consumerInfoKey(handler), limitsKey(handler), methodsKey(handler)},
		ci.Name, mustJSON(ci), time.Hour.Milliseconds()).Int64()
	return HandlerControl{Limited: n&1 != 0, Paused: n&2 != 0, Priorities: n&4 != 0}, unavailable(err)
}

// Deregister removes a stopping consumer from the handler's consumers.
func (c *Client) Deregister(ctx context.Context, handler, consumer string) error {
	pipe := c.rdb.Pipeline()
	pipe.ZRem(ctx, consumersKey(handler), consumer)
	pipe.HDel(ctx, consumerInfoKey(handler), consumer)
	_, err := pipe.Exec(ctx)
	return unavailable(err)
}

// rawStats are the commands read for one handler, in one pipeline.
type rawStats struct {
	stats, rate   *redis.MapStringStringCmd
	infoJSON      *redis.StringCmd
	methods       *redis.MapStringStringCmd
	online        *redis.IntCmd
	backlog, dead *redis.IntCmd
	// the priority streams' (priority.go): 0 and NOGROUP where there are none
	backlogPrio  [2]*redis.IntCmd
	pendingPrio  [2]*redis.XPendingCmd
	delayed      *redis.IntCmd
	scheduled    *redis.IntCmd
	limits       *redis.SliceCmd // detail only
	pending      *redis.XPendingCmd
	consumers    *redis.ZSliceCmd
	consumerInfo *redis.MapStringStringCmd
	win          *redis.MapStringStringCmd
	window       WindowDef
}

func (c *Client) queueStats(ctx context.Context, pipe redis.Pipeliner, handler string, detail bool, w WindowDef) *rawStats {
	now := time.Now()
	r := &rawStats{
		infoJSON: pipe.Get(ctx, infoKey(handler)),
		methods:  pipe.HGetAll(ctx, methodsKey(handler)),
		online:   pipe.ZCount(ctx, consumersKey(handler), strconv.FormatInt(now.Add(-ConsumerOnlineAfter).UnixMilli(), 10), "+inf"),
		backlog:  pipe.XLen(ctx, callsKey(handler)),
		pending:  pipe.XPending(ctx, callsKey(handler), Group),
		delayed:  pipe.ZCard(ctx, delayedKey(handler)),
		// scheduled calls share the delayed set: counted apart
		scheduled: pipe.HLen(ctx, scheduledKey(handler)),
		dead:      pipe.XLen(ctx, deadKey(handler)),
		stats:     pipe.HGetAll(ctx, statsKey(handler)),
		rate:      pipe.HGetAll(ctx, rateKey(handler)),
		win:       pipe.HGetAll(ctx, w.key(handler)),
		window:    w,
	}
	for i, p := range [2]Priority{PriorityHigh, PriorityLow} {
		r.backlogPrio[i] = pipe.XLen(ctx, priorityStreamKey(handler, p))
		r.pendingPrio[i] = pipe.XPending(ctx, priorityStreamKey(handler, p), Group)
	}
	if detail {
		r.limits = pipe.HMGet(ctx, limitsKey(handler), limitMaxConcurrency, limitRate, settingMaxConcurrency, settingRate)
		r.consumers = pipe.ZRangeWithScores(ctx, consumersKey(handler), 0, -1)
		r.consumerInfo = pipe.HGetAll(ctx, consumerInfoKey(handler))
	}
	return r
}

// HandlerSummaries returns every registered handler at a glance, by name,
// with the DefaultWindow's numbers.
func (c *Client) HandlerSummaries(ctx context.Context) ([]HandlerSummary, error) {
	w, _ := ParseWindow(DefaultWindow)
	return c.HandlerSummariesIn(ctx, w)
}

// HandlerSummariesIn is HandlerSummaries with window w's numbers.
func (c *Client) HandlerSummariesIn(ctx context.Context, w WindowDef) ([]HandlerSummary, error) {
	names, err := c.Handlers(ctx)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	pipe := c.rdb.Pipeline()
	raws := make([]*rawStats, len(names))
	for i, n := range names {
		raws[i] = c.queueStats(ctx, pipe, n, false, w)
	}
	if _, err := pipe.Exec(ctx); err != nil && !isSoftPipelineErr(err) {
		return nil, unavailable(err)
	}
	out := make([]HandlerSummary, 0, len(names))
	now := time.Now()
	for i, n := range names {
		d := buildDetail(n, raws[i], now)
		d.Window.Histogram, d.Window.Series = nil, nil
		out = append(out, d.HandlerSummary)
	}
	return out, nil
}

// HandlerDetail returns everything about one handler, with the
// DefaultWindow's numbers; ErrNotFound if no consumer ever registered it.
func (c *Client) HandlerDetail(ctx context.Context, handler string) (HandlerDetail, error) {
	w, _ := ParseWindow(DefaultWindow)
	return c.HandlerDetailIn(ctx, handler, w)
}

// HandlerDetailIn is HandlerDetail with window w's numbers.
func (c *Client) HandlerDetailIn(ctx context.Context, handler string, w WindowDef) (HandlerDetail, error) {
	if err := ValidateName("handler", handler); err != nil {
		return HandlerDetail{}, err
	}
	pipe := c.rdb.Pipeline()
	raw := c.queueStats(ctx, pipe, handler, true, w)
	if _, err := pipe.Exec(ctx); err != nil && !isSoftPipelineErr(err) {
		return HandlerDetail{}, unavailable(err)
	}
	if len(raw.methods.Val()) == 0 {
		return HandlerDetail{}, fmt.Errorf("%w: handler %q", ErrNotFound, handler)
	}
	return buildDetail(handler, raw, time.Now()), nil
}

// isSoftPipelineErr: a missing key (GET) or group (XPENDING) is not a failure.
func isSoftPipelineErr(err error) bool {
	return errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "NOGROUP")
}

func buildDetail(name string, r *rawStats, now time.Time) HandlerDetail {
	d := HandlerDetail{}
	d.Name = name
	if s, err := r.infoJSON.Result(); err == nil {
		_ = json.Unmarshal([]byte(s), &d.Info)
	}
	d.Info.Name = name
	d.Description, d.Kind = d.Info.Description, d.Info.Kind
	methods := r.methods.Val()
	var names []string
	for m, js := range methods {
		if strings.HasPrefix(m, "$") {
			continue
		}
		names = append(names, m)
		var mi MethodInfo
		_ = json.Unmarshal([]byte(js), &mi)
		mi.Name = m
		d.Info.Methods = append(d.Info.Methods, mi)
	}
	sort.Strings(names)
	sort.Slice(d.Info.Methods, func(i, j int) bool { return d.Info.Methods[i].Name < d.Info.Methods[j].Name })
	d.HandlerSummary.Methods = len(names)
	d.ConsumersOnline = int(r.online.Val())
	d.Backlog = r.backlog.Val()
	if p, err := r.pending.Result(); err == nil {
		d.Pending = p.Count
	}
	d.BacklogHigh, d.BacklogLow = r.backlogPrio[0].Val(), r.backlogPrio[1].Val()
	d.Backlog += d.BacklogHigh + d.BacklogLow
	for _, pc := range r.pendingPrio {
		if p, err := pc.Result(); err == nil {
			d.Pending += p.Count
		}
	}
	d.Scheduled = r.scheduled.Val()
	d.Delayed, d.DeadLetters = max(r.delayed.Val()-d.Scheduled, 0), r.dead.Val()
	if r.limits != nil {
		d.Limits = effectiveLimits(r.limits.Val()).Effective
	}
	_, d.Paused = methods[settingPaused]

	stats := r.stats.Val()
	total := MethodStats{Method: "*", Histogram: make([]int64, len(DurationBuckets)+1)}
	var totalRuns, totalUS int64
	for _, m := range names {
		ms, runs, us := methodStats(m, stats)
		d.Methods = append(d.Methods, ms)
		total.Calls += ms.Calls
		total.Errors += ms.Errors
		total.Retries += ms.Retries
		total.DeadLetters += ms.DeadLetters
		total.Timeouts += ms.Timeouts
		for i, n := range ms.Histogram {
			total.Histogram[i] += n
		}
		if ms.LastActivity.After(total.LastActivity) {
			total.LastActivity = ms.LastActivity
		}
		totalRuns += runs
		totalUS += us
	}
	finishStats(&total, totalRuns, totalUS)
	d.Totals = total
	d.LastActivity = total.LastActivity
	d.Rate, d.CallsPerSecond = ratePoints("", r.rate.Val(), now)
	ws := buildWindow(r.window, r.win.Val(), now)
	d.Window = &ws

	if r.consumers != nil {
		infos := r.consumerInfo.Val()
		for _, z := range r.consumers.Val() {
			name, _ := z.Member.(string)
			var ci ConsumerInfo
			_ = json.Unmarshal([]byte(infos[name]), &ci)
			ci.Name = name
			ci.LastHeartbeat = time.UnixMilli(int64(z.Score))
			ci.Online = now.Sub(ci.LastHeartbeat) < ConsumerOnlineAfter
			d.Consumers = append(d.Consumers, ci)
		}
		sort.Slice(d.Consumers, func(i, j int) bool { return d.Consumers[i].LastHeartbeat.After(d.Consumers[j].LastHeartbeat) })
	}
	return d
}

func methodStats(m string, stats map[string]string) (MethodStats, int64, int64) {
	n := func(k string) int64 { v, _ := strconv.ParseInt(stats[m+":"+k], 10, 64); return v }
	ms := MethodStats{
		Method: m, Calls: n("calls"), Errors: n("errors"), Retries: n("retries"),
		DeadLetters: n("dead"), Timeouts: n("timeouts"), Histogram: make([]int64, len(DurationBuckets)+1),
	}
	for i := range ms.Histogram {
		ms.Histogram[i] = n("h" + strconv.Itoa(i))
	}
	if last := n("last"); last > 0 {
		ms.LastActivity = time.UnixMilli(last)
	}
	runs, us := n("runs"), n("dur_us")
	finishStats(&ms, runs, us)
	return ms, runs, us
}

// finishStats derives the rates and the duration figures from the counters.
func finishStats(ms *MethodStats, runs, us int64) {
	ms.SuccessRate = 1
	if ms.Calls > 0 {
		ms.SuccessRate = float64(ms.Calls-ms.Errors) / float64(ms.Calls)
	}
	if runs > 0 {
		ms.AvgMS = float64(us) / float64(runs) / 1000
	}
	ms.P50MS = Percentile(ms.Histogram, 0.50)
	ms.P95MS = Percentile(ms.Histogram, 0.95)
	ms.P99MS = Percentile(ms.Histogram, 0.99)
}

// Percentile estimates the q-quantile (0..1) of a DurationBuckets histogram,
// in milliseconds, interpolating linearly within the bucket it falls in. The
// overflow bucket is taken to end at twice the last bound. 0 when empty.
func Percentile(hist []int64, q float64) float64 {
	var total int64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	for i, n := range hist {
		if n == 0 {
			continue
		}
		lo, hi := 0.0, 2*DurationBuckets[len(DurationBuckets)-1]
		if i > 0 {
			lo = DurationBuckets[i-1]
		}
		if i < len(DurationBuckets) {
			hi = DurationBuckets[i]
		}
		if cum+float64(n) >= rank {
			return lo + (hi-lo)*(rank-cum)/float64(n)
		}
		cum += float64(n)
	}
	return 2 * DurationBuckets[len(DurationBuckets)-1]
}

// ratePoints turns the rate hash into RateBuckets points ending now, for
// method ("" for the handler), and the calls per second over the last minute.
func ratePoints(method string, rate map[string]string, now time.Time) ([]RatePoint, float64) {
	cur := now.UnixMilli() / RateBucket.Milliseconds()
	prefix := ""
	if method != "" {
		prefix = method + ":"
	}
	pts := make([]RatePoint, RateBuckets)
	var lastMinute int64
	for i := range pts {
		b := cur - int64(RateBuckets-1-i)
		n, _ := strconv.ParseInt(rate[prefix+strconv.FormatInt(b, 10)], 10, 64)
		pts[i] = RatePoint{Start: time.UnixMilli(b * RateBucket.Milliseconds()), Calls: n}
		if i >= RateBuckets-6 {
			lastMinute += n
		}
	}
	// The current bucket is partly elapsed: count the minute as the last
	// five full buckets plus the elapsed part of this one.
	elapsed := time.Duration(now.UnixMilli()%RateBucket.Milliseconds()) * time.Millisecond
	window := 5*RateBucket + elapsed
	return pts, float64(lastMinute) / window.Seconds()
}

// ErrHandlerBusy is returned by Forget for a handler that still has consumers
// online or calls waiting.
var ErrHandlerBusy = errors.New("handler has consumers online or calls waiting")

// forgetScript removes a handler's registration if nothing depends on it.
//
//	KEYS[1] consumers zset, KEYS[2] calls stream, KEYS[3] methods hash,
//	KEYS[4] info, KEYS[5] consumer info hash, KEYS[6..] the priority streams
//	ARGV[1] online cutoff (ms)
//	returns 1; errors ONLINE, BACKLOG
var forgetScript = redis.NewScript(`
if redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf') > 0 then return redis.error_reply('ONLINE') end
for _, k in ipairs({2, 6, 7}) do
  if KEYS[k] and redis.call('XLEN', KEYS[k]) > 0 then return redis.error_reply('BACKLOG') end
end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[1], KEYS[5])
return 1
`)

// Forget removes handler from the registry, so that the edge answers 404 for
// it again, when no consumer is online and no call waits. Its stats, dead
// letters and stream stay until a consumer registers it again.
func (c *Client) Forget(ctx context.Context, handler string) error {
	if err := ValidateName("handler", handler); err != nil {
		return err
	}
	cutoff := time.Now().Add(-ConsumerOnlineAfter).UnixMilli()
	keys := []string{consumersKey(handler), callsKey(handler), methodsKey(handler), infoKey(handler), consumerInfoKey(handler),
		priorityStreamKey(handler, PriorityHigh), priorityStreamKey(handler, PriorityLow)}
	err := forgetScript.Run(ctx, c.rdb, keys, cutoff).Err()
	switch {
	case redis.HasErrorPrefix(err, "ONLINE"):
		return fmt.Errorf("%w: %q has consumers online", ErrHandlerBusy, handler)
	case redis.HasErrorPrefix(err, "BACKLOG"):
		return fmt.Errorf("%w: %q has calls waiting", ErrHandlerBusy, handler)
	case err != nil:
		return unavailable(err)
	}
	return unavailable(c.rdb.SRem(ctx, handlersKey(), handler).Err())
}
