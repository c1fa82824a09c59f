package consumers

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
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/streamrpc/streamrpc/streams"
)

// Headers the sidecar sends with each call it forwards to the upstream.
const (
	HeaderCallID   = "Streamrpc-Call-Id"  // the call id, the same on every attempt: an idempotency key
	HeaderAttempt  = "Streamrpc-Attempt"  // 1 on the first attempt
	HeaderDeadline = "Streamrpc-Deadline" // RFC 3339 with milliseconds, UTC
	HeaderHandler  = "Streamrpc-Handler"  // the handler name
)

// DeadlineFormat is the layout of the Streamrpc-Deadline header.
const DeadlineFormat = "2006-01-02T15:04:05.000Z07:00"

// maxUpstreamBody bounds what the sidecar reads of one upstream answer.
const maxUpstreamBody = 16 << 20

// SidecarConfig configures a Sidecar. The env tags are the settings' names
// for SidecarConfigFromEnv (see .env.example).
type SidecarConfig struct {
	// UpstreamURL is the base URL of the app the calls go to, e.g.
	// http://127.0.0.1:3000; a call to method m is POST {UpstreamURL}/m.
	// Required.
	UpstreamURL string `env:"STREAMRPC_UPSTREAM_URL"`
	// Methods are the methods the handler serves, registered with the edge.
	// From the environment: a comma-separated list, each "name" or
	// "name:description". Required.
	Methods MethodList `env:"STREAMRPC_METHODS"`
	// UpstreamTimeout bounds one request to the upstream, within the call's
	// own deadline; past it the attempt fails and is retried. Default 30s.
	UpstreamTimeout time.Duration `env:"STREAMRPC_UPSTREAM_TIMEOUT"`
	// ReadyPath is what WaitReady polls with GET until it answers 2xx.
	// Default /healthz.
	ReadyPath string `env:"STREAMRPC_UPSTREAM_READY_PATH"`
	// ReadyTimeout bounds WaitReady. Default 2m.
	ReadyTimeout time.Duration `env:"STREAMRPC_UPSTREAM_READY_TIMEOUT"`
	// MaxIdleConns is how many idle keep-alive connections to the upstream
	// are kept for reuse. Default 64.
	MaxIdleConns int `env:"STREAMRPC_UPSTREAM_MAX_IDLE_CONNS"`
	// ProbeInterval is how often a running sidecar asks the ready path.
	// While it fails, or once a call finds the upstream refusing connections,
	// the sidecar takes no calls (registry state "waiting_for_app",
	// readiness 503) and spends no attempt: calls wait in the stream until
	// the ready path answers 2xx again. Default 1s.
	ProbeInterval time.Duration `env:"STREAMRPC_UPSTREAM_PROBE_INTERVAL"`
}

// SidecarConfigFromEnv reads a SidecarConfig from the environment variables
// named by its env tags; unset ones keep their defaults.
func SidecarConfigFromEnv() (SidecarConfig, error) {
	var c SidecarConfig
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return c, nil
}

// MethodList is a list of methods that reads itself from text: a
// comma-separated list, each "name" or "name:description".
type MethodList []MethodInfo

// UnmarshalText parses "greet:says hello,add:adds two numbers".
func (l *MethodList) UnmarshalText(b []byte) error {
	var out MethodList
	for _, item := range strings.Split(string(b), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, desc, _ := strings.Cut(item, ":")
		out = append(out, MethodInfo{Name: strings.TrimSpace(name), Description: strings.TrimSpace(desc)})
	}
	*l = out
	return nil
}

// Validate reports a config that cannot work; errors wrap ErrConfig.
func (c SidecarConfig) Validate() error {
	u, err := url.Parse(c.UpstreamURL)
	switch {
	case c.UpstreamURL == "":
		return fmt.Errorf("%w: the upstream URL (STREAMRPC_UPSTREAM_URL) is not set", ErrConfig)
	case err != nil:
		return fmt.Errorf("%w: upstream URL: %v", ErrConfig, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return fmt.Errorf("%w: upstream URL %q: want http://host:port or https://host:port", ErrConfig, c.UpstreamURL)
	case len(c.Methods) == 0:
		return fmt.Errorf("%w: no methods (STREAMRPC_METHODS, e.g. greet:says hello,add)", ErrConfig)
	case c.UpstreamTimeout < 0 || c.ReadyTimeout < 0 || c.ProbeInterval < 0:
		return fmt.Errorf("%w: durations must not be negative", ErrConfig)
	case c.MaxIdleConns < 0:
		return fmt.Errorf("%w: MaxIdleConns %d is negative", ErrConfig, c.MaxIdleConns)
	case c.ReadyPath != "" && !strings.HasPrefix(c.ReadyPath, "/"):
		return fmt.Errorf("%w: ready path %q must begin with /", ErrConfig, c.ReadyPath)
	}
	seen := map[string]bool{}
	for _, m := range c.Methods {
		if err := streams.ValidateName("method", m.Name); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if seen[m.Name] {
			return fmt.Errorf("%w: method %s listed twice", ErrConfig, m.Name)
		}
		seen[m.Name] = true
	}
	return nil
}

func (c SidecarConfig) withDefaults() SidecarConfig {
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = 30 * time.Second
	}
	if c.ReadyPath == "" {
		c.ReadyPath = "/healthz"
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 2 * time.Minute
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = 64
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = time.Second
	}
	return c
}

// Sidecar is a Handler that serves a handler's methods by forwarding each
// call to an HTTP service next to it (the upstream), in any language:
//
//	POST {UpstreamURL}/{method}
//	Content-Type: application/json
//	Streamrpc-Call-Id: 01J...      (the same on every attempt)
//	Streamrpc-Attempt: 1
//	Streamrpc-Deadline: 2026-01-02T15:04:05.000Z
//
//	{the params, byte for byte}
//
// The upstream's answer becomes the reply:
//
//   - 2xx: the body is the result (it must be JSON; an empty body is null).
//   - 408, 429, 5xx, no answer (connection refused, reset, timeout): a
//     retryable error, retried with backoff up to MaxAttempts.
//   - any other status (4xx, 3xx): a final error. A JSON body
//     {"error":{"code":N,"message":"…","data":…}} or {"code":N,"message":"…"}
//     gives its code, message and data; without a code, 400 is -32602
//     (invalid params), 404 is -32601 (method not found), anything else
//     -32000 (handler error).
//
// Its request context ends at the call's deadline (or UpstreamTimeout, if
// sooner). A Sidecar lists its methods (MethodLister), so a Server registers
// them.
type Sidecar struct {
	cfg    SidecarConfig
	base   string // UpstreamURL without a trailing slash
	client *http.Client
	known  map[string]bool
}

// NewSidecar returns a Sidecar for cfg.
func NewSidecar(cfg SidecarConfig) (*Sidecar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tr := &http.Transport{
		Proxy: nil, // the upstream is local: never through an HTTP_PROXY
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          cfg.MaxIdleConns,
		MaxIdleConnsPerHost:   cfg.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	s := &Sidecar{
		cfg:  cfg,
		base: strings.TrimRight(cfg.UpstreamURL, "/"),
		client: &http.Client{
			Transport: tr,
			// A redirect of a POST would be followed as a GET: do not follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		known: map[string]bool{},
	}
	for _, m := range cfg.Methods {
		s.known[m.Name] = true
	}
	return s, nil
}

// Methods lists the configured methods (MethodLister).
func (s *Sidecar) Methods() []MethodInfo {
	out := make([]MethodInfo, len(s.cfg.Methods))
	copy(out, s.cfg.Methods)
	return out
}

// ProbeInterval is how often a Server asks Ready (Prober).
func (s *Sidecar) ProbeInterval() time.Duration { return s.cfg.ProbeInterval }

// Close closes the idle connections to the upstream.
func (s *Sidecar) Close() { s.client.CloseIdleConnections() }

// Ready asks the upstream's ready path once: nil if it answers 2xx.
func (s *Sidecar) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+s.cfg.ReadyPath, nil)
	if err != nil {
		return err
	}
	res, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", s.cfg.ReadyPath, res.Status)
	}
	return nil
}

// WaitReady polls the upstream's ready path until it answers 2xx, for up to
// ReadyTimeout or until ctx ends. Start the Server after it returns nil, so
// that no call is taken before the upstream can answer.
func (s *Sidecar) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		err := s.Ready(ctx)
		if err == nil {
			return nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("consumers: the upstream %s did not answer %s within %s: %w", s.base, s.cfg.ReadyPath, s.cfg.ReadyTimeout, err)
			}
			return ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// ServeRPC forwards the call to the upstream and maps its answer.
func (s *Sidecar) ServeRPC(ctx context.Context, r *Request) (any, error) {
	if !s.known[r.Method] {
		return nil, fmt.Errorf("%w: %q", ErrMethodNotFound, r.Method)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	body := []byte(r.Params)
	if len(body) == 0 {
		body = []byte("null")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/"+url.PathEscape(r.Method), bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "sidecar: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", sidecarAccept)
	req.Header.Set(HeaderCallID, r.ID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(r.Attempt))
	req.Header.Set(HeaderHandler, r.Handler)
	if !r.Deadline.IsZero() {
		req.Header.Set(HeaderDeadline, r.Deadline.UTC().Format(DeadlineFormat))
	}
	injectTrace(ctx, req.Header) // traceparent: the upstream's spans join the call's trace
	res, err := s.client.Do(req)
	if err != nil {
		return nil, s.transportError(ctx, err)
	}
	defer res.Body.Close()
	if kind := streamedBody(res); kind != "" {
		out, err := relayStream(r, kind, res.Body)
		var re *upstreamReadError
		if errors.As(err, &re) {
			return nil, s.transportError(ctx, re.err)
		}
		return out, err
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxUpstreamBody+1))
	if err != nil {
		return nil, s.transportError(ctx, err)
	}
	if len(b) > maxUpstreamBody {
		return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("upstream answer is over %d bytes", maxUpstreamBody)}
	}
	return upstreamReply(res.StatusCode, b)
}

// transportError is a failure to get an answer: always worth another attempt.
// A connection the upstream refused (nothing listens: the app is down or
// restarting) is ErrAppUnavailable too: the Server holds the call and waits
// for the app rather than spending the call's attempts.
func (s *Sidecar) transportError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Code: CodeTimeout, Message: "upstream did not answer in time", Retryable: true}
	}
	refused := errors.Is(err, syscall.ECONNREFUSED)
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop the repeated method and URL
	}
	e := &Error{Code: CodeInternal, Message: "upstream unreachable: " + err.Error(), Retryable: true}
	if refused {
		return fmt.Errorf("%w: %w", ErrAppUnavailable, e)
	}
	return e
}

// upstreamReply maps an upstream's status and body to a result or an error.
func upstreamReply(status int, body []byte) (any, error) {
	if status >= 200 && status <= 299 {
		body = bytes.TrimSpace(body)
		if len(body) == 0 {
			return json.RawMessage("null"), nil
		}
		if !json.Valid(body) {
			return nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("upstream answered %d with a body that is not JSON", status)}
		}
		return json.RawMessage(body), nil
	}
	e := parseUpstreamError(body)
	retryable := status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
	e.Retryable = retryable
	if e.Code == 0 {
		switch {
		case retryable:
			e.Code = CodeInternal
		case status == http.StatusBadRequest:
			e.Code = CodeInvalidParams
		case status == http.StatusNotFound:
			e.Code = CodeMethodNotFound
		default:
			e.Code = CodeHandlerError
		}
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("upstream answered %d %s", status, http.StatusText(status))
		if text := strings.TrimSpace(string(body)); text != "" && !json.Valid(body) {
			e.Message += ": " + truncate(text, 512)
		}
	}
	return nil, e
}

// parseUpstreamError reads {"error":{"code","message","data"}} or
// {"code","message","data"}; what it cannot read stays zero.
func parseUpstreamError(body []byte) *Error {
	type object struct {
		Code    *int            `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	var outer struct {
		Error *object `json:"error"`
		object
	}
	e := &Error{}
	if json.Unmarshal(body, &outer) != nil {
		return e
	}
	o := &outer.object
	if outer.Error != nil {
		o = outer.Error
	}
	if o.Code != nil {
		e.Code = *o.Code
	}
	e.Message = o.Message
	if len(o.Data) > 0 && string(o.Data) != "null" {
		e.Data = o.Data
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
