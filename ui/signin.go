package ui

import (
	"errors"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// The sign-in page: a form where a person pastes an API key or token. The
// edge checks it (Options.SignIn) and keeps it in an HttpOnly cookie; the
// page itself never sees it again.

type signInData struct {
	Next  string // where to go once signed in
	Error string
}

// safeNext keeps the post-sign-in redirect on the dashboard: an open
// redirect to another site would make the sign-in page a phishing aid.
func safeNext(next string) string {
	onDashboard := next == prefix || strings.HasPrefix(next, prefix+"/")
	if !onDashboard || strings.HasPrefix(next, prefix+"/sign-") || strings.ContainsAny(next, "\\\r\n") {
		return prefix + "/"
	}
	return next
}

func (u *UI) signInPage(c *fiber.Ctx) error {
	return u.render(c, fiber.StatusOK, "signin", page{Title: "Sign in", Data: signInData{Next: safeNext(c.Query("next"))}})
}

func (u *UI) signIn(c *fiber.Ctx) error {
	next := safeNext(c.FormValue("next"))
	cred := strings.TrimSpace(c.FormValue("credential"))
	err := errors.New("paste an API key or a token")
	if cred != "" {
		err = u.opts.SignIn(c, cred)
	}
	if err != nil {
		return u.render(c, fiber.StatusUnauthorized, "signin", page{Title: "Sign in", Data: signInData{Next: next, Error: err.Error()}})
	}
	return c.Redirect(next, fiber.StatusSeeOther)
}

func (u *UI) signOut(c *fiber.Ctx) error {
	if u.opts.SignOut != nil {
		u.opts.SignOut(c)
	}
	return c.Redirect(prefix+"/sign-in", fiber.StatusSeeOther)
}
