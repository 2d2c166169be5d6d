package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Revision identifies the desired state a pass works on.
type Revision struct {
	Hash    string `json:"hash,omitempty"`
	Author  string `json:"author,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// Input is everything the planner looks at. It is plain data: the planner
// does no I/O, reads no clock and starts no goroutine.
type Input struct {
	Service  *spec.Service
	Revision Revision
	Live     *Live
	State    State
	Now      time.Time
	Heal     bool // drift mode heal: repair drift through the same safe steps
}

// Action is the kind of a step.
type Action string

const (
	ActionDeploy        Action = "deploy"
	ActionSetWeights    Action = "set-weights"
	ActionSetEnabled    Action = "set-enabled"
	ActionSignalDrain   Action = "signal-drain"
	ActionCloseSessions Action = "close-sessions"
)

// Step is one side effect. A pass applies at most one step; every step is
// an idempotent "ensure", so repeating it after a crash is harmless.
type Step struct {
	Action    Action                   `json:"action"`
	Group     spec.Group               `json:"group"`
	Binding   *spec.Binding            `json:"binding,omitempty"`   // set-weights, close-sessions
	Weights   []providers.WeightChange `json:"weights,omitempty"`   // set-weights
	Enabled   bool                     `json:"enabled,omitempty"`   // set-enabled
	Instances []spec.Instance          `json:"instances,omitempty"` // deploy, set-enabled, signal-drain, close-sessions
	Version   string                   `json:"version,omitempty"`   // deploy: the version; set-weights/set-enabled: the verified version
	Timeout   time.Duration            `json:"timeout,omitempty"`
	Describe  string                   `json:"describe"`
}

// Wait says why a pass made no change and when to look again.
type Wait struct {
	Reason  string        `json:"reason"`
	Message string        `json:"message"`
	For     time.Duration `json:"for"`
	Bound   string        `json:"bound,omitempty"` // what ends the wait if nothing else does
}

// Plan is the planner's answer for one service.
type Plan struct {
	Service string        `json:"service"`
	Summary string        `json:"summary"`
	Phase   Phase         `json:"phase,omitempty"`
	Next    State         `json:"next"`           // to journal before Step is applied
	Step    *Step         `json:"step,omitempty"` // the one side effect of this pass
	Wait    *Wait         `json:"wait,omitempty"`
	Stall   *StalledError `json:"stall,omitempty"`
	InSync  bool          `json:"inSync"`
	Drift   []string      `json:"drift,omitempty"`
	Events  []Event       `json:"events,omitempty"`
}

// planner carries one planning pass.
type planner struct {
	in   Input
	svc  *spec.Service
	v    view
	plan *Plan
}

// Compute plans one pass: from the desired state, the live state and what
// Tandem remembers, it decides the single next step (or why none). It is
// a pure function.
func Compute(in Input) Plan {
	p := &planner{in: in, svc: in.Service, v: view{svc: in.Service, live: in.Live}}
	p.plan = &Plan{Service: in.Service.Name, Next: in.State.Clone()}
	if p.plan.Next.Service == "" {
		p.plan.Next.Service = in.Service.Name
	}
	if p.plan.Next.Transition != nil {
		p.transition()
	} else {
		p.idle()
	}
	if t := p.plan.Next.Transition; t != nil {
		p.plan.Phase = t.Phase
	}
	p.holdLower()
	return *p.plan
}

func (p *planner) event(typ, reason, format string, args ...any) {
	e := Event{
		Time: p.in.Now, Service: p.svc.Name, Type: typ, Reason: reason, Message: fmt.Sprintf(format, args...),
		Revision: p.in.Revision.Hash, Author: p.in.Revision.Author, Subject: p.in.Revision.Subject,
	}
	if t := p.plan.Next.Transition; t != nil {
		e.Transition, e.Phase = t.ID, t.Phase
		e.Revision, e.Author, e.Subject = t.Revision, t.Author, t.Subject
	}
	p.plan.Events = append(p.plan.Events, e)
}

func (p *planner) wait(reason string, d time.Duration, bound, format string, args ...any) {
	p.plan.Wait = &Wait{Reason: reason, Message: fmt.Sprintf(format, args...), For: d, Bound: bound}
}

func (p *planner) stall(reason, format string, args ...any) {
	p.plan.Stall = Stalled(reason, format, args...)
}

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

// outcome is what a phase decided.
type outcome struct {
	done    bool
	step    *Step
	reverse string // non-empty: undo the transition for this reason
}

// transition plans the next step of the transition in progress, moving
// through every phase that is already complete in the live state.
func (p *planner) transition() {
	if t := p.plan.Next.Transition; p.superseded(t) {
		return
	}
	for range len(Phases) + 2 {
		t := p.plan.Next.Transition
		if t.Phase == PhaseDone {
			p.finish()
			return
		}
		p.plan.Summary = p.summary(t)
		o := outcome{reverse: t.Failure}
		if t.Failure == "" {
			o = p.phase(t)
		}
		if p.plan.Stall != nil {
			return
		}
		switch {
		case o.reverse != "":
			if !p.reverse(t, o.reverse) {
				return
			}
		case o.done:
			from := t.Phase
			took := p.in.Now.Sub(t.PhaseSince)
			t.advance(Phases[from.index()+1], p.in.Now)
			e := Event{Time: p.in.Now, Service: p.svc.Name, Type: EventNormal, Reason: ReasonPhaseCompleted,
				Message: fmt.Sprintf("phase %s completed", from), Revision: t.Revision, Author: t.Author, Subject: t.Subject,
				Transition: t.ID, Phase: from, Duration: took}
			p.plan.Events = append(p.plan.Events, e)
		default:
			p.plan.Step = o.step
			return
		}
	}
	p.stall("PlannerLoop", "the planner did not settle on a step; this is a bug, please report it with the journal")
}

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

// phase plans the current phase of t.
func (p *planner) phase(t *Transition) outcome {
	switch t.Phase {
	case PhasePrepare:
		return p.prepare(t)
	case PhaseVerify:
		return p.verify(t)
	case PhaseEnable:
		return p.enable(t)
	case PhaseShift:
		return p.shift(t)
	case PhaseDisable:
		return p.disable(t)
	case PhaseDrain:
		return p.drain(t)
	case PhaseWatch:
		return p.watch(t)
	}
	p.stall("CorruptJournal", "the journal names an unknown phase %q; check live state, then fix or remove the journal", t.Phase)
	return outcome{}
}

func (p *planner) summary(t *Transition) string {
	return fmt.Sprintf("%s %s: group %s -> group %s, phase %s", t.Kind, t.Version, t.From, t.To, t.Phase)
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

// ensureIdle returns a step that takes traffic away from g when g, which is
// about to be deployed or verified, carries some (e.g. its apps came back
// enabled in the registry after a restart).
func (p *planner) ensureIdle(g spec.Group) *Step {
	for i := range p.v.live.Bindings {
		bl := &p.v.live.Bindings[i]
		var changes []providers.WeightChange
		for _, in := range p.svc.Groups.Get(g) {
			if b, ok := p.v.backend(*bl, in); ok && b.Weight > 0 {
				changes = append(changes, providers.WeightChange{ID: in.ID, IP: in.IP, Port: in.Port, Weight: 0})
			}
		}
		if len(changes) > 0 {
			return p.weightStep(bl.Binding, g, changes, "", fmt.Sprintf("take group %s (idle) back to weight 0 on %s", g, bl.Binding.Key()))
		}
	}
	if p.v.hasRegistry() {
		if addrs := p.registryFilter(g, func(r providers.RegistryInstance, ok bool) bool { return ok && r.Enabled }); len(addrs) > 0 {
			return &Step{Action: ActionSetEnabled, Group: g, Enabled: false, Instances: addrs,
				Describe: fmt.Sprintf("disable group %s (idle) in %s: %s", g, p.svc.Registry.Nacos, instList(addrs))}
		}
	}
	return nil
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
	if s := p.ensureIdle(t.To); s != nil {
		return outcome{step: s}
	}
	if t.DeployDone || (p.v.versionKnown(t.To) && p.v.groupVersion(t.To) == t.Version) {
		return outcome{done: true}
	}
	if t.DeployStarted {
		return p.interruptedDeploy(t)
	}
	t.DeployStarted, t.DeployStartedAt = true, p.in.Now
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
	if p.in.Now.Sub(t.DeployStartedAt) >= timeout.D() {
		return outcome{reverse: fmt.Sprintf("the deploy of %s to group %s was interrupted (the daemon stopped during it) and the group did not come to run it within deploy.timeout %s (%s); a deploy is never started twice",
			t.Version, t.To, timeout, p.versions(t.To))}
	}
	p.wait("DeployInterrupted", PollInterval, fmt.Sprintf("deploy.timeout %s", timeout),
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
		if s := p.ensureIdle(t.To); s != nil {
			return outcome{step: s}
		}
	}
	ok, why := p.v.verified(t.To, t.Version)
	if ok {
		return outcome{done: true}
	}
	if p.in.Now.Sub(t.PhaseSince) >= p.svc.Health.Deadline.D() {
		return outcome{reverse: fmt.Sprintf("group %s did not pass verification within %s: %s", t.To, p.svc.Health.Deadline, why)}
	}
	p.wait("VerifyingTarget", PollInterval, fmt.Sprintf("health.deadline %s", p.svc.Health.Deadline),
		"waiting for group %s to be healthy at %s: %s", t.To, orDash(t.Version), why)
	return outcome{}
}

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
	if o, pending := p.shiftNext(t); pending {
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

// boundedWait waits for something the last step should have brought about,
// up to health.deadline; past it a forward transition is undone.
func (p *planner) boundedWait(t *Transition, reason, format string, args ...any) outcome {
	what := fmt.Sprintf(format, args...)
	if p.in.Now.Sub(t.PhaseSince) >= p.svc.Health.Deadline.D() {
		return outcome{reverse: fmt.Sprintf("phase %s: gave up waiting for %s after %s", t.Phase, what, p.svc.Health.Deadline)}
	}
	p.wait(reason, PollInterval, fmt.Sprintf("health.deadline %s", p.svc.Health.Deadline), "waiting for %s", what)
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
		p.wait("WaitingForRegistry", PollInterval, "", "waiting for the subscription to drop group %s (%s)", t.From, instList(still))
		return outcome{}
	}
	return outcome{done: true}
}

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
	if d.Signal != nil && !t.Signaled {
		// Clients reconnect at once when their sessions close. Until
		// drain.propagation has passed, registry consumers may still hold
		// the old group in their caches and send a reconnect right back to
		// it, where no second signal would ever close it; so the signal
		// waits for propagation (which validation keeps below the timeout).
		if left := d.Propagation.D() - elapsed; left > 0 {
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
		if !t.Ceiling {
			t.Ceiling = true
			p.event(EventWarning, ReasonDrainCeiling, "drain of group %s reached drain.timeout %s with evidence %s", t.From, d.Timeout, detail)
		}
		// Close what is left on every binding that still has sessions, once
		// each (a restart repeats only the bindings not yet done); a close
		// that keeps failing does not hold the release forever.
		for _, bl := range p.v.live.Bindings {
			n := p.sessions(bl, t.From)
			if n == 0 || slices.Contains(t.ClosedOn, bl.Binding.Key()) || t.StepFailures >= MaxStepFailures {
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
		t.ZeroSince = time.Time{}
		p.wait("Draining", min(EvidencePoll, d.Timeout.D()-elapsed), fmt.Sprintf("drain.timeout %s", d.Timeout),
			"draining group %s: %s", t.From, detail)
		return outcome{}
	}
	if t.ZeroSince.IsZero() {
		t.ZeroSince = p.in.Now
	}
	quietLeft := d.Quiet.D() - p.in.Now.Sub(t.ZeroSince)
	propLeft := d.Propagation.D() - elapsed
	if left := max(quietLeft, propLeft); left > 0 {
		p.wait("Draining", left, fmt.Sprintf("drain.propagation %s, drain.quiet %s", d.Propagation, d.Quiet),
			"draining group %s: evidence at 0 for %s (quiet %s), %s since the shift (propagation %s)",
			t.From, p.in.Now.Sub(t.ZeroSince).Round(time.Millisecond), d.Quiet, elapsed.Round(time.Millisecond), d.Propagation)
		return outcome{}
	}
	return outcome{done: true}
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

// watchTarget counts consecutive passes in which the target group looks
// unhealthy, from the shift on; at verify.failureThreshold it swaps back.
func (p *planner) watchTarget(t *Transition) (outcome, bool) {
	if t.Kind.reverse() {
		return outcome{}, false
	}
	bad := p.v.unhealthy(t.To)
	if len(bad) == 0 {
		t.WatchFailures = 0
		return outcome{}, false
	}
	t.WatchFailures++
	if t.WatchFailures >= p.svc.Verify.FailureThreshold {
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
	if o, pending := p.reassert(t); pending {
		return o
	}
	left := p.svc.Verify.Window.D() - p.in.Now.Sub(t.PhaseSince)
	if left <= 0 {
		return outcome{done: true}
	}
	p.wait("Watching", min(PollInterval, left), fmt.Sprintf("verify.window %s", p.svc.Verify.Window),
		"watching group %s at %s: %s of %s left", t.To, t.Version, left.Round(time.Millisecond), p.svc.Verify.Window)
	return outcome{}
}

func instList(insts []spec.Instance) string {
	parts := make([]string, len(insts))
	for i, in := range insts {
		parts[i] = in.String()
	}
	return strings.Join(parts, ", ")
}
