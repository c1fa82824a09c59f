package bench

import (
	"encoding/json"
	"net"
	"net/http"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
)

func newHTTPClient(t http.RoundTripper) *http.Client { return &http.Client{Transport: t} }

// baseline is the queue-less echo: a Fiber app on loopback that answers POST
// /rpc/{handler}/{method} with {"result":<body>} and echoes JSON-RPC requests
// on GET /ws, with no Redis and no queue. It is the ceiling streamrpc's
// figures are divided by.
type baseline struct {
	app  *fiber.App
	url  string
	done chan struct{}
}

func startBaseline() (*baseline, error) {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Post("/rpc/:handler/:method", func(c *fiber.Ctx) error {
		body := c.Body()
		b := make([]byte, 0, len(body)+11)
		b = append(b, `{"result":`...)
		b = append(b, body...)
		b = append(b, '}')
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(b)
	})
	app.Get("/ws", websocket.New(func(c *websocket.Conn) {
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			var req struct {
				ID     json.RawMessage `json:"id"`
				Params json.RawMessage `json:"params"`
			}
			if json.Unmarshal(msg, &req) != nil || req.ID == nil {
				continue
			}
			b := make([]byte, 0, len(req.ID)+len(req.Params)+40)
			b = append(b, `{"jsonrpc":"2.0","id":`...)
			b = append(b, req.ID...)
			b = append(b, `,"result":`...)
			b = append(b, req.Params...)
			b = append(b, '}')
			if err := c.WriteMessage(mt, b); err != nil {
				return
			}
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &baseline{app: app, url: "http://" + ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		_ = app.Listener(ln)
	}()
	return b, nil
}

func (b *baseline) stop() {
	_ = b.app.ShutdownWithTimeout(5 * time.Second)
	<-b.done
}
