package streams

import (
	"errors"
	"strings"
	"testing"
)

func TestConsumerACL(t *testing.T) {
	cases := []struct {
		name    string
		handler string
		wantErr bool
	}{
		{"plain", "echo", false},
		{"dots and dashes", "billing.v2-eu", false},
		{"glob star", "a*", true},
		{"glob class", "a[b]", true},
		{"space", "a b", true},
		{"empty", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := ConsumerACL(tc.handler)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("got %v, want ErrInvalidName", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(rules, " ")
			for _, k := range []string{callsKey(tc.handler), statsKey(tc.handler), "&" + cancelChannel(tc.handler), "~" + methodsKey(tc.handler), "%W~" + infoKey(tc.handler)} {
				if !strings.Contains(joined, k) {
					t.Errorf("rules lack %s: %s", k, joined)
				}
			}
			// Every key pattern names this handler, or is the handler set or
			// the edges' reply streams: nothing else, in particular no srpc:*.
			for _, f := range strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(joined)) {
				i := strings.Index(f, "~")
				if i < 0 {
					continue
				}
				p := f[i+1:]
				shared := p == replyKey("*") || p == handlersKey()
				if !shared && !strings.HasPrefix(p, keyPrefix+"{"+tc.handler+"}:") {
					t.Errorf("pattern %q reaches beyond handler %q", p, tc.handler)
				}
			}
		})
	}
}

func TestEdgeACLStaysInsideThePrefix(t *testing.T) {
	for _, r := range EdgeACL() {
		if strings.HasPrefix(r, "~") && r != "~"+keyPrefix+"*" || r == "+@all" || r == "allkeys" {
			t.Fatalf("edge rule %q reaches beyond streamrpc's keys", r)
		}
	}
}

func TestACLSetUser(t *testing.T) {
	cases := []struct {
		name     string
		password string
		want     string
	}{
		{"off without a password", "", "ACL SETUSER u reset +ping"},
		{"on with the password's hash", "pw", "ACL SETUSER u reset on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 +ping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var words []string
			for _, a := range ACLSetUser("u", tc.password, []string{"+ping"}) {
				words = append(words, a.(string))
			}
			if got := strings.Join(words, " "); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
