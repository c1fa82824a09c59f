package consumers_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/streamrpc/streamrpc/consumers"
)

// EnforceResult: a result that does not match the method's result schema is
// never sent; the caller gets a -32603 that says why.
func ExampleEnforceResult() {
	mux := consumers.NewMux()
	mux.HandleFunc("charge", func(_ context.Context, r *consumers.Request) (any, error) {
		var p struct{ Cents int }
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		if p.Cents > 100 {
			return map[string]int{"receipt": p.Cents}, nil // a bug: the schema says a string
		}
		return map[string]string{"receipt": fmt.Sprintf("r-%d", p.Cents)}, nil
	}, consumers.Schemas(nil, json.RawMessage(`{"type":"object","properties":{"receipt":{"type":"string"}},"required":["receipt"]}`)),
		consumers.EnforceResult())

	for _, params := range []string{`{"cents":5}`, `{"cents":500}`} {
		res, err := mux.ServeRPC(context.Background(), &consumers.Request{Method: "charge", Params: json.RawMessage(params)})
		if err != nil {
			e := err.(*consumers.Error)
			fmt.Println(e.Code, e.Message)
			continue
		}
		fmt.Printf("%s\n", res)
	}
	// Output:
	// {"receipt":"r-5"}
	// -32603 the result of charge does not match its result schema: at '/receipt': got number, want string
}
