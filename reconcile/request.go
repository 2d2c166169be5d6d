package reconcile

import (
	"context"
	"fmt"
	"reflect"
	"slices"
)

// Request is what an operator asks of one service through the API. It is
// carried out by the worker that owns the service's key, at the start of
// the service's next pass, so that it never races a pass's own journal
// writes (a retry that cleared a failure by rewriting the journal from
// outside could overwrite a transition journaled a moment before).
type Request struct {
	Retry   bool  // forget a failed release, so that it is tried again
	Suspend *bool // suspend (true) or resume (false); nil: unchanged
	// Decisions promote or abort a paused release (gate_approval.go), in
	// the order they came; the first that applies ends the pause.
	Decisions []ApprovalVerdict
}

func (q Request) empty() bool { return !q.Retry && q.Suspend == nil && len(q.Decisions) == 0 }

// merge adds a later request to q: retries add up, the last suspend wins,
// decisions queue up.
func (q Request) merge(later Request) Request {
	q.Retry = q.Retry || later.Retry
	if later.Suspend != nil {
		q.Suspend = later.Suspend
	}
	q.Decisions = append(slices.Clip(q.Decisions), later.Decisions...)
	return q
}

// Request records req for service; the caller enqueues the service. The
// request is journaled by the service's next pass.
func (r *Reconciler) Request(service string, req Request) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if r.requests == nil {
		r.requests = map[string]Request{}
	}
	r.requests[service] = r.requests[service].merge(req)
}

// takeRequest removes and returns the pending request of service.
func (r *Reconciler) takeRequest(service string) Request {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	req := r.requests[service]
	delete(r.requests, service)
	return req
}

// putBack returns a request that could not be journaled, under any that
// arrived meanwhile.
func (r *Reconciler) putBack(service string, req Request) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if r.requests == nil {
		r.requests = map[string]Request{}
	}
	r.requests[service] = req.merge(r.requests[service])
}

// applyRequest journals the pending request of svc into st and returns the
// state in force. On failure the request stays pending.
func (r *Reconciler) applyRequest(ctx context.Context, st State, tgt Target) (State, error) {
	name := tgt.Service.Name
	req := r.takeRequest(name)
	if req.empty() {
		return st, nil
	}
	next := st.Clone()
	var evs []Event
	event := func(reason, msg string) {
		evs = append(evs, Event{Time: r.now(), Service: name, Type: EventNormal, Reason: reason, Message: msg,
			Revision: tgt.Revision.Hash, Author: tgt.Revision.Author, Subject: tgt.Revision.Subject})
	}
	if req.Retry && next.Failed != nil {
		next.Failed = nil
		event(ReasonRetryRequested, "a failed release will be tried again")
	}
	switch {
	case req.Suspend == nil:
	case *req.Suspend && next.Suspended == nil:
		next.Suspended = &Suspension{At: r.now()}
		event(ReasonSuspended, "reconciliation suspended through the API; journaled, it holds across restarts and leader changes")
	case !*req.Suspend && next.Suspended != nil:
		next.Suspended = nil
		event(ReasonResumed, "reconciliation resumed through the API")
	}
	for _, d := range req.Decisions {
		d.At = r.now() // when it is journaled, by the reconciler's clock
		if why := decide(&next, d); why != "" {
			evs = append(evs, Event{Time: r.now(), Service: name, Type: EventWarning, Reason: ReasonApprovalRefused,
				Message: fmt.Sprintf("%s by %s refused: %s", d.Action, d.By, why), Transition: d.Transition,
				Revision: tgt.Revision.Hash, Author: tgt.Revision.Author, Subject: tgt.Revision.Subject})
		}
	}
	if reflect.DeepEqual(next, st) {
		r.record(evs...)
		return st, nil
	}
	if err := r.save(ctx, next); err != nil {
		r.putBack(name, req)
		return st, fmt.Errorf("carrying out the request for %s: %w", name, err)
	}
	r.record(evs...)
	return next, nil
}
