package app

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/streamrpc/streamrpc/streams"
)

// Hot paths of the edge, with -benchmem: the reply dispatch table under
// parallel load, and JSON-RPC decoding and encoding, each beside a baseline.

var benchIDs = func() []string {
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "01JD4W5S3N2Q0XK8Y6W" + strconv.FormatInt(int64(1_000_000+i), 36)
	}
	return ids
}()

// BenchmarkWaitersAddDeliver registers a waiter, delivers its reply and
// receives it, from GOMAXPROCS goroutines at once, while 10,000 other calls wait.
func BenchmarkWaitersAddDeliver(b *testing.B) {
	w := newWaiters()
	for i := range 10000 {
		w.add("idle-" + strconv.Itoa(i))
	}
	reply := streams.ResultReply("", json.RawMessage(`{"ok":true}`))
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := benchIDs[next.Add(1)%uint64(len(benchIDs))]
			ch := w.add(id)
			r := reply
			r.ID = id
			if !w.deliver(r) {
				b.Error("not delivered")
				return
			}
			<-ch
		}
	})
}

// BenchmarkWaitersBaselineOneMutex is the same with one map under one mutex.
func BenchmarkWaitersBaselineOneMutex(b *testing.B) {
	var mu sync.Mutex
	m := map[string]chan streams.Reply{}
	for i := range 10000 {
		m["idle-"+strconv.Itoa(i)] = make(chan streams.Reply, 1)
	}
	reply := streams.ResultReply("", json.RawMessage(`{"ok":true}`))
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := benchIDs[next.Add(1)%uint64(len(benchIDs))]
			ch := make(chan streams.Reply, 1)
			mu.Lock()
			m[id] = ch
			mu.Unlock()
			r := reply
			r.ID = id
			mu.Lock()
			c := m[id]
			delete(m, id)
			mu.Unlock()
			c <- r
			<-ch
		}
	})
}

var (
	benchParams  = `{"data":"` + strings.Repeat("x", 256-11) + `"}`
	benchRequest = []byte(`{"jsonrpc":"2.0","id":42,"method":"echo.echo","params":` + benchParams + `}`)
	benchBatch   = []byte("[" + strings.TrimSuffix(strings.Repeat(string(benchRequest)+",", 10), ",") + "]")
)

func BenchmarkDecodeJSONRPC(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		reqs, _, err := decodeJSONRPC(benchRequest, 1000)
		if err != nil || len(reqs) != 1 || reqs[0].err != nil {
			b.Fatal(err, reqs)
		}
	}
}

func BenchmarkDecodeJSONRPCBatch10(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		reqs, _, err := decodeJSONRPC(benchBatch, 1000)
		if err != nil || len(reqs) != 10 {
			b.Fatal(err)
		}
	}
}

// benchWireRequest is a JSON-RPC request as a plain struct.
type benchWireRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// BenchmarkDecodeJSONRPCBaselineUnmarshal decodes the request with
// json.Unmarshal into a struct, without any of the checks.
func BenchmarkDecodeJSONRPCBaselineUnmarshal(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var r benchWireRequest
		if err := json.Unmarshal(benchRequest, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeResult(b *testing.B) {
	id, result := json.RawMessage(`42`), json.RawMessage(benchParams)
	b.ReportAllocs()
	for b.Loop() {
		_ = encodeResult(id, result)
	}
}

// BenchmarkEncodeResultBaselineMarshal encodes the response with json.Marshal.
func BenchmarkEncodeResultBaselineMarshal(b *testing.B) {
	type response struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
	}
	r := response{JSONRPC: "2.0", ID: json.RawMessage(`42`), Result: json.RawMessage(benchParams)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(r); err != nil {
			b.Fatal(err)
		}
	}
}
