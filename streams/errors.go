package streams

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Sentinel errors of the protocol. Callers test them with errors.Is.
var (
	// ErrNoHandler: no consumer has ever registered the handler.
	ErrNoHandler = errors.New("no consumer has registered this handler")
	// ErrNoMethod: the handler is registered but not with this method.
	ErrNoMethod = errors.New("the handler has no such method")
	// ErrUnavailable: Redis could not be reached or answered with an error.
	ErrUnavailable = errors.New("redis unavailable")
	// ErrNotFound: no result is kept under that call id (unknown or expired).
	ErrNotFound = errors.New("no result for this call id")
)

// Wire error codes: JSON-RPC 2.0's where one fits, and streamrpc's own server
// errors in -32000..-32099. A handler may return any other code of its own.
const (
	CodeParseError          = -32700
	CodeInvalidRequest      = -32600
	CodeMethodNotFound      = -32601
	CodeInvalidParams       = -32602
	CodeInternal            = -32603
	CodeHandlerError        = -32000
	CodeTimeout             = -32001
	CodeUnavailable         = -32002
	CodeBodyTooLarge        = -32003
	CodeUnsupportedMedia    = -32004
	CodeOverloaded          = -32005
	CodeCancelled           = -32006
	CodeDeadLettered        = -32007
	CodeNotFound            = -32008
	CodeIdempotencyMismatch = -32009
	CodeUnauthenticated     = -32010
	CodeForbidden           = -32011
	CodeRateLimited         = -32012
)

// CodeInfo describes one wire error code: its name and the HTTP status the edge
// answers with. It is the one table of codes; docs/http-api.md prints it.
type CodeInfo struct {
	Code    int
	Name    string
	Status  int
	Meaning string
}

// Codes is the table of every code streamrpc itself produces.
var Codes = []CodeInfo{
	{CodeParseError, "parse_error", http.StatusBadRequest, "the body is not valid JSON"},
	{CodeInvalidRequest, "invalid_request", http.StatusBadRequest, "a malformed request: bad handler or method name, bad header value"},
	{CodeMethodNotFound, "method_not_found", http.StatusNotFound, "no consumer has registered this handler, or the handler has no such method"},
	{CodeInvalidParams, "invalid_params", http.StatusUnprocessableEntity, "the params do not fit the method"},
	{CodeInternal, "internal_error", http.StatusInternalServerError, "the handler panicked or the edge failed"},
	{CodeHandlerError, "handler_error", http.StatusUnprocessableEntity, "the handler returned an error (a handler may also use its own codes: those answer 422 too)"},
	{CodeTimeout, "timeout", http.StatusGatewayTimeout, "no reply before the call's deadline"},
	{CodeUnavailable, "unavailable", http.StatusServiceUnavailable, "Redis cannot be reached; the call was not accepted"},
	{CodeBodyTooLarge, "body_too_large", http.StatusRequestEntityTooLarge, "the body is over STREAMRPC_MAX_BODY"},
	{CodeUnsupportedMedia, "unsupported_media_type", http.StatusUnsupportedMediaType, "the Content-Type is not application/json"},
	{CodeOverloaded, "overloaded", http.StatusServiceUnavailable, "the handler's backlog is full; retry after Retry-After"},
	{CodeCancelled, "cancelled", 499, "the caller cancelled the call"},
	{CodeDeadLettered, "dead_lettered", http.StatusBadGateway, "the call failed on every attempt and was moved to the dead letters"},
	{CodeNotFound, "not_found", http.StatusNotFound, "no call or result with that id (unknown, or expired after the result TTL)"},
	{CodeIdempotencyMismatch, "idempotency_mismatch", http.StatusUnprocessableEntity, "an Idempotency-Key was reused with different params"},
	{CodeUnauthenticated, "unauthenticated", http.StatusUnauthorized, "no credentials, or an API key or token the edge does not accept (unknown, expired, wrong audience or issuer)"},
	{CodeForbidden, "forbidden", http.StatusForbidden, "the credentials are good but their scopes do not allow this route or method (or a CSRF token is missing)"},
	{CodeRateLimited, "rate_limited", http.StatusTooManyRequests, "the caller (principal or IP address) is over its rate limit, or has too many connections; retry after Retry-After"},
}

var codeInfo = func() map[int]CodeInfo {
	m := make(map[int]CodeInfo, len(Codes))
	for _, c := range Codes {
		m[c.Code] = c
	}
	return m
}()

// HTTPStatus is the status the edge answers with for an error of this code.
// Codes of a handler's own choosing answer 422: the call was well formed, reached
// the handler, and the handler refused it. 5xx is kept for failures of the system,
// so that clients and proxies that retry on 5xx do not repeat a business error.
func HTTPStatus(code int) int {
	if c, ok := codeInfo[code]; ok {
		return c.Status
	}
	return http.StatusUnprocessableEntity
}

// CodeName is the name of code in Codes (e.g. "timeout"), or
// "handler_error" for a code a handler chose itself. Metrics label outcomes
// with it: a bounded set, whatever codes handlers invent.
func CodeName(code int) string {
	if c, ok := codeInfo[code]; ok {
		return c.Name
	}
	return "handler_error"
}

// Error is the error object on the wire: in HTTP bodies as {"error":{...}}, in
// JSON-RPC responses, in replies and in dead letters.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return "rpc error " + strconv.Itoa(e.Code) + ": " + e.Message }

// NewError builds a wire error without data.
func NewError(code int, message string) *Error { return &Error{Code: code, Message: message} }
