// Package ui is streamrpc's dashboard: server-rendered pages over the
// registry, stats, activity and dead letters, served by the edge at /ui/.
//
// Pages are html/template, so every value that comes from a caller or a
// handler is escaped; assets (CSS, JS, icon) are embedded. The pages are
// complete with JS off; static/app.js adds live numbers and the activity feed
// from the edge's /events stream, the try-it form, and the dead-letter
// buttons. No inline script or style: the pages run under a CSP without
// 'unsafe-inline'.
package ui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/streamrpc/streamrpc/streams"
)

// Source is where the UI reads its data; the edge implements it over Redis.
type Source interface {
	Handlers(ctx context.Context) ([]streams.HandlerSummary, error)
	// Handler returns an error wrapping streams.ErrNotFound for an unknown handler.
	Handler(ctx context.Context, name string) (streams.HandlerDetail, error)
	// Activity lists the latest settled calls, newest first; handler "" is all.
	Activity(ctx context.Context, handler string, limit int) ([]streams.Activity, error)
	// Call returns streams.ErrNotFound for an unknown or expired call.
	Call(ctx context.Context, id string) (streams.CallStory, error)
	// DeadLetters lists up to limit dead letters of handler, and their total.
	DeadLetters(ctx context.Context, handler string, limit int) ([]streams.DeadLetter, int64, error)
}

// Options configure the UI; the zero value works.
type Options struct {
	// Title names the dashboard in the header and the tab. Default "streamrpc".
	Title string
	// ActivityLimit is how many calls the activity feeds show. Default 25.
	ActivityLimit int
	// DeadLetterLimit is how many dead letters the handler page lists. Default 50.
	DeadLetterLimit int
	// Timeout bounds the Source reads of one page. Default 5s.
	Timeout time.Duration
	// Now is the clock for relative times; default time.Now (for tests).
	Now func() time.Time
	// ResultTTL is how long calls are kept (STREAMRPC_RESULT_TTL): the call
	// page tells an expired id from an unknown one. 0: it cannot.
	ResultTTL time.Duration

	// SignIn turns sign-in on: the dashboard gets a sign-in page at
	// /ui/sign-in where a person pastes an API key or token; SignIn checks it
	// and starts the session (sets its cookie), or returns why not, which the
	// page shows. nil: the dashboard is open and has no sign-in.
	SignIn func(c *fiber.Ctx, credential string) error
	// SignOut ends the session (POST /ui/sign-out).
	SignOut func(c *fiber.Ctx)
	// CSRFToken is the request's session's anti-CSRF token; the pages carry
	// it in <meta name="csrf-token"> and static/app.js sends it as
	// X-CSRF-Token with every POST and DELETE. nil or "": none.
	CSRFToken func(c *fiber.Ctx) string
	// Guard runs before every page (not the assets nor the sign-in): the edge
	// checks there that the session may read the dashboard. nil: none.
	Guard fiber.Handler
}

// UI serves the dashboard pages.
type UI struct {
	src     Source
	opts    Options
	pages   map[string]*template.Template
	static  fs.FS
	version string // hash of the embedded assets, for cache busting
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Where the dashboard lives and where the edge's API is, as the pages link them.
const (
	prefix = "/ui"
	// csp allows only this origin's scripts, styles and connections: the pages
	// have no inline script or style.
	csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

// New returns the UI over src.
func New(src Source, opts Options) *UI {
	if opts.Title == "" {
		opts.Title = "streamrpc"
	}
	if opts.ActivityLimit <= 0 {
		opts.ActivityLimit = 25
	}
	if opts.DeadLetterLimit <= 0 {
		opts.DeadLetterLimit = 50
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the folder
	}
	u := &UI{src: src, opts: opts, static: static, version: assetVersion(static)}
	u.pages = u.parsePages()
	return u
}

// Register mounts the pages and assets on r:
// GET /ui/, /ui/handlers/:name, /ui/handlers/:name/methods, /ui/calls/:id and
// /ui/static/*; with sign-in on, GET and POST /ui/sign-in and POST /ui/sign-out.
func (u *UI) Register(r fiber.Router) {
	guard := u.opts.Guard
	if guard == nil {
		guard = func(c *fiber.Ctx) error { return c.Next() }
	}
	r.Get(prefix+"/static/*", u.serveStatic)
	if u.opts.SignIn != nil {
		r.Get(prefix+"/sign-in", u.signInPage)
		r.Post(prefix+"/sign-in", u.signIn)
		r.Post(prefix+"/sign-out", u.signOut)
	}
	r.Get(prefix, guard, u.overview)
	r.Get(prefix+"/", guard, u.overview)
	r.Get(prefix+"/handlers/:name", guard, u.handler)
	r.Get(prefix+"/handlers/:name/methods", guard, u.methods)
	r.Get(prefix+"/handlers/:name/calls", guard, u.calls)
	r.Get(prefix+"/calls", guard, u.findCall)
	r.Get(prefix+"/calls/:id", guard, u.call)
	r.Get(prefix+"/*", guard, func(c *fiber.Ctx) error {
		return u.notFound(c, "Page not found", "There is no dashboard page at "+c.Path()+".")
	})
}

func (u *UI) parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"rate":     fmtRate,
		"int":      fmtInt,
		"pct":      fmtPct,
		"ms":       fmtMS,
		"ago":      func(t time.Time) string { return ago(u.opts.Now(), t) },
		"iso":      isoTime,
		"clock":    clockTime,
		"full":     fullTime,
		"offset":   offset,
		"human":    human,
		"json":     func(raw []byte) []Token { return prettyJSON(raw) },
		"compact":  func(raw []byte) string { return compactJSON(raw, 120) },
		"trunc":    truncate,
		"seg":      pathSeg,
		"asset":    func(name string) string { return prefix + "/static/" + name + "?v=" + u.version },
		"outcome":  outcomeClass,
		"state":    stateClass,
		"codename": codeName,
		"spark": func(rate []streams.RatePoint) Sparkline {
			return sparkline(rateValues(rate), sparkW, sparkH, 2)
		},
		"example": exampleParams,
		"feed": func(list []streams.Activity) feedView {
			return feedView{List: list, Limit: u.opts.ActivityLimit}
		},
		"crumbs": makeCrumbs,
		"dlaction": func(handler, deadLetterID string) dlAction {
			base := "/handlers/" + pathSeg(handler) + "/dead-letters/" + pathSeg(deadLetterID)
			return dlAction{Replay: base + "/replay", Delete: base}
		},
		"meter": func(v, of int, w float64) float64 {
			if of <= 0 || v <= 0 {
				return 0
			}
			return round2(min(float64(v)/float64(of), 1) * w)
		},
		"compactex": func(s string) string { return strings.ReplaceAll(compactJSON([]byte(s), 1<<20), "'", `'\''`) },
		"title":     func() string { return u.opts.Title },
		"windows":   windowLinks,
		"dict": func(kv ...any) map[string]any {
			m := make(map[string]any, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				k, _ := kv[i].(string)
				m[k] = kv[i+1]
			}
			return m
		},
		"list":     func(v ...string) []string { return v },
		"sub":      func(a, b int64) int64 { return a - b },
		"errchart": func(ws *streams.WindowStats) Chart { return errorRateChart(ws, chartW, chartH) },
		"latchart": func(ws *streams.WindowStats) LineChart { return latencyChart(ws, chartW, chartH) },
		"now":      func() time.Time { return u.opts.Now() },
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/operate.html"))
	pages := map[string]*template.Template{}
	for _, name := range []string{"overview", "handler", "methods", "call", "calls", "error", "signin"} {
		t := template.Must(base.Clone())
		pages[name] = template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
	}
	return pages
}

const (
	sparkW, sparkH = 120, 28
	chartW, chartH = 600, 120
)

// page is what every template gets: the layout's fields plus the page's own.
type page struct {
	Title   string // the tab's title, before the dashboard's
	Nav     string // which top link is current
	Handler string // the handler this page is about, for live updates ("" on the overview)
	// Window is the time window of the page's windowed numbers: static/app.js
	// updates them live only from stats of the same window.
	Window string
	Data   any
	// CSRF is the session's anti-CSRF token, for static/app.js ("" when none).
	CSRF string
	// SignedIn shows the sign-out button.
	SignedIn bool
}

func (u *UI) render(c *fiber.Ctx, status int, name string, p page) error {
	if u.opts.CSRFToken != nil {
		p.CSRF = u.opts.CSRFToken(c)
		p.SignedIn = p.CSRF != "" && name != "signin"
	}
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		return u.plainError(c, err)
	}
	u.headers(c)
	c.Status(status).Type("html", "utf-8")
	return c.Send(buf.Bytes())
}

func (u *UI) headers(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentSecurityPolicy, csp)
	// frame-ancestors 'none' in the CSP, and X-Frame-Options for browsers
	// that predate it: no page of the dashboard can be framed (clickjacking).
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "same-origin")
	c.Set(fiber.HeaderCacheControl, "no-store")
}

// plainError answers a template failure, which is a bug, without templates.
func (u *UI) plainError(c *fiber.Ctx, err error) error {
	u.headers(c)
	c.Status(fiber.StatusInternalServerError).Type("txt", "utf-8")
	return c.SendString("dashboard error: " + err.Error())
}

type errorData struct {
	Status  int
	Heading string
	Message string
}

func (u *UI) notFound(c *fiber.Ctx, heading, msg string) error {
	return u.render(c, fiber.StatusNotFound, "error", page{Title: heading, Data: errorData{404, heading, msg}})
}

// failed answers a Source error: 404 for streams.ErrNotFound, else 503 (the
// data is in Redis, and Redis did not answer).
func (u *UI) failed(c *fiber.Ctx, err error, what string) error {
	if errors.Is(err, streams.ErrNotFound) {
		return u.notFound(c, what+" not found", "")
	}
	return u.render(c, fiber.StatusServiceUnavailable, "error", page{
		Title: "Unavailable",
		Data:  errorData{503, "Could not load " + strings.ToLower(what), err.Error()},
	})
}

func (u *UI) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), u.opts.Timeout)
}

func param(c *fiber.Ctx, name string) string {
	v := c.Params(name)
	if s, err := url.PathUnescape(v); err == nil {
		return s
	}
	return v
}

// --- assets ---

func (u *UI) serveStatic(c *fiber.Ctx) error {
	name := path.Clean(param(c, "*"))
	b, err := fs.ReadFile(u.static, name)
	if err != nil || strings.HasPrefix(name, ".") {
		c.Status(fiber.StatusNotFound).Type("txt", "utf-8")
		return c.SendString("not found")
	}
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	if c.Query("v") == u.version {
		c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	} else {
		c.Set(fiber.HeaderCacheControl, "no-cache")
	}
	c.Type(strings.TrimPrefix(path.Ext(name), "."), "utf-8")
	return c.Send(b)
}

func assetVersion(static fs.FS) string {
	h := sha256.New()
	_ = fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// --- template helpers ---

func outcomeClass(outcome string) string {
	switch outcome {
	case streams.OutcomeOK:
		return "ok"
	case streams.OutcomeError, streams.OutcomeDead:
		return "err"
	case streams.OutcomeTimeout, streams.OutcomeRetry, streams.OutcomeCancelled:
		return "warn"
	}
	return "muted"
}

func stateClass(s streams.State) string {
	switch s {
	case streams.StateDone:
		return "ok"
	case streams.StateFailed, streams.StateDead:
		return "err"
	case streams.StateCancelled:
		return "warn"
	case streams.StateQueued, streams.StateRunning:
		return "info"
	}
	return "muted"
}

// codeName is the name of a wire error code ("handler_error"), or "" for a
// handler's own code.
func codeName(code int) string {
	for _, c := range streams.Codes {
		if c.Code == code {
			return c.Name
		}
	}
	return ""
}
