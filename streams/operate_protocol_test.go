package streams

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

func init() { protocolCases = append(protocolCases, operateProtocolCases...) }

// operateProtocolCases cover the operator's scripts (operate.go) and the
// window buckets of flushScript, on every topology.
var operateProtocolCases = []protocolCase{
	{"pause/the heartbeat says paused until resumed; unknown handlers refused", func(t *testing.T, e *protoEnv) {
		e.isErr("pause unknown", e.c.Pause(e.ctx, e.h), ErrNotFound)
		e.register(e.h, HandlerSettings{})
		e.noErr("pause", e.c.Pause(e.ctx, e.h))
		control, err := e.c.HeartbeatControl(e.ctx, e.h, ConsumerInfo{Name: "a"})
		e.noErr("heartbeat", err)
		e.want("paused", control, HandlerControl{Paused: true})
		d, err := e.c.HandlerDetail(e.ctx, e.h)
		e.noErr("detail", err)
		e.want("detail paused", d.Paused, true)
		e.register(e.h, HandlerSettings{}) // a consumer (re)starting keeps the pause
		e.noErr("resume", e.c.Resume(e.ctx, e.h))
		control, err = e.c.HeartbeatControl(e.ctx, e.h, ConsumerInfo{Name: "a"})
		e.noErr("heartbeat", err)
		e.want("paused after resume", control, HandlerControl{})
	}},
	{"runnow/a delayed call is queued at once, noted in its story", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		ok, err := e.c.Retry(e.ctx, &d, time.Now().Add(time.Hour), NewError(CodeHandlerError, "flaky"), protoRun)
		e.noErr("retry", err)
		e.want("retried", ok, true)
		p, err := e.c.ListCalls(e.ctx, e.h, CallQuery{State: "delayed", Limit: 10})
		e.noErr("list delayed", err)
		if len(p.Calls) != 1 || p.Calls[0].ID != d.Call.ID || p.Calls[0].Attempt != 2 || p.Calls[0].LastError != "flaky" {
			t.Fatalf("delayed %+v", p.Calls)
		}
		e.noErr("run now", e.c.RunNow(e.ctx, e.h, d.Call.ID, "api_key ops"))
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 1)
		e.want("delayed", e.rdb.ZCard(e.ctx, delayedKey(e.h)).Val(), 0)
		e.isErr("run now again", e.c.RunNow(e.ctx, e.h, d.Call.ID, ""), ErrNotFound)
		events, err := e.c.Story(e.ctx, d.Call.ID)
		e.noErr("story", err)
		if last := events[len(events)-1]; last.Event != EventRunNow || last.Detail != "by an operator (api_key ops)" {
			t.Fatalf("story %+v, want run_now last", events)
		}
	}},
	{"cancelcall/a queued call is removed and answered; its story starts with queued", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{})
		p, err := e.c.ListCalls(e.ctx, e.h, CallQuery{State: "queued", Limit: 10})
		e.noErr("list queued", err)
		if len(p.Calls) != 1 || p.Calls[0].Position != 1 {
			t.Fatalf("queued %+v", p.Calls)
		}
		id := p.Calls[0].ID
		st, err := e.c.CancelByOperator(e.ctx, e.h, id, p.Calls[0].StreamID, "")
		e.noErr("cancel", err)
		e.want("was", st, StateQueued)
		e.want("XLEN calls", e.xlen(callsKey(e.h)), 0)
		r, err := e.c.Result(e.ctx, id)
		e.noErr("result", err)
		e.want("answered", replyState(r), StateCancelled)
		events, err := e.c.Story(e.ctx, id)
		e.noErr("story", err)
		if len(events) != 2 || events[0].Event != "queued" || events[1].Event != EventCancelled {
			t.Fatalf("story %+v", events)
		}
		_, err = e.c.CancelByOperator(e.ctx, e.h, id, p.Calls[0].StreamID, "")
		e.isErr("cancel again", err, ErrNotFound)
	}},
	{"windows/the flush adds calls to the minute and quarter-hour buckets", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		d := e.taken("", "a")
		minute := func() string { return strconv.FormatInt(time.Now().UnixMilli()/WindowMinute.Milliseconds(), 10) + ":c" }
		before := minute()
		_, err := e.c.Finish(e.ctx, &d, ResultReply(d.Call.ID, json.RawMessage(`1`)), protoRun)
		e.noErr("finish", err)
		e.noErr("close", e.c.Close()) // writes what was recorded
		m := e.rdb.HGetAll(e.ctx, windowMinuteKey(e.h)).Val()
		n1, _ := strconv.Atoi(m[before])
		n2, _ := strconv.Atoi(m[minute()])
		if before == minute() {
			n2 = 0
		}
		e.want("minute calls", n1+n2, 1)
		e.want("quarter fields", e.rdb.HLen(e.ctx, windowQuarterKey(e.h)).Val() > 0, true)
		c2 := New(e.rdb, Options{})
		defer c2.Close()
		w, _ := ParseWindow("5m")
		det, err := c2.HandlerDetailIn(e.ctx, e.h, w)
		e.noErr("detail", err)
		if det.Window == nil || det.Window.Calls != 1 || det.Window.Errors != 0 || det.Window.P50MS == 0 || len(det.Window.Series) != 5 {
			t.Fatalf("window %+v", det.Window)
		}
	}},
}
