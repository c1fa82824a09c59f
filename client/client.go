// Package client calls a streamrpc edge from Go: over HTTP (POST
// /rpc/{handler}/{method}) with Client, and over a WebSocket speaking JSON-RPC
// 2.0 (GET /ws) with WS. See Example, ExampleClient_CallAsync and
// ExampleDialWS (compiled by go test; they need an edge to run).
//
// A call that fails on the edge or in the handler returns a *Error with the
// wire error's code, message and data; test for it with errors.As.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error codes of streamrpc's wire errors (the edge's table is streams.Codes).
// A handler may also answer with codes of its own.
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

// Error is an error the edge or the handler answered a call with.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
	// Status is the HTTP status it came with; 0 over a WebSocket.
	Status int `json:"-"`
}

func (e *Error) Error() string {
	return "streamrpc: error " + strconv.Itoa(e.Code) + ": " + e.Message
}

// Client calls an edge over HTTP. It is safe for concurrent use.
type Client struct {
	base  string
	http  *http.Client
	token string // sent as Authorization: Bearer; "" for none
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithToken makes the Client authenticate every request with an API key or a
// JWT, as Authorization: Bearer. (Over WebSocket, pass the same header to
// DialWS with WithHeader.)
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// send sends req, authenticated when the Client has a token.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.http.Do(req)
}

// New returns a Client of the edge at baseURL (e.g. "http://localhost:8080").
// By default it keeps up to 256 idle connections to the edge, so that many
// concurrent calls reuse them.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Transport: NewTransport()}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// NewTransport is the tuned http.Transport New uses: keep-alive, and many
// idle connections per host (one edge, or one load balancer, is one host).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Call calls handler.method with params and decodes the result into out.
// params is encoded as JSON (a json.RawMessage goes out as is; nil sends no
// params); out may be nil to drop the result, or a *json.RawMessage to keep
// its bytes. ctx's deadline, if any, is sent as the call's Request-Timeout.
// opts may set its Priority (a schedule is refused for a sync call).
func (c *Client) Call(ctx context.Context, handler, method string, params, out any, opts ...CallOption) error {
	req, err := c.newCall(ctx, handler, method, params)
	if err != nil {
		return err
	}
	applyOptions(req.Header, opts)
	res, err := c.send(req)
	if err != nil {
		return fmt.Errorf("streamrpc: %w", err)
	}
	defer res.Body.Close()
	return decodeAnswer(res, out)
}

// newCall builds the POST of a call.
func (c *Client) newCall(ctx context.Context, handler, method string, params any) (*http.Request, error) {
	body, err := encodeParams(params)
	if err != nil {
		return nil, err
	}
	u := c.base + "/rpc/" + url.PathEscape(handler) + "/" + url.PathEscape(method)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("streamrpc: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if d, ok := ctx.Deadline(); ok {
		secs := time.Until(d).Seconds()
		if secs <= 0 {
			return nil, context.DeadlineExceeded
		}
		req.Header.Set("Request-Timeout", strconv.FormatFloat(secs, 'f', 3, 64))
	}
	return req, nil
}

// decodeAnswer reads a JSON answer {"result":…} or {"error":…}.
func decodeAnswer(res *http.Response, out any) error {
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("streamrpc: reading the answer: %w", err)
	}
	var ans struct {
		Result json.RawMessage `json:"result"`
		Error  *Error          `json:"error"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || (ans.Error == nil && ans.Result == nil) {
		return fmt.Errorf("streamrpc: unexpected answer %s: %.200q", res.Status, b)
	}
	if ans.Error != nil {
		ans.Error.Status = res.StatusCode
		return ans.Error
	}
	return decodeResult(ans.Result, out)
}

func encodeParams(params any) (json.RawMessage, error) {
	switch p := params.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(p) {
			return nil, errors.New("streamrpc: params: json.RawMessage is not valid JSON")
		}
		return p, nil
	}
	b, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("streamrpc: encoding params: %w", err)
	}
	return b, nil
}

// decodeResult decodes result into out. result is always a json.RawMessage
// field json.Unmarshal filled from an answer: checked JSON, in bytes of its
// own. A *json.RawMessage takes them as they are, without a second pass.
func decodeResult(result json.RawMessage, out any) error {
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok && raw != nil && len(result) > 0 {
		*raw = result
		return nil
	}
	if err := json.Unmarshal(result, out); err != nil {
		return fmt.Errorf("streamrpc: decoding the result: %w", err)
	}
	return nil
}
