package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/streamrpc/streamrpc/client"
)

// One call over HTTP (POST /rpc/{handler}/{method}). (Compiled, not run: it
// needs an edge; `go run ./cmd/streamrpc dev` starts one.)
func Example() {
	ctx := context.Background()
	c := client.New("http://localhost:8080") // pooled keep-alive connections; safe for concurrent use
	var out struct{ Msg string }
	if err := c.Call(ctx, "echo", "echo", map[string]string{"msg": "hi"}, &out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out.Msg)
}

// An edge with authentication on takes an API key or a JWT. (Compiled, not
// run.)
func ExampleWithToken() {
	c := client.New("https://rpc.example.com", client.WithToken("srpc_…"))
	var out any
	_ = c.Call(context.Background(), "billing", "charge", map[string]int{"cents": 500}, &out)
}

// An async call: 202 at once, the outcome by id, long-polled; a call not
// needed any more is cancelled. (Compiled, not run: it needs an edge.)
func ExampleClient_CallAsync() {
	ctx := context.Background()
	c := client.New("http://localhost:8080")
	id, err := c.CallAsync(ctx, "echo", "sleep", map[string]int{"ms": 500})
	if err != nil {
		log.Fatal(err)
	}
	var out struct{ Slept int }
	state, err := c.Result(ctx, id, 10*time.Second, &out) // waits up to 10s for the outcome
	switch {
	case err != nil:
		log.Fatal(err) // "failed", "dead" or "cancelled": the call's error
	case state == "done":
		fmt.Println("slept", out.Slept)
	default:
		// still "queued" or "running": give up on it
		if _, err := c.Cancel(ctx, id); err != nil {
			log.Fatal(err)
		}
	}
}

// Many calls in flight on one WebSocket (JSON-RPC 2.0); a call whose context
// ends is cancelled on the edge ($/cancel). (Compiled, not run: it needs an
// edge.)
func ExampleDialWS() {
	ctx := context.Background()
	ws, err := client.DialWS(ctx, "ws://localhost:8080/ws")
	if err != nil {
		log.Fatal(err)
	}
	defer ws.Close()
	var out struct{ Msg string }
	if err := ws.Call(ctx, "echo.echo", map[string]string{"msg": "hi"}, &out); err != nil { // safe for concurrent use
		log.Fatal(err)
	}
	if err := ws.Notify(ctx, "echo.echo", map[string]string{"msg": "no answer wanted"}); err != nil {
		log.Fatal(err)
	}
}

// Errors of the edge or the handler are *client.Error: the wire code, message
// and data, and the HTTP status (0 over a WebSocket).
func ExampleError() {
	// What Call returns when the handler did not answer before the deadline:
	var err error = fmt.Errorf("charging: %w", &client.Error{Code: client.CodeTimeout, Message: "no reply before the deadline", Status: 504})

	var rerr *client.Error
	if errors.As(err, &rerr) && rerr.Code == client.CodeTimeout {
		fmt.Println("timed out; the call may still run: read its result by id later")
	}
	fmt.Println(err)
	// Output:
	// timed out; the call may still run: read its result by id later
	// charging: streamrpc: error -32001: no reply before the deadline
}
