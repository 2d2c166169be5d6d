package reconcile

import (
	"fmt"
	"strings"

	"github.com/tandemhq/tandem/spec"
)

// idle plans a pass with no transition in progress: in sync, drift, or the
// start of a transition.
func (p *planner) idle() {
	svc, v, st := p.svc, p.v, &p.plan.Next
	y, x, ver := svc.Active, svc.Active.Other(), svc.Version
	applied := st.Applied != nil && st.Applied.Active == y && st.Applied.Version == ver

	if f := st.Failed; f != nil {
		if f.Active == y && f.Version == ver {
			p.plan.Summary = fmt.Sprintf("%s of %s to group %s failed", f.Kind, ver, y)
			p.stall(failedReason(f.Kind), "%s of %s to group %s failed: %s; commit a fix or a revert, or request a sync with retry", f.Kind, ver, y, f.Reason)
			return
		}
		st.Failed = nil // the desired state moved on
	}

	drift := p.drift(y)
	if act := v.active(); act != Active(y) {
		drift = append([]string{fmt.Sprintf("live active group is %s: %s", act, p.describeGroups())}, drift...)
	}
	switch {
	case v.groupOn(y):
		// y serves, possibly with stray traffic elsewhere.
		if !v.versionKnown(y) && !applied {
			p.wait("ObservingVersion", PollInterval, "", "reading the version of group %s", y)
			return
		}
		if got := v.groupVersion(y); v.versionKnown(y) && got == "" && !applied {
			// Some instance's version could not be read (or they differ):
			// neither "in sync" nor "a version change" can be said.
			p.plan.Summary = fmt.Sprintf("group %s serves; its version cannot be read", y)
			p.wait("VersionUnknown", PollInterval, "", "cannot read one version for group %s: %s", y, p.versions(y))
			return
		} else if v.versionKnown(y) && got != "" && got != ver {
			p.plan.Summary = fmt.Sprintf("group %s serves %s; desired %s on the same group", y, orDash(got), ver)
			p.stall("VersionWithoutFlip", "version %s is desired on group %s, which serves traffic and runs %s; a release must flip active to %s so that the idle group is upgraded (tandem release does this)", ver, y, orDash(got), x)
			return
		}
		if len(drift) == 0 {
			p.plan.InSync = true
			p.plan.Summary = fmt.Sprintf("in sync: group %s serves %s", y, ver)
			if !applied {
				st.Applied = &Applied{Active: y, Version: ver, Revision: p.in.Revision.Hash, At: p.in.Now}
				p.event(EventNormal, ReasonAdopted, "live state matches the desired state: group %s serves %s", y, ver)
			}
			return
		}
		p.plan.Drift = drift
		p.plan.Summary = fmt.Sprintf("drift: group %s serves %s, but live state differs", y, ver)
		if p.in.Heal && len(v.unknown()) < len(drift) {
			p.start(KindHeal, x, y, ver, PhaseVerify)
		}
	case v.groupOn(x) || (v.groupOff(y) && !v.groupOff(x)):
		// x carries the traffic (y at most stray traffic, which prepare
		// takes back before any deploy): a release, or a manual swap.
		if applied && !p.in.Heal {
			p.plan.Drift = append([]string{fmt.Sprintf("group %s carries the traffic, but Tandem last brought group %s live at %s and Git still wants it", x, y, ver)}, drift...)
			p.plan.Summary = fmt.Sprintf("drift: group %s serves instead of %s", x, y)
			return
		}
		kind := KindRelease
		if applied {
			kind = KindHeal
		}
		p.start(kind, x, y, ver, PhasePrepare)
	default:
		// y partly serving, or nothing serving: only a repair towards y,
		// which must already run the desired version, can help.
		p.plan.Drift = drift
		p.plan.Summary = fmt.Sprintf("drift: live active group is %s", v.active())
		if p.in.Heal {
			p.start(KindHeal, x, y, ver, PhaseVerify)
		}
	}
}

// versions describes the version each instance of g reports.
func (p *planner) versions(g spec.Group) string {
	var parts []string
	for _, in := range p.svc.Groups.Get(g) {
		detail := orDash(p.v.version(in))
		if pr, ok := p.v.live.Probes[in.Addr()]; ok && !pr.Healthy {
			detail += " (unhealthy: " + orDash(pr.Detail) + ")"
		}
		parts = append(parts, in.String()+" "+detail)
	}
	return strings.Join(parts, ", ")
}

func failedReason(k Kind) string {
	if k == KindHeal {
		return "HealFailed"
	}
	return "ReleaseFailed"
}

// drift lists how live state differs from the desired, with y serving.
func (p *planner) drift(y spec.Group) []string {
	var out []string
	svc, v := p.svc, p.v
	for _, bl := range v.live.Bindings {
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			want := 0
			if g == y {
				want = bl.Binding.Weight
			}
			for _, in := range svc.Groups.Get(g) {
				b, ok := v.backend(bl, in)
				switch {
				case !ok:
					out = append(out, fmt.Sprintf("%s (group %s)", v.absent(bl, in), g))
				case b.Weight != want:
					out = append(out, fmt.Sprintf("%s: %s (group %s) has weight %d, want %d", bl.Binding.Key(), in, g, b.Weight, want))
				}
			}
		}
	}
	if v.hasRegistry() {
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range svc.Groups.Get(g) {
				r, ok := v.registryInstance(in)
				switch {
				case g == y && !ok:
					out = append(out, fmt.Sprintf("%s: %s (group %s) is not registered", svc.Registry.Nacos, in, g))
				case ok && r.Enabled != (g == y):
					out = append(out, fmt.Sprintf("%s: %s (group %s) is enabled=%t, want %t", svc.Registry.Nacos, in, g, r.Enabled, g == y))
				}
			}
		}
	}
	return append(out, v.unknown()...)
}

func (p *planner) describeGroups() string {
	var parts []string
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		switch {
		case p.v.groupOn(g):
			parts = append(parts, fmt.Sprintf("%s serving", g))
		case p.v.groupOff(g):
			parts = append(parts, fmt.Sprintf("%s idle", g))
		default:
			parts = append(parts, fmt.Sprintf("%s partly serving", g))
		}
	}
	return strings.Join(parts, ", ")
}

// start begins a transition from x to y at version ver and plans its
// first step in the same pass (the journal is written before it).
func (p *planner) start(kind Kind, x, y spec.Group, ver string, phase Phase) {
	now := p.in.Now
	t := &Transition{
		ID:   fmt.Sprintf("%s-%s", p.svc.Name, now.UTC().Format("20060102T150405.000000000")),
		Kind: kind, From: x, To: y, Version: ver, FromVersion: p.v.groupVersion(x),
		Revision: p.in.Revision.Hash, Author: p.in.Revision.Author, Subject: p.in.Revision.Subject,
		DesiredActive: y, DesiredVersion: ver,
		Phase: phase, Started: now, PhaseSince: now,
	}
	p.plan.Next.Transition = t
	p.event(EventNormal, ReasonTransitionStarted, "%s %s: move traffic from group %s (%s) to group %s (%s)", kind, ver, x, orDash(t.FromVersion), y, ver)
	p.transition()
}
