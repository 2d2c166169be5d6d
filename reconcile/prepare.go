package reconcile

import (
	"fmt"
	"strings"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// ensureIdle returns a step that takes traffic away from g when g, which is
// about to be deployed or verified, carries some (e.g. its apps came back
// enabled in the registry after a restart). Preview bindings count only
// withPreview: once phase preview has moved them to g, their traffic is
// testers' and the smoke tests may run.
func (p *planner) ensureIdle(g spec.Group, withPreview bool) *Step {
	for i := range p.v.live.Bindings {
		bl := &p.v.live.Bindings[i]
		if bl.Binding.Preview && !withPreview {
			continue
		}
		var changes []providers.WeightChange
		for _, in := range p.svc.Groups.Get(g) {
			if b, ok := p.v.backend(*bl, in); ok && b.Weight > 0 {
				changes = append(changes, providers.WeightChange{ID: in.ID, IP: in.IP, Port: in.Port, Weight: 0})
			}
		}
		if len(changes) == 0 {
			continue
		}
		if raise := p.raiseFirst(*bl, g.Other(), changes); len(raise) > 0 {
			return p.weightStep(bl.Binding, g.Other(), raise, "", fmt.Sprintf("raise group %s on %s first: %s; group %s (idle) is taken back to 0 once the LB reports group %s healthy there",
				g.Other(), bl.Binding.Key(), moves(*bl, raise), g, g.Other()))
		}
		return p.weightStep(bl.Binding, g, changes, "", fmt.Sprintf("take group %s (idle) back to weight 0 on %s", g, bl.Binding.Key()))
	}
	if p.v.hasRegistry() {
		if addrs := p.registryFilter(g, func(r providers.RegistryInstance, ok bool) bool { return ok && r.Enabled }); len(addrs) > 0 {
			return &Step{Action: ActionSetEnabled, Group: g, Enabled: false, Instances: addrs,
				Describe: fmt.Sprintf("disable group %s (idle) in %s: %s", g, p.svc.Registry.Nacos, instList(addrs))}
		}
	}
	return nil
}

// raiseFirst returns the raises of group o on bl that must come before
// lower when lower would leave bl with no weight at all (e.g. a preview
// binding pointed at the idle group by hand, whose group is about to be
// deployed): make-before-break, as in the shift. nil when something keeps
// weight anyway.
func (p *planner) raiseFirst(bl BindingLive, o spec.Group, lower []providers.WeightChange) []providers.WeightChange {
	after := weightsAfter(bl, lower)
	for _, b := range bl.Backends {
		if after[b.ID] > 0 {
			return nil
		}
	}
	var raise []providers.WeightChange
	for _, in := range p.svc.Groups.Get(o) {
		if b, ok := p.v.backend(bl, in); ok && b.Weight == 0 {
			raise = append(raise, providers.WeightChange{ID: in.ID, IP: in.IP, Port: in.Port, Weight: bl.Binding.Weight})
		}
	}
	return raise
}

func (p *planner) registryFilter(g spec.Group, keep func(providers.RegistryInstance, bool) bool) []spec.Instance {
	var out []spec.Instance
	for _, in := range p.svc.Groups.Get(g) {
		r, ok := p.v.registryInstance(in)
		if keep(r, ok) {
			out = append(out, in)
		}
	}
	return out
}

func (p *planner) weightStep(b spec.Binding, g spec.Group, changes []providers.WeightChange, verified, describe string) *Step {
	bb := b
	return &Step{Action: ActionSetWeights, Group: g, Binding: &bb, Weights: changes, Version: verified, Describe: describe}
}

func (p *planner) prepare(t *Transition) outcome {
	if t.Kind != KindRelease {
		return outcome{done: true}
	}
	if s := p.ensureIdle(t.To, true); s != nil {
		return outcome{step: s}
	}
	if t.Deploy.Done || (p.v.versionKnown(t.To) && p.v.groupVersion(t.To) == t.Version) {
		return outcome{done: true}
	}
	if t.Deploy.Started {
		return p.interruptedDeploy(t)
	}
	t.Deploy.Started, t.Deploy.StartedAt = true, p.in.Now
	insts := p.svc.Groups.Get(t.To)
	return outcome{step: &Step{
		Action: ActionDeploy, Group: t.To, Version: t.Version, Instances: insts, Timeout: p.svc.Deploy.Timeout.D(),
		Describe: fmt.Sprintf("deploy %s to group %s (%s) with %s, at most %s", t.Version, t.To, instList(insts), p.deployer(), p.svc.Deploy.Timeout),
	}}
}

// interruptedDeploy handles a deploy that was started but whose outcome
// was never journaled: the daemon stopped during it. The deploy system, or
// the hook in its own process group, may still be running it, so it is
// never started a second time (invariant 5); the group must come to run the
// version within deploy.timeout of the start, or the release is undone (the
// group carries no traffic, and the source never stopped serving).
func (p *planner) interruptedDeploy(t *Transition) outcome {
	timeout := p.svc.Deploy.Timeout
	if p.in.Now.Sub(t.Deploy.StartedAt) >= timeout.D() {
		return outcome{reverse: fmt.Sprintf("the deploy of %s to group %s was interrupted (the daemon stopped during it) and the group did not come to run it within deploy.timeout %s (%s); a deploy is never started twice",
			t.Version, t.To, timeout, p.versions(t.To))}
	}
	p.wait("DeployInterrupted", min(PollInterval, timeout.D()-p.in.Now.Sub(t.Deploy.StartedAt)), fmt.Sprintf("deploy.timeout %s", timeout),
		"the deploy of %s to group %s was interrupted by a restart; waiting for the group to run it: %s", t.Version, t.To, p.versions(t.To))
	return outcome{}
}

func (p *planner) deployer() string {
	if len(p.svc.Deploy.Exec) > 0 {
		return "exec " + strings.Join(p.svc.Deploy.Exec, " ")
	}
	if p.svc.Deploy.HTTP != nil {
		return "POST " + p.svc.Deploy.HTTP.URL
	}
	return "no deployer"
}

func (p *planner) verify(t *Transition) outcome {
	if t.Kind == KindRelease {
		if s := p.ensureIdle(t.To, true); s != nil {
			return outcome{step: s}
		}
	}
	ok, why := p.v.verified(t.To, t.Version)
	if ok {
		return outcome{done: true}
	}
	left := p.svc.Health.Deadline.D() - p.in.Now.Sub(t.PhaseSince)
	if left <= 0 {
		return outcome{reverse: fmt.Sprintf("group %s did not pass verification within %s: %s", t.To, p.svc.Health.Deadline, why)}
	}
	p.wait("VerifyingTarget", min(PollInterval, left), fmt.Sprintf("health.deadline %s", p.svc.Health.Deadline),
		"waiting for group %s to be healthy at %s: %s", t.To, orDash(t.Version), why)
	return outcome{}
}
