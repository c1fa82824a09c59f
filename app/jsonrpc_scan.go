package app

// A request's five members (the four of JSON-RPC 2.0, and "_meta") found by one pass over the message, without
// encoding/json's map and its copies: decoding a request is on every JSON-RPC
// call's path. The message is valid JSON (checked first), which is what lets
// this scanner be short: it only has to find where each value ends.

// requestMembers are the raw values of a request's members (nil: absent),
// pointing into the message.
type requestMembers struct {
	id, jsonrpc, method, params, meta []byte
}

// scanRequest finds the members of the JSON object raw, which must be valid
// JSON. It reports false when raw is not an object, or when a member name
// has escapes (the caller then falls back to encoding/json). As with
// encoding/json, a repeated member's last value wins.
func scanRequest(raw []byte) (requestMembers, bool) {
	var m requestMembers
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return m, false
	}
	i = skipSpace(raw, i+1)
	if raw[i] == '}' {
		return m, true
	}
	for {
		if raw[i] != '"' {
			return m, false
		}
		j := i + 1
		for raw[j] != '"' {
			if raw[j] == '\\' {
				return m, false
			}
			j++
		}
		name := raw[i+1 : j]
		i = skipSpace(raw, j+1) // the colon
		i = skipSpace(raw, i+1)
		end := valueEnd(raw, i)
		v := raw[i:end:end]
		switch string(name) {
		case "id":
			m.id = v
		case "jsonrpc":
			m.jsonrpc = v
		case "method":
			m.method = v
		case "params":
			m.params = v
		case "_meta":
			m.meta = v
		}
		i = skipSpace(raw, end)
		if raw[i] != ',' {
			return m, true // the closing brace
		}
		i = skipSpace(raw, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
		i++
	}
	return i
}

// stringEnd returns the index just past the string that starts at b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// plainString returns the value of a JSON string without escapes.
func plainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	for _, c := range v[1 : len(v)-1] {
		if c == '\\' {
			return "", false
		}
	}
	return string(v[1 : len(v)-1]), true
}
