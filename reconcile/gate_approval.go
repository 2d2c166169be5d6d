package reconcile

import (
	"fmt"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// The approval gate (gates.approval in the service spec): a release pauses
// after verify, smoke and analysis, before its target group gets any
// traffic, until someone promotes it (on to enable) or aborts it (undone:
// the target never served, the serving group was never touched). The
// decision comes in through the journal: the daemon records it in the
// paused transition's Approval (Reconciler.Request, applied by the
// service's own pass), so the planner reads it from State like everything
// else and a decision names the transition it was made for.

// Event reasons of the approval gate.
const (
	ReasonApprovalPending = "ApprovalPending" // the release is paused until someone decides
	ReasonPromoted        = "Promoted"        // someone (or the timeout) promoted it
	ReasonAborted         = "Aborted"         // someone (or the timeout, or a new revision) aborted it
	ReasonApprovalRefused = "ApprovalRefused" // a decision did not apply (nothing paused, another transition)
)

// ApprovalProgress is a journaled approval pause.
type ApprovalProgress struct {
	Since time.Time `json:"since"`
	// Deadline is when OnTimeout decides (zero: the pause lasts until
	// someone decides). Both are fixed when the pause begins.
	Deadline  time.Time             `json:"deadline,omitzero"`
	OnTimeout spec.ApprovalDecision `json:"onTimeout,omitempty"`
	Decision  *ApprovalVerdict      `json:"decision,omitempty"`
}

// ApprovalVerdict is a decision on one paused transition, with who took it
// for the audit trail: "api" (and the caller), "cli", "dashboard", "link"
// (and its nonce), "timeout" or "revision", and when it was journaled.
type ApprovalVerdict struct {
	Transition string `json:"transition"`
	// Step is the pause the decision ends: 0 the approval gate, n the
	// manual pause of rollout step n (from 1); a decision for one never
	// ends another.
	Step   int                   `json:"step,omitempty"`
	Action spec.ApprovalDecision `json:"action"`
	By     string                `json:"by"`
	At     time.Time             `json:"at"`
}

func (a *ApprovalProgress) clone() *ApprovalProgress {
	if a == nil {
		return nil
	}
	c := *a
	if a.Decision != nil {
		d := *a.Decision
		c.Decision = &d
	}
	return &c
}

// AnyPause, as the step of a decision asked for, means whichever pause of
// the transition is open.
const AnyPause = -1

// OpenPause returns the pause t waits in for a decision and its step: the
// approval gate's (0), or the manual pause of rollout step n (n, from 1);
// nil when t waits for none.
func (t *Transition) OpenPause() (*ApprovalProgress, int) {
	switch {
	case t == nil:
	case t.Phase == PhaseApproval && t.Approval != nil && t.Approval.Decision == nil:
		return t.Approval, 0
	case t.Phase == PhaseShift && t.Rollout != nil && t.Rollout.Pause != nil && t.Rollout.Pause.Decision == nil:
		return t.Rollout.Pause, t.Rollout.Step + 1
	}
	return nil, 0
}

// Paused reports whether t waits for a decision, at the approval gate or at
// a manual rollout step.
func (t *Transition) Paused() bool {
	a, _ := t.OpenPause()
	return a != nil
}

// PauseName names the pause at step for messages: "the approval gate" or
// "rollout step n".
func PauseName(step int) string {
	if step == 0 {
		return "the approval gate"
	}
	return fmt.Sprintf("rollout step %d", step)
}

// approvalRecheck is how long a pause without a deadline waits between
// passes: a decision re-queues the service itself, so this only bounds how
// stale the pass's observations get.
const approvalRecheck = time.Hour

func (p *planner) approval(t *Transition) outcome {
	gate := p.svc.Gates.Approval
	if !gated(t) || gate == nil {
		return pass
	}
	now := p.in.Now
	if t.Approval == nil {
		t.Approval = &ApprovalProgress{Since: now}
		if gate.Timeout > 0 {
			t.Approval.Deadline, t.Approval.OnTimeout = now.Add(gate.Timeout.D()), gate.OnTimeout
		}
		p.event(EventNormal, ReasonApprovalPending, "%s", p.pauseMessage(t))
		p.plan.Events[len(p.plan.Events)-1].Deadline = t.Approval.Deadline
	}
	a := t.Approval
	d := p.pauseVerdict(t, a, 0)
	if d == nil {
		left, bound := approvalRecheck, "a decision (tandem promote|abort)"
		if !a.Deadline.IsZero() {
			left, bound = min(left, a.Deadline.Sub(now)), fmt.Sprintf("gates.approval.timeout %s (then %s)", p.svc.Gates.Approval.Timeout, a.OnTimeout)
		}
		p.wait(ReasonApprovalPending, left, bound, "%s", p.pauseMessage(t))
		return outcome{}
	}
	switch d.Action {
	case spec.ApprovalPromote:
		p.event(EventNormal, ReasonPromoted, "%s %s to group %s promoted by %s after a pause of %s", t.Kind, t.Version, t.To, d.By, d.At.Sub(a.Since).Round(time.Second))
		return outcome{done: true}
	case spec.ApprovalAbort:
		why := fmt.Sprintf("aborted at the approval gate by %s", d.By)
		p.event(EventWarning, ReasonAborted, "%s %s to group %s %s; group %s never stopped serving", t.Kind, t.Version, t.To, why, t.From)
		return outcome{reverse: why}
	}
	p.stall("CorruptJournal", "the journal's approval decision %q for transition %s is neither promote nor abort; fix or remove the journal", d.Action, t.ID)
	return outcome{}
}

// pauseVerdict returns the decision that ends pause a of t at step (0: the
// approval gate, n: rollout step n), or nil while it lasts. A journaled
// decision made for another transition or another pause is refused and
// dropped; without one, a new revision that asks for something else
// aborts, and so does (or promotes) the pause's deadline.
func (p *planner) pauseVerdict(t *Transition, a *ApprovalProgress, step int) *ApprovalVerdict {
	now := p.in.Now
	if d := a.Decision; d != nil && (d.Transition != t.ID || d.Step != step) {
		p.event(EventWarning, ReasonApprovalRefused, "%s by %s was made for transition %s at %s, not for %s at %s; ignored",
			d.Action, d.By, d.Transition, PauseName(d.Step), t.ID, PauseName(step))
		a.Decision = nil
	}
	if a.Decision == nil {
		switch {
		case p.svc.Active != t.DesiredActive || p.svc.Version != t.DesiredVersion:
			by := fmt.Sprintf("revision %s, which asks for group %s at %s", orDash(p.in.Revision.Hash), p.svc.Active, p.svc.Version)
			a.Decision = &ApprovalVerdict{Transition: t.ID, Step: step, Action: spec.ApprovalAbort, By: by, At: now}
		case !a.Deadline.IsZero() && !now.Before(a.Deadline):
			a.Decision = &ApprovalVerdict{Transition: t.ID, Step: step, Action: a.OnTimeout, By: "timeout", At: now}
		}
	}
	return a.Decision
}

// pauseMessage announces a pause: what waits, since when, until when, and
// who can end it.
func (p *planner) pauseMessage(t *Transition) string {
	a := t.Approval
	until := "until someone decides"
	if !a.Deadline.IsZero() {
		until = fmt.Sprintf("until %s, then %s on its own", a.Deadline.UTC().Format(time.RFC3339), a.OnTimeout)
	}
	return fmt.Sprintf("%s %s of %s to group %s (transition %s) is paused for approval since %s, %s; group %s keeps serving %s. "+
		"Promote or abort: tandem promote|abort %s, POST /api/v1/services/%s/promote|abort (API token), or the dashboard",
		t.Kind, t.Version, p.svc.Name, t.To, t.ID, a.Since.UTC().Format(time.RFC3339), until, t.From, orDash(t.FromVersion), p.svc.Name, p.svc.Name)
}

// decide journals decision d (made for d.Transition, or "" for whichever
// transition is paused, at d.Step, or AnyPause for whichever pause is
// open) into next, the state of d's service. It returns why d does not
// apply, or "".
func decide(next *State, d ApprovalVerdict) string {
	t := next.Transition
	a, step := t.OpenPause()
	switch {
	case t == nil:
		return "no transition is in progress"
	case d.Transition != "" && d.Transition != t.ID:
		return fmt.Sprintf("it was made for transition %s, and transition %s is in progress", d.Transition, t.ID)
	case a == nil:
		return fmt.Sprintf("transition %s is not paused for approval (phase %s)", t.ID, t.Phase)
	case d.Step != AnyPause && d.Step != step:
		return fmt.Sprintf("it was made for %s, and transition %s is paused at %s", PauseName(d.Step), t.ID, PauseName(step))
	}
	d.Transition, d.Step = t.ID, step
	a.Decision = &d
	return ""
}

// assumePromoted, for the preview (tandem plan), promotes a transition
// paused at the approval gate or at a manual rollout step; it reports
// whether there was one.
func assumePromoted(st *State, now time.Time) bool {
	t := st.Transition
	a, step := t.OpenPause()
	if a == nil {
		return false
	}
	a.Decision = &ApprovalVerdict{Transition: t.ID, Step: step, Action: spec.ApprovalPromote, By: "tandem plan (assumed)", At: now}
	return true
}

// approvalText is what tandem plan says of the approval phase.
func approvalText(svc *spec.Service) string {
	g := svc.Gates.Approval
	until := "until someone decides"
	if g.Timeout > 0 {
		until = fmt.Sprintf("up to gates.approval.timeout %s, then %s on its own", g.Timeout, g.OnTimeout)
	}
	return fmt.Sprintf("pause before any traffic reaches the target group, %s: tandem promote|abort %s, the API, the dashboard or the chat message's links; a new revision aborts the pause", until, svc.Name)
}
