package streams

// OutcomeOK is the outcome label of a call answered with a result.
const OutcomeOK = "ok"

var codeNames = func() map[int]string {
	m := make(map[int]string, len(Codes))
	for _, c := range Codes {
		m[c.Code] = c.Name
	}
	return m
}()

// CodeName is the name of code in Codes (e.g. "timeout"), or
// "handler_error" for a code a handler chose itself. Metrics label outcomes
// with it: a bounded set, whatever codes handlers invent.
func CodeName(code int) string {
	if name, ok := codeNames[code]; ok {
		return name
	}
	return "handler_error"
}
