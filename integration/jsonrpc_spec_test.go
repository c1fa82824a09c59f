package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	fastws "github.com/fasthttp/websocket"
)

// specExchange is one message of a spec example and the answer it gets.
type specExchange struct {
	send   string
	answer string // "" : no answer at all
}

type specExample struct {
	name      string
	exchanges []specExchange
}

// readSpecExamples reads testdata/jsonrpc_spec_examples.txt (its format is
// described at its top).
func readSpecExamples(t *testing.T) []specExample {
	t.Helper()
	raw, err := os.ReadFile("testdata/jsonrpc_spec_examples.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []specExample
	var into *string // the message or answer being read
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			out = append(out, specExample{name: strings.TrimPrefix(line, "## ")})
			into = nil
		case strings.HasPrefix(line, "#"):
			into = nil
		case strings.HasPrefix(line, "--> "):
			ex := &out[len(out)-1]
			ex.exchanges = append(ex.exchanges, specExchange{send: strings.TrimPrefix(line, "--> ") + "\n"})
			into = &ex.exchanges[len(ex.exchanges)-1].send
		case strings.HasPrefix(line, "<-- "):
			ex := &out[len(out)-1]
			x := &ex.exchanges[len(ex.exchanges)-1]
			into = nil
			if a := strings.TrimPrefix(line, "<-- "); a != "nothing" {
				x.answer = a + "\n"
				into = &x.answer
			}
		case into != nil:
			*into += line + "\n"
		}
	}
	return out
}

// answerShape reduces a JSON-RPC answer (one response or a batch) to what
// the spec fixes: each response's id and error code (0: a result), sorted
// (a batch's responses may come in any order).
func answerShape(t *testing.T, b []byte) []string {
	t.Helper()
	b = bytes.TrimSpace(b)
	var answers []rpcAnswer
	batch := len(b) > 0 && b[0] == '['
	if batch {
		if err := json.Unmarshal(b, &answers); err != nil {
			t.Fatalf("answer %s is not a batch: %v", b, err)
		}
	} else {
		var a rpcAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("answer %s is not a response: %v", b, err)
		}
		answers = []rpcAnswer{a}
	}
	var shape []string
	for _, a := range answers {
		if a.JSONRPC != "2.0" {
			t.Fatalf("answer %s: jsonrpc is not 2.0", b)
		}
		code := 0
		if a.Error != nil {
			code = a.Error.Code
		}
		var id bytes.Buffer
		if err := json.Compact(&id, a.ID); err != nil {
			t.Fatalf("answer %s: id %q: %v", b, a.ID, err)
		}
		shape = append(shape, fmt.Sprintf("id=%s code=%d", id.String(), code))
	}
	slices.Sort(shape)
	if batch {
		shape = append(shape, "(batch)")
	}
	return shape
}

// TestJSONRPCSpecExamples sends every example of the JSON-RPC 2.0
// specification's Examples section, as written, over POST /jsonrpc and GET
// /ws, and checks the answers' shape, and that notifications get none.
func TestJSONRPCSpecExamples(t *testing.T) {
	st := newStack(t, stackOptions{})
	examples := readSpecExamples(t)
	if len(examples) < 12 {
		t.Fatalf("read %d examples from the testdata file, want the spec's 12 at least", len(examples))
	}
	t.Run("POST /jsonrpc", func(t *testing.T) {
		for _, ex := range examples {
			t.Run(ex.name, func(t *testing.T) {
				for _, x := range ex.exchanges {
					status, b := jsonrpcHTTP(t, st, x.send)
					if x.answer == "" {
						if status != http.StatusNoContent || len(b) != 0 {
							t.Errorf("%s\nanswered %d %s, want 204 and no body", x.send, status, b)
						}
						continue
					}
					if status != http.StatusOK {
						t.Errorf("%s\nanswered %d %s, want 200", x.send, status, b)
						continue
					}
					if got, want := answerShape(t, b), answerShape(t, []byte(x.answer)); !slices.Equal(got, want) {
						t.Errorf("%s\nanswered %s\nshape %v, want %v", x.send, b, got, want)
					}
				}
			})
		}
	})
	t.Run("GET /ws", func(t *testing.T) {
		conn := rawWS(t, st.wsURL())
		for _, ex := range examples {
			t.Run(ex.name, func(t *testing.T) {
				for _, x := range ex.exchanges {
					if err := conn.WriteMessage(fastws.TextMessage, []byte(x.send)); err != nil {
						t.Fatal(err)
					}
					if x.answer == "" {
						continue
					}
					b := wsRead(t, conn)
					if got, want := answerShape(t, b), answerShape(t, []byte(x.answer)); !slices.Equal(got, want) {
						t.Errorf("%s\nanswered %s\nshape %v, want %v", x.send, b, got, want)
					}
				}
				// A call with an id of our own: its answer must be the next
				// message (nothing was sent for the notifications).
				if err := conn.WriteMessage(fastws.TextMessage, []byte(`{"jsonrpc":"2.0","method":"nosuch.sentinel","id":"sentinel"}`)); err != nil {
					t.Fatal(err)
				}
				if b := wsRead(t, conn); !slices.Equal(answerShape(t, b), []string{`id="sentinel" code=-32601`}) {
					t.Errorf("after the example, got %s, want the answer to the sentinel call", b)
				}
			})
		}
	})
}

func wsRead(t *testing.T, conn *fastws.Conn) []byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
