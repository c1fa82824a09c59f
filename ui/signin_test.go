package ui

import "testing"

func TestSafeNext(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "/ui/"},
		{"the dashboard", "/ui", "/ui"},
		{"a page with a query", "/ui/handlers/echo?x=1", "/ui/handlers/echo?x=1"},
		{"another site", "https://evil.test/ui/", "/ui/"},
		{"scheme-relative", "//evil.test/ui/", "/ui/"},
		{"another route of the edge", "/handlers", "/ui/"},
		{"a prefix lookalike", "/uix", "/ui/"},
		{"back to sign-in", "/ui/sign-in?next=/ui/", "/ui/"},
		{"a backslash", "/ui/\\evil.test", "/ui/"},
		{"a header split", "/ui/\r\nSet-Cookie: x", "/ui/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := safeNext(tc.in); got != tc.want {
				t.Fatalf("safeNext(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
