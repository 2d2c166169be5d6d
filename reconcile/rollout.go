package reconcile

import (
	"fmt"
	"strings"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// A release of a service with a rollout (spec.Rollout: weight steps or a
// warm-up ramp) shifts in steps. Each step gives the target group a share
// of every binding, binding after binding, make-before-break as the plain
// shift does (shift.go): the target is raised to its new weight, the LB
// reports it healthy, then the serving group is lowered to its new weight.
// Once every binding carries the step's share, the step is held: it lasts
// its pause, and both groups must have been healthy without a break for
// its hold; verify.failureThreshold failed checks in a row of the target
// take all traffic back to the serving group at once (the abort transition
// raises it back to its full weight, then takes the target to 0). The last
// step is 100 percent, after which the shift is done and the registry's
// disable, the drain and the watch follow as without a rollout; the target
// was enabled in the registry before the first step.
//
// Only releases roll out in steps: a heal, an abort or a swap-back moves
// all traffic at once.

// RolloutProgress is the journaled position of a rollout. The steps are
// fixed when the shift begins, so that a restart, or a change of the spec
// while the release runs, resumes the same rollout.
type RolloutProgress struct {
	Steps []RolloutStep `json:"steps"`
	Step  int           `json:"step"` // index in Steps of the step being reached or held
	// Reached is when every binding carried the step's share; zero while
	// the step's weights are being set.
	Reached time.Time `json:"reached,omitzero"`
	// HealthySince starts the step's unbroken healthy run (its hold).
	HealthySince time.Time `json:"healthySince,omitzero"`
	Failures     int       `json:"failures,omitempty"` // consecutive failed health checks at this step
	// Pause is the manual pause of the current step (pause: manual), open
	// once its hold is over and until someone promotes or aborts; the same
	// record, decisions and means as the approval gate's (gate_approval.go).
	Pause *ApprovalProgress `json:"pause,omitempty"`
}

// RolloutStep is one step of a journaled rollout.
type RolloutStep struct {
	Share int           `json:"share"` // the target group's share of each binding, percent
	Pause time.Duration `json:"pause,omitempty"`
	Hold  time.Duration `json:"hold,omitempty"`
	// Manual: the step waits for a decision once its hold is over.
	Manual bool `json:"manual,omitempty"`
}

func (s RolloutStep) String() string {
	out := fmt.Sprintf("%d%%", s.Share)
	if s.Pause > 0 {
		out += fmt.Sprintf(" pause %s", s.Pause)
	}
	if s.Manual {
		out += " pause manual"
	}
	if s.Hold > 0 {
		out += fmt.Sprintf(" hold %s", s.Hold)
	}
	return out
}

// Current is the step being reached or held.
func (r *RolloutProgress) Current() RolloutStep { return r.Steps[r.Step] }

// Position describes where the rollout is, e.g. "step 2/3 (50%)".
func (r *RolloutProgress) Position() string {
	return fmt.Sprintf("step %d/%d (%d%%)", r.Step+1, len(r.Steps), r.Current().Share)
}

func (r *RolloutProgress) clone() *RolloutProgress {
	if r == nil {
		return nil
	}
	c := *r
	c.Steps = append([]RolloutStep(nil), r.Steps...)
	c.Pause = r.Pause.clone()
	return &c
}

// rolloutSteps turns the spec's rollout into journaled steps (nil: none).
func rolloutSteps(r *spec.Rollout) []RolloutStep {
	var out []RolloutStep
	for _, s := range r.Plan() {
		out = append(out, RolloutStep{Share: s.Traffic, Pause: s.Pause.D(), Hold: s.Hold.D(), Manual: s.Pause.Manual})
	}
	return out
}

// rollout returns t's rollout, starting it when the shift of a release
// begins on a service that has one; nil when t shifts all at once. A
// journal from before rollouts that is in the middle of a shift finishes
// it at once: its first raise journaled a ShiftWait, which stays until
// the shift is done.
func (p *planner) rollout(t *Transition) *RolloutProgress {
	if t.Rollout != nil || !gated(t) || p.svc.Rollout == nil {
		return t.Rollout
	}
	if t.ShiftWait != nil {
		return nil
	}
	steps := rolloutSteps(p.svc.Rollout)
	if len(steps) < 2 {
		return nil // 100 percent at once: the plain shift
	}
	t.Rollout = &RolloutProgress{Steps: steps}
	p.event(EventNormal, ReasonRolloutStep, "rollout of group %s in %d steps: %s", t.To, len(steps), describeSteps(steps))
	return t.Rollout
}

// shiftRollout plans the next move of a rollout: the current step's
// weights, then its hold, then the next step.
func (p *planner) shiftRollout(t *Transition, r *RolloutProgress) outcome {
	for r.Step < len(r.Steps) {
		if o, pending := p.shiftNext(t, r, false); pending {
			return o
		}
		if r.Reached.IsZero() {
			r.Reached, r.HealthySince, r.Failures = p.in.Now, p.in.Now, 0
			p.event(EventNormal, ReasonRolloutStep, "rollout %s reached: group %s carries %d%% of every binding", r.Position(), t.To, r.Current().Share)
		}
		if r.Step == len(r.Steps)-1 {
			return outcome{done: true}
		}
		if o, holding := p.holdStep(t, r); holding {
			return o
		}
		if r.Reached.IsZero() {
			continue // the rest was skipped: r is at its last step
		}
		r.Step++
		r.Reached, r.HealthySince, r.Failures, r.Pause = time.Time{}, time.Time{}, 0, nil
	}
	return outcome{done: true}
}

// holdStep keeps the rollout at a reached step until its pause and its hold
// are over, watching both groups; a manual step then waits for a decision
// (stepDecided carries it out). The target failing verify.failureThreshold checks in a row
// undoes the release; the serving group failing them ends the rollout early
// (all traffic to the healthy target: going back to a failing group would
// be worse).
func (p *planner) holdStep(t *Transition, r *RolloutProgress) (outcome, bool) {
	st, now, threshold := r.Current(), p.in.Now, p.svc.Verify.FailureThreshold
	var d *ApprovalVerdict
	if r.Pause != nil {
		d = p.pauseVerdict(t, r.Pause, r.Step+1)
	}
	if d != nil && d.Action != spec.ApprovalPromote {
		return p.stepDecided(t, r, d), true // an abort acts at once, healthy or not
	}
	badTo, badFrom := p.v.unhealthy(t.To), p.v.unhealthy(t.From)
	if len(badTo)+len(badFrom) > 0 {
		r.Failures++
		r.HealthySince = now
		bad := append(prefixed("group "+string(t.To), badTo), prefixed("group "+string(t.From), badFrom)...)
		switch {
		case r.Failures >= threshold && len(badTo) > 0:
			return outcome{reverse: fmt.Sprintf("group %s failed %d consecutive health checks at rollout %s: %s; all traffic goes back to group %s",
				t.To, r.Failures, r.Position(), strings.Join(bad, "; "), t.From)}, true
		case r.Failures >= threshold:
			p.event(EventWarning, ReasonRolloutStep, "group %s failed %d consecutive health checks at rollout %s: %s; the rest of the rollout is skipped: group %s takes all traffic now",
				t.From, r.Failures, r.Position(), strings.Join(bad, "; "), t.To)
			r.Step = len(r.Steps) - 1
			r.Reached, r.Failures, r.Pause = time.Time{}, 0, nil
			return outcome{}, false
		}
		p.wait("RolloutUnhealthy", PollInterval, fmt.Sprintf("verify.failureThreshold %d", threshold),
			"rollout %s held: failed health check %d/%d: %s", r.Position(), r.Failures, threshold, strings.Join(bad, "; "))
		return outcome{}, true
	}
	r.Failures = 0
	if r.Pause == nil {
		left := max(r.Reached.Add(st.Pause).Sub(now), r.HealthySince.Add(st.Hold).Sub(now))
		if left > 0 {
			p.wait("RolloutPause", min(PollInterval, left), fmt.Sprintf("rollout %s", st),
				"rollout %s: group %s carries %d%% of every binding; the next step in %s", r.Position(), t.To, st.Share, left.Round(time.Millisecond))
			return outcome{}, true
		}
		if !st.Manual {
			return outcome{}, false
		}
		r.Pause = &ApprovalProgress{Since: now}
		p.event(EventNormal, ReasonApprovalPending, "%s", p.stepPauseMessage(t, r))
		p.plan.Events[len(p.plan.Events)-1].PauseStep = r.Step + 1
	}
	if d == nil {
		// The target carries traffic: its health is still watched at
		// PollInterval while the pause lasts.
		p.wait(ReasonApprovalPending, PollInterval, "a decision (tandem promote|abort)", "%s", p.stepPauseMessage(t, r))
		return outcome{}, true
	}
	return p.stepDecided(t, r, d), false
}

// stepDecided carries out decision d on the manual pause of r's step: a
// promote lets the rollout go on to the next step, an abort takes all
// traffic back to the serving group at once (the abort transition).
func (p *planner) stepDecided(t *Transition, r *RolloutProgress, d *ApprovalVerdict) outcome {
	at := fmt.Sprintf("rollout %s", r.Position())
	switch d.Action {
	case spec.ApprovalPromote:
		p.event(EventNormal, ReasonPromoted, "%s %s to group %s promoted at %s by %s after a pause of %s", t.Kind, t.Version, t.To, at, d.By, d.At.Sub(r.Pause.Since).Round(time.Second))
		return outcome{}
	case spec.ApprovalAbort:
		why := fmt.Sprintf("aborted at %s by %s; all traffic goes back to group %s", at, d.By, t.From)
		p.event(EventWarning, ReasonAborted, "%s %s to group %s %s", t.Kind, t.Version, t.To, why)
		return outcome{reverse: why}
	}
	p.stall("CorruptJournal", "the journal's decision %q at %s of transition %s is neither promote nor abort; fix or remove the journal", d.Action, at, t.ID)
	return outcome{}
}

// stepPauseMessage announces the manual pause of r's step.
func (p *planner) stepPauseMessage(t *Transition, r *RolloutProgress) string {
	return fmt.Sprintf("%s %s of %s to group %s (transition %s) is paused at step %d (share %d%%) for approval since %s, until someone decides; group %s carries %d%% of every binding and group %s the rest at %s. "+
		"Promote (next step) or abort (all traffic back to group %s): tandem promote|abort %s, POST /api/v1/services/%s/promote|abort (API token), or the dashboard",
		t.Kind, t.Version, p.svc.Name, t.To, t.ID, r.Step+1, r.Current().Share, r.Pause.Since.UTC().Format(time.RFC3339), t.To, r.Current().Share, t.From, orDash(t.FromVersion),
		t.From, p.svc.Name, p.svc.Name)
}

func prefixed(prefix string, items []string) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = prefix + " " + s
	}
	return out
}

func describeSteps(steps []RolloutStep) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.String()
	}
	return strings.Join(parts, ", ")
}

// shareWeights is the weight of each instance of the target (to) and the
// serving (from) group on a binding of weight w (the serving group's weight
// per instance, at most the LB kind's maximum weight: spec/kinds.go) when
// the target carries share percent of it, with nTo and nFrom instances.
// The larger of the two is w and the other is rounded to the nearest
// integer, never to 0 while its group carries a share: as the share rises
// the target's weight only rises and the serving group's only falls, so
// every step is a raise of the target followed by a lower of the source.
// The share actually carried is within rounding of the one asked for
// (effectiveShare).
func shareWeights(w, nTo, nFrom, share int) (to, from int) {
	switch {
	case share <= 0 || nTo == 0:
		return 0, w
	case share >= 100 || nFrom == 0:
		return w, 0
	}
	num, den := share*nFrom, (100-share)*nTo // to/from = num/den per instance
	if num <= den {
		return clamp((2*w*num+den)/(2*den), 1, w), w
	}
	return w, clamp((2*w*den+num)/(2*num), 1, w)
}

// effectiveShare is the target's share, in percent, that weights to and
// from per instance give.
func effectiveShare(to, from, nTo, nFrom int) float64 {
	total := to*nTo + from*nFrom
	if total == 0 {
		return 0
	}
	return 100 * float64(to*nTo) / float64(total)
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }
