package ui

import (
	"bytes"
	"encoding/json"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Number and time formats. static/app.js has the same functions (fmtRate,
// fmtPct, fmtMS, ago): keep them in step.

// fmtRate formats calls per second: "0", "0.05", "2.5", "340", "12.3k".
func fmtRate(r float64) string {
	switch {
	case r <= 0 || math.IsNaN(r):
		return "0"
	case r < 1:
		return trimZeros(strconv.FormatFloat(r, 'f', 2, 64))
	case r < 10:
		return trimZeros(strconv.FormatFloat(r, 'f', 1, 64))
	case r < 1000:
		return strconv.FormatFloat(r, 'f', 0, 64)
	default:
		return trimZeros(strconv.FormatFloat(r/1000, 'f', 1, 64)) + "k"
	}
}

// fmtPct formats a ratio in [0,1] as a percentage with one decimal at most,
// never rounding a ratio below 1 up to "100%".
func fmtPct(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	v := x * 100
	if v >= 100 {
		return "100%"
	}
	if v >= 99.95 {
		return "99.9%"
	}
	return trimZeros(strconv.FormatFloat(v, 'f', 1, 64)) + "%"
}

// fmtMS formats a duration in milliseconds: "<0.01ms", "0.42ms", "4.2ms", "42ms",
// "1.2s", "2m 3s".
func fmtMS(ms float64) string {
	switch {
	case ms <= 0 || math.IsNaN(ms):
		return "0ms"
	case ms < 0.01:
		return "<0.01ms"
	case ms < 1:
		return trimZeros(strconv.FormatFloat(ms, 'f', 2, 64)) + "ms"
	case ms < 10:
		return trimZeros(strconv.FormatFloat(ms, 'f', 1, 64)) + "ms"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	case ms < 60000:
		return trimZeros(strconv.FormatFloat(ms/1000, 'f', 1, 64)) + "s"
	default:
		s := int64(ms / 1000)
		return strconv.FormatInt(s/60, 10) + "m " + strconv.FormatInt(s%60, 10) + "s"
	}
}

func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// ago formats how long before now t was: "just now", "12s ago", "5m ago",
// "3h ago", "2d ago"; the zero time is "never".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 2*time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
	}
}

// offset formats how long after start t was: "+0ms", "+12ms", "+1.5s".
func offset(start, t time.Time) string {
	ms := float64(t.Sub(start)) / float64(time.Millisecond)
	if ms >= 1000 && ms < 60000 {
		return "+" + trimZeros(strconv.FormatFloat(ms/1000, 'f', 3, 64)) + "s"
	}
	return "+" + fmtMS(ms)
}

// human turns an event name into words: "dead_lettered" → "dead lettered".
func human(s string) string { return strings.ReplaceAll(s, "_", " ") }

func isoTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func clockTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("15:04:05.000")
}

func fullTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

// truncate cuts s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// pathSeg escapes one URL path segment.
func pathSeg(s string) string { return url.PathEscape(s) }

// Token is a piece of pretty-printed JSON with its highlighting class
// ("k" key, "s" string, "n" number, "b" true/false, "z" null, "" punctuation
// and space). Templates print each Text escaped: tokens never carry markup.
type Token struct {
	Class string
	Text  string
}

// prettyJSON indents raw and splits it into tokens for highlighting. Raw
// that is not valid JSON comes back as one plain token, as it was.
func prettyJSON(raw []byte) []Token {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return []Token{{Text: string(raw)}}
	}
	return tokenize(buf.String())
}

// tokenize splits valid, indented JSON into tokens.
func tokenize(s string) []Token {
	var out []Token
	plain := func(t string) {
		if n := len(out); n > 0 && out[n-1].Class == "" {
			out[n-1].Text += t
			return
		}
		out = append(out, Token{Text: t})
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(s))
			class := "s"
			if k := strings.TrimLeft(s[j:], " \n\t\r"); strings.HasPrefix(k, ":") {
				class = "k"
			}
			out = append(out, Token{Class: class, Text: unescapeHTML(s[i:j])})
			i = j
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && strings.IndexByte("0123456789.eE+-", s[j]) >= 0 {
				j++
			}
			out = append(out, Token{Class: "n", Text: s[i:j]})
			i = j
		case strings.HasPrefix(s[i:], "true"):
			out = append(out, Token{Class: "b", Text: "true"})
			i += 4
		case strings.HasPrefix(s[i:], "false"):
			out = append(out, Token{Class: "b", Text: "false"})
			i += 5
		case strings.HasPrefix(s[i:], "null"):
			out = append(out, Token{Class: "z", Text: "null"})
			i += 4
		default:
			plain(s[i : i+1])
			i++
		}
	}
	return out
}

// unescapeHTML undoes Go's HTML-safe escaping of <, > and & (\u003c …) in
// a JSON string token: params recorded by the edge carry it, and the page
// would show "\u003cb\u003e" for "<b>". The template escapes the token
// itself, so the characters are safe to show as they were sent.
func unescapeHTML(tok string) string {
	if !strings.Contains(tok, `\u00`) {
		return tok
	}
	var v string
	if json.Unmarshal([]byte(tok), &v) != nil {
		return tok
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return tok
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// compactJSON is raw on one line, cut to n runes, for listings.
func compactJSON(raw []byte, n int) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return truncate(string(raw), n)
	}
	var b strings.Builder
	for _, t := range tokenize(buf.String()) {
		b.WriteString(t.Text)
	}
	return truncate(b.String(), n)
}

// exampleParams builds a starting value for the try-it form from a JSON
// Schema: its first example, else its default, else a skeleton of its
// properties. No schema (or one it cannot read) gives "{}".
func exampleParams(schema json.RawMessage) string {
	var s map[string]any
	if len(schema) == 0 || json.Unmarshal(schema, &s) != nil {
		return "{}"
	}
	v := exampleValue(s, 0)
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "{}"
	}
	return string(b)
}

func exampleValue(s map[string]any, depth int) any {
	if ex, ok := s["examples"].([]any); ok && len(ex) > 0 {
		return ex[0]
	}
	if ex, ok := s["example"]; ok {
		return ex
	}
	if d, ok := s["default"]; ok {
		return d
	}
	if c, ok := s["const"]; ok {
		return c
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	typ, _ := s["type"].(string)
	if ts, ok := s["type"].([]any); ok && len(ts) > 0 {
		typ, _ = ts[0].(string)
	}
	props, _ := s["properties"].(map[string]any)
	if typ == "" && props != nil {
		typ = "object"
	}
	switch typ {
	case "object":
		obj := map[string]any{}
		if depth < 4 {
			keys := make([]string, 0, len(props))
			for k := range props {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if ps, ok := props[k].(map[string]any); ok {
					obj[k] = exampleValue(ps, depth+1)
				}
			}
		}
		return obj
	case "array":
		return []any{}
	case "string":
		return ""
	case "integer", "number":
		return 0
	case "boolean":
		return false
	case "null":
		return nil
	}
	if depth == 0 {
		return map[string]any{}
	}
	return nil
}

// fmtInt groups thousands: 18699 → "18,699".
func fmtInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
