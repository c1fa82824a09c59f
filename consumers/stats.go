package consumers

import (
	"sort"
	"sync"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// Stats is what a Server has done since it started, like nats.go micro's
// endpoint stats: data the library keeps, for the caller to read.
type Stats struct {
	Handler    string        `json:"handler"`
	Consumer   string        `json:"consumer"`
	Started    time.Time     `json:"started"`
	Poisoned   int64         `json:"poisoned"`   // entries that could not be decoded
	Duplicates int64         `json:"duplicates"` // runs whose call another consumer had settled
	Methods    []MethodStats `json:"methods"`
}

// MethodStats counts one method's calls on this server.
type MethodStats struct {
	Method         string        `json:"method"`
	Calls          int64         `json:"calls"`        // handler runs
	Errors         int64         `json:"errors"`       // runs that returned an error
	Expired        int64         `json:"expired"`      // not run: deadline passed while queued
	Retries        int64         `json:"retries"`      // retries scheduled
	DeadLetters    int64         `json:"dead_letters"` // calls moved to the dead letters
	ProcessingTime time.Duration `json:"processing_time"`
	AverageTime    time.Duration `json:"average_time"`
	LastError      string        `json:"last_error,omitempty"`
}

type statsKeeper struct {
	mu       sync.Mutex
	started  time.Time
	poison   int64
	dups     int64
	byMethod map[string]*MethodStats
}

func newStatsKeeper() *statsKeeper {
	return &statsKeeper{started: time.Now(), byMethod: map[string]*MethodStats{}}
}

func (k *statsKeeper) method(name string) *MethodStats {
	m, ok := k.byMethod[name]
	if !ok {
		m = &MethodStats{Method: name}
		k.byMethod[name] = m
	}
	return m
}

func (k *statsKeeper) record(method string, took time.Duration, err *streams.Error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := k.method(method)
	m.Calls++
	m.ProcessingTime += took
	if err != nil {
		m.Errors++
		m.LastError = err.Message
	}
}

func (k *statsKeeper) expired(method string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.method(method).Expired++
}

func (k *statsKeeper) retried(method string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.method(method).Retries++
}

func (k *statsKeeper) deadLettered(method string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.method(method).DeadLetters++
}

func (k *statsKeeper) duplicate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dups++
}

func (k *statsKeeper) poisoned() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.poison++
}

func (k *statsKeeper) snapshot(handler, consumer string) Stats {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := Stats{Handler: handler, Consumer: consumer, Started: k.started, Poisoned: k.poison, Duplicates: k.dups}
	for _, m := range k.byMethod {
		c := *m
		if c.Calls > 0 {
			c.AverageTime = c.ProcessingTime / time.Duration(c.Calls)
		}
		s.Methods = append(s.Methods, c)
	}
	sort.Slice(s.Methods, func(i, j int) bool { return s.Methods[i].Method < s.Methods[j].Method })
	return s
}
