package consumers

// An operator's pause (POST /handlers/{name}/pause): the heartbeat's script
// says whether the handler is paused (no round trip of its own, none per
// call), and the reader takes no calls while it is. A call already handed
// to this consumer runs. The pause takes effect at the next heartbeat
// (HeartbeatInterval, 1 s by default) plus a read already waiting (at most
// the read block): within 2 s at the defaults.

// pausedByOperator records whether the handler is paused, as the heartbeat
// learnt it; on a change the registry hears of it at once.
func (s *Server) pausedByOperator(paused bool) {
	if !s.pause.set(paused) {
		return
	}
	if paused {
		s.log.Info("the handler is paused: taking no calls until it is resumed (they wait in the stream)")
	} else {
		s.log.Info("the handler is resumed: taking calls")
	}
	s.beat.poke()
}
