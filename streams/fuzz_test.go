package streams

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeCall feeds arbitrary field values to decodeCall. It must never
// panic, and it must either refuse the entry with an ErrBadEnvelope or return a
// call that encodes back to the same field values (numbers compared as numbers:
// "+7" and "007" both mean 7).
//
// tp and ts are the optional trace fields, present when not empty.
func FuzzDecodeCall(f *testing.F) {
	c := validCall()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	f.Add(c.ID, c.Method, string(c.Params), c.ReplyTo, "1700000030123", "3", "1700000000456", "90000", true, "", "")
	f.Add(c.ID, c.Method, "null", "", "0", "1", "0", "", false, "", "")
	f.Add("x", "m", `"s"`, "e", "-1", "1048576", "-9223372036854775808", "0", true, "", "")
	f.Add("", "m", "{}", "e", "1", "1", "1", "1", true, "", "")
	f.Add("id", "bad name", "{}", "e", "1", "1", "1", "1", true, "", "")
	f.Add("id", "m", "{", "e", "1", "1", "1", "1", true, "", "")
	f.Add("id", "m", "1", "{e}", "1", "1", "1", "1", true, "", "")
	f.Add("id", "m", "1", "e", "soon", "1", "1", "1", true, "", "")
	f.Add("id", "m", "1", "e", "1", "0", "1", "1", true, "", "")
	f.Add("id", "m", "1", "e", "1", "1", "1", "9223372036854775807", true, "", "")
	f.Add("id", "m", "[1, 2]", "e", "+5", "007", "1", "-0", true, "", "")
	f.Add("id", "m", "1", "e", "1", "1", "1", "1", true, tp, "vendor=opaque,other=x")
	f.Add("id", "m", "1", "e", "1", "1", "1", "1", true, strings.ToUpper(tp), "")
	f.Add("id", "m", "1", "e", "1", "1", "1", "1", true, "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "")
	f.Add("id", "m", "1", "e", "1", "1", "1", "1", true, "", "vendor=x")
	f.Add("id", "m", "1", "e", "1", "1", "1", "1", true, tp, "a=\x00")

	f.Fuzz(func(t *testing.T, id, method, params, replyTo, dl, attempt, enq, ttl string, hasTTL bool, tp, ts string) {
		values := map[string]any{
			fieldID:       id,
			fieldMethod:   method,
			fieldParams:   params,
			fieldReplyTo:  replyTo,
			fieldDeadline: dl,
			fieldAttempt:  attempt,
			fieldEnqueued: enq,
		}
		if hasTTL {
			values[fieldTTL] = ttl
		}
		if tp != "" {
			values[fieldTrace] = tp
		}
		if ts != "" {
			values[fieldTraceSt] = ts
		}
		call, err := decodeCall("h", values)
		if err != nil {
			if !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("decodeCall error %v does not wrap ErrBadEnvelope", err)
			}
			return
		}
		if call == nil {
			t.Fatal("decodeCall returned neither a call nor an error")
		}
		if call.Handler != "h" {
			t.Fatalf("Handler = %q, want %q", call.Handler, "h")
		}
		if ValidateID(call.ID) != nil || ValidateName("method", call.Method) != nil {
			t.Fatalf("decodeCall accepted an invalid id %q or method %q", call.ID, call.Method)
		}
		if call.Attempt < 1 {
			t.Fatalf("decodeCall accepted attempt %d", call.Attempt)
		}
		if call.ResultTTL < 0 {
			t.Fatalf("decodeCall accepted a negative result TTL %v", call.ResultTTL)
		}

		got := asStreamValues(t, call.appendFields(nil))
		if call.TraceParent != tp || call.TraceState != ts || (tp != "" && !ValidTraceParent(tp)) {
			t.Fatalf("trace context %q %q decoded as %q %q", tp, ts, call.TraceParent, call.TraceState)
		}
		for _, name := range []string{fieldID, fieldMethod, fieldParams, fieldReplyTo, fieldTrace, fieldTraceSt} {
			if got[name] != values[name] {
				t.Fatalf("field %q re-encodes as %q, want %q", name, got[name], values[name])
			}
		}
		numbers := []string{fieldDeadline, fieldAttempt, fieldEnqueued}
		if hasTTL {
			numbers = append(numbers, fieldTTL)
		} else if got[fieldTTL] != "0" {
			t.Fatalf("absent ttl re-encodes as %q, want 0", got[fieldTTL])
		}
		for _, name := range numbers {
			want, err := strconv.ParseInt(values[name].(string), 10, 64)
			if err != nil {
				t.Fatalf("decodeCall accepted non-numeric %q = %q", name, values[name])
			}
			if have, _ := strconv.ParseInt(got[name].(string), 10, 64); have != want {
				t.Fatalf("field %q = %q re-encodes as %q", name, values[name], got[name])
			}
		}
		// Decoding the re-encoded entry gives the same call again.
		again, err := decodeCall("h", got)
		if err != nil {
			t.Fatalf("re-encoded call does not decode: %v", err)
		}
		if !again.Deadline.Equal(call.Deadline) || !again.EnqueuedAt.Equal(call.EnqueuedAt) ||
			again.ResultTTL != call.ResultTTL || again.Attempt != call.Attempt || !bytes.Equal(again.Params, call.Params) {
			t.Fatalf("second decode %+v differs from first %+v", again, call)
		}
	})
}

// FuzzDecodeReply: decodeReply never panics, refuses with ErrBadEnvelope or
// returns a reply that encodes back to the same bytes, and Err never panics.
func FuzzDecodeReply(f *testing.F) {
	f.Add("id", `1{"x":1}`)
	f.Add("id", `0{"code":-32000,"message":"no"}`)
	f.Add("id", `0not json`)
	f.Add("id", "1")
	f.Add("", "")
	f.Add("id", "2{}")
	f.Add("id", "0{\"code\":1e400}")
	f.Add("id", `t1500,230;1{"x":1}`)
	f.Add("id", `t0,0;1{}`)
	f.Add("id", `t01,2;1{}`)
	f.Add("id", `t1;1{}`)

	f.Fuzz(func(t *testing.T, id, v string) {
		r, err := decodeReply(id, v)
		if err != nil {
			if !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("decodeReply error %v does not wrap ErrBadEnvelope", err)
			}
			return
		}
		if r.ID != id {
			t.Fatalf("ID = %q, want %q", r.ID, id)
		}
		outcome := v[0]
		if outcome == 't' {
			outcome = v[strings.IndexByte(v, ';')+1]
		}
		if r.OK != (outcome == '1') {
			t.Fatalf("OK = %v for outcome byte %q", r.OK, outcome)
		}
		if enc := string(r.encode()); enc != v {
			t.Fatalf("encode() = %q, want %q", enc, v)
		}
		e := r.Err()
		if r.OK != (e == nil) {
			t.Fatalf("Err() = %v for OK = %v", e, r.OK)
		}
	})
}

// FuzzValidateName: ValidateName never panics, and what it accepts is 1 to
// MaxNameLen bytes out of [a-zA-Z0-9_.-]. ValidateID must agree with it up to
// that length (ids may be longer: a handler name, a dot and a ULID), and a
// call id built of it names it as its handler.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"", "echo", "a.b-c_D9", "a b", "{x}", "a:b", "a/b", "héllo", "\x00", string(bytes.Repeat([]byte("a"), 65))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName("method", name)
		idErr := ValidateID(name)
		if (err == nil) != (idErr == nil) && len(name) <= MaxNameLen {
			t.Fatalf("ValidateName(%q) = %v but ValidateID = %v", name, err, idErr)
		}
		if h, err2 := ValidateCallID(name + ".01JD"); (err2 == nil) != (err == nil) || err == nil && h != name {
			t.Fatalf("ValidateCallID(%q) = %q, %v; ValidateName = %v", name+".01JD", h, err2, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("error message %q is not valid UTF-8", err.Error())
			}
			return
		}
		if len(name) < 1 || len(name) > MaxNameLen {
			t.Fatalf("accepted %q of %d bytes", name, len(name))
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
			if !ok {
				t.Fatalf("accepted %q with byte %q at %d", name, c, i)
			}
		}
	})
}
