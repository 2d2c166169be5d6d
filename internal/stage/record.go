package stage

import (
	"sync"

	"github.com/tandemhq/tandem/reconcile"
)

// recorder keeps the daemon's events in memory and passes them on.
type recorder struct {
	next reconcile.Recorder // nil: none

	mu     sync.Mutex
	events []reconcile.Event
}

// Record implements reconcile.Recorder.
func (r *recorder) Record(e reconcile.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	if r.next != nil {
		r.next.Record(e)
	}
}

func (r *recorder) all() []reconcile.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]reconcile.Event(nil), r.events...)
}
