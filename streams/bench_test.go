package streams

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The envelope's hot paths, with -benchmem. Each has a baseline: the same
// data through encoding/json, which is what a naive envelope would cost.

func benchCall() *Call {
	params := json.RawMessage(`{"data":"` + strings.Repeat("x", 256-11) + `"}`)
	now := time.UnixMilli(1_764_000_000_000)
	return &Call{
		ID: "01JD4W5S3N2Q0XK8Y6W1ZB7C9E", Handler: "echo", Method: "echo", Params: params,
		ReplyTo: "01JD4W5S3N2Q0XK8Y6W1ZB7C9F", Deadline: now.Add(30 * time.Second), Attempt: 1,
		EnqueuedAt: now, ResultTTL: 10 * time.Minute, Caller: "127.0.0.1",
	}
}

func BenchmarkCallAppendFields(b *testing.B) {
	c := benchCall()
	args := make([]any, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		args = c.appendFields(args[:0])
	}
	_ = args
}

// BenchmarkCallAppendFieldsBaselineJSON encodes the same call with json.Marshal.
func BenchmarkCallAppendFieldsBaselineJSON(b *testing.B) {
	c := benchCall()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(c); err != nil {
			b.Fatal(err)
		}
	}
}

// streamValues is the map go-redis hands over for a stream entry.
func streamValues(c *Call) map[string]any {
	fields := c.appendFields(nil)
	m := make(map[string]any, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		var s string
		switch v := fields[i+1].(type) {
		case string:
			s = v
		case []byte:
			s = string(v)
		case int:
			s = strconv.Itoa(v)
		case int64:
			s = strconv.FormatInt(v, 10)
		}
		m[fields[i].(string)] = s
	}
	return m
}

func BenchmarkDecodeCall(b *testing.B) {
	values := streamValues(benchCall())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCall("echo", values); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeCallBaselineJSON decodes the same call with json.Unmarshal.
func BenchmarkDecodeCallBaselineJSON(b *testing.B) {
	data, err := json.Marshal(benchCall())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var c Call
		if err := json.Unmarshal(data, &c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReplyEncode(b *testing.B) {
	r := ResultReply("01JD4W5S3N2Q0XK8Y6W1ZB7C9E", benchCall().Params)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.encode()
	}
}

func BenchmarkDecodeReply(b *testing.B) {
	v := string(ResultReply("01JD4W5S3N2Q0XK8Y6W1ZB7C9E", benchCall().Params).encode())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeReply("01JD4W5S3N2Q0XK8Y6W1ZB7C9E", v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplyBaselineJSON encodes and decodes the same reply as a JSON object.
func BenchmarkReplyBaselineJSON(b *testing.B) {
	type wire struct {
		ID     string          `json:"id"`
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
	}
	w := wire{ID: "01JD4W5S3N2Q0XK8Y6W1ZB7C9E", OK: true, Result: benchCall().Params}
	b.ReportAllocs()
	for b.Loop() {
		data, err := json.Marshal(w)
		if err != nil {
			b.Fatal(err)
		}
		var back wire
		if err := json.Unmarshal(data, &back); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordSettled is the consumer's per-call cost of the stats,
// activity and story it used to write to Redis in each settle: counting in
// memory under one mutex. Its baseline is what the old settle built per call
// before any round trip: the activity record and story events as JSON.
func BenchmarkRecordSettled(b *testing.B) {
	r := newRecorder(nil)
	d := &Delivery{Handler: "echo", StreamID: "1-1", Deliveries: 1, Call: benchCall()}
	reply := ResultReply(d.Call.ID, d.Call.Params)
	run := Run{Consumer: "c1", Started: time.Now(), Took: 300 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		r.record(settledOf(d, settleAnswer, reply, run, "", time.Minute))
		if len(r.tallies["echo"].ordinary) == activityPerFlush {
			r.tallies = map[string]*handlerTally{} // what a flush does
		}
	}
}

func BenchmarkRecordSettledBaselineJSON(b *testing.B) {
	d := &Delivery{Handler: "echo", StreamID: "1-1", Deliveries: 1, Call: benchCall()}
	reply := ResultReply(d.Call.ID, d.Call.Params)
	run := Run{Consumer: "c1", Started: time.Now(), Took: 300 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		s := settledOf(d, settleAnswer, reply, run, "", time.Minute)
		_ = mustJSON(s.activity())
		_ = mustJSON(s.queuedEvent())
		for _, e := range s.runEvents() {
			_ = mustJSON(e)
		}
	}
}

// BenchmarkEventsEncodeDecode is one partial result through the reply
// stream's event encoding, written by the consumer and read by the edge.
func BenchmarkEventsEncodeDecode(b *testing.B) {
	evs := []Event{{Kind: EventPartial, Attempt: 1, Seq: 42, Data: json.RawMessage(`{"token":"hello","i":42}`)}}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEvents(buf[:0], evs)
		if _, err := decodeEvents(string(buf)); err != nil {
			b.Fatal(err)
		}
	}
}
