package streams

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr bool
		mention string // a substring the error message must contain
	}{
		{name: "empty", input: "", wantErr: true, mention: "empty"},
		{name: "one char", input: "a"},
		{name: "64 bytes ok", input: strings.Repeat("a", 64)},
		{name: "65 bytes too long", input: strings.Repeat("a", 65), wantErr: true, mention: "65 bytes"},
		{name: "lower case", input: "abcxyz"},
		{name: "upper case", input: "ABCXYZ"},
		{name: "digits", input: "0123456789"},
		{name: "underscore", input: "_"},
		{name: "dot", input: "."},
		{name: "dash", input: "-"},
		{name: "all classes", input: "Echo_v2.batch-1"},
		{name: "open brace", input: "a{b", wantErr: true, mention: "'{'"},
		{name: "close brace", input: "a}b", wantErr: true, mention: "'}'"},
		{name: "hash tag", input: "{x}", wantErr: true, mention: "byte 0"},
		{name: "space", input: "a b", wantErr: true, mention: "' '"},
		{name: "leading space", input: " a", wantErr: true, mention: "byte 0"},
		{name: "colon", input: "a:b", wantErr: true, mention: "':'"},
		{name: "slash", input: "a/b", wantErr: true, mention: "'/'"},
		{name: "unicode", input: "héllo", wantErr: true, mention: "byte 1"},
		{name: "newline", input: "a\nb", wantErr: true},
		{name: "nul byte", input: "a\x00", wantErr: true},
		{name: "star", input: "a*", wantErr: true},
		{name: "long with bad byte", input: strings.Repeat("a", 65) + "{", wantErr: true, mention: "limit is 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName("handler", tt.input)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("ValidateName(%q) = %v, want nil", tt.input, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateName(%q) = %v, want an error wrapping ErrInvalidName", tt.input, err)
			}
			if !strings.Contains(err.Error(), "handler") {
				t.Errorf("error %q does not name the kind %q", err, "handler")
			}
			if tt.mention != "" && !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr bool
	}{
		{name: "empty", input: "", wantErr: true},
		{name: "ulid", input: "01HZX3Q4R5S6T7V8W9XAYBZC0D"},
		{name: "one char", input: "x"},
		{name: "MaxIDLen bytes ok", input: strings.Repeat("Z", MaxIDLen)},
		{name: "one byte too long", input: strings.Repeat("Z", MaxIDLen+1), wantErr: true},
		{name: "lower case", input: "abc"},
		{name: "upper case", input: "ABC"},
		{name: "digits", input: "123"},
		{name: "underscore", input: "a_b"},
		{name: "dot", input: "a.b"},
		{name: "dash", input: "a-b"},
		{name: "open brace", input: "a{", wantErr: true},
		{name: "close brace", input: "}a", wantErr: true},
		{name: "space", input: "a b", wantErr: true},
		{name: "colon", input: "a:b", wantErr: true},
		{name: "slash", input: "a/b", wantErr: true},
		{name: "unicode", input: "ü", wantErr: true},
		{name: "tab", input: "a\tb", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateID(tt.input)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("ValidateID(%q) = %v, want an error wrapping ErrInvalidName", tt.input, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ValidateID(%q) = %v, want nil", tt.input, err)
			}
		})
	}
}

// TestKeysHashTags checks that every key that belongs to a handler, a call or
// an edge carries exactly that name as its Redis Cluster hash tag: the first
// {...} in the key.
func TestKeysHashTags(t *testing.T) {
	const name = "some-name_1.x"
	tests := []struct {
		name   string
		key    string
		prefix string
		suffix string
	}{
		{name: "calls", key: callsKey(name), prefix: "srpc:", suffix: ":calls"},
		{name: "methods", key: methodsKey(name), prefix: "srpc:", suffix: ":methods"},
		{name: "delayed", key: delayedKey(name), prefix: "srpc:", suffix: ":delayed"},
		{name: "dead letters", key: deadKey(name), prefix: "srpc:", suffix: ":dead"},
		{name: "scheduled", key: scheduledKey(name), prefix: "srpc:", suffix: ":scheduled"},
		{name: "limits", key: limitsKey(name), prefix: "srpc:", suffix: ":limits"},
		{name: "idempotency", key: idemKey(name, "abc123"), prefix: "srpc:", suffix: ":idem:abc123"},
		{name: "result", key: resultKey(name + ".01ABC"), prefix: "srpc:", suffix: ":result:01ABC"},
		{name: "story", key: storyKey(name + ".01ABC"), prefix: "srpc:", suffix: ":story:01ABC"},
		{name: "reply", key: replyKey(name), prefix: "srpc:edge:", suffix: ":replies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hashTag(tt.key); got != name {
				t.Fatalf("hash tag of %q = %q, want %q", tt.key, got, name)
			}
			want := tt.prefix + "{" + name + "}" + tt.suffix
			if tt.key != want {
				t.Fatalf("key = %q, want %q", tt.key, want)
			}
		})
	}

	// Keys of different handlers must differ, and keys of one handler must
	// share a slot (the same tag).
	if callsKey("a") == callsKey("b") {
		t.Error("callsKey does not depend on the handler")
	}
	id := NewCallID("h")
	for _, k := range []string{methodsKey("h"), delayedKey("h"), deadKey("h"), idemKey("h", "0f"), resultKey(id), storyKey(id)} {
		if hashTag(k) != hashTag(callsKey("h")) {
			t.Errorf("key %q is not in the slot of %q", k, callsKey("h"))
		}
	}
	if idemKey("h", "a") == idemKey("h", "b") {
		t.Error("idemKey does not depend on the key hash")
	}
	if k := handlersKey(); k != "srpc:handlers" {
		t.Errorf("handlersKey() = %q, want %q", k, "srpc:handlers")
	}
	for _, k := range []string{callsKey("h"), methodsKey("h"), delayedKey("h"), deadKey("h"), idemKey("h", "x"), resultKey(id), replyKey("h"), handlersKey()} {
		if !strings.HasPrefix(k, keyPrefix) {
			t.Errorf("key %q lacks the prefix %q", k, keyPrefix)
		}
	}
}

func TestCallIDs(t *testing.T) {
	for _, h := range []string{"a", "echo", "v1.billing", strings.Repeat("h", MaxNameLen)} {
		id := NewCallID(h)
		got, err := ValidateCallID(id)
		if err != nil || got != h {
			t.Errorf("ValidateCallID(NewCallID(%q)) = %q, %v", h, got, err)
		}
		if hashTag(resultKey(id)) != h || hashTag(storyKey(id)) != h {
			t.Errorf("result or story key of %q not tagged with its handler: %s %s", id, resultKey(id), storyKey(id))
		}
	}
	bad := map[string]string{
		"no handler":        "01JD5A6Y9C3W8Q1V2B3N4M5K6P",
		"empty handler":     ".01JD5A6Y9C3W8Q1V2B3N4M5K6P",
		"empty own part":    "echo.",
		"own part too long": "echo." + strings.Repeat("A", 27),
		"bad character":     "ec/ho.01JD",
		"too long":          strings.Repeat("h", MaxNameLen+1) + ".01JD",
	}
	for name, id := range bad {
		if _, err := ValidateCallID(id); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%s: ValidateCallID(%q) = %v, want ErrInvalidName", name, id, err)
		}
	}
}

// hashTag returns the part of key Redis Cluster hashes: the text between the
// first '{' and the next '}', if non-empty; else the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}
