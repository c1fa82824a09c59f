package streams

// Outcomes of a settled attempt as the API spells them: the activity feed,
// the stats, the call's story and the dashboard show these values.
const (
	OutcomeOK        = "ok"
	OutcomeError     = "error"
	OutcomeTimeout   = "timeout"
	OutcomeCancelled = "cancelled"
	OutcomeRetry     = "retry"
	OutcomeDead      = "dead"
)

// Outcome is how an attempt or a call ended: the one vocabulary inside
// streamrpc. It leaves in two spellings, each mapped here, once:
//
//   - String, the API value above (ok, error, timeout, cancelled, retry,
//     dead): what the activity feed, the stats and the story say;
//   - Label, the label of metrics, log lines and spans: ok, or the error
//     code's name (handler_error, timeout, dead_lettered, …), a bounded set
//     whatever codes handlers invent.
type Outcome struct {
	mode   settleMode // how the consumer settled it ("" seen from the edge)
	failed bool       // an error, code
	code   int
}

// OutcomeOf is the outcome of an answer: a result (e nil), or the error e.
func OutcomeOf(e *Error) Outcome {
	if e == nil {
		return Outcome{}
	}
	return Outcome{failed: true, code: e.Code}
}

// outcomeOf is the outcome of an attempt settled by mode with reply.
func outcomeOf(mode settleMode, reply Reply) Outcome {
	o := Outcome{mode: mode}
	if mode != settleRetry && !reply.OK {
		o.failed, o.code = true, reply.Err().Code
	}
	return o
}

// String is the outcome's API value.
func (o Outcome) String() string {
	switch {
	case o.mode == settleRetry:
		return OutcomeRetry
	case o.mode == settleDead:
		return OutcomeDead
	case !o.failed:
		return OutcomeOK
	case o.code == CodeTimeout:
		return OutcomeTimeout
	case o.code == CodeCancelled:
		return OutcomeCancelled
	}
	return OutcomeError
}

// Label is the outcome's label in metrics, log lines and spans.
func (o Outcome) Label() string {
	switch {
	case o.mode == settleRetry:
		return OutcomeRetry
	case !o.failed:
		return OutcomeOK
	}
	return CodeName(o.code)
}

// settleMode is how a consumer settles an attempt.
type settleMode string

const (
	settleAnswer settleMode = "answer" // answered: answerScript
	settleRetry  settleMode = "retry"  // scheduled again: settleScript, the delayed set
	settleDead   settleMode = "dead"   // moved to the dead letters: settleScript
)
