package streams

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func init() { protocolCases = append(protocolCases, priorityProtocolCases...) }

// priorityProtocolCases cover the priority streams (priority.go) through
// every script that names a call's stream, on every topology.
var priorityProtocolCases = []protocolCase{
	{"priority/plain calls leave no priority stream; the first call with one creates them and the marker", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		plain := e.enqueue(e.newCall(e.h, ""), EnqueueOptions{})
		e.want("plain reference", plain.StreamID[0] >= '0' && plain.StreamID[0] <= '9', true)
		e.want("high stream before", e.exists(priorityStreamKey(e.h, PriorityHigh)), false)
		control, err := e.c.HeartbeatControl(e.ctx, e.h, ConsumerInfo{Name: "a"})
		e.noErr("heartbeat", err)
		e.want("control before", control, HandlerControl{})
		high := e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Priority: PriorityHigh})
		low := e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Priority: PriorityLow})
		e.want("high reference", high.StreamID[0], byte('h'))
		e.want("low reference", low.StreamID[0], byte('l'))
		e.want("high stream", e.xlen(priorityStreamKey(e.h, PriorityHigh)), int64(1))
		e.want("low stream", e.xlen(priorityStreamKey(e.h, PriorityLow)), int64(1))
		e.want("calls stream", e.xlen(callsKey(e.h)), int64(1))
		control, err = e.c.HeartbeatControl(e.ctx, e.h, ConsumerInfo{Name: "a"})
		e.noErr("heartbeat", err)
		e.want("control after", control, HandlerControl{Priorities: true})
		d, err := e.c.HandlerDetail(e.ctx, e.h)
		e.noErr("detail", err)
		e.want("backlog", [3]int64{d.Backlog, d.BacklogHigh, d.BacklogLow}, [3]int64{3, 1, 1})
		// A scheduled call's priority is ignored: it is forwarded to the calls stream.
		sched := e.newCall(e.h, "")
		e.enqueue(sched, EnqueueOptions{Async: true, ScheduleAt: time.Now().Add(time.Hour), Priority: PriorityHigh})
		e.want("high stream after a scheduled call", e.xlen(priorityStreamKey(e.h, PriorityHigh)), int64(1))
	}},
	{"priority/reads take the streams in the turn's order, as many as asked", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		for _, p := range []Priority{PriorityLow, PriorityLow, PriorityLow, PriorityNormal, PriorityNormal, PriorityHigh, PriorityHigh} {
			e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Priority: p})
		}
		prios := func(ds []Delivery) (out []Priority) {
			for _, d := range ds {
				if d.Err != nil {
					t.Fatalf("delivery: %v", d.Err)
				}
				out = append(out, d.Priority())
			}
			return out
		}
		r, err := e.c.ReadPriorities(e.ctx, e.h, "a", 3, time.Millisecond, ReadOrder(0))
		e.noErr("read", err)
		e.want("high first", prios(r.Deliveries), []Priority{PriorityHigh, PriorityHigh, PriorityNormal})
		r, err = e.c.ReadPriorities(e.ctx, e.h, "a", 2, time.Millisecond, ReadOrder(7))
		e.noErr("read", err)
		e.want("low first", prios(r.Deliveries), []Priority{PriorityLow, PriorityLow})
		r, err = e.c.ReadPriorities(e.ctx, e.h, "a", 5, time.Millisecond, ReadOrder(1))
		e.noErr("read", err)
		e.want("normal first, then the rest", prios(r.Deliveries), []Priority{PriorityNormal, PriorityLow})
		r, err = e.c.ReadPriorities(e.ctx, e.h, "a", 5, time.Millisecond, ReadOrder(0))
		e.noErr("read", err)
		if len(r.Deliveries) != 0 || len(strings.Fields(r.LastID)) != 3 {
			t.Fatalf("empty read: %+v, want the last ids of 3 streams", r)
		}
		// WaitForCalls returns once any stream gets a call.
		done := make(chan error, 1)
		go func() { done <- e.c.WaitForCalls(e.ctx, e.h, r.LastID, 10*time.Second) }()
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Priority: PriorityLow})
		select {
		case err := <-done:
			e.noErr("wait", err)
		case <-time.After(5 * time.Second):
			t.Fatal("WaitForCalls did not see the low call")
		}
	}},
	{"priority/the cycle starts high first 6 turns in 10, no two other turns adjacent", func(t *testing.T, e *protoEnv) {
		high := 0
		for turn := range uint64(len(readOrder)) {
			if ReadOrder(turn)[0] == PriorityHigh {
				high++
			} else if ReadOrder(turn + 1)[0] != PriorityHigh {
				t.Fatalf("turns %d and %d both start with another priority than high", turn, turn+1)
			}
		}
		e.want("high-first turns", high, 6)
	}},
	{"priority/answer, lease, status, cancel and claim find a high call's stream", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		edge := e.edge()
		call := e.newCall(e.h, edge)
		enq := e.enqueue(call, EnqueueOptions{Priority: PriorityHigh, Async: true})
		st, err := e.c.CallStatus(e.ctx, call.ID)
		e.noErr("status", err)
		e.want("queued status", [3]string{string(st.State), st.StreamID, st.Priority}, [3]string{string(StateQueued), enq.StreamID, "high"})
		r, err := e.c.ReadPriorities(e.ctx, e.h, "a", 1, time.Millisecond, ReadOrder(0))
		e.noErr("read", err)
		d := r.Deliveries[0]
		e.want("delivery", [2]string{d.StreamID, d.Call.ID}, [2]string{enq.StreamID, call.ID})
		st, err = e.c.CallStatus(e.ctx, call.ID)
		e.noErr("status", err)
		e.want("running", [2]string{string(st.State), st.Consumer}, [2]string{string(StateRunning), "a"})
		lost, err := e.c.ExtendLease(e.ctx, e.h, "a", []string{d.StreamID})
		e.noErr("lease", err)
		e.want("lost", len(lost), 0)
		lost, err = e.c.ExtendLease(e.ctx, e.h, "b", []string{d.StreamID})
		e.noErr("lease", err)
		e.want("lost by another", lost, []string{d.StreamID})
		claimed, err := e.c.Claim(e.ctx, e.h, "b", 0, 10)
		e.noErr("claim", err)
		if len(claimed) != 1 || claimed[0].StreamID != d.StreamID || claimed[0].Deliveries != 2 {
			t.Fatalf("claimed %+v, want %s delivered twice", claimed, d.StreamID)
		}
		ok, err := e.c.Finish(e.ctx, &claimed[0], ResultReply(call.ID, json.RawMessage(`1`)), Run{Consumer: "b"})
		e.noErr("finish", err)
		e.want("settled", ok, true)
		e.want("high stream after the answer", e.xlen(priorityStreamKey(e.h, PriorityHigh)), int64(0))
		e.want("replies", len(e.replies(edge)), 1)
		// A queued low call is cancelled in its stream.
		low := e.newCall(e.h, "")
		lenq := e.enqueue(low, EnqueueOptions{Priority: PriorityLow, Async: true})
		state, err := e.c.Cancel(e.ctx, e.h, low.ID, lenq.StreamID, time.Minute)
		e.noErr("cancel", err)
		e.want("cancelled", state, StateQueued)
		e.want("low stream after the cancel", e.xlen(priorityStreamKey(e.h, PriorityLow)), int64(0))
	}},
	{"priority/a dead consumer's high and low calls are rescued", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		_, err := e.c.HeartbeatControl(e.ctx, e.h, ConsumerInfo{Name: "dead"})
		e.noErr("heartbeat", err)
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Priority: PriorityHigh})
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Priority: PriorityLow})
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{})
		r, err := e.c.ReadPriorities(e.ctx, e.h, "dead", 3, time.Millisecond, ReadOrder(0))
		e.noErr("read", err)
		e.want("taken", len(r.Deliveries), 3)
		var got []Delivery
		deadline := time.Now().Add(10 * time.Second)
		for len(got) < 3 && time.Now().Before(deadline) {
			res, err := e.c.ClaimFromDead(e.ctx, e.h, "live", 50*time.Millisecond, 10)
			e.noErr("rescue", err)
			got = append(got, res.Deliveries...)
		}
		var ps []Priority
		for _, d := range got {
			ps = append(ps, d.Priority())
		}
		e.want("rescued", ps, []Priority{PriorityHigh, PriorityLow, PriorityNormal})
	}},
	{"priority/forget refuses a handler with priority calls waiting", func(t *testing.T, e *protoEnv) {
		e.register(e.h, HandlerSettings{})
		e.enqueue(e.newCall(e.h, ""), EnqueueOptions{Priority: PriorityLow})
		e.isErr("forget", e.c.Forget(e.ctx, e.h), ErrHandlerBusy)
		e.read("a", 0)
		r, err := e.c.ReadPriorities(e.ctx, e.h, "a", 1, time.Millisecond, ReadOrder(0))
		e.noErr("read", err)
		_, err = e.c.Finish(e.ctx, &r.Deliveries[0], ResultReply(r.Deliveries[0].Call.ID, json.RawMessage(`1`)), Run{Consumer: "a"})
		e.noErr("finish", err)
		e.noErr("forget", e.c.Forget(e.ctx, e.h))
	}},
}
