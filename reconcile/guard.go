package reconcile

import (
	"fmt"
	"strings"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Guard checks a step against invariants 1-4 (README, "The transition":
// Invariants) on the live state it is about to change, and refuses it with an
// *InvariantError if applying it would break one. It is the last line of
// defence: the planner never means to plan such a step, and the executor
// calls Guard before every side effect all the same.
func Guard(svc *spec.Service, live *Live, s *Step) error {
	v := view{svc: svc, live: live}
	refuse := func(inv int, format string, args ...any) error {
		return &InvariantError{Invariant: inv, Step: s.Describe, Explain: fmt.Sprintf(format, args...)}
	}
	switch s.Action {
	case ActionDeploy:
		// Invariant 3: deploy only to a group with no weight anywhere and
		// nothing enabled in the registry. An instance a binding does not
		// list (by id and ip:port) may be serving under another name: its
		// traffic is unknown, never taken for none.
		if busy := v.carrying(s.Group, true); len(busy) > 0 {
			return refuse(3, "group %s still carries traffic: %s", s.Group, strings.Join(busy, "; "))
		}
		if unknown := v.unlisted(s.Group); len(unknown) > 0 {
			return refuse(3, "cannot tell whether group %s carries traffic: %s; fix the instance's id or address in the spec, or the server group", s.Group, strings.Join(unknown, "; "))
		}
	case ActionSmoke:
		// Smoke checks may write (POST): they reach only a group with no
		// users' traffic. A preview route that already carries the group
		// (phase preview comes first) serves testers, not users.
		if busy := v.carrying(s.Group, false); len(busy) > 0 {
			return refuse(3, "group %s carries traffic: %s", s.Group, strings.Join(busy, "; "))
		}
	case ActionSetWeights:
		bl, ok := v.binding(*s.Binding)
		if !ok {
			return refuse(1, "binding %s was not observed", s.Binding.Key())
		}
		after := map[string]int{}
		for _, b := range bl.Backends {
			after[b.ID] = b.Weight
		}
		for _, c := range s.Weights {
			// Invariant 4: weight only for instances verified at the target version.
			if c.Weight > 0 && after[c.ID] == 0 {
				in, ok := v.instanceByID(c.ID)
				if !ok {
					return refuse(4, "%s is not an instance of %s", c.ID, svc.Name)
				}
				if err := v.verifiedInstance(in, s.Version); err != "" {
					return refuse(4, "%s would get weight %d but %s", in, c.Weight, err)
				}
			}
			after[c.ID] = c.Weight
		}
		// Invariant 1, make-before-break: one call never both raises and
		// lowers, so that every share a step moves to (rollout.go) is
		// reached by raising first and lowering only once the LB reports
		// the raised servers healthy.
		if up, down := raisesAndLowers(bl, s.Weights); up != "" && down != "" {
			return refuse(1, "%s would raise %s and lower %s in one call; raise first, lower once the load balancer reports the raised servers healthy", s.Binding.Key(), up, down)
		}
		// Invariant 1: the binding keeps weight on healthy instances.
		healthy := 0
		for _, b := range bl.Backends {
			if after[b.ID] > 0 && v.healthyBackend(b) {
				healthy += after[b.ID]
			}
		}
		if healthy == 0 && lowers(bl, s.Weights) {
			return refuse(1, "%s would have no weight on a healthy instance", s.Binding.Key())
		}
		if why := lbHealthyAfterLower(bl, s.Weights, after); why != "" {
			return refuse(1, "%s", why)
		}
	case ActionSetEnabled:
		if s.Enabled {
			// Invariant 4, registry side: consumers see only verified instances.
			for _, in := range s.Instances {
				if err := v.verifiedInstance(in, s.Version); err != "" {
					return refuse(4, "%s would be enabled but %s", in, err)
				}
			}
			return nil
		}
		// Invariant 2: never disable every instance of the service.
		if live.Registry == nil {
			return refuse(2, "the registry was not observed")
		}
		off := map[string]bool{}
		for _, in := range s.Instances {
			off[in.Addr()] = true
		}
		left := 0
		for _, r := range live.Registry.Instances {
			if r.Enabled && r.Healthy && !off[spec.Instance{IP: r.IP, Port: r.Port}.Addr()] {
				left++
			}
		}
		if left == 0 {
			return refuse(2, "no enabled, healthy instance of %s would be left in %s", svc.Name, svc.Registry.Nacos)
		}
	case ActionSignalDrain, ActionCloseSessions:
		// Only a group that no longer takes new traffic is asked to let go.
		if busy := v.carrying(s.Group, true); len(busy) > 0 {
			return refuse(1, "group %s still takes new traffic: %s", s.Group, strings.Join(busy, "; "))
		}
	default:
		return fmt.Errorf("guard: unknown action %q", s.Action)
	}
	return nil
}

// carrying lists where group g takes new traffic: weight on a binding or
// enabled in the registry; on preview bindings (testers' traffic) only
// withPreview.
func (v view) carrying(g spec.Group, withPreview bool) []string {
	var out []string
	for _, bl := range v.live.Bindings {
		if bl.Binding.Preview && !withPreview {
			continue
		}
		for _, in := range v.svc.Groups.Get(g) {
			if b, ok := v.backend(bl, in); ok && b.Weight > 0 {
				out = append(out, fmt.Sprintf("%s weight %d on %s", in, b.Weight, bl.Binding.Key()))
			}
		}
	}
	if v.hasRegistry() {
		for _, in := range v.svc.Groups.Get(g) {
			if r, ok := v.registryInstance(in); ok && r.Enabled {
				out = append(out, fmt.Sprintf("%s enabled in %s", in, v.svc.Registry.Nacos))
			}
		}
	}
	return out
}

// unlisted says, for every binding, which instances of g it does not list
// by id and ip:port, and why.
func (v view) unlisted(g spec.Group) []string {
	var out []string
	for _, bl := range v.live.Bindings {
		for _, in := range v.svc.Groups.Get(g) {
			if why := v.absent(bl, in); why != "" {
				out = append(out, why)
			}
		}
	}
	return out
}

func (v view) binding(b spec.Binding) (BindingLive, bool) {
	for _, bl := range v.live.Bindings {
		if bl.Binding.Key() == b.Key() {
			return bl, true
		}
	}
	return BindingLive{}, false
}

func (v view) instanceByID(id string) (spec.Instance, bool) {
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range v.svc.Groups.Get(g) {
			if in.ID == id {
				return in, true
			}
		}
	}
	return spec.Instance{}, false
}

// verifiedInstance returns "" when in passed its probe at version, else why not.
func (v view) verifiedInstance(in spec.Instance, version string) string {
	p, ok := v.live.Probes[in.Addr()]
	switch {
	case !ok:
		return "it was not probed in this pass"
	case !p.Healthy:
		return "its health check fails: " + orDash(p.Detail)
	}
	if got := v.version(in); version != "" && got != version {
		return fmt.Sprintf("it runs %s, not the verified version %s", orDash(got), version)
	}
	return ""
}

// healthyBackend reports whether a backend counts as healthy for invariant
// 1: not reported unhealthy by its LB nor by a probe in this pass.
func (v view) healthyBackend(b providers.Backend) bool {
	if b.Health == providers.HealthUnhealthy {
		return false
	}
	if in, ok := v.instanceByID(b.ID); ok {
		if p, probed := v.live.Probes[in.Addr()]; probed && !p.Healthy {
			return false
		}
	}
	return true
}
