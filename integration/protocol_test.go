package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/streams"
)

// protocolFixture is one handler "p" with method "m" registered on a real
// Redis, and an edge id with its reply stream open, driven through
// streams.Client directly: the protocol without an edge or a consumer around it.
type protocolFixture struct {
	rdb    redis.UniversalClient
	edge   string
	client *streams.Client
}

func newProtocolFixture(t *testing.T) *protocolFixture {
	t.Helper()
	srv := startRedis(t)
	rdb := srv.Client(t)
	f := &protocolFixture{rdb: rdb, edge: ulid.Make().String(), client: streams.New(rdb, streams.Options{})}
	t.Cleanup(func() { _ = f.client.Close() })
	ctx := context.Background()
	if err := f.client.Register(ctx, streams.HandlerInfo{Name: "p", Methods: []streams.MethodInfo{{Name: "m"}}}, streams.HandlerSettings{}); err != nil {
		t.Fatal(err)
	}
	if err := f.client.EnsureGroup(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if err := f.client.OpenReplyStream(ctx, f.edge); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *protocolFixture) enqueue(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = streams.NewCallID("p")
		_, err := f.client.Enqueue(context.Background(), &streams.Call{
			ID: ids[i], Handler: "p", Method: "m", Params: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
			ReplyTo: f.edge, Deadline: time.Now().Add(time.Minute), Attempt: 1, EnqueuedAt: time.Now(),
		}, streams.EnqueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func (f *protocolFixture) read(t *testing.T, consumer string, n int) []streams.Delivery {
	t.Helper()
	ds, err := f.client.ReadCalls(context.Background(), "p", consumer, int64(n), -1)
	if err != nil || len(ds) != n {
		t.Fatalf("read %d calls, %v; want %d", len(ds), err, n)
	}
	return ds
}

// replies reads every reply in the edge's reply stream.
func (f *protocolFixture) replies(t *testing.T) map[string]int {
	t.Helper()
	rs, _, err := f.client.ReadReplies(context.Background(), f.edge, "0-0", 10000, -1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rs {
		seen[r.ID]++
	}
	return seen
}

// TestSecondSettleIsDropped breaks the one-reply promise on purpose: a call
// is taken by consumer A, claimed by consumer B as if A had died, and both
// finish it. Exactly one settle counts and the edge gets exactly one reply;
// in the same batch, calls only one consumer held are answered normally.
func TestSecondSettleIsDropped(t *testing.T) {
	f := newProtocolFixture(t)
	ctx := context.Background()
	ids := f.enqueue(t, 3)
	a := f.read(t, "a", 3)
	b, err := f.client.Claim(ctx, "p", "b", 0, 1) // B takes over the first call
	if err != nil || len(b) != 1 || b[0].Call.ID != ids[0] {
		t.Fatalf("claim: %v %v", b, err)
	}
	settled, err := f.client.Finish(ctx, &b[0], streams.ResultReply(ids[0], json.RawMessage(`"from b"`)), streams.Run{Consumer: "b"})
	if err != nil || !settled {
		t.Fatalf("b's finish: settled %v, %v", settled, err)
	}
	// A finishes all three at once: one script run; the first was B's.
	var wg sync.WaitGroup
	for i := range a {
		wg.Go(func() {
			ok, err := f.client.Finish(ctx, &a[i], streams.ResultReply(a[i].Call.ID, json.RawMessage(`"from a"`)), streams.Run{Consumer: "a"})
			switch {
			case err != nil:
				t.Errorf("a's finish of %s: %v", a[i].Call.ID, err)
			case ok != (a[i].Call.ID != ids[0]):
				t.Errorf("a's finish of %s: settled %v", a[i].Call.ID, ok)
			}
		})
	}
	wg.Wait()
	seen := f.replies(t)
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("call %s: %d replies, want 1 (all: %v)", id, seen[id], seen)
		}
	}
	if r, err := f.client.Result(ctx, ids[0]); err != nil || string(r.Body) != `"from b"` {
		t.Fatalf("result of the claimed call: %s %v, want b's", r.Body, err)
	}
	if n, err := f.client.Backlog(ctx, "p"); err != nil || n != 0 {
		t.Fatalf("backlog %d %v, want 0", n, err)
	}
}

// TestStatsExactWhileActivityIsSampled settles many calls faster than the
// recorder writes: counters and histograms stay exact, the activity feed
// keeps a bounded sample, and Close writes what was left.
func TestStatsExactWhileActivityIsSampled(t *testing.T) {
	f := newProtocolFixture(t)
	ctx := context.Background()
	const n = 300
	f.enqueue(t, n)
	consumer := streams.New(f.rdb, streams.Options{})
	ds := f.read(t, "c", n)
	done := make(chan error, n)
	for i := range ds {
		go func() {
			reply := streams.ResultReply(ds[i].Call.ID, json.RawMessage(`1`))
			if i%10 == 0 {
				reply = streams.ErrorReply(ds[i].Call.ID, streams.NewError(streams.CodeHandlerError, "no"))
			}
			_, err := consumer.Finish(ctx, &ds[i], reply, streams.Run{Consumer: "c", Started: time.Now(), Took: time.Millisecond})
			done <- err
		}()
	}
	for range ds {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := consumer.Close(); err != nil { // writes what the last interval held
		t.Fatal(err)
	}
	d, err := f.client.HandlerDetail(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var hist int64
	for _, h := range d.Totals.Histogram {
		hist += h
	}
	if d.Totals.Calls != n || d.Totals.Errors != n/10 || hist != n {
		t.Fatalf("totals %+v, want %d calls, %d errors, %d in the histogram", d.Totals, n, n/10, n)
	}
	act, err := f.client.Activity(ctx, "p", 1000)
	if err != nil {
		t.Fatal(err)
	}
	errors := 0
	for _, a := range act {
		if a.Outcome == "error" {
			errors++
		}
	}
	if len(act) == 0 || len(act) >= n || errors == 0 {
		t.Fatalf("activity: %d records (%d errors) for %d calls; want a sample with the errors in it", len(act), errors, n)
	}
	t.Logf("%d calls: %d activity records, %d of them errors", n, len(act), errors)
}

// TestDeadConsumerCallsClaimed drives the liveness protocol directly: a
// consumer that heartbeats keeps its calls however long they run; one that
// stops heartbeating for the dead-after time loses them at once to a live
// consumer (as further deliveries, the story saying why), is removed from
// the group and the registry, and what it settles or renews when it wakes
// is dropped: the caller gets the live consumer's reply only.
func TestDeadConsumerCallsClaimed(t *testing.T) {
	f := newProtocolFixture(t)
	ctx := context.Background()
	const deadAfter = 600 * time.Millisecond
	beat := func(name string) {
		t.Helper()
		if err := f.client.Heartbeat(ctx, "p", streams.ConsumerInfo{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	beat("slow")
	beat("dead")
	beat("live")
	slowIDs := f.enqueue(t, 1)
	slow := f.read(t, "slow", 1)
	ids := f.enqueue(t, 2)
	dead := f.read(t, "dead", 2)

	// Nobody is dead yet: nothing is claimed.
	if r, err := f.client.ClaimFromDead(ctx, "p", "live", deadAfter, 10); err != nil || len(r.Deliveries) != 0 || len(r.Removed) != 0 {
		t.Fatalf("claim with every consumer alive: %+v %v", r, err)
	}
	// "slow" keeps heartbeating while "dead" stays silent.
	var rescued streams.Rescued
	waitUntil(t, 10*time.Second, func() error {
		beat("slow")
		beat("live")
		r, err := f.client.ClaimFromDead(ctx, "p", "live", deadAfter, 10)
		if err != nil {
			return err
		}
		rescued.Deliveries = append(rescued.Deliveries, r.Deliveries...)
		rescued.Removed = append(rescued.Removed, r.Removed...)
		if len(rescued.Removed) == 0 {
			return fmt.Errorf("claimed %d calls so far, nobody removed", len(rescued.Deliveries))
		}
		return nil
	})
	if len(rescued.Deliveries) != 2 || len(rescued.Removed) != 1 || rescued.Removed[0] != "dead" {
		t.Fatalf("rescued %+v, want dead's 2 calls and dead removed", rescued)
	}
	for i, d := range rescued.Deliveries {
		if d.Call.ID != ids[i] || d.Deliveries != 2 || d.Attempt() != 2 ||
			!strings.Contains(d.Claimed, "consumer dead stopped heartbeating") || !strings.Contains(d.Claimed, "claimed by live") {
			t.Fatalf("rescued call %d: id %s (want %s), deliveries %d, attempt %d, claimed %q", i, d.Call.ID, ids[i], d.Deliveries, d.Attempt(), d.Claimed)
		}
		if !d.Call.Deadline.Equal(dead[i].Call.Deadline) {
			t.Fatalf("the deadline changed on redelivery: %s, was %s", d.Call.Deadline, dead[i].Call.Deadline)
		}
	}
	// The slow consumer, alive, still holds its call.
	if ok, err := f.client.Finish(ctx, &slow[0], streams.ResultReply(slowIDs[0], json.RawMessage(`"slow"`)), streams.Run{Consumer: "slow"}); err != nil || !ok {
		t.Fatalf("the slow consumer's finish: settled %v, %v", ok, err)
	}
	// "dead" wakes up: its lease renewal takes nothing back, its settles are dropped.
	lost, err := f.client.ExtendLease(ctx, "p", "dead", []string{dead[0].StreamID, dead[1].StreamID})
	if err != nil || len(lost) != 2 {
		t.Fatalf("the woken consumer's lease renewal: lost %v, %v; want both calls lost", lost, err)
	}
	if ok, err := f.client.Finish(ctx, &dead[0], streams.ResultReply(ids[0], json.RawMessage(`"late"`)), streams.Run{Consumer: "dead"}); err != nil || ok {
		t.Fatalf("the woken consumer's late finish: settled %v, %v; want dropped", ok, err)
	}
	if ok, err := f.client.Retry(ctx, &dead[1], time.Now(), streams.NewError(1, "x"), streams.Run{Consumer: "dead"}); err != nil || ok {
		t.Fatalf("the woken consumer's late retry: settled %v, %v; want dropped", ok, err)
	}
	for i := range rescued.Deliveries {
		d := &rescued.Deliveries[i]
		if ok, err := f.client.Finish(ctx, d, streams.ResultReply(d.Call.ID, json.RawMessage(`"live"`)), streams.Run{Consumer: "live", Started: time.Now()}); err != nil || !ok {
			t.Fatalf("the live consumer's finish of %s: settled %v, %v", d.Call.ID, ok, err)
		}
	}
	seen := f.replies(t)
	for _, id := range append(ids, slowIDs...) {
		if seen[id] != 1 {
			t.Errorf("call %s: %d replies, want 1", id, seen[id])
		}
	}
	for _, id := range ids {
		if r, err := f.client.Result(ctx, id); err != nil || string(r.Body) != `"live"` {
			t.Fatalf("result of %s: %s %v, want the live consumer's", id, r.Body, err)
		}
	}
	if n, err := f.client.Backlog(ctx, "p"); err != nil || n != 0 {
		t.Fatalf("backlog %d %v, want 0", n, err)
	}
	if d, err := f.client.HandlerDetail(ctx, "p"); err != nil {
		t.Fatal(err)
	} else {
		for _, c := range d.Consumers {
			if c.Name == "dead" {
				t.Fatalf("the dead consumer is still in the registry: %+v", d.Consumers)
			}
		}
	}
	// The story says who stopped heartbeating and who took over.
	waitUntil(t, 5*time.Second, func() error {
		events, err := f.client.Story(ctx, ids[0])
		if err != nil {
			return err
		}
		for _, e := range events {
			if e.Event == "claimed" && e.Consumer == "live" && strings.Contains(e.Detail, "consumer dead stopped heartbeating") {
				return nil
			}
		}
		return fmt.Errorf("no claimed event in %+v", events)
	})
}
