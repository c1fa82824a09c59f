// Command oapiclient calls a streamrpc edge's echo handler through the client
// oapi-codegen generated from the edge's /openapi.json (package echoclient),
// and prints what it got as one JSON object. TestOpenAPIGeneratedClient
// (integration/discovery_test.go) runs it against a live stack.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/streamrpc/streamrpc/integration/testdata/oapiclient/echoclient"
)

type report struct {
	Status       int               `json:"status"`
	Echo         any               `json:"echo"`
	Slept        int               `json:"slept"`
	SleepError   *echoclient.Error `json:"sleep_error,omitempty"`
	InvalidState int               `json:"invalid_status"`
	InvalidError *echoclient.Error `json:"invalid_error,omitempty"`
	// An async call: 202 with Location, then its result by id.
	AsyncStatus   int    `json:"async_status"`
	AsyncLocation string `json:"async_location"`
	AsyncState    string `json:"async_state"`
	AsyncResult   any    `json:"async_result"`
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "the edge")
	flag.Parse()
	if err := run(*url); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := echoclient.NewClientWithResponses(url)
	if err != nil {
		return err
	}
	var rep report

	timeout := echoclient.RequestTimeout(10)
	echo, err := c.EchoEchoWithResponse(ctx, &echoclient.EchoEchoParams{RequestTimeout: &timeout},
		map[string]any{"greeting": "hello", "n": []int{1, 2}})
	if err != nil {
		return fmt.Errorf("echo.echo: %w", err)
	}
	rep.Status = echo.StatusCode()
	if echo.JSON200 != nil {
		rep.Echo = echo.JSON200.Result
	}

	// A typed result: echo.sleep registered its result schema.
	sleep, err := c.EchoSleepWithResponse(ctx, &echoclient.EchoSleepParams{}, echoclient.EchoSleepParamsSchema{Ms: 3})
	if err != nil {
		return fmt.Errorf("echo.sleep: %w", err)
	}
	switch {
	case sleep.JSON200 != nil:
		rep.Slept = sleep.JSON200.Result.Slept
	case sleep.JSON422 != nil:
		rep.SleepError = &sleep.JSON422.Error
	}

	// Params the schema refuses: the typed 422 error body.
	invalid, err := c.EchoSleepWithResponse(ctx, &echoclient.EchoSleepParams{}, echoclient.EchoSleepParamsSchema{Ms: -1})
	if err != nil {
		return fmt.Errorf("echo.sleep: %w", err)
	}
	rep.InvalidState = invalid.StatusCode()
	if invalid.JSON422 != nil {
		rep.InvalidError = &invalid.JSON422.Error
	}

	// Prefer: respond-async answers 202 with Location; getCall long-polls
	// for the result.
	prefer := echoclient.Prefer("respond-async")
	acc, err := c.EchoEchoWithResponse(ctx, &echoclient.EchoEchoParams{Prefer: &prefer}, []string{"later"})
	if err != nil {
		return fmt.Errorf("echo.echo async: %w", err)
	}
	rep.AsyncStatus = acc.StatusCode()
	if acc.JSON202 != nil {
		rep.AsyncLocation = acc.HTTPResponse.Header.Get("Location")
		wait := "10s"
		st, err := c.GetCallWithResponse(ctx, acc.JSON202.Id, &echoclient.GetCallParams{Wait: &wait})
		if err != nil {
			return fmt.Errorf("getCall: %w", err)
		}
		if st.JSON200 != nil {
			rep.AsyncState, rep.AsyncResult = string(st.JSON200.State), st.JSON200.Result
		}
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}
