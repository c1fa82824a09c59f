package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// CallAsync enqueues handler.method with params and returns at once with the
// call's id (Prefer: respond-async); read its outcome with Result. opts may
// schedule it (ScheduleAt, ScheduleIn).
func (c *Client) CallAsync(ctx context.Context, handler, method string, params any, opts ...CallOption) (string, error) {
	body, err := encodeParams(params)
	if err != nil {
		return "", err
	}
	u := c.base + "/rpc/" + url.PathEscape(handler) + "/" + url.PathEscape(method)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("streamrpc: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Prefer", "respond-async")
	applyOptions(req.Header, opts)
	var ans struct {
		ID string `json:"id"`
	}
	if err := c.do(req, http.StatusAccepted, &ans); err != nil {
		return "", err
	}
	return ans.ID, nil
}

// Result reads the outcome of call id, waiting up to wait (at most 60s) for
// it if it is not done yet. It returns the call's state ("scheduled", "queued", "running",
// "done", "failed", "dead", "cancelled"); for "done" the result is decoded
// into out, for the failed states the error is returned as an *Error.
func (c *Client) Result(ctx context.Context, id string, wait time.Duration, out any) (string, error) {
	u := c.base + "/rpc/calls/" + url.PathEscape(id)
	if wait > 0 {
		u += "?wait=" + strconv.FormatFloat(wait.Seconds(), 'f', 3, 64)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("streamrpc: %w", err)
	}
	var ans struct {
		State  string          `json:"state"`
		Result json.RawMessage `json:"result"`
		Error  *Error          `json:"error"`
	}
	if err := c.do(req, http.StatusOK, &ans); err != nil {
		return "", err
	}
	switch {
	case ans.Error != nil:
		return ans.State, ans.Error
	case ans.State == "done":
		return ans.State, decodeResult(ans.Result, out)
	}
	return ans.State, nil
}

// Cancel cancels async call id: a scheduled or queued call never runs, a running call's
// handler context is cancelled. It returns "cancelled", "cancelling" or
// "too_late".
func (c *Client) Cancel(ctx context.Context, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.base+"/rpc/calls/"+url.PathEscape(id), nil)
	if err != nil {
		return "", fmt.Errorf("streamrpc: %w", err)
	}
	var ans struct {
		State string `json:"state"`
	}
	if err := c.do(req, http.StatusAccepted, &ans); err != nil {
		return "", err
	}
	return ans.State, nil
}

// do sends req and decodes a JSON answer of status want into out, or returns
// the edge's error.
func (c *Client) do(req *http.Request, want int, out any) error {
	res, err := c.send(req)
	if err != nil {
		return fmt.Errorf("streamrpc: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("streamrpc: reading the answer: %w", err)
	}
	if res.StatusCode != want {
		var ans struct {
			Error *Error `json:"error"`
		}
		if json.Unmarshal(b, &ans) == nil && ans.Error != nil {
			ans.Error.Status = res.StatusCode
			return ans.Error
		}
		return fmt.Errorf("streamrpc: unexpected answer %s: %.200q", res.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("streamrpc: decoding the answer: %w", err)
	}
	return nil
}
