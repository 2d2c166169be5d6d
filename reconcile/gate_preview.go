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
