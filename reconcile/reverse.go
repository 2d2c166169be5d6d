package reconcile

import "fmt"

// superseded handles a desired state that changed while t runs. A revert
// to the source group undoes t at once (the fastest rollback); a drift
// repair that no longer leads to the desired state is dropped; any other
// change waits until t has finished. It reports whether planning is done.
func (p *planner) superseded(t *Transition) bool {
	svc := p.svc
	switch {
	case t.Kind == KindHeal && (svc.Active != t.To || svc.Version != t.Version):
		p.plan.Next.Transition = nil
		p.event(EventNormal, ReasonTransitionAborted, "drift repair towards group %s dropped: Git now asks for group %s at %s", t.To, svc.Active, svc.Version)
		p.idle()
		return true
	case t.Kind == KindRelease && svc.Active == t.From && (svc.Version == t.FromVersion || t.FromVersion == ""):
		t.Failure = fmt.Sprintf("superseded by revision %s, which asks for group %s at %s again", orDash(p.in.Revision.Hash), t.From, svc.Version)
	}
	return false
}

// reverse replaces t with the transition that undoes it. A reverse
// transition that fails again stalls: there is nothing safer to go back to.
func (p *planner) reverse(t *Transition, why string) bool {
	if t.Kind == KindHeal {
		// A repair that cannot complete leaves live state as it is (it only
		// ever moved towards the desired state) and is not retried.
		st := &p.plan.Next
		st.Transition = nil
		st.Failed = &Failed{Kind: KindHeal, Active: t.DesiredActive, Version: t.DesiredVersion, Revision: t.Revision, Reason: why, At: p.in.Now}
		p.event(EventWarning, ReasonTransitionAborted, "repairing drift towards group %s stopped: %s", t.To, why)
		p.stall("HealFailed", "repairing drift towards group %s could not complete: %s; a person must act, then request a sync with retry", t.To, why)
		return false
	}
	if t.Kind.reverse() {
		p.stall("ReverseFailed", "%s to group %s could not complete: %s; group %s keeps what traffic it has; a person must act", t.Kind, t.To, why, t.From)
		return false
	}
	kind, reason := KindAbort, ReasonAbortStarted
	if t.Phase.index() > PhaseShift.index() {
		kind, reason = KindSwapBack, ReasonSwapBackStarted
	}
	now := p.in.Now
	r := &Transition{
		ID: t.ID + "-" + string(kind), Kind: kind, From: t.To, To: t.From, Version: t.FromVersion, FromVersion: t.Version,
		Revision: t.Revision, Author: t.Author, Subject: t.Subject, Reason: why,
		DesiredActive: t.DesiredActive, DesiredVersion: t.DesiredVersion,
		Phase: PhaseVerify, Started: now, PhaseSince: now, Served: t.Served,
		Analysis: t.Analysis.clone(),
	}
	p.plan.Next.Transition = r
	p.event(EventWarning, reason, "%s %s from group %s to group %s: %s", kind, t.Version, t.To, t.From, why)
	return true
}

// finish closes the transition and records the outcome.
func (p *planner) finish() {
	st := &p.plan.Next
	t := st.Transition
	total := p.in.Now.Sub(t.Started)
	st.Applied = &Applied{Active: t.To, Version: t.Version, Revision: t.Revision, At: p.in.Now}
	if t.Kind.reverse() {
		st.Failed = &Failed{Kind: KindRelease, Active: t.DesiredActive, Version: t.DesiredVersion, Revision: t.Revision, Reason: t.Reason, At: p.in.Now}
		reason := ReasonTransitionAborted
		if t.Kind == KindSwapBack {
			reason = ReasonSwappedBack
		}
		p.event(EventWarning, reason, "group %s serves %s again after %s: %s", t.To, orDash(t.Version), t.Kind, t.Reason)
		p.plan.Summary = fmt.Sprintf("%s finished: group %s serves %s", t.Kind, t.To, orDash(t.Version))
	} else {
		st.Failed = nil
		p.event(EventNormal, ReasonTransitionSucceeded, "group %s serves %s; group %s stays warm at %s as the rollback target", t.To, t.Version, t.From, orDash(t.FromVersion))
		p.plan.Summary = fmt.Sprintf("%s finished: group %s serves %s", t.Kind, t.To, t.Version)
	}
	p.plan.Events[len(p.plan.Events)-1].Duration = total
	st.Transition = nil
}
