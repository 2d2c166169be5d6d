package reconcile

import (
	"fmt"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// enableStep enables the target instances not yet enabled, if any.
func (p *planner) enableStep(t *Transition) *Step {
	if !p.v.hasRegistry() {
		return nil
	}
	addrs := p.registryFilter(t.To, func(r providers.RegistryInstance, ok bool) bool { return !ok || !r.Enabled })
	if len(addrs) == 0 {
		return nil
	}
	t.Served = true
	return &Step{Action: ActionSetEnabled, Group: t.To, Enabled: true, Instances: addrs, Version: t.Version,
		Describe: fmt.Sprintf("enable group %s in %s: %s; done when Tandem's subscription lists them", t.To, p.svc.Registry.Nacos, instList(addrs))}
}

// reassert repeats the enable and shift steps when live state moved away
// from them after they completed (someone changed a weight by hand during
// the drain): later phases stand on them. pending is false when nothing
// needs repeating; otherwise o holds the step, a wait or a reversal.
func (p *planner) reassert(t *Transition) (o outcome, pending bool) {
	if o, pending := p.shiftNext(t, nil, false); pending {
		return o, true
	}
	if s := p.enableStep(t); s != nil {
		return outcome{step: s}, true
	}
	return outcome{}, false
}

func (p *planner) enable(t *Transition) outcome {
	if !p.v.hasRegistry() {
		return outcome{done: true}
	}
	if s := p.enableStep(t); s != nil {
		return outcome{step: s}
	}
	if missing := p.notVisible(t.To, true); len(missing) > 0 {
		return p.boundedWait(t, "WaitingForRegistry", "the subscription to list group %s (%s)", t.To, instList(missing))
	}
	return outcome{done: true}
}

// notVisible lists instances of g whose subscription visibility differs from want.
func (p *planner) notVisible(g spec.Group, want bool) []spec.Instance {
	var out []spec.Instance
	for _, in := range p.svc.Groups.Get(g) {
		if p.v.live.Registry == nil || p.v.live.Registry.Visible == nil || p.v.visible(in) != want {
			out = append(out, in)
		}
	}
	return out
}

// boundedWait waits for the registry to show what the last step should
// have brought about, up to health.deadline; past it a forward transition
// is undone. The registry's push ends the wait earlier.
func (p *planner) boundedWait(t *Transition, reason, format string, args ...any) outcome {
	what := fmt.Sprintf(format, args...)
	left := p.svc.Health.Deadline.D() - p.in.Now.Sub(t.PhaseSince)
	if left <= 0 {
		return outcome{reverse: fmt.Sprintf("phase %s: gave up waiting for %s after %s", t.Phase, what, p.svc.Health.Deadline)}
	}
	p.wait(reason, left, fmt.Sprintf("health.deadline %s", p.svc.Health.Deadline), "waiting for %s", what)
	p.plan.Wait.Registry = true
	return outcome{}
}

func (p *planner) disable(t *Transition) outcome {
	if o, failing := p.watchTarget(t); failing {
		return o
	}
	if o, pending := p.reassert(t); pending {
		return o
	}
	if !p.v.hasRegistry() {
		return outcome{done: true}
	}
	if addrs := p.registryFilter(t.From, func(r providers.RegistryInstance, ok bool) bool { return ok && r.Enabled }); len(addrs) > 0 {
		t.Drain.DisableSent = p.in.Now
		return outcome{step: &Step{Action: ActionSetEnabled, Group: t.From, Enabled: false, Instances: addrs,
			Describe: fmt.Sprintf("disable group %s in %s: %s; done when Tandem's subscription no longer lists them", t.From, p.svc.Registry.Nacos, instList(addrs))}}
	}
	var still []spec.Instance
	for _, in := range p.svc.Groups.Get(t.From) {
		if p.v.live.Registry == nil || p.v.live.Registry.Visible == nil || p.v.visible(in) {
			still = append(still, in)
		}
	}
	if len(still) > 0 {
		// Nothing bounds this wait but the push (or, without one, the next
		// sample): the group is disabled, so it only delays the drain.
		p.wait("WaitingForRegistry", p.svc.Drain.Timeout.D(), "", "waiting for the subscription to drop group %s (%s)", t.From, instList(still))
		p.plan.Wait.Registry = true
		return outcome{}
	}
	return outcome{done: true}
}
