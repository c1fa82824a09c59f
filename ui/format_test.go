package ui

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestFormats(t *testing.T) {
	for in, want := range map[float64]string{0: "0", -1: "0", 0.05: "0.05", 0.1: "0.1", 0.999: "1", 2.5: "2.5", 9.96: "10", 31.4: "31", 999: "999", 1234: "1.2k", 20000: "20k"} {
		if got := fmtRate(in); got != want {
			t.Errorf("fmtRate(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{1: "100%", 0.9999: "99.9%", 0.998: "99.8%", 0.5: "50%", 0: "0%", 0.12345: "12.3%", math.NaN(): "–"} {
		if got := fmtPct(in); got != want {
			t.Errorf("fmtPct(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "0ms", 0.004: "<0.01ms", 0.42: "0.42ms", 0.5: "0.5ms", 4.25: "4.2ms", 42.4: "42ms", 1234: "1.2s", 30000: "30s", 123000: "2m 3s"} {
		if got := fmtMS(in); got != want {
			t.Errorf("fmtMS(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 18699: "18,699", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := fmtInt(in); got != want {
			t.Errorf("fmtInt(%v) = %q, want %q", in, got, want)
		}
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{0: "just now", 5 * time.Second: "5s ago", 3 * time.Minute: "3m ago", 5 * time.Hour: "5h ago", 72 * time.Hour: "3d ago"} {
		if got := ago(now, now.Add(-d)); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	if ago(now, time.Time{}) != "never" {
		t.Error("zero time is not never")
	}
	for d, want := range map[time.Duration]string{0: "+0ms", 2 * time.Millisecond: "+2ms", 1021 * time.Millisecond: "+1.021s", 90 * time.Second: "+1m 30s"} {
		if got := offset(now, now.Add(d)); got != want {
			t.Errorf("offset(%v) = %q, want %q", d, got, want)
		}
	}
	if got := truncate("héllo wörld", 5); got != "héllo…" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("short", 10); got != "short" {
		t.Errorf("truncate = %q", got)
	}
}

func TestPrettyJSON(t *testing.T) {
	toks := prettyJSON([]byte(`{"a":"x:y","b":[1,-2.5e3,true,null],"c\"":{}}`))
	var text string
	classes := map[string]string{}
	for _, tk := range toks {
		text += tk.Text
		if tk.Class != "" {
			classes[tk.Text] = tk.Class
		}
	}
	want := "{\n  \"a\": \"x:y\",\n  \"b\": [\n    1,\n    -2.5e3,\n    true,\n    null\n  ],\n  \"c\\\"\": {}\n}"
	if text != want {
		t.Errorf("text:\n%s\nwant:\n%s", text, want)
	}
	for tok, class := range map[string]string{`"a"`: "k", `"x:y"`: "s", `1`: "n", `-2.5e3`: "n", `true`: "b", `null`: "z", `"c\""`: "k"} {
		if classes[tok] != class {
			t.Errorf("%s: class %q, want %q", tok, classes[tok], class)
		}
	}
	// Not JSON: one plain token, as it was.
	if toks := prettyJSON([]byte(`not json <b>`)); len(toks) != 1 || toks[0].Text != "not json <b>" || toks[0].Class != "" {
		t.Errorf("%+v", toks)
	}
	if prettyJSON(nil) != nil {
		t.Error("empty input gives tokens")
	}
}

func TestExampleParams(t *testing.T) {
	for schema, want := range map[string]string{
		``:                       `{}`,
		`not json`:               `{}`,
		`{"examples":[{"a":1}]}`: `{"a":1}`,
		`{"type":"object","properties":{"n":{"type":"integer"},"s":{"type":"string","default":"x"},"b":{"type":"boolean"},"l":{"type":"array"},"e":{"enum":["red","blue"]},"o":{"properties":{"z":{"type":"null"}}}}}`: `{"b":false,"e":"red","l":[],"n":0,"o":{"z":null},"s":"x"}`,
		`{"type":"string"}`:           `""`,
		`{"type":["integer","null"]}`: `0`,
		`{}`:                          `{}`,
	} {
		got := exampleParams(json.RawMessage(schema))
		var g, w any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			t.Errorf("%s: not JSON: %q", schema, got)
			continue
		}
		_ = json.Unmarshal([]byte(want), &w)
		gb, _ := json.Marshal(g)
		wb, _ := json.Marshal(w)
		if string(gb) != string(wb) {
			t.Errorf("exampleParams(%s) = %s, want %s", schema, gb, wb)
		}
	}
}
