package reconcile

import (
	"fmt"
	"strings"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// drainNeeded reports whether the source group may have in-flight work.
func drainNeeded(t *Transition) bool { return !t.Kind.reverse() || t.Served }

func (p *planner) drain(t *Transition) outcome {
	if o, failing := p.watchTarget(t); failing {
		return o
	}
	if o, pending := p.reassert(t); pending {
		return o
	}
	d := p.svc.Drain
	if !drainNeeded(t) {
		return outcome{done: true}
	}
	elapsed := p.in.Now.Sub(t.PhaseSince)
	propEnd := p.propagationEnd(t)
	if d.Signal != nil && !t.Drain.Signaled {
		// Clients reconnect at once when their sessions close. Until
		// drain.propagation has passed, registry consumers may still hold
		// the old group in their caches and send a reconnect right back to
		// it, where no second signal would ever close it; so the signal
		// waits for propagation (which validation keeps below the timeout).
		if left := propEnd.Sub(p.in.Now); left > 0 {
			p.wait("WaitingForPropagation", left, fmt.Sprintf("drain.propagation %s", d.Propagation),
				"draining group %s: the drain signal waits until consumers stopped routing to it (%s of drain.propagation %s left)",
				t.From, left.Round(time.Millisecond), d.Propagation)
			return outcome{}
		}
		insts := p.svc.Groups.Get(t.From)
		return outcome{step: &Step{Action: ActionSignalDrain, Group: t.From, Instances: insts,
			Describe: fmt.Sprintf("ask group %s to close long-lived sessions (POST %s on %s)", t.From, d.Signal.HTTP, instList(insts))}}
	}
	total, known, detail := p.v.evidence(t.From)
	if elapsed >= d.Timeout.D() {
		if !t.Drain.Ceiling {
			t.Drain.Ceiling = true
			p.event(EventWarning, ReasonDrainCeiling, "drain of group %s reached drain.timeout %s with evidence %s", t.From, d.Timeout, detail)
		}
		// Close what is left on every binding that still has sessions, once
		// each (a restart repeats only the bindings not yet done); a close
		// that keeps failing does not hold the release forever.
		for _, bl := range p.v.live.Bindings {
			n := p.sessions(bl, t.From)
			if n == 0 || closeGivenUp(t, bl.Binding.Key()) {
				continue
			}
			bb := bl.Binding
			insts := p.svc.Groups.Get(t.From)
			return outcome{step: &Step{Action: ActionCloseSessions, Group: t.From, Binding: &bb, Instances: insts,
				Describe: fmt.Sprintf("close the %d sessions left on group %s at %s (drain.timeout %s reached)", n, t.From, bl.Binding.Key(), d.Timeout)}}
		}
		return outcome{done: true}
	}
	if !known || total > 0 {
		t.Drain.ZeroSince = time.Time{}
		p.wait("Draining", min(evidenceInterval(p.in.Now, propEnd, d.Quiet.D()), d.Timeout.D()-elapsed), fmt.Sprintf("drain.timeout %s", d.Timeout),
			"draining group %s: %s", t.From, detail)
		return outcome{}
	}
	if t.Drain.ZeroSince.IsZero() {
		t.Drain.ZeroSince = p.in.Now
	}
	quietLeft := d.Quiet.D() - p.in.Now.Sub(t.Drain.ZeroSince)
	propLeft := propEnd.Sub(p.in.Now)
	if left := max(quietLeft, propLeft); left > 0 {
		p.wait("Draining", left, fmt.Sprintf("drain.propagation %s, drain.quiet %s", d.Propagation, d.Quiet),
			"draining group %s: evidence at 0 for %s (quiet %s), %s of drain.propagation %s left",
			t.From, p.in.Now.Sub(t.Drain.ZeroSince).Round(time.Millisecond), d.Quiet, max(propLeft, 0).Round(time.Millisecond), d.Propagation)
		return outcome{}
	}
	return outcome{done: true}
}

// propagationEnd is when drain.propagation is over: from then on no
// consumer sends new work to the source group (docs/propagation.md), so
// the drain signal may go and the evidence may end the drain.
//
// With a registry whose push delay is known (providers.RegistryView
// PushDelay), it counts from the disable itself, as docs/propagation.md
// measures it, and never ends sooner than drain.propagation minus the push
// delay after Tandem's own subscription showed the disable (the start of
// the drain): consumers are pushed the change about when Tandem is, so a
// push that comes later than the registry's delay (a loaded server or
// daemon) moves the end back by as much. Otherwise it counts from the
// start of the drain: after the disable showed in the subscription, or
// after the shift without a registry.
func (p *planner) propagationEnd(t *Transition) time.Time {
	prop := p.svc.Drain.Propagation.D()
	fromDrain := t.PhaseSince.Add(prop)
	r := p.v.live.Registry
	if t.Drain.DisableSent.IsZero() || r == nil || r.PushDelay <= 0 {
		return fromDrain
	}
	fromDisable := t.Drain.DisableSent.Add(prop)
	if afterPush := fromDrain.Add(-r.PushDelay); afterPush.After(fromDisable) {
		return afterPush
	}
	return fromDisable
}

// evidenceInterval is how long a drain waiting for its evidence waits
// before it samples again: EvidenceFastPoll from drain.quiet before the end
// of propagation until EvidenceFastFor after it (the moment the evidence
// may end the drain, and the time the apps take to close their sessions
// after the signal), EvidencePoll otherwise. The fast window bounds what
// fast sampling costs: at most (quiet + EvidenceFastFor) / EvidenceFastPoll
// samples per drain.
func evidenceInterval(now, propEnd time.Time, quiet time.Duration) time.Duration {
	if !now.Before(propEnd.Add(-quiet)) && now.Before(propEnd.Add(EvidenceFastFor)) {
		return EvidenceFastPoll
	}
	return EvidencePoll
}

func (p *planner) sessions(bl BindingLive, g spec.Group) int {
	n := 0
	for _, in := range p.svc.Groups.Get(g) {
		if b, ok := p.v.backend(bl, in); ok && b.Sessions > 0 {
			n += b.Sessions
		}
	}
	return n
}

// countFailures counts in *n the consecutive passes in which group g looks
// unhealthy: bad says why (nil: healthy, and *n starts again from 0), over
// whether *n reached verify.failureThreshold.
func (p *planner) countFailures(g spec.Group, n *int) (bad []string, over bool) {
	bad = p.v.unhealthy(g)
	if len(bad) == 0 {
		*n = 0
		return nil, false
	}
	*n++
	return bad, *n >= p.svc.Verify.FailureThreshold
}

// watchTarget counts consecutive passes in which the target group looks
// unhealthy, from the shift on; at verify.failureThreshold it swaps back.
func (p *planner) watchTarget(t *Transition) (outcome, bool) {
	if t.Kind.reverse() {
		return outcome{}, false
	}
	bad, over := p.countFailures(t.To, &t.WatchFailures)
	if len(bad) == 0 {
		return outcome{}, false
	}
	if over {
		return outcome{reverse: fmt.Sprintf("group %s failed %d consecutive health checks after the shift: %s", t.To, t.WatchFailures, strings.Join(bad, "; "))}, true
	}
	p.wait("WatchingTarget", PollInterval, fmt.Sprintf("verify.failureThreshold %d", p.svc.Verify.FailureThreshold),
		"group %s unhealthy (%d/%d): %s", t.To, t.WatchFailures, p.svc.Verify.FailureThreshold, strings.Join(bad, "; "))
	return outcome{}, true
}

func (p *planner) watch(t *Transition) outcome {
	if t.Kind.reverse() {
		return outcome{done: true}
	}
	if o, failing := p.watchTarget(t); failing {
		return o
	}
	if o, failing := p.watchAnalysis(t); failing {
		return o
	}
	if o, pending := p.reassert(t); pending {
		return o
	}
	left := p.svc.Verify.Window.D() - p.in.Now.Sub(t.PhaseSince)
	if left <= 0 {
		return outcome{done: true}
	}
	p.wait("Watching", min(PollInterval, left), fmt.Sprintf("verify.window %s", p.svc.Verify.Window),
		"watching group %s at %s: %s of %s left", t.To, t.Version, left.Round(time.Millisecond), p.svc.Verify.Window)
	p.analysisWake(t)
	return outcome{}
}
