package reconcile

import (
	"encoding/json"
	"time"
)

// DeployProgress is what a transition remembers of its deploy. Started is
// journaled before the deploy runs; a restart that finds it without Done
// (and without Failure) knows the deploy was interrupted, and never starts
// it again.
type DeployProgress struct {
	Started   bool      `json:"started,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	Done      bool      `json:"done,omitempty"`
}

// DrainProgress is what a transition remembers of the drain of its source
// group.
type DrainProgress struct {
	Signaled  bool      `json:"signaled,omitempty"` // every instance was asked to close its sessions
	ZeroSince time.Time `json:"zeroSince,omitzero"` // evidence at 0 since
	Ceiling   bool      `json:"ceiling,omitempty"`  // the drain reached drain.timeout
	Closed    int       `json:"closed,omitempty"`   // sessions closed at the ceiling
	ClosedOn  []string  `json:"closedOn,omitempty"` // bindings whose sessions were closed at the ceiling

	// DisableSent is when the disable of the source group in the registry
	// was last planned (journaled just before it is sent): the drain counts
	// drain.propagation from it when the registry's push delay is known.
	DisableSent time.Time `json:"disableSent,omitzero"`
}

// flatProgress is how journals written before Deploy and Drain existed
// kept the same facts, at the top level of the transition.
type flatProgress struct {
	DeployStarted   bool      `json:"deployStarted"`
	DeployStartedAt time.Time `json:"deployStartedAt"`
	DeployDone      bool      `json:"deployDone"`
	Signaled        bool      `json:"signaled"`
	ZeroSince       time.Time `json:"zeroSince"`
	Ceiling         bool      `json:"ceiling"`
	Closed          int       `json:"closed"`
	ClosedOn        []string  `json:"closedOn"`
}

// UnmarshalJSON reads a transition in either form: with deploy and drain
// objects, or with their fields at the top level (older journals).
func (t *Transition) UnmarshalJSON(b []byte) error {
	type plain Transition // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var f flatProgress
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if p.Deploy == (DeployProgress{}) {
		p.Deploy = DeployProgress{Started: f.DeployStarted, StartedAt: f.DeployStartedAt, Done: f.DeployDone}
	}
	if d := p.Drain; !d.Signaled && d.ZeroSince.IsZero() && !d.Ceiling && d.Closed == 0 && d.ClosedOn == nil {
		p.Drain.Signaled, p.Drain.ZeroSince, p.Drain.Ceiling, p.Drain.Closed, p.Drain.ClosedOn = f.Signaled, f.ZeroSince, f.Ceiling, f.Closed, f.ClosedOn
	}
	*t = Transition(p)
	return nil
}
