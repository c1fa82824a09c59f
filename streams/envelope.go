package streams

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
)

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
}

// appendFields appends the envelope as XADD field/value pairs.
func (c *Call) appendFields(args []any) []any {
	return append(args,
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
	if err := ValidateID(c.ID); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
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
	return c, nil
}

// Reply is a call's outcome: the handler's result, or an error object.
type Reply struct {
	ID   string
	OK   bool
	Body json.RawMessage // the result when OK, else an Error object
}

// ResultReply is a successful reply carrying result (raw JSON).
func ResultReply(id string, result json.RawMessage) Reply {
	return Reply{ID: id, OK: true, Body: result}
}

// ErrorReply is a failed reply carrying e.
func ErrorReply(id string, e *Error) Reply {
	body, err := json.Marshal(e)
	if err != nil { // Data was not valid JSON: keep code and message
		body, _ = json.Marshal(&Error{Code: e.Code, Message: e.Message})
	}
	return Reply{ID: id, OK: false, Body: body}
}

// Err decodes the error object of a failed reply (nil when OK).
func (r Reply) Err() *Error {
	if r.OK {
		return nil
	}
	var e Error
	if err := json.Unmarshal(r.Body, &e); err != nil {
		return &Error{Code: CodeInternal, Message: "undecodable error reply: " + err.Error()}
	}
	return &e
}

// A reply is stored (in the result key and the reply stream) as one byte of
// outcome, '1' ok or '0' error, followed by the body.
func (r Reply) encode() []byte {
	b := make([]byte, 0, 1+len(r.Body))
	if r.OK {
		b = append(b, '1')
	} else {
		b = append(b, '0')
	}
	return append(b, r.Body...)
}

func decodeReply(id, v string) (Reply, error) {
	if len(v) < 2 || (v[0] != '0' && v[0] != '1') {
		return Reply{}, fmt.Errorf("%w: reply for %s is malformed", ErrBadEnvelope, id)
	}
	return Reply{ID: id, OK: v[0] == '1', Body: json.RawMessage(v[1:])}, nil
}
