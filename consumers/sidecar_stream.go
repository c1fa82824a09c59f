package consumers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// A streaming upstream (docs/sidecar.md, "Streaming"): an app that answers
// 2xx with Content-Type text/event-stream or application/x-ndjson streams
// its result. Each event (SSE) or line (NDJSON) is a partial result, and the
// last one is the final result (so each is relayed once the next one comes);
// in SSE an "event: partial" is relayed at once and is never the result, an
// "event: result" is the final result whatever follows, "event: progress" a
// progress value and "event: error" an error object {code, message, data}
// that ends the call.

// sidecarAccept is what the sidecar tells the app it can read.
const sidecarAccept = "application/json, text/event-stream, application/x-ndjson"

const (
	streamSSE    = "sse"
	streamNDJSON = "ndjson"
)

// streamedBody returns the kind of stream a successful answer is, or "".
func streamedBody(res *http.Response) string {
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return ""
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	switch mt {
	case "text/event-stream":
		return streamSSE
	case "application/x-ndjson", "application/jsonl":
		return streamNDJSON
	}
	return ""
}

// upstreamReadError is a failure to read the stream: the app or the
// connection went away mid-stream (worth another attempt).
type upstreamReadError struct{ err error }

func (e *upstreamReadError) Error() string { return e.err.Error() }

// streamer is where a relayed stream goes: the call's *Request.
type streamer interface {
	Partial(v any) error
	Progress(v any) error
}

// relayStream reads the app's stream and relays it to the call's caller:
// partials through r.Partial, one behind (the last one is the result),
// progress through r.Progress. It returns the final result, or the error
// that ends the call.
func relayStream(r streamer, kind string, body io.Reader) (any, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxUpstreamBody)
	var held json.RawMessage // the last partial, sent once another comes
	n := 0
	next := func(event string, data []byte) (final any, err error, done bool) {
		n++
		data = bytes.TrimSpace(data)
		if !json.Valid(data) {
			return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("upstream streamed event %d that is not JSON", n)}, true
		}
		v := json.RawMessage(bytes.Clone(data))
		switch event {
		case "result":
			if held != nil {
				if err := r.Partial(held); err != nil {
					return nil, err, true
				}
			}
			return v, nil, true
		case "error":
			e := parseUpstreamError(v)
			if e.Code == 0 {
				e.Code = CodeHandlerError
			}
			if e.Message == "" {
				e.Message = "upstream streamed an error"
			}
			return nil, e, true
		case "progress":
			return nil, r.Progress(v), false
		}
		if held != nil {
			if err := r.Partial(held); err != nil {
				return nil, err, true
			}
			held = nil
		}
		if event == "partial" { // named a partial: never the result, sent at once
			return nil, r.Partial(v), false
		}
		if held != nil {
			if err := r.Partial(held); err != nil {
				return nil, err, true
			}
		}
		held = v
		return nil, nil, false
	}
	var event string
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		if kind == streamNDJSON {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if final, err, done := next("", line); done || err != nil {
				return final, err
			}
			continue
		}
		switch {
		case len(line) == 0: // an event ends
			if data != nil {
				final, err, done := next(event, data)
				if done || err != nil {
					return final, err
				}
			}
			event, data = "", nil
		case line[0] == ':': // a comment
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				event = string(value)
			case "data":
				if data != nil {
					data = append(data, '\n')
				}
				data = append(append([]byte{}, data...), value...)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &upstreamReadError{err}
	}
	if kind == streamSSE && data != nil { // the last event had no blank line after it
		if final, err, done := next(event, data); done || err != nil {
			return final, err
		}
	}
	if held == nil {
		return json.RawMessage("null"), nil
	}
	return held, nil
}
