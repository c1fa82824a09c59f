package streams

// OutcomeOK is the outcome label of a call answered with a result.
const OutcomeOK = "ok"
