package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// The shift is make-before-break on every binding, one binding at a time:
//
//  1. raise: the target group gets its weight while the serving group keeps
//     its own (one SetWeights call that only raises);
//  2. wait until the load balancer itself reports every target server
//     healthy on that binding (and, with ALB slow start, until the slow
//     start is over), at most verify.lbHealthTimeout;
//  3. lower: only then does the serving group go to 0.
//
// If the LB never reports the target healthy, nothing is lowered: the
// transition is undone (the reverse transition takes the raised target back
// to 0; the serving group never stopped serving) and the release fails,
// naming the servers the LB reports not healthy and the LB's reasons. A
// binding whose LB gives no health for the target (no listener named,
// health checks off, a HAProxy server without checks) is shifted as soon as
// the raise is read back: nothing can confirm it, and tandem validate and
// tandem plan warn about such bindings.
//
// Why: a load balancer routes only to servers that passed its own checks
// ("Backend servers with a weight of 0 do not participate in health checks";
// a server must pass the healthy threshold before ALB routes to it,
// https://www.alibabacloud.com/help/en/slb/application-load-balancer/user-guide/alb-health-check).
// Tandem's own probes come from Tandem's host, not from the LB's health-check
// addresses, so they cannot see a security group or a health-check path that
// only the LB trips over.

// ShiftWait is the journaled sub-step of the shift on one binding: the
// target was raised at Since and the serving group is not lowered before the
// LB reports the target healthy. A restart between the raise and the lower
// finds it in the journal and keeps waiting on the same clock (a journal
// written before it existed resumes with a fresh clock).
type ShiftWait struct {
	Binding string    `json:"binding"`
	Since   time.Time `json:"since"`
	// HealthySince is when the LB first reported every target server
	// healthy in an unbroken run of passes; slow start counts from it.
	HealthySince time.Time `json:"healthySince,omitzero"`
	// Settle is set on a raise that no lower follows (a rollout step that
	// only raises the target): the step on this binding is complete once
	// the LB reports the target healthy.
	Settle bool `json:"settle,omitempty"`
}

func (p *planner) shift(t *Transition) outcome {
	if r := p.rollout(t); r != nil {
		return p.shiftRollout(t, r)
	}
	if o, pending := p.shiftNext(t, nil, false); pending {
		return o
	}
	return outcome{done: true}
}

// shiftNext plans the next step of the shift: the first binding not yet at
// the target weights (those of r's current step, or all traffic to the
// target when r is nil) is raised, waited on or lowered. pending is false
// when every binding is at the target weights. previewOnly restricts it to
// the preview bindings (the preview phase, gate_preview.go); otherwise every
// binding is shifted, and a preview binding, which carries the target alone
// from the preview phase on whatever the rollout's step, is skipped like any
// binding already at its weights.
func (p *planner) shiftNext(t *Transition, r *RolloutProgress, previewOnly bool) (o outcome, pending bool) {
	step, at := 100, ""
	if r != nil {
		step, at = r.Current().Share, fmt.Sprintf(" for rollout %s", r.Position())
	}
	for _, bl := range p.v.live.Bindings {
		if previewOnly && !bl.Binding.Preview {
			continue
		}
		share := step
		if bl.Binding.Preview {
			share = 100
		}
		raise, lower := p.shiftChanges(t, bl, share)
		key := bl.Binding.Key()
		w := t.ShiftWait
		settling := w != nil && w.Binding == key && w.Settle
		if len(raise)+len(lower) == 0 && !settling {
			continue
		}
		t.Served = true
		if len(raise) > 0 {
			t.ShiftWait = &ShiftWait{Binding: key, Since: p.in.Now, Settle: len(lower) == 0 && share < 100}
			keeps := "keeps its weight"
			if len(lower) > 0 {
				keeps = "keeps its weight until the LB reports group " + string(t.To) + " healthy"
			}
			return outcome{step: p.weightStep(bl.Binding, t.To, raise, t.Version,
				fmt.Sprintf("raise group %s on %s%s: %s; group %s %s (read back)",
					t.To, key, at, moves(bl, raise), t.From, keeps))}, true
		}
		if w == nil || w.Binding != key {
			w = &ShiftWait{Binding: key, Since: p.in.Now}
			t.ShiftWait = w
		}
		if o, waiting := p.awaitLBHealth(t, bl, w); waiting {
			return o, true
		}
		if len(lower) == 0 {
			t.ShiftWait = nil // a raise-only step is complete once the LB reports the target healthy
			continue
		}
		return outcome{step: p.weightStep(bl.Binding, t.To, lower, t.Version,
			fmt.Sprintf("lower group %s on %s%s: %s; %s (read back)", t.From, key, at, moves(bl, lower), p.confirmation(bl, t.To)))}, true
	}
	t.ShiftWait = nil
	return outcome{}, false
}

// shiftChanges lists the changes that bring bl to the weights that give
// the target group of t share percent of it (shareWeights): rises of the
// target group, falls of the source group (and of a target server above
// its weight).
func (p *planner) shiftChanges(t *Transition, bl BindingLive, share int) (raise, lower []providers.WeightChange) {
	to, from := p.svc.Groups.Get(t.To), p.svc.Groups.Get(t.From)
	wTo, wFrom := shareWeights(bl.Binding.Weight, len(to), len(from), share)
	for _, g := range []spec.Group{t.To, t.From} {
		want := wFrom
		if g == t.To {
			want = wTo
		}
		for _, in := range p.svc.Groups.Get(g) {
			b, _ := p.v.backend(bl, in)
			// The source is never raised: a server of it taken down by
			// hand stays down (its version is not what the step verified).
			if b.Weight == want || (g == t.From && b.Weight < want) {
				continue
			}
			c := providers.WeightChange{ID: in.ID, IP: in.IP, Port: in.Port, Weight: want}
			if want > b.Weight {
				raise = append(raise, c)
			} else {
				lower = append(lower, c)
			}
		}
	}
	return raise, lower
}

// moves describes changes as "id old->new".
func moves(bl BindingLive, changes []providers.WeightChange) string {
	parts := make([]string, len(changes))
	for i, c := range changes {
		old := 0
		for _, b := range bl.Backends {
			if b.ID == c.ID {
				old = b.Weight
			}
		}
		parts[i] = fmt.Sprintf("%s %d->%d", c.ID, old, c.Weight)
	}
	return strings.Join(parts, ", ")
}

// awaitLBHealth waits, on a raised binding, until the LB reports every
// target server healthy and any slow start is over; past
// verify.lbHealthTimeout it undoes the transition.
func (p *planner) awaitLBHealth(t *Transition, bl BindingLive, w *ShiftWait) (outcome, bool) {
	key, timeout := bl.Binding.Key(), p.svc.Verify.LBHealthTimeout
	waited := p.in.Now.Sub(w.Since)
	if notHealthy := lbNotHealthy(p.v, bl, t.To); len(notHealthy) > 0 {
		w.HealthySince = time.Time{}
		if waited >= timeout.D() {
			after := fmt.Sprintf("group %s was never lowered", t.From)
			if r := t.Rollout; r != nil {
				after = fmt.Sprintf("at rollout %s; all traffic goes back to group %s", r.Position(), t.From)
			}
			return outcome{reverse: fmt.Sprintf("the load balancer did not report group %s healthy on %s within verify.lbHealthTimeout %s: %s; %s",
				t.To, key, timeout, strings.Join(notHealthy, "; "), after)}, true
		}
		p.wait("WaitingForLBHealth", min(PollInterval, timeout.D()-waited), fmt.Sprintf("verify.lbHealthTimeout %s", timeout),
			"group %s is raised on %s; group %s keeps its weight until the LB reports group %s healthy (%s of %s): %s",
			t.To, key, t.From, t.To, waited.Round(time.Millisecond), timeout, strings.Join(notHealthy, "; "))
		return outcome{}, true
	}
	if bl.SlowStart > 0 && lbReports(bl, p.svc.Groups.Get(t.To), p.v) {
		if w.HealthySince.IsZero() {
			w.HealthySince = p.in.Now
			p.event(EventNormal, ReasonLBHealthy, "the LB reports group %s healthy on %s; waiting for its slow start (%s) before lowering group %s", t.To, key, bl.SlowStart, t.From)
		}
		if left := bl.SlowStart - p.in.Now.Sub(w.HealthySince); left > 0 {
			p.wait("WaitingForSlowStart", left, fmt.Sprintf("slow start %s of %s", bl.SlowStart, key),
				"group %s is healthy on %s and in the LB's slow start; group %s keeps its weight for %s more", t.To, key, t.From, left.Round(time.Millisecond))
			return outcome{}, true
		}
	}
	return outcome{}, false
}

// confirmation says what allowed the lower, for the step's description.
func (p *planner) confirmation(bl BindingLive, g spec.Group) string {
	if lbReports(bl, p.svc.Groups.Get(g), p.v) {
		return fmt.Sprintf("the LB reports group %s healthy", g)
	}
	return fmt.Sprintf("the LB gives no health for group %s on this binding, so the lower is not confirmed by its checks", g)
}

// lbNotHealthy lists the instances of g on bl that the LB does not report
// healthy, with the LB's state and reason. Where the LB gives no health for
// any server of the binding, nothing can confirm the shift and nothing is
// listed; where it reports health for some, an instance of g it gives no
// health for is listed too: the LB has not checked it yet (a health read
// from before the raise, or a load balancer that reports a newly weighted
// server as unchecked for a while), and that is not healthy.
func lbNotHealthy(v view, bl BindingLive, g spec.Group) []string {
	reports := slices.ContainsFunc(bl.Backends, func(b providers.Backend) bool { return b.Health.Reported() })
	var out []string
	for _, in := range v.svc.Groups.Get(g) {
		b, ok := v.backend(bl, in)
		if !ok || b.Health == providers.HealthHealthy || !reports {
			continue
		}
		if !b.Health.Reported() {
			out = append(out, fmt.Sprintf("%s not checked by the LB yet%s", in, because(b.Reason)))
			continue
		}
		out = append(out, fmt.Sprintf("%s %s%s", in, b.Health, because(b.Reason)))
	}
	return out
}

// lbReports reports whether the LB gives health for any of insts on bl.
func lbReports(bl BindingLive, insts []spec.Instance, v view) bool {
	for _, in := range insts {
		if b, ok := v.backend(bl, in); ok && b.Health.Reported() {
			return true
		}
	}
	return false
}

// holdLower turns a planned weight change that lowers a binding while the
// LB reports no healthy server left to carry it (e.g. taking stray weight
// off the idle group while the LB still re-checks the serving one after an
// outage) into a wait: the guard would refuse it, and the LB's next checks
// may well allow it.
func (p *planner) holdLower() {
	s := p.plan.Step
	if s == nil || s.Action != ActionSetWeights {
		return
	}
	bl, ok := p.v.binding(*s.Binding)
	if !ok {
		return
	}
	if why := lbHealthyAfterLower(bl, s.Weights, weightsAfter(bl, s.Weights)); why != "" {
		p.plan.Step = nil
		p.wait("WaitingForLBHealth", PollInterval, "", "not yet: %s; %s", s.Describe, why)
	}
}
