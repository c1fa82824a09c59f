package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/oklog/ulid/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// opsSource is fakeSource with the state lists and windows (Operations).
type opsSource struct {
	*fakeSource
	page  streams.CallPage
	err   error
	query streams.CallQuery // the last one asked
}

func (o *opsSource) ListCalls(_ context.Context, _ string, q streams.CallQuery) (streams.CallPage, error) {
	o.query = q
	return o.page, o.err
}

func (o *opsSource) HandlersIn(ctx context.Context, w streams.WindowDef) ([]streams.HandlerSummary, error) {
	hs, err := o.Handlers(ctx)
	for i := range hs {
		ws := testWindow(w)
		hs[i].Window = &ws
	}
	return hs, err
}

func (o *opsSource) HandlerIn(ctx context.Context, name string, w streams.WindowDef) (streams.HandlerDetail, error) {
	d, err := o.Handler(ctx, name)
	ws := testWindow(w)
	d.Window = &ws
	return d, err
}

func testWindow(w streams.WindowDef) streams.WindowStats {
	ws := streams.WindowStats{Name: w.Name, Since: testNow.Add(-time.Duration(w.Buckets) * w.Bucket), Calls: 120, Errors: 6,
		SuccessRate: 0.95, P50MS: 2, P95MS: 40, P99MS: 90, Histogram: hist(0, 10, 100, 10)}
	for i := range w.Buckets {
		ws.Series = append(ws.Series, streams.WindowPoint{Start: ws.Since.Add(time.Duration(i) * w.Bucket), Calls: 2, Errors: int64(i % 2),
			ErrorRate: float64(i%2) / 2, P50MS: 2, P99MS: 90})
	}
	return ws
}

func newOpsApp(src Source) *fiber.App {
	app := fiber.New()
	New(src, Options{Now: func() time.Time { return testNow }, ResultTTL: 10 * time.Minute}).Register(app)
	return app
}

func TestFindCall(t *testing.T) {
	app := newOpsApp(newFakeSource())
	for _, c := range []struct {
		name, query string
		status      int
		want        string
	}{
		{"empty", "", 400, "Type a call id"},
		{"not an id", "?id=hello%20there", 400, "is not a call id"},
		{"an id", "?id=echo.01J9Z3ABCDEFGHJKMNPQRSTVWX", 303, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := app.Test(httptest.NewRequest(http.MethodGet, "/ui/calls"+c.query, nil), 10000)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != c.status {
				t.Fatalf("status %d, want %d", res.StatusCode, c.status)
			}
			if c.status == 303 {
				if loc := res.Header.Get("Location"); loc != "/ui/calls/echo.01J9Z3ABCDEFGHJKMNPQRSTVWX" {
					t.Fatalf("Location %q", loc)
				}
				return
			}
			p := fetch(t, app, "/ui/calls"+c.query)
			p.has(t, c.want)
		})
	}
}

func TestCallNotFoundSaysWhy(t *testing.T) {
	app := newOpsApp(newFakeSource())
	idAt := func(h string, at time.Time) string {
		return h + "." + ulid.MustNew(ulid.Timestamp(at), ulid.DefaultEntropy()).String()
	}
	for _, c := range []struct{ name, id, want string }{
		{"unknown handler", idAt("nobody", testNow), "no consumer has registered a handler named “nobody”"},
		{"expired", idAt("echo", testNow.Add(-time.Hour)), "Call expired"},
		{"not known yet", idAt("echo", testNow.Add(-time.Second)), "Call not known yet"},
		{"from the future", idAt("echo", testNow.Add(time.Hour)), "dates from the future"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := fetch(t, app, "/ui/calls/"+c.id)
			wantHTML(t, p, 404)
			p.has(t, c.want)
		})
	}
}

func TestCallsPage(t *testing.T) {
	now := testNow
	cases := []struct {
		name, state string
		page        streams.CallPage
		want        []string
	}{
		{"queued", "queued", streams.CallPage{Total: 2, Next: "1-5/5", Calls: []streams.ListedCall{
			{ID: "echo.Q1", Method: "echo", State: "queued", Position: 1, StreamID: "1-1", EnqueuedAt: now.Add(-5 * time.Second), Params: json.RawMessage(`{"a":"<b>"}`)},
		}}, []string{`data-calls="queued"`, `<td class="num">1</td>`, `/handlers/echo/calls/echo.Q1/cancel?stream_id=1-1`, `2 queued in all`,
			`{&#34;a&#34;:&#34;&lt;b&gt;&#34;}`, `data-next`, `cursor=1-5%2F5`}},
		{"delayed", "delayed", streams.CallPage{Total: 1, Calls: []streams.ListedCall{
			{ID: "echo.D1", Method: "fail", State: "delayed", Attempt: 2, DueAt: now.Add(time.Minute), LastError: "gateway down"},
		}}, []string{`/handlers/echo/calls/echo.D1/run-now`, `gateway down`, `2026`}},
		{"dead", "dead", streams.CallPage{Total: 1, Calls: []streams.ListedCall{
			{ID: "echo.X1", Method: "fail", State: "dead", Attempt: 3, DeadLetter: &streams.DeadLetter{StreamID: "9-0", ID: "echo.X1"}},
		}}, []string{`data-bulk="/handlers/echo/dead-letters/bulk"`, `value="9-0"`, `data-select-all`, `/handlers/echo/dead-letters/9-0/replay`}},
		{"failed", "failed", streams.CallPage{Total: -1, Calls: []streams.ListedCall{
			{ID: "echo.F1", Method: "fail", State: "failed", Outcome: "error", LastError: "nope", SettledAt: now},
		}}, []string{`name="outcome"`, `>error<`, `nope`, `From the activity record`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := &opsSource{fakeSource: newFakeSource(), page: c.page}
			p := fetch(t, newOpsApp(src), "/ui/handlers/echo/calls?state="+c.state+"&method=fail")
			wantHTML(t, p, 200)
			p.has(t, c.want...)
			if src.query.State != c.state || src.query.Method != "fail" || src.query.Limit != 50 {
				t.Errorf("query %+v", src.query)
			}
		})
	}
	t.Run("bad query", func(t *testing.T) {
		src := &opsSource{fakeSource: newFakeSource(), err: streams.ErrBadQuery}
		p := fetch(t, newOpsApp(src), "/ui/handlers/echo/calls?state=nope")
		wantHTML(t, p, 400)
		p.has(t, "Could not list the calls")
	})
	t.Run("without Operations", func(t *testing.T) {
		wantHTML(t, fetch(t, newOpsApp(newFakeSource()), "/ui/handlers/echo/calls"), 404)
	})
}

func TestHandlerPageWindows(t *testing.T) {
	src := &opsSource{fakeSource: newFakeSource()}
	for _, w := range []string{"5m", "1h", "24h"} {
		p := fetch(t, newOpsApp(src), "/ui/handlers/echo?window="+w)
		wantHTML(t, p, 200)
		p.has(t, `data-window="`+w+`"`, `Success rate · `+w, `data-stat="w_success_rate">95%<`, `data-stat="w_p99">90ms<`,
			`<h2>Error rate</h2>`, `class="line p99"`, `aria-current="true">`+w+`<`, `data-pause`, `data-purge-confirm="echo"`)
	}
	p := fetch(t, newOpsApp(src), "/ui/?window=5m")
	p.has(t, `Success · 5m`, `data-stat="w_p50">2ms<`)
	// An unknown window is the default one.
	fetch(t, newOpsApp(src), "/ui/handlers/echo?window=7y").has(t, `data-window="1h"`)
}

func TestWindowCharts(t *testing.T) {
	w, _ := streams.ParseWindow("1h")
	ws := testWindow(w)
	ec := errorRateChart(&ws, 600, 100)
	if len(ec.Bars) != 60 || ec.MaxLabel != "50%" || ec.Empty || len(ec.Ticks) != 3 || ec.Ticks[0].Label != "−59m" || ec.Ticks[2].Label != "now" {
		t.Fatalf("error chart: %d bars, max %q, ticks %+v", len(ec.Bars), ec.MaxLabel, ec.Ticks)
	}
	lc := latencyChart(&ws, 600, 100)
	if lc.MaxLabel != "90ms" || len(lc.Lines) != 2 || !strings.HasPrefix(lc.Lines[1].Path, "M0,0 L") {
		t.Fatalf("latency chart: %+v", lc)
	}
	ws.Series[1].P99MS, ws.Series[1].P50MS = 0, 0 // no runs in bucket 1: the lines break
	if lc = latencyChart(&ws, 600, 100); strings.Count(lc.Lines[1].Path, "M") != 2 {
		t.Fatalf("a bucket without runs does not break the line: %q", lc.Lines[1].Path)
	}
	empty := streams.WindowStats{Name: "5m"}
	if c := latencyChart(&empty, 600, 100); !c.Empty {
		t.Fatal("no points is not Empty")
	}
}

func TestPrettyJSONShowsHTMLCharacters(t *testing.T) {
	text := func(raw string) string {
		var b strings.Builder
		for _, tk := range prettyJSON([]byte(raw)) {
			b.WriteString(tk.Text)
		}
		return b.String()
	}
	if got := text(`{"a":"\u003cb\u003e \u0026"}`); !strings.Contains(got, `"<b> &"`) {
		t.Errorf("escaped <b>: %q", got)
	}
	if got := text(`{"a":"\\u003c"}`); !strings.Contains(got, `"\\u003c"`) {
		t.Errorf("a literal backslash-u was changed: %q", got)
	}
	if got := compactJSON([]byte(`{"a": "\u003cb\u003e"}`), 100); got != `{"a":"<b>"}` {
		t.Errorf("compact: %q", got)
	}
}
