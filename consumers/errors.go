package consumers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/streamrpc/streamrpc/streams"
)

// Wire codes a handler may use (the full table is streams.Codes). A handler
// may also use codes of its own, outside -32768..-32000.
const (
	CodeInvalidParams  = streams.CodeInvalidParams
	CodeInternal       = streams.CodeInternal
	CodeMethodNotFound = streams.CodeMethodNotFound
	CodeHandlerError   = streams.CodeHandlerError
	CodeTimeout        = streams.CodeTimeout
)

// Error is an error with a wire code, message and optional data that a handler
// returns to tell the caller exactly what went wrong. Any other error reaches
// the caller as CodeHandlerError with the error's text.
type Error struct {
	Code    int
	Message string
	Data    any // encoded as JSON
	// Retryable asks for another attempt, after a backoff, while the
	// handler's MaxAttempts allow. Errors are final unless they say so.
	Retryable bool
}

func (e *Error) Error() string { return "rpc error " + strconv.Itoa(e.Code) + ": " + e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Retryable marks err as worth another attempt: the call is run again after
// an exponential backoff with jitter, up to the server's MaxAttempts, then
// moved to the dead letters. Without it a handler's error is final and goes
// straight back to the caller. Retryable(nil) is nil. See ExampleRetryable.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err}
}

type retryableError struct{ err error }

func (r *retryableError) Error() string { return r.err.Error() }
func (r *retryableError) Unwrap() error { return r.err }

// IsRetryable reports whether err asks for another attempt: it was wrapped
// by Retryable, or is an *Error with Retryable set.
func IsRetryable(err error) bool {
	var r *retryableError
	if errors.As(err, &r) {
		return true
	}
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

// ErrMethodNotFound is returned by a Mux for a method it does not have.
var ErrMethodNotFound = errors.New("method not found")

// wireError turns what a handler returned into the error object on the wire.
func wireError(err error) *streams.Error {
	var e *Error
	if errors.As(err, &e) {
		w := &streams.Error{Code: e.Code, Message: e.Message}
		if e.Data != nil {
			if b, merr := json.Marshal(e.Data); merr == nil {
				w.Data = b
			}
		}
		return w
	}
	switch {
	case errors.Is(err, ErrMethodNotFound):
		return streams.NewError(streams.CodeMethodNotFound, err.Error())
	case errors.Is(err, errPanic):
		return streams.NewError(streams.CodeInternal, err.Error())
	}
	return streams.NewError(streams.CodeHandlerError, err.Error())
}
