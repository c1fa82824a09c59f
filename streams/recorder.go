package streams

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The stats, the activity feed and the calls' stories are not written in the
// round trip that settles each call: that would cost Redis a dozen commands
// per call. The recorder adds them up in the consumer's memory and writes
// them, per handler, in one script run at most every flushInterval: the
// counters and histograms exactly, the activity feed and the stories for up
// to activityPerFlush ordinary calls plus activityPerFlush notable ones
// (errors, retries, redeliveries) per flush. Below that rate every call is
// in the feed and has its story; above it they are a sample (the latest of
// each kind), while the counters stay exact.
const (
	flushInterval    = 500 * time.Millisecond
	activityPerFlush = 32
	flushTimeout     = 5 * time.Second
	// activityMaxLen caps each handler's activity stream (approximately).
	activityMaxLen = 1000
)

// settledCall is what the recorder keeps of one settled attempt.
type settledCall struct {
	handler, method, id, consumer, caller string
	requestID                             string // the caller's X-Request-Id
	outcome                               Outcome
	attempt                               int
	firstAttempt                          bool // never retried: no story was written before
	enqueued, started, at                 time.Time
	took                                  time.Duration
	params                                json.RawMessage
	errText, detail                       string
	ttl                                   time.Duration
	story                                 bool      // write the story at flush (answers; retries and dead letters write theirs at once)
	claimed                               string    // why this consumer took the call over (Delivery.Claimed)
	claimedAt                             time.Time // when
	partials, progress                    int       // streamed events the attempt sent
}

func settledOf(d *Delivery, mode settleMode, reply Reply, run Run, detail string, ttl time.Duration) settledCall {
	s := settledCall{
		handler: d.Handler, method: d.Call.Method, id: d.Call.ID, consumer: run.Consumer, caller: d.Call.Caller, requestID: d.Call.RequestID,
		outcome: outcomeOf(mode, reply), attempt: d.Attempt(), firstAttempt: d.Call.Attempt <= 1,
		enqueued: d.Call.EnqueuedAt, started: run.Started, took: run.Took, at: time.Now(),
		params: d.Call.Params, ttl: ttl, story: mode == settleAnswer, detail: detail,
		claimed: d.Claimed, claimedAt: d.ClaimedAt, partials: run.Partials, progress: run.Progress,
	}
	if !reply.OK && reply.Body != nil {
		s.errText = truncate(reply.Err().Message, 200)
	}
	if s.detail == "" {
		s.detail = s.errText
	}
	return s
}

func (s *settledCall) notable() bool { return s.outcome.String() != OutcomeOK || s.attempt > 1 }

func (s *settledCall) queuedEvent() StoryEvent {
	return StoryEvent{Time: s.enqueued, Event: "queued", Params: s.params, Detail: s.caller, Handler: s.handler, Method: s.method, RequestID: s.requestID}
}

// runEvents are this attempt's story events: claimed (if this consumer took
// the call over from another), started (if it ran) and how it ended.
func (s *settledCall) runEvents() []StoryEvent {
	var events []StoryEvent
	if s.claimed != "" {
		events = append(events, StoryEvent{Time: s.claimedAt, Event: "claimed", Attempt: s.attempt, Consumer: s.consumer, Detail: s.claimed})
	}
	if !s.started.IsZero() {
		events = append(events, StoryEvent{Time: s.started, Event: "started", Attempt: s.attempt, Consumer: s.consumer})
	}
	last := StoryEvent{Time: s.at, Event: "finished", Attempt: s.attempt, Consumer: s.consumer, Outcome: s.outcome.String(), Detail: s.detail,
		Partials: s.partials, Progress: s.progress}
	switch s.outcome.String() {
	case OutcomeRetry:
		last.Event = "retried"
	case OutcomeDead:
		last.Event = "dead_lettered"
	}
	return append(events, last)
}

func (s *settledCall) activity() Activity {
	return Activity{
		ID: s.id, Handler: s.handler, Method: s.method, Outcome: s.outcome.String(),
		DurationMS: float64(s.took.Microseconds()) / 1000, Attempt: s.attempt, Consumer: s.consumer,
		Caller: s.caller, Time: s.at, Error: s.errText,
	}
}

// handlerTally is what one handler's flush writes.
type handlerTally struct {
	counters map[string]int64 // stats hash field -> increment
	rate     map[string]int64 // rate hash field -> increment
	last     map[string]int64 // stats hash "<method>:last" -> Unix ms
	ordinary []settledCall    // the latest activityPerFlush ordinary calls (a ring)
	notable  []settledCall    // the latest activityPerFlush notable calls (a ring)
	win      windowTally      // the time-window buckets (windows.go)
	nOrd     int
	nNot     int
}

func newHandlerTally() *handlerTally {
	return &handlerTally{counters: map[string]int64{}, rate: map[string]int64{}, last: map[string]int64{}}
}

func (t *handlerTally) add(s settledCall) {
	m := s.method
	o := s.outcome.String()
	t.win.add(s.at, o != OutcomeRetry, o != OutcomeRetry && o != OutcomeOK && o != OutcomeCancelled, !s.started.IsZero(), bucketOf(s.took))
	if o == OutcomeRetry {
		t.counters[m+":retries"]++
	} else {
		t.counters[m+":calls"]++
		if o != OutcomeOK && o != OutcomeCancelled {
			t.counters[m+":errors"]++
		}
		if o == OutcomeTimeout {
			t.counters[m+":timeouts"]++
		}
		if o == OutcomeDead {
			t.counters[m+":dead"]++
		}
		b := strconv.FormatInt(s.at.UnixMilli()/RateBucket.Milliseconds(), 10)
		t.rate[b]++
		t.rate[m+":"+b]++
	}
	if !s.started.IsZero() {
		t.counters[m+":runs"]++
		t.counters[m+":dur_us"] += s.took.Microseconds()
		t.counters[m+":h"+strconv.Itoa(bucketOf(s.took))]++
	}
	t.last[m+":last"] = max(t.last[m+":last"], s.at.UnixMilli())
	if s.notable() {
		t.notable, t.nNot = ring(t.notable, t.nNot, s)
	} else {
		t.ordinary, t.nOrd = ring(t.ordinary, t.nOrd, s)
	}
}

func ring(r []settledCall, n int, s settledCall) ([]settledCall, int) {
	if len(r) < activityPerFlush {
		return append(r, s), n + 1
	}
	r[n%activityPerFlush] = s
	return r, n + 1
}

// merge adds back the counters of a tally whose flush failed, so that they are
// written by the next one.
func (t *handlerTally) merge(old *handlerTally) {
	for k, v := range old.counters {
		t.counters[k] += v
	}
	for k, v := range old.rate {
		t.rate[k] += v
	}
	for k, v := range old.last {
		t.last[k] = max(t.last[k], v)
	}
	t.win.merge(old.win)
}

// flushScript adds one handler's tallies to its stats, rate and window
// hashes and appends the sampled calls to its activity stream.
//
//	KEYS[1] stats hash, KEYS[2] rate hash, KEYS[3] activity stream,
//	KEYS[4] minute window hash, KEYS[5] quarter-hour window hash
//	ARGV[1] nc, ARGV[2] nr, ARGV[3] nl, ARGV[4] the current rate bucket number,
//	ARGV[5] nm, ARGV[6] nq, ARGV[7] the oldest minute bucket kept,
//	ARGV[8] the oldest quarter-hour bucket kept,
//	then nm minute window field/increment pairs, nq quarter-hour ones,
//	nc stats field/increment pairs, nr rate field/increment pairs,
//	nl stats field/value pairs to set, then activity records (JSON)
//	returns 1
//
// Rate and window buckets older than they are kept are dropped when a new
// bucket starts (its first write).
var flushScript = redis.NewScript(`
local nc, nr, nl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local a = 9
local function window(key, n, cutoff)
  local fresh = false
  for i = 1, n do
    if redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1]) == tonumber(ARGV[a + 1]) then fresh = true end
    a = a + 2
  end
  if fresh then
    for _, f in ipairs(redis.call('HKEYS', key)) do
      local fb = tonumber(string.match(f, '^(%d+):'))
      if fb and fb < cutoff then redis.call('HDEL', key, f) end
    end
  end
end
window(KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[7]))
window(KEYS[5], tonumber(ARGV[6]), tonumber(ARGV[8]))
for i = 1, nc do redis.call('HINCRBY', KEYS[1], ARGV[a], ARGV[a + 1]); a = a + 2 end
local fresh = false
for i = 1, nr do
  if redis.call('HINCRBY', KEYS[2], ARGV[a], ARGV[a + 1]) == tonumber(ARGV[a + 1]) and not string.find(ARGV[a], ':', 1, true) then
    fresh = true
  end
  a = a + 2
end
if fresh then
  local cutoff = tonumber(ARGV[4]) - ` + strconv.Itoa(RateBuckets+1) + `
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    local fb = tonumber(string.match(f, '(%d+)$'))
    if fb and fb < cutoff then redis.call('HDEL', KEYS[2], f) end
  end
end
for i = 1, nl do redis.call('HSET', KEYS[1], ARGV[a], ARGV[a + 1]); a = a + 2 end
for i = a, #ARGV do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ` + strconv.Itoa(activityMaxLen) + `, '*', 'a', ARGV[i])
end
return 1
`)

// recorder adds up what consumers settle and writes it in the background.
type recorder struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	tallies map[string]*handlerTally

	kick chan struct{} // something to write
	stop chan struct{} // closed by shutdown
	done chan struct{} // closed when the loop has returned
	once sync.Once
}

func newRecorder(rdb redis.UniversalClient) *recorder {
	return &recorder{
		rdb: rdb, tallies: map[string]*handlerTally{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

func (r *recorder) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(r.done)
		r.loop()
	}()
}

// shutdown writes what is left (bounded by flushTimeout) and stops the loop.
// Safe to call more than once.
func (r *recorder) shutdown() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

func (r *recorder) record(s settledCall) {
	r.mu.Lock()
	t := r.tallies[s.handler]
	if t == nil {
		t = newHandlerTally()
		r.tallies[s.handler] = t
	}
	t.add(s)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// loop writes at most every flushInterval, and only when there is something
// to write: an idle client makes no round trips.
func (r *recorder) loop() {
	for {
		select {
		case <-r.kick:
		case <-r.stop:
			r.flush()
			return
		}
		timer := time.NewTimer(flushInterval)
		select {
		case <-timer.C:
		case <-r.stop:
			timer.Stop()
			r.flush()
			return
		}
		r.flush()
	}
}

func (r *recorder) flush() {
	r.mu.Lock()
	tallies := r.tallies
	r.tallies = map[string]*handlerTally{}
	r.mu.Unlock()
	if len(tallies) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	names := make([]string, 0, len(tallies))
	calls := make([]*scriptCall, 0, len(tallies))
	stories := r.rdb.Pipeline()
	now := time.Now()
	for h, t := range tallies {
		names = append(names, h)
		calls = append(calls, t.script(h, now))
		for _, s := range append(t.ordinary, t.notable...) {
			if !s.story {
				continue
			}
			events := s.runEvents()
			vals := make([]any, 0, len(events)+1)
			if s.firstAttempt {
				vals = append(vals, mustJSON(s.queuedEvent()))
			}
			for _, e := range events {
				vals = append(vals, mustJSON(e))
			}
			stories.RPush(ctx, storyKey(s.id), vals...)
			stories.PExpire(ctx, storyKey(s.id), s.ttl)
		}
	}
	runScripts(ctx, r.rdb, calls)
	_, _ = stories.Exec(ctx) // stories are best effort: the result is kept regardless
	var failed []string
	var lastErr error
	for i, sc := range calls {
		if err := sc.cmd.Err(); err != nil {
			failed, lastErr = append(failed, names[i]), err
		}
	}
	if len(failed) == 0 {
		return
	}
	// Redis is unavailable: keep the counters for the next flush (the sampled
	// activity is dropped).
	slog.Debug("streams: writing stats failed; kept for the next flush", "handlers", failed, "err", lastErr)
	r.mu.Lock()
	for _, h := range failed {
		t := r.tallies[h]
		if t == nil {
			t = newHandlerTally()
			r.tallies[h] = t
		}
		t.merge(tallies[h])
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// script builds the flushScript run for handler h's tally.
func (t *handlerTally) script(h string, now time.Time) *scriptCall {
	args := make([]any, 0, 8+2*(len(t.counters)+len(t.rate)+len(t.last)+len(t.win.minute)+len(t.win.quarter))+len(t.ordinary)+len(t.notable))
	args = append(args, len(t.counters), len(t.rate), len(t.last), now.UnixMilli()/RateBucket.Milliseconds(),
		len(t.win.minute), len(t.win.quarter),
		now.UnixMilli()/WindowMinute.Milliseconds()-windowMinuteKeep+1, now.UnixMilli()/WindowQuarter.Milliseconds()-windowQuarterKeep+1)
	args = appendWindow(args, t.win.minute)
	args = appendWindow(args, t.win.quarter)
	args = appendSorted(args, t.counters)
	args = appendSorted(args, t.rate)
	args = appendSorted(args, t.last)
	sampled := append(append([]settledCall(nil), t.ordinary...), t.notable...)
	sort.Slice(sampled, func(i, j int) bool { return sampled[i].at.Before(sampled[j].at) })
	for _, s := range sampled {
		args = append(args, mustJSON(s.activity()))
	}
	return &scriptCall{script: flushScript, keys: []string{statsKey(h), rateKey(h), activityKey(h), windowMinuteKey(h), windowQuarterKey(h)}, args: args}
}

// appendSorted appends m's pairs in key order: a bucket's total comes before
// its per-method fields, and runs are reproducible.
func appendSorted(args []any, m map[string]int64) []any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k, m[k])
	}
	return args
}
