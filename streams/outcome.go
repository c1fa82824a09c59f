package streams

// Outcomes of a settled attempt, as the activity feed, the stats, the call's
// story and the dashboard show them (API values: they stay). Metrics and logs
// label a call by its error code's name instead (CodeName: "handler_error",
// "dead_lettered", …), a bounded set whatever codes handlers invent; an
// outcome here is derived from that code once, in outcomeOf.
const (
	OutcomeOK        = "ok"
	OutcomeError     = "error"
	OutcomeTimeout   = "timeout"
	OutcomeCancelled = "cancelled"
	OutcomeRetry     = "retry"
	OutcomeDead      = "dead"
)

// settleMode is how a consumer settles an attempt.
type settleMode string

const (
	settleAnswer settleMode = "answer" // answered: answerScript
	settleRetry  settleMode = "retry"  // scheduled again: settleScript, the delayed set
	settleDead   settleMode = "dead"   // moved to the dead letters: settleScript
)

// outcomeOf is the outcome of an attempt settled by mode with reply.
func outcomeOf(mode settleMode, reply Reply) string {
	switch {
	case mode == settleRetry:
		return OutcomeRetry
	case mode == settleDead:
		return OutcomeDead
	case reply.OK:
		return OutcomeOK
	}
	switch reply.Err().Code {
	case CodeTimeout:
		return OutcomeTimeout
	case CodeCancelled:
		return OutcomeCancelled
	}
	return OutcomeError
}
