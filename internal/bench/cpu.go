package bench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time this process has used so far (user + system),
// all threads: with -inprocess, the edge's, the consumer's and the load
// generator's. Per call, it is a measure of cost that another job on the
// machine disturbs far less than it disturbs throughput.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
