package ui

// The operator's pages: find a call by id, a handler's calls by state (with
// the actions on them), and the time windows of the numbers.

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/oklog/ulid/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Operations is what the state lists and the time windows read. A Source
// that implements it (the edge's does) gets them; one that does not gets the
// pages without them.
type Operations interface {
	ListCalls(ctx context.Context, handler string, q streams.CallQuery) (streams.CallPage, error)
	HandlersIn(ctx context.Context, w streams.WindowDef) ([]streams.HandlerSummary, error)
	HandlerIn(ctx context.Context, name string, w streams.WindowDef) (streams.HandlerDetail, error)
}

func (u *UI) ops() Operations {
	o, _ := u.src.(Operations)
	return o
}

// windowParam reads ?window=, falling back to the default for a bad one.
func windowParam(c *fiber.Ctx) streams.WindowDef {
	w, err := streams.ParseWindow(c.Query("window"))
	if err != nil {
		w, _ = streams.ParseWindow("")
	}
	return w
}

// windowLink is one choice of the window selector.
type windowLink struct {
	Name, Href string
	Current    bool
}

func windowLinks(base string, cur streams.WindowDef) []windowLink {
	out := make([]windowLink, len(streams.Windows))
	for i, w := range streams.Windows {
		out[i] = windowLink{Name: w.Name, Href: base + "?window=" + w.Name, Current: w.Name == cur.Name}
	}
	return out
}

// findCall serves GET /ui/calls?id=: the top bar's search.
func (u *UI) findCall(c *fiber.Ctx) error {
	id := strings.TrimSpace(c.Query("id"))
	if id == "" {
		return u.render(c, fiber.StatusBadRequest, "error", page{Title: "Find a call",
			Data: errorData{400, "Find a call", "Type a call id (as X-Request-Id returns it) in the search box."}})
	}
	if _, err := streams.ValidateCallID(id); err != nil {
		return u.render(c, fiber.StatusBadRequest, "error", page{Title: "Not a call id",
			Data: errorData{400, "Not a call id", "“" + id + "” is not a call id: ids look like <handler>.<26 characters>, e.g. echo.01J9Z3…"}})
	}
	return c.Redirect(prefix+"/calls/"+url.PathEscape(id), fiber.StatusSeeOther)
}

// callNotFound says why a call id finds nothing: an unknown handler, a
// story that expired, or a call nobody has settled yet.
func (u *UI) callNotFound(ctx context.Context, c *fiber.Ctx, id string) error {
	h, err := streams.ValidateCallID(id)
	if err != nil {
		return u.notFound(c, "Not a call id", "“"+id+"” is not a call id: ids look like <handler>.<26 characters>.")
	}
	if _, herr := u.src.Handler(ctx, h); errors.Is(herr, streams.ErrNotFound) {
		return u.notFound(c, "Unknown call", "No call “"+id+"” is known: no consumer has registered a handler named “"+h+"”.")
	}
	own := id[len(h)+1:]
	made, perr := ulid.ParseStrict(own)
	if perr != nil {
		return u.notFound(c, "Unknown call", "No call “"+id+"” is known: its id was not made by this edge.")
	}
	at := ulid.Time(made.Time())
	now := u.opts.Now()
	if u.opts.ResultTTL > 0 && now.Sub(at) > u.opts.ResultTTL {
		return u.notFound(c, "Call expired", "Call “"+id+"” was made "+ago(now, at)+" ("+fullTime(at)+
			"); calls are kept for "+u.opts.ResultTTL.String()+" (STREAMRPC_RESULT_TTL), so its story and result are gone.")
	}
	if at.After(now.Add(time.Minute)) {
		return u.notFound(c, "Unknown call", "No call “"+id+"” is known: its id dates from the future ("+fullTime(at)+").")
	}
	return u.notFound(c, "Call not known yet", "No call “"+id+"” is known. Its id dates from "+ago(now, at)+
		": either no such call was made, or it is a call nobody waits for by id that has not settled yet (it shows up in the handler's queued and running lists).")
}

// --- the state lists ---

type stateTab struct {
	State, Href string
	Current     bool
}

type callsData struct {
	D       streams.HandlerDetail
	State   string
	Tabs    []stateTab
	Page    streams.CallPage
	Method  string
	Outcome string
	Methods []string
	Err     string
	Next    string // the next page's link, "" for none
	Cursor  string // this page's cursor ("" on the first)
	Base    string // the API path of the handler
}

// calls serves /ui/handlers/{name}/calls?state=&method=&outcome=&cursor=.
func (u *UI) calls(c *fiber.Ctx) error {
	name := param(c, "name")
	ops := u.ops()
	if ops == nil {
		return u.notFound(c, "Page not found", "This dashboard has no call lists.")
	}
	ctx, cancel := u.ctx()
	defer cancel()
	d, err := u.src.Handler(ctx, name)
	if err != nil {
		if errors.Is(err, streams.ErrNotFound) {
			return u.notFound(c, "Handler not found", "No consumer has registered a handler named “"+name+"”.")
		}
		return u.failed(c, err, "Handler")
	}
	state := c.Query("state", "queued")
	cd := callsData{D: d, State: state, Method: c.Query("method"), Outcome: c.Query("outcome"), Cursor: c.Query("cursor"),
		Base: "/handlers/" + pathSeg(d.Name)}
	base := prefix + "/handlers/" + pathSeg(d.Name) + "/calls"
	for _, s := range streams.CallListStates() {
		cd.Tabs = append(cd.Tabs, stateTab{State: s, Href: base + "?state=" + s, Current: s == state})
	}
	for _, m := range d.Info.Methods {
		cd.Methods = append(cd.Methods, m.Name)
	}
	q := streams.CallQuery{State: state, Method: cd.Method, Outcome: cd.Outcome, Limit: 50, Cursor: cd.Cursor}
	status := fiber.StatusOK
	cd.Page, err = ops.ListCalls(ctx, d.Name, q)
	switch {
	case errors.Is(err, streams.ErrBadQuery) || errors.Is(err, streams.ErrInvalidName):
		status, cd.Err = fiber.StatusBadRequest, err.Error()
	case err != nil:
		status, cd.Err = fiber.StatusServiceUnavailable, err.Error()
	}
	if cd.Page.Next != "" {
		v := url.Values{"state": {state}, "cursor": {cd.Page.Next}}
		if cd.Method != "" {
			v.Set("method", cd.Method)
		}
		if cd.Outcome != "" {
			v.Set("outcome", cd.Outcome)
		}
		cd.Next = base + "?" + v.Encode()
	}
	return u.render(c, status, "calls", page{Title: d.Name + " · " + state, Handler: d.Name, Data: cd})
}

// handlersIn reads the handlers with window w's numbers when the source
// has windows.
func (u *UI) handlersIn(ctx context.Context, w streams.WindowDef) ([]streams.HandlerSummary, error) {
	if o := u.ops(); o != nil {
		return o.HandlersIn(ctx, w)
	}
	return u.src.Handlers(ctx)
}

// handlerIn reads a handler with window w's numbers when the source has
// windows.
func (u *UI) handlerIn(ctx context.Context, name string, w streams.WindowDef) (streams.HandlerDetail, error) {
	if o := u.ops(); o != nil {
		return o.HandlerIn(ctx, name, w)
	}
	return u.src.Handler(ctx, name)
}
