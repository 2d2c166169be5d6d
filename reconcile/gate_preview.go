package reconcile

import (
	"fmt"
	"strings"

	"github.com/tandemhq/tandem/spec"
)

// The preview phase: during a release, the preview bindings (traffic
// bindings marked preview: the server group, vserver group or backend that
// users reach through a header or cookie forwarding rule, a test listener
// or an ACL of their own; README "Preview route") are shifted to the target
// group, after verify and before the other gates, so testers reach the new
// version through the real load balancer while the main bindings still
// serve the old one. The move is the shift's own (shift.go): raise the
// target, wait until the LB reports it healthy on that binding, then lower
// the serving group; it is journaled the same way (Transition.ShiftWait)
// and undone the same way (the reverse transition's shift takes every
// binding, the preview ones included, back to the serving group). The main
// shift finds the preview bindings already on the target and skips them.
// When no transition runs, a preview binding follows the serving group like
// any other binding, and drift on it is reported like any other (idle.go).

// ReasonPreviewRouted: the preview bindings carry the target group.
const ReasonPreviewRouted = "PreviewRouted"

func (p *planner) previewRoute(t *Transition) outcome {
	if !gated(t) || !hasPreview(p.svc) {
		return pass
	}
	if o, pending := p.shiftNext(t, nil, true); pending {
		return o
	}
	p.event(EventNormal, ReasonPreviewRouted, "the preview route %s carries group %s at %s; the main traffic stays on group %s until the shift",
		strings.Join(previewKeys(p.svc), ", "), t.To, t.Version, t.From)
	return outcome{done: true}
}

// From the end of phase preview to the shift (smoke, analysis, the approval
// pause, enable) the preview route carries testers' traffic to the target
// group while the main bindings still carry the serving one, so the
// target's health is watched as it is at a rollout step: every pass reads
// its probes and the LB's health (at least every PollInterval: a longer
// wait, such as the approval pause's, is shortened), a failed check holds
// the phase, and verify.failureThreshold failed checks in a row undo the
// release (the abort takes the preview route back; the main bindings never
// moved).

// ReasonPreviewUnhealthy is the wait of a phase held because the target
// failed a health check while the preview route carries it.
const ReasonPreviewUnhealthy = "PreviewUnhealthy"

// previewWatched reports whether t's target carries the preview route's
// traffic before the shift.
func previewWatched(svc *spec.Service, t *Transition) bool {
	i := t.Phase.index()
	return gated(t) && hasPreview(svc) && i > PhasePreviewRoute.index() && i < PhaseShift.index()
}

// watchPreview counts the target's failed health checks while the preview
// route carries it; failing is true while it holds the phase or undoes t.
func (p *planner) watchPreview(t *Transition) (o outcome, failing bool) {
	if !previewWatched(p.svc, t) {
		return outcome{}, false
	}
	bad, over := p.countFailures(t.To, &t.PreviewFailures)
	if len(bad) == 0 {
		return outcome{}, false
	}
	threshold := p.svc.Verify.FailureThreshold
	if over {
		return outcome{reverse: fmt.Sprintf("group %s failed %d consecutive health checks while the preview route %s carried it (phase %s): %s; the main traffic never left group %s",
			t.To, t.PreviewFailures, strings.Join(previewKeys(p.svc), ", "), t.Phase, strings.Join(bad, "; "), t.From)}, true
	}
	p.wait(ReasonPreviewUnhealthy, PollInterval, fmt.Sprintf("verify.failureThreshold %d", threshold),
		"phase %s held: group %s failed health check %d/%d while the preview route carries it: %s", t.Phase, t.To, t.PreviewFailures, threshold, strings.Join(bad, "; "))
	return outcome{}, true
}

// previewPoll shortens the wait of a pass whose target carries the preview
// route to PollInterval, so that its health is sampled that often.
func (p *planner) previewPoll(t *Transition) {
	if w := p.plan.Wait; w != nil && previewWatched(p.svc, t) && w.For > PollInterval {
		w.For = PollInterval
	}
}

// previewNote says what the preview phase does, for `tandem plan`.
func previewNote(svc *spec.Service) string {
	return fmt.Sprintf("per preview route (%s): raise the target, wait until the LB reports it healthy (up to verify.lbHealthTimeout %s; otherwise undo and fail), then lower the serving group; the main bindings keep the serving group until the shift",
		strings.Join(previewKeys(svc), ", "), svc.Verify.LBHealthTimeout)
}

// hasPreview reports whether svc has a preview binding.
func hasPreview(svc *spec.Service) bool { return len(previewKeys(svc)) > 0 }

// previewKeys are the keys of svc's preview bindings.
func previewKeys(svc *spec.Service) []string {
	var out []string
	for _, b := range svc.Traffic {
		if b.Preview {
			out = append(out, b.Key())
		}
	}
	return out
}

// PreviewRoute says which group a preview binding carries, for status and
// the dashboard.
type PreviewRoute struct {
	Binding string `json:"binding"`
	Group   Active `json:"group"` // A, B, both, neither or mixed, as for the live active group
}

// previewRoutes lists the group each preview binding carries.
func (v view) previewRoutes() []PreviewRoute {
	var out []PreviewRoute
	for _, bl := range v.live.Bindings {
		if !bl.Binding.Preview {
			continue
		}
		aOn, aTotal := v.weightState(bl, spec.GroupA)
		bOn, bTotal := v.weightState(bl, spec.GroupB)
		g := activeOf(aOn == aTotal, bOn == bTotal, aOn == 0, bOn == 0)
		out = append(out, PreviewRoute{Binding: bl.Binding.Key(), Group: g})
	}
	return out
}
