package ui

// The dashboard's pages: each one's data and the handler that renders it.

import (
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// --- overview ---

type overviewData struct {
	Window   streams.WindowDef
	Handlers []streams.HandlerSummary
	Totals   overviewTotals
	Activity []streams.Activity
	FeedErr  string
}

type overviewTotals struct {
	Handlers, ConsumersOnline int
	CallsPerSecond            float64
	Calls, Errors             int64
	Backlog, DeadLetters      int64
}

func (u *UI) overview(c *fiber.Ctx) error {
	ctx, cancel := u.ctx()
	defer cancel()
	w := windowParam(c)
	hs, err := u.handlersIn(ctx, w)
	if err != nil {
		return u.failed(c, err, "Handlers")
	}
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	d := overviewData{Window: w, Handlers: hs, Totals: overviewTotals{Handlers: len(hs)}}
	for _, h := range hs {
		d.Totals.ConsumersOnline += h.ConsumersOnline
		d.Totals.CallsPerSecond += h.CallsPerSecond
		d.Totals.Calls += h.Totals.Calls
		d.Totals.Errors += h.Totals.Errors
		d.Totals.Backlog += h.Backlog
		d.Totals.DeadLetters += h.DeadLetters
	}
	if d.Activity, err = u.src.Activity(ctx, "", u.opts.ActivityLimit); err != nil {
		d.FeedErr = err.Error()
	}
	return u.render(c, fiber.StatusOK, "overview", page{Title: "Handlers", Nav: "overview", Window: w.Name, Data: d})
}

// --- handler ---

type handlerData struct {
	Window      streams.WindowDef
	D           streams.HandlerDetail
	Rate        Chart
	Histogram   Chart
	Activity    []streams.Activity
	FeedErr     string
	DeadLetters []streams.DeadLetter
	DeadTotal   int64
	DeadMore    bool // more dead letters than listed
	DeadErr     string
	Online      []streams.ConsumerInfo
	Offline     []streams.ConsumerInfo
}

func (u *UI) handler(c *fiber.Ctx) error {
	name := param(c, "name")
	ctx, cancel := u.ctx()
	defer cancel()
	w := windowParam(c)
	d, err := u.handlerIn(ctx, name, w)
	if err != nil {
		if errors.Is(err, streams.ErrNotFound) {
			return u.notFound(c, "Handler not found", "No consumer has registered a handler named “"+name+"”.")
		}
		return u.failed(c, err, "Handler")
	}
	hist := d.Totals.Histogram
	if d.Window != nil {
		hist = d.Window.Histogram
	} else if len(hist) == 0 {
		hist = mergeHistograms(d.Methods)
	}
	hd := handlerData{Window: w, D: d, Rate: rateChart(d.Rate, chartW, chartH), Histogram: histogramChart(hist, chartW, chartH)}
	for _, ci := range d.Consumers {
		if ci.Online {
			hd.Online = append(hd.Online, ci)
		} else {
			hd.Offline = append(hd.Offline, ci)
		}
	}
	if hd.Activity, err = u.src.Activity(ctx, name, u.opts.ActivityLimit); err != nil {
		hd.FeedErr = err.Error()
	}
	if hd.DeadLetters, hd.DeadTotal, err = u.src.DeadLetters(ctx, name, u.opts.DeadLetterLimit); err != nil {
		hd.DeadErr = err.Error()
	}
	hd.DeadMore = hd.DeadTotal > int64(len(hd.DeadLetters))
	return u.render(c, fiber.StatusOK, "handler", page{Title: d.Name, Handler: d.Name, Window: w.Name, Data: hd})
}

// --- methods ---

type methodView struct {
	Info     streams.MethodInfo
	Stats    streams.MethodStats
	HasStats bool
	Example  string
	URL      string // POST here to call it
}

type methodsData struct {
	D       streams.HandlerDetail
	Base    string // this server's scheme://host, for the curl lines
	Methods []methodView
}

func (u *UI) methods(c *fiber.Ctx) error {
	name := param(c, "name")
	ctx, cancel := u.ctx()
	defer cancel()
	d, err := u.src.Handler(ctx, name)
	if err != nil {
		if errors.Is(err, streams.ErrNotFound) {
			return u.notFound(c, "Handler not found", "No consumer has registered a handler named “"+name+"”.")
		}
		return u.failed(c, err, "Handler")
	}
	stats := map[string]streams.MethodStats{}
	for _, m := range d.Methods {
		stats[m.Method] = m
	}
	md := methodsData{D: d, Base: c.BaseURL()}
	seen := map[string]bool{}
	for _, mi := range d.Info.Methods {
		seen[mi.Name] = true
		st, ok := stats[mi.Name]
		md.Methods = append(md.Methods, methodView{Info: mi, Stats: st, HasStats: ok, Example: exampleParams(mi.ParamsSchema),
			URL: "/rpc/" + pathSeg(d.Name) + "/" + pathSeg(mi.Name)})
	}
	// Methods with stats but no longer registered still get a card.
	for _, st := range d.Methods {
		if !seen[st.Method] {
			md.Methods = append(md.Methods, methodView{Info: streams.MethodInfo{Name: st.Method}, Stats: st, HasStats: true,
				Example: "{}", URL: "/rpc/" + pathSeg(d.Name) + "/" + pathSeg(st.Method)})
		}
	}
	return u.render(c, fiber.StatusOK, "methods", page{Title: d.Name + " · methods", Handler: d.Name, Data: md})
}

// --- call ---

type callData struct {
	S          streams.CallStory
	Handler    string
	Params     []byte
	Result     []byte // the result, when answered ok
	Err        *streams.Error
	ErrRaw     []byte // the error body when it does not decode
	Start      time.Time
	Took       string // first event to last
	DeadLetter *streams.DeadLetter
	DeadErr    string
}

func (u *UI) call(c *fiber.Ctx) error {
	id := param(c, "id")
	ctx, cancel := u.ctx()
	defer cancel()
	s, err := u.src.Call(ctx, id)
	if err != nil {
		if errors.Is(err, streams.ErrNotFound) {
			return u.callNotFound(ctx, c, id)
		}
		return u.failed(c, err, "Call")
	}
	d := callData{S: s, Handler: s.Handler, Params: s.Params}
	if len(d.Params) == 0 {
		for _, ev := range s.Events {
			if len(ev.Params) > 0 {
				d.Params = ev.Params
				break
			}
		}
	}
	if s.Final() && len(s.Reply.Body) > 0 {
		if s.Reply.OK {
			d.Result = s.Reply.Body
		} else {
			var e streams.Error
			if json.Unmarshal(s.Reply.Body, &e) == nil {
				d.Err = &e
			} else {
				d.ErrRaw = s.Reply.Body
			}
		}
	}
	if n := len(s.Events); n > 0 {
		d.Start = s.Events[0].Time
		if n > 1 {
			d.Took = fmtMS(float64(s.Events[n-1].Time.Sub(d.Start)) / float64(time.Millisecond))
		}
	}
	if s.State == streams.StateDead && d.Handler != "" {
		dls, _, err := u.src.DeadLetters(ctx, d.Handler, 1000)
		if err != nil {
			d.DeadErr = err.Error()
		}
		for i := range dls {
			if dls[i].ID == s.ID {
				d.DeadLetter = &dls[i]
				break
			}
		}
	}
	return u.render(c, fiber.StatusOK, "call", page{Title: "Call " + s.ID, Handler: d.Handler, Data: d})
}

// feedView is an activity table: its rows and, for static/app.js to clone
// as new calls arrive, one blank row.
type feedView struct {
	List  []streams.Activity
	Blank streams.Activity
	Limit int
}

type crumb struct{ Label, Href string }

// makeCrumbs pairs labels with links: crumbs("echo", "/ui/handlers/echo", "Methods", "").
func makeCrumbs(pairs ...string) []crumb {
	var out []crumb
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, crumb{Label: pairs[i], Href: pairs[i+1]})
	}
	return out
}

type dlAction struct{ Replay, Delete string }
