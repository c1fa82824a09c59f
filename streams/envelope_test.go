package streams

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// asStreamValues turns an XADD field/value list into the map go-redis returns
// for a stream entry: every value a string, as Redis stores them.
func asStreamValues(t testing.TB, fields []any) map[string]any {
	t.Helper()
	if len(fields)%2 != 0 {
		t.Fatalf("odd number of field/value items: %d", len(fields))
	}
	m := make(map[string]any, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		name, ok := fields[i].(string)
		if !ok {
			t.Fatalf("field name %d is %T, want string", i, fields[i])
		}
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
		default:
			t.Fatalf("field %q has a value of type %T the test cannot convert", name, v)
		}
		if _, dup := m[name]; dup {
			t.Fatalf("field %q appears twice", name)
		}
		m[name] = s
	}
	return m
}

func validCall() *Call {
	return &Call{
		ID:         "billing.01HZX3Q4R5S6T7V8W9XAYBZC0D",
		Handler:    "billing",
		Method:     "charge.v2",
		Params:     json.RawMessage(`{"amount": 12, "currency":"EUR", "tags":["a","b"]}`),
		ReplyTo:    "01HZX3Q4R5S6T7V8W9XAYBZC0E",
		Deadline:   time.UnixMilli(1_700_000_030_123),
		Attempt:    3,
		EnqueuedAt: time.UnixMilli(1_700_000_000_456),
		ResultTTL:  90 * time.Second,
	}
}

func TestCallRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		call func() *Call
	}{
		{name: "full", call: validCall},
		{name: "no reply address", call: func() *Call { c := validCall(); c.ReplyTo = ""; return c }},
		{name: "null params", call: func() *Call { c := validCall(); c.Params = json.RawMessage("null"); return c }},
		{name: "default result ttl", call: func() *Call { c := validCall(); c.ResultTTL = 0; return c }},
		{name: "first attempt", call: func() *Call { c := validCall(); c.Attempt = 1; return c }},
		{name: "largest result ttl", call: func() *Call {
			c := validCall()
			c.ResultTTL = time.Duration(9223372036854) * time.Millisecond
			return c
		}},
		{name: "last attempt", call: func() *Call { c := validCall(); c.Attempt = 1 << 20; return c }},
		{name: "zero times", call: func() *Call { c := validCall(); c.Deadline, c.EnqueuedAt = time.Time{}, time.Time{}; return c }},
		{name: "params with unicode and spaces", call: func() *Call {
			c := validCall()
			c.Params = json.RawMessage(" [\"héllo\", {\"k\" : null}] ")
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.call()
			values := asStreamValues(t, in.appendFields(nil))
			out, err := decodeCall(in.Handler, values)
			if err != nil {
				t.Fatalf("decodeCall: %v", err)
			}
			assertCallEqual(t, in, out)
		})
	}
}

func TestAppendFieldsKeepsPrefix(t *testing.T) {
	prefix := []any{"method", int64(5)}
	args := validCall().appendFields(prefix)
	if len(args) != 2+2*9 {
		t.Fatalf("appendFields gave %d items, want %d", len(args), 2+2*9)
	}
	if args[0] != "method" || args[1] != int64(5) {
		t.Fatalf("appendFields changed the prefix: %v", args[:2])
	}
	// The params travel as the caller's bytes, not re-encoded.
	values := asStreamValues(t, args[2:])
	if got, want := values[fieldParams], string(validCall().Params); got != want {
		t.Fatalf("params field = %q, want the caller's bytes %q", got, want)
	}
}

func assertCallEqual(t *testing.T, want, got *Call) {
	t.Helper()
	if got.ID != want.ID {
		t.Errorf("ID = %q, want %q", got.ID, want.ID)
	}
	if got.Handler != want.Handler {
		t.Errorf("Handler = %q, want %q", got.Handler, want.Handler)
	}
	if got.Method != want.Method {
		t.Errorf("Method = %q, want %q", got.Method, want.Method)
	}
	if !bytes.Equal(got.Params, want.Params) {
		t.Errorf("Params = %s, want %s (byte for byte)", got.Params, want.Params)
	}
	if got.ReplyTo != want.ReplyTo {
		t.Errorf("ReplyTo = %q, want %q", got.ReplyTo, want.ReplyTo)
	}
	if !got.Deadline.Equal(want.Deadline) {
		t.Errorf("Deadline = %v, want %v", got.Deadline, want.Deadline)
	}
	if got.Attempt != want.Attempt {
		t.Errorf("Attempt = %d, want %d", got.Attempt, want.Attempt)
	}
	if !got.EnqueuedAt.Equal(want.EnqueuedAt) {
		t.Errorf("EnqueuedAt = %v, want %v", got.EnqueuedAt, want.EnqueuedAt)
	}
	if got.ResultTTL != want.ResultTTL {
		t.Errorf("ResultTTL = %v, want %v", got.ResultTTL, want.ResultTTL)
	}
}

func TestDecodeCallErrors(t *testing.T) {
	// with returns valid values with one field set (or, for a nil value, removed).
	with := func(field string, value any) map[string]any {
		m := asStreamValues(t, validCall().appendFields(nil))
		if value == nil {
			delete(m, field)
		} else {
			m[field] = value
		}
		return m
	}
	tests := []struct {
		name    string
		values  map[string]any
		mention string
		// wantCall: the partially decoded call comes back with its ID, so a
		// consumer can still answer the caller.
		wantCall bool
	}{
		{name: "missing id", values: with(fieldID, nil), mention: `"id" missing`},
		{name: "missing method", values: with(fieldMethod, nil), mention: `"m" missing`, wantCall: true},
		{name: "missing params", values: with(fieldParams, nil), mention: `"p" missing`, wantCall: true},
		{name: "missing reply to", values: with(fieldReplyTo, nil), mention: `"r" missing`, wantCall: true},
		{name: "missing deadline", values: with(fieldDeadline, nil), mention: `"dl" missing`, wantCall: true},
		{name: "missing attempt", values: with(fieldAttempt, nil), mention: `"a" missing`, wantCall: true},
		{name: "missing enqueued", values: with(fieldEnqueued, nil), mention: `"t" missing`, wantCall: true},
		{name: "empty id", values: with(fieldID, ""), mention: "call id"},
		{name: "id with brace", values: with(fieldID, "ab{c}"), mention: "call id"},
		{name: "id too long", values: with(fieldID, strings.Repeat("a", 65)), mention: "call id"},
		{name: "id not a string", values: with(fieldID, 12), mention: `"id" is int`},
		{name: "bad method", values: with(fieldMethod, "no spaces"), mention: "method name", wantCall: true},
		{name: "empty method", values: with(fieldMethod, ""), mention: "method name is empty", wantCall: true},
		{name: "invalid JSON params", values: with(fieldParams, `{"a":`), mention: "not valid JSON", wantCall: true},
		{name: "empty params", values: with(fieldParams, ""), mention: "not valid JSON", wantCall: true},
		{name: "bad reply address", values: with(fieldReplyTo, "edge:1"), mention: "reply address", wantCall: true},
		{name: "attempt 0", values: with(fieldAttempt, "0"), mention: "attempt 0 out of range", wantCall: true},
		{name: "attempt negative", values: with(fieldAttempt, "-1"), mention: "out of range", wantCall: true},
		{name: "attempt huge", values: with(fieldAttempt, strconv.Itoa(1<<20+1)), mention: "out of range", wantCall: true},
		{name: "attempt not numeric", values: with(fieldAttempt, "one"), mention: `"a"`, wantCall: true},
		{name: "non-numeric deadline", values: with(fieldDeadline, "soon"), mention: `"dl"`, wantCall: true},
		{name: "float deadline", values: with(fieldDeadline, "1.5"), mention: `"dl"`, wantCall: true},
		{name: "deadline overflow", values: with(fieldDeadline, "99999999999999999999"), mention: `"dl"`, wantCall: true},
		{name: "non-numeric enqueued", values: with(fieldEnqueued, "x"), mention: `"t"`, wantCall: true},
		{name: "negative ttl", values: with(fieldTTL, "-5"), mention: `"ttl"`, wantCall: true},
		{name: "non-numeric ttl", values: with(fieldTTL, "1m"), mention: `"ttl"`, wantCall: true},
		{name: "ttl overflows a Duration", values: with(fieldTTL, "9223372036855"), mention: `"ttl"`, wantCall: true},
		{name: "deadline not a string", values: with(fieldDeadline, int64(5)), mention: `"dl" is int64`, wantCall: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeCall("billing", tt.values)
			if !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("decodeCall error = %v, want one wrapping ErrBadEnvelope", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if tt.wantCall {
				if c == nil || c.ID != validCall().ID {
					t.Errorf("decodeCall returned call %+v, want the partial call with its id", c)
				}
			} else if c != nil {
				t.Errorf("decodeCall returned call %+v with no usable id, want nil", c)
			}
		})
	}
}

// An envelope written before the ttl field existed still decodes.
func TestDecodeCallWithoutTTL(t *testing.T) {
	values := asStreamValues(t, validCall().appendFields(nil))
	delete(values, fieldTTL)
	c, err := decodeCall("billing", values)
	if err != nil {
		t.Fatalf("decodeCall without ttl: %v", err)
	}
	if c.ResultTTL != 0 {
		t.Fatalf("ResultTTL = %v, want 0 (the consumer's default)", c.ResultTTL)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		reply Reply
		want  *Error // nil for an OK reply
	}{
		{name: "ok object", reply: ResultReply("id1", json.RawMessage(`{"x":1}`))},
		{name: "ok null", reply: ResultReply("id2", json.RawMessage(`null`))},
		{name: "ok string", reply: ResultReply("id3", json.RawMessage(`"0"`))},
		{
			name:  "error without data",
			reply: ErrorReply("id4", NewError(CodeHandlerError, "card declined")),
			want:  &Error{Code: CodeHandlerError, Message: "card declined"},
		},
		{
			name:  "error with data",
			reply: ErrorReply("id5", &Error{Code: 4001, Message: "limit", Data: json.RawMessage(`{"max":10}`)}),
			want:  &Error{Code: 4001, Message: "limit", Data: json.RawMessage(`{"max":10}`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := tt.reply.encode()
			wantFirst := byte('0')
			if tt.reply.OK {
				wantFirst = '1'
			}
			if enc[0] != wantFirst {
				t.Fatalf("encoded reply starts with %q, want %q", enc[0], wantFirst)
			}
			got, err := decodeReply(tt.reply.ID, string(enc))
			if err != nil {
				t.Fatalf("decodeReply: %v", err)
			}
			if got.ID != tt.reply.ID || got.OK != tt.reply.OK || !bytes.Equal(got.Body, tt.reply.Body) {
				t.Fatalf("round trip = %+v (body %s), want %+v (body %s)", got, got.Body, tt.reply, tt.reply.Body)
			}
			e := got.Err()
			if tt.want == nil {
				if e != nil {
					t.Fatalf("Err() of an OK reply = %v, want nil", e)
				}
				return
			}
			if e == nil {
				t.Fatal("Err() of an error reply = nil")
			}
			if e.Code != tt.want.Code || e.Message != tt.want.Message || !bytes.Equal(e.Data, tt.want.Data) {
				t.Fatalf("Err() = %+v (data %s), want %+v (data %s)", e, e.Data, tt.want, tt.want.Data)
			}
		})
	}
}

func TestDecodeReplyMalformed(t *testing.T) {
	tests := []struct {
		name  string
		value string
	}{
		{name: "empty", value: ""},
		{name: "flag only ok", value: "1"},
		{name: "flag only error", value: "0"},
		{name: "bad flag", value: "2{}"},
		{name: "no flag", value: `{"x":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeReply("call-1", tt.value)
			if !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("decodeReply(%q) error = %v, want one wrapping ErrBadEnvelope", tt.value, err)
			}
			if !strings.Contains(err.Error(), "call-1") {
				t.Errorf("error %q does not name the call id", err)
			}
		})
	}
}

func TestErrorReplyInvalidDataFallsBack(t *testing.T) {
	r := ErrorReply("id", &Error{Code: 4002, Message: "bad thing", Data: json.RawMessage(`{not json`)})
	if r.OK {
		t.Fatal("ErrorReply gave an OK reply")
	}
	if !json.Valid(r.Body) {
		t.Fatalf("ErrorReply body %q is not valid JSON", r.Body)
	}
	e := r.Err()
	if e.Code != 4002 || e.Message != "bad thing" {
		t.Fatalf("Err() = %+v, want code 4002 and message %q", e, "bad thing")
	}
	if e.Data != nil {
		t.Fatalf("Err().Data = %s, want the invalid data dropped", e.Data)
	}
}

func TestReplyErr(t *testing.T) {
	tests := []struct {
		name     string
		reply    Reply
		wantNil  bool
		wantCode int
		mention  string
	}{
		{name: "ok", reply: Reply{ID: "a", OK: true, Body: json.RawMessage(`{"code":1}`)}, wantNil: true},
		{name: "error object", reply: Reply{ID: "a", Body: json.RawMessage(`{"code":-32001,"message":"late"}`)}, wantCode: CodeTimeout, mention: "late"},
		{name: "undecodable", reply: Reply{ID: "a", Body: json.RawMessage(`nope`)}, wantCode: CodeInternal, mention: "undecodable error reply"},
		{name: "wrong type", reply: Reply{ID: "a", Body: json.RawMessage(`{"code":"x"}`)}, wantCode: CodeInternal, mention: "undecodable error reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.reply.Err()
			if tt.wantNil {
				if e != nil {
					t.Fatalf("Err() = %v, want nil", e)
				}
				return
			}
			if e == nil {
				t.Fatal("Err() = nil, want an error")
			}
			if e.Code != tt.wantCode {
				t.Errorf("Err().Code = %d, want %d", e.Code, tt.wantCode)
			}
			if !strings.Contains(e.Message, tt.mention) {
				t.Errorf("Err().Message = %q, want it to mention %q", e.Message, tt.mention)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := NewError(CodeTimeout, "too slow")
	if got, want := e.Error(), fmt.Sprintf("rpc error %d: too slow", CodeTimeout); got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

// TestReplyErrorDecodedOnce: a failed reply read off the wire carries its
// error decoded, so each of its readers (status, metrics, log, span, stats)
// gets it without decoding the body again.
func TestReplyErrorDecodedOnce(t *testing.T) {
	wire := string(ErrorReply("echo.1", &Error{Code: CodeHandlerError, Message: "boom"}).encode())
	r, err := decodeReply("echo.1", wire)
	if err != nil {
		t.Fatal(err)
	}
	if e := r.Err(); e == nil || e.Code != CodeHandlerError || e.Message != "boom" {
		t.Fatalf("Err() = %+v", e)
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.Err() }); n != 0 {
		t.Fatalf("Err() allocates %.0f times: the body is decoded again", n)
	}
}

// enqueueScript names the fixed envelope fields itself and takes only their
// values, in appendFields' order: the two must not drift apart.
func TestEnqueueFixedFieldsAreAppendFieldsFirst(t *testing.T) {
	c := benchCall()
	c.RequestID, c.TraceParent, c.TraceState = "r", testTraceParent, "a=b"
	fields := c.appendFields(nil)
	for i, name := range enqueueFixedFields {
		if fields[2*i] != name {
			t.Fatalf("appendFields' field %d is %v, enqueueFixedFields has %q", i, fields[2*i], name)
		}
	}
	for i := 2 * len(enqueueFixedFields); i < len(fields); i += 2 {
		if slices.Contains(enqueueFixedFields[:], fields[i].(string)) {
			t.Fatalf("optional field %v is also a fixed one", fields[i])
		}
	}
	// The op sends o, k, the fixed values, then the optional pairs as they are.
	o := (&Client{}).newEnqueueOp(c, EnqueueOptions{})
	want := []any{"", len(fields) - 18}
	for i := 1; i < 18; i += 2 {
		want = append(want, fields[i])
	}
	want = append(want, fields[18:]...)
	if o.options || fmt.Sprint(o.args) != fmt.Sprint(want) {
		t.Fatalf("plain call's args %v (options %v), want %v", o.args, o.options, want)
	}
}
