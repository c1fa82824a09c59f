package streams

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The call envelope is one stream entry. Field names are short because they are
// repeated in every entry; params travel as the caller's bytes, never re-encoded.
//
//	field  value
//	id     call id (ULID: unique, sortable by creation time)
//	m      method
//	p      params, raw JSON
//	r      edge id to reply to (its reply stream is srpc:edge:{r}:replies)
//	dl     deadline, Unix milliseconds
//	a      attempt, from 1
//	t      time enqueued, Unix milliseconds
//	ttl    how long to keep the result, milliseconds (the edge's setting)
//	ip     the caller's address as the edge saw it (optional)
//	tp     W3C traceparent of the edge's span (optional: only when tracing)
//	ts     W3C tracestate that came with it (optional)
//	rid    the caller's X-Request-Id, its correlation id (optional)
const (
	fieldID       = "id"
	fieldMethod   = "m"
	fieldParams   = "p"
	fieldReplyTo  = "r"
	fieldDeadline = "dl"
	fieldAttempt  = "a"
	fieldEnqueued = "t"
	fieldTTL      = "ttl"
	fieldCaller   = "ip"
	fieldTrace    = "tp"
	fieldTraceSt  = "ts"
	fieldReqID    = "rid"
)

// maxRequestID is the longest caller X-Request-Id kept.
const maxRequestID = 128

// maxTraceState is the longest tracestate kept (W3C: 32 members of at most
// 256 bytes would be more; vendors keep it well under this).
const maxTraceState = 512

// maxTTLMillis is the largest result TTL, in milliseconds, a time.Duration holds.
const maxTTLMillis = int64((1<<63 - 1) / time.Millisecond)

// ErrBadEnvelope marks a stream entry that cannot be decoded into a call.
var ErrBadEnvelope = errors.New("bad call envelope")

// Call is one call as it travels through a handler's stream.
type Call struct {
	ID         string
	Handler    string
	Method     string
	Params     json.RawMessage
	ReplyTo    string // the edge id waiting for the reply
	Deadline   time.Time
	Attempt    int
	EnqueuedAt time.Time
	ResultTTL  time.Duration // 0: the consumer's default
	Caller     string        // the caller's address, for the activity record
	// TraceParent and TraceState are the W3C trace context of the edge's span
	// for this call ("" when tracing is off), so that the consumer's span is
	// its child. Set them with a propagator, not by hand: the decoder refuses
	// a malformed traceparent.
	TraceParent string
	TraceState  string
	// RequestID is the caller's own X-Request-Id ("" if it sent none): a
	// correlation id for logs and the story; the call's id stays ID.
	RequestID string
}

// appendFields appends the envelope as XADD field/value pairs.
func (c *Call) appendFields(args []any) []any {
	args = append(args,
		fieldID, c.ID,
		fieldMethod, c.Method,
		fieldParams, []byte(c.Params),
		fieldReplyTo, c.ReplyTo,
		fieldDeadline, c.Deadline.UnixMilli(),
		fieldAttempt, c.Attempt,
		fieldEnqueued, c.EnqueuedAt.UnixMilli(),
		fieldTTL, c.ResultTTL.Milliseconds(),
		fieldCaller, c.Caller,
	)
	if c.RequestID != "" {
		args = append(args, fieldReqID, c.RequestID)
	}
	if c.TraceParent != "" { // absent when the caller sent none: no bytes spent on it
		args = append(args, fieldTrace, c.TraceParent)
		if c.TraceState != "" {
			args = append(args, fieldTraceSt, c.TraceState)
		}
	}
	return args
}

// decodeCall rebuilds a call from a stream entry's values. Anything missing or
// malformed is an ErrBadEnvelope: such an entry is poison and is never run.
func decodeCall(handler string, values map[string]any) (*Call, error) {
	str := func(name string) (string, error) {
		v, ok := values[name]
		if !ok {
			return "", fmt.Errorf("%w: field %q missing", ErrBadEnvelope, name)
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%w: field %q is %T", ErrBadEnvelope, name, v)
		}
		return s, nil
	}
	num := func(name string) (int64, error) {
		s, err := str(name)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: field %q: %v", ErrBadEnvelope, name, err)
		}
		return n, nil
	}
	c := &Call{Handler: handler}
	var err error
	if c.ID, err = str(fieldID); err != nil {
		return nil, err
	}
	if h, err := ValidateCallID(c.ID); err != nil {
		return nil, fmt.Errorf("%w: call id: %v", ErrBadEnvelope, err)
	} else if h != handler {
		return nil, fmt.Errorf("%w: call id %q is not of handler %q", ErrBadEnvelope, c.ID, handler)
	}
	if c.Method, err = str(fieldMethod); err != nil {
		return c, err
	}
	if err := ValidateName("method", c.Method); err != nil {
		return c, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	params, err := str(fieldParams)
	if err != nil {
		return c, err
	}
	if !json.Valid([]byte(params)) {
		return c, fmt.Errorf("%w: params are not valid JSON", ErrBadEnvelope)
	}
	c.Params = json.RawMessage(params)
	if c.ReplyTo, err = str(fieldReplyTo); err != nil {
		return c, err
	}
	if c.ReplyTo != "" {
		if err := ValidateID(c.ReplyTo); err != nil {
			return c, fmt.Errorf("%w: reply address: %v", ErrBadEnvelope, err)
		}
	}
	dl, err := num(fieldDeadline)
	if err != nil {
		return c, err
	}
	c.Deadline = time.UnixMilli(dl)
	attempt, err := num(fieldAttempt)
	if err != nil {
		return c, err
	}
	if attempt < 1 || attempt > 1<<20 {
		return c, fmt.Errorf("%w: attempt %d out of range", ErrBadEnvelope, attempt)
	}
	c.Attempt = int(attempt)
	enq, err := num(fieldEnqueued)
	if err != nil {
		return c, err
	}
	c.EnqueuedAt = time.UnixMilli(enq)
	if _, ok := values[fieldTTL]; ok {
		ttl, err := num(fieldTTL)
		// Over maxTTLMillis the conversion to a Duration would overflow.
		if err != nil || ttl < 0 || ttl > maxTTLMillis {
			return c, fmt.Errorf("%w: field %q must be a non-negative number of milliseconds that fits a time.Duration", ErrBadEnvelope, fieldTTL)
		}
		c.ResultTTL = time.Duration(ttl) * time.Millisecond
	}
	if v, ok := values[fieldCaller].(string); ok && len(v) <= 128 {
		c.Caller = v
	}
	if v, ok := values[fieldReqID].(string); ok && ValidRequestID(v) {
		c.RequestID = v
	}
	if _, ok := values[fieldTrace]; ok {
		if c.TraceParent, err = str(fieldTrace); err != nil {
			return c, err
		}
		if !ValidTraceParent(c.TraceParent) {
			return c, fmt.Errorf("%w: field %q is not a W3C traceparent", ErrBadEnvelope, fieldTrace)
		}
	}
	if _, ok := values[fieldTraceSt]; ok {
		if c.TraceParent == "" {
			return c, fmt.Errorf("%w: field %q without %q", ErrBadEnvelope, fieldTraceSt, fieldTrace)
		}
		if c.TraceState, err = str(fieldTraceSt); err != nil {
			return c, err
		}
		if c.TraceState == "" || len(c.TraceState) > maxTraceState || !printableASCII(c.TraceState) {
			return c, fmt.Errorf("%w: field %q must be 1 to %d printable ASCII bytes", ErrBadEnvelope, fieldTraceSt, maxTraceState)
		}
	}
	return c, nil
}

// ValidTraceParent reports whether s is a version-00 W3C traceparent:
// 00-<32 hex trace id, not all zero>-<16 hex span id, not all zero>-<2 hex flags>,
// lower case, as propagators write it.
func ValidTraceParent(s string) bool {
	if len(s) != 55 || s[0] != '0' || s[1] != '0' || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	return lowerHex(s[3:35]) && lowerHex(s[36:52]) && lowerHex(s[53:55]) &&
		s[3:35] != "00000000000000000000000000000000" && s[36:52] != "0000000000000000"
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ValidRequestID reports whether s is a caller X-Request-Id the envelope
// carries: 1 to 128 printable ASCII bytes.
func ValidRequestID(s string) bool {
	return s != "" && len(s) <= maxRequestID && printableASCII(s)
}

// ValidTraceState reports whether s is a tracestate the envelope carries:
// 1 to 512 printable ASCII bytes.
func ValidTraceState(s string) bool {
	return s != "" && len(s) <= maxTraceState && printableASCII(s)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Reply is a call's outcome: the handler's result, or an error object.
type Reply struct {
	ID   string
	OK   bool
	Body json.RawMessage // the result when OK, else an Error object
	// QueueWait is how long the call waited from its enqueue to the start of
	// the attempt that answered it (for a retried call: earlier attempts and
	// backoff included), and Processing how long that attempt's handler ran.
	// Both are the consumer's measures, carried so that the edge can export
	// them too; zero when the call was not run (expired, cancelled queued).
	QueueWait  time.Duration
	Processing time.Duration
	// Events, when not nil, are streamed events of the call read off a reply
	// stream (partials.go): such a Reply is not the call's outcome, and only
	// ID is set besides.
	Events []Event
	// err is the decoded error object of a failed reply: decoded once, where
	// the reply is made or read off the wire, then carried (Err), so that the
	// status, the metrics, the log line and the span do not each decode it.
	err *Error
}

// ResultReply is a successful reply carrying result (raw JSON).
func ResultReply(id string, result json.RawMessage) Reply {
	return Reply{ID: id, OK: true, Body: result}
}

// ErrorReply is a failed reply carrying e.
func ErrorReply(id string, e *Error) Reply {
	body, err := json.Marshal(e)
	if err != nil { // Data was not valid JSON: keep code and message
		e = &Error{Code: e.Code, Message: e.Message}
		body, _ = json.Marshal(e)
	}
	return Reply{ID: id, OK: false, Body: body, err: e}
}

// Err decodes the error object of a failed reply (nil when OK).
func (r Reply) Err() *Error {
	if r.OK {
		return nil
	}
	if r.err != nil {
		return r.err
	}
	return decodeError(r.Body)
}

// decodeError decodes a failed reply's body; one that cannot be decoded is an
// internal error that says so.
func decodeError(body json.RawMessage) *Error {
	var e Error
	if err := json.Unmarshal(body, &e); err != nil {
		return &Error{Code: CodeInternal, Message: "undecodable error reply: " + err.Error()}
	}
	return &e
}

// A reply is stored (in the result key and the reply stream) as one byte of
// outcome, '1' ok or '0' error, followed by the body. A reply that was run
// starts with its timing: "t<queue wait µs>,<processing µs>;" (canonical
// decimals, not both zero). Edges older than the timing prefix cannot read
// it: upgrade edges before consumers.
func (r Reply) encode() []byte {
	qw, pr := max(r.QueueWait.Microseconds(), 0), max(r.Processing.Microseconds(), 0)
	b := make([]byte, 0, 1+len(r.Body)+32)
	if qw > 0 || pr > 0 {
		b = append(b, 't')
		b = strconv.AppendInt(b, qw, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, pr, 10)
		b = append(b, ';')
	}
	if r.OK {
		b = append(b, '1')
	} else {
		b = append(b, '0')
	}
	return append(b, r.Body...)
}

func decodeReply(id, v string) (Reply, error) {
	bad := fmt.Errorf("%w: reply for %s is malformed", ErrBadEnvelope, id)
	var qw, pr int64
	if len(v) > 0 && v[0] == 't' {
		timing, rest, ok := strings.Cut(v[1:], ";")
		q, p, ok2 := strings.Cut(timing, ",")
		if !ok || !ok2 {
			return Reply{}, bad
		}
		var okq, okp bool
		qw, okq = canonicalMicros(q)
		pr, okp = canonicalMicros(p)
		if !okq || !okp || qw == 0 && pr == 0 {
			return Reply{}, bad
		}
		v = rest
	}
	if len(v) < 2 || (v[0] != '0' && v[0] != '1') {
		return Reply{}, bad
	}
	r := Reply{ID: id, OK: v[0] == '1', Body: json.RawMessage(v[1:]),
		QueueWait: time.Duration(qw) * time.Microsecond, Processing: time.Duration(pr) * time.Microsecond}
	if !r.OK {
		r.err = decodeError(r.Body)
	}
	return r, nil
}

// canonicalMicros parses a count of microseconds written as encode writes it:
// digits only, no leading zero, at most 15 digits (over 30 years).
func canonicalMicros(s string) (int64, bool) {
	if s == "" || len(s) > 15 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}
