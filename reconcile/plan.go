package reconcile

import (
	"fmt"
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
	ActionSmoke         Action = "smoke" // run gates.smoke against the target group
)

// Step is one side effect. A pass applies at most one step; every step is
// an idempotent "ensure", so repeating it after a crash is harmless.
type Step struct {
	Action    Action                   `json:"action"`
	Group     spec.Group               `json:"group"`
	Binding   *spec.Binding            `json:"binding,omitempty"`   // set-weights, close-sessions
	Weights   []providers.WeightChange `json:"weights,omitempty"`   // set-weights
	Enabled   bool                     `json:"enabled,omitempty"`   // set-enabled
	Instances []spec.Instance          `json:"instances,omitempty"` // deploy, set-enabled, signal-drain, close-sessions, smoke
	Version   string                   `json:"version,omitempty"`   // deploy, smoke: the version; set-weights/set-enabled: the verified version
	Timeout   time.Duration            `json:"timeout,omitempty"`
	Describe  string                   `json:"describe"`
}

// Wait says why a pass made no change and when to look again: For is the
// time until the clock alone can change the decision (a duration of the
// spec ends), or until the next sample of evidence that is read rather than
// pushed (PollInterval for probes, versions and the LB's health;
// EvidencePoll, or EvidenceFastPoll while it may end it, for a drain's
// evidence), whichever comes first. A wait on the registry (Registry true)
// is ended by the registry's push, which re-queues the service (daemon:
// providers.RegistryWatcher); For is then the time left to its bound. A
// wait for dependencies (after:) is ended by their passes (Worker).
type Wait struct {
	Reason   string        `json:"reason"`
	Message  string        `json:"message"`
	For      time.Duration `json:"for"`
	Bound    string        `json:"bound,omitempty"`    // what ends the wait if nothing else does
	Registry bool          `json:"registry,omitempty"` // a registry push ends it
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

// outcome is what a phase decided.
type outcome struct {
	done    bool
	silent  bool // done, and the phase had nothing to do: no event
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
		o, failing := outcome{reverse: t.Failure}, false
		if t.Failure == "" {
			o, failing = p.watchPreview(t)
		}
		if t.Failure == "" && !failing {
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
		case o.done && o.silent:
			from := t.Phase
			t.advance(Phases[from.index()+1], p.in.Now)
			delete(t.PhaseTimes, from)
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
			p.previewPoll(t)
			return
		}
	}
	p.stall("PlannerLoop", "the planner did not settle on a step; this is a bug, please report it with the journal")
}

// phase plans the current phase of t.
func (p *planner) phase(t *Transition) outcome {
	switch t.Phase {
	case PhasePrepare:
		return p.prepare(t)
	case PhaseVerify:
		return p.verify(t)
	case PhasePreviewRoute:
		return p.previewRoute(t)
	case PhaseSmoke:
		return p.smoke(t)
	case PhaseAnalysis:
		return p.analysis(t)
	case PhaseApproval:
		return p.approval(t)
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

func instList(insts []spec.Instance) string {
	parts := make([]string, len(insts))
	for i, in := range insts {
		parts[i] = in.String()
	}
	return strings.Join(parts, ", ")
}
