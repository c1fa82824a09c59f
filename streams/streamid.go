package streams

import (
	"strconv"
	"strings"
)

// streamID is a complete stream entry id, <ms>-<seq>, as numbers.
type streamID struct{ ms, seq uint64 }

func (a streamID) less(b streamID) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

// parseStreamID parses a complete stream entry id ("ms-seq").
func parseStreamID(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	m, err1 := strconv.ParseUint(ms, 10, 64)
	q, err2 := strconv.ParseUint(seq, 10, 64)
	return streamID{m, q}, err1 == nil && err2 == nil
}

// isStreamID reports whether s is a complete stream id, "ms-seq".
func isStreamID(s string) bool {
	_, ok := parseStreamID(s)
	return ok
}
