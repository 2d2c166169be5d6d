package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Preview is the whole transition Tandem would run from a live state, for
// `tandem plan`: every phase with its calls and its waits and their bounds.
type Preview struct {
	Service  string         `json:"service"`
	Source   spec.Source    `json:"source"`
	Live     string         `json:"live"`    // the live state in words
	Desired  string         `json:"desired"` // the desired state in words
	Summary  string         `json:"summary"`
	Phases   []PhasePreview `json:"phases,omitempty"`
	Drift    []string       `json:"drift,omitempty"`
	Stalled  string         `json:"stalled,omitempty"`
	InSync   bool           `json:"inSync"`
	Assumes  []string       `json:"assumes,omitempty"` // what the preview takes for granted
	Complete bool           `json:"complete"`          // the simulation reached the end of the transition
}

// PhasePreview is one phase of a previewed transition.
type PhasePreview struct {
	Phase Phase    `json:"phase"`
	Calls []string `json:"calls,omitempty"` // side effects, in order, in words
	Steps []Step   `json:"steps,omitempty"` // the same, typed
	Note  string   `json:"note,omitempty"`  // what the phase checks and waits for, with its bounds
}

// maxPreviewPasses bounds the simulation.
const maxPreviewPasses = 10_000

// PreviewTransition simulates passes from in, assuming every call succeeds,
// every instance of the target passes its checks after a deploy, and drain
// evidence reaches zero as soon as it is looked at. It performs no I/O.
func PreviewTransition(in Input) Preview {
	svc := in.Service
	v := view{svc: svc, live: in.Live}
	pv := Preview{
		Service: svc.Name, Source: svc.Source,
		Live:    describeLive(v),
		Desired: fmt.Sprintf("group %s at %s", svc.Active, svc.Version),
		Assumes: []string{
			"every call succeeds and every instance of the target group passes its health and version checks after the deploy",
			"drain evidence reaches 0 as soon as it is read (a real drain lasts at least drain.propagation)",
		},
	}
	if svc.Gates.Approval != nil {
		pv.Assumes = append(pv.Assumes, "someone promotes the release at the approval gate (gates.approval)")
	}
	for i, st := range rolloutSteps(svc.Rollout) {
		if st.Manual {
			pv.Assumes = append(pv.Assumes, fmt.Sprintf("someone promotes the release at rollout step %d (pause: manual)", i+1))
		}
	}
	live := cloneLive(in.Live)
	assumeDrained(svc, live)
	in.Live = live
	if svc.Gates.Analysis != nil {
		pv.Assumes = append(pv.Assumes, "every measurement of the analysis gate is successful")
	}
	phase := Phase("")
	started := false
	for range maxPreviewPasses {
		live.Analysis = assumeAnalysed(svc, in.State, in.Now)
		p := Compute(in)
		if pv.Summary == "" || !started {
			pv.Summary = p.Summary
		}
		if p.Next.Transition != nil {
			started = true
		}
		if p.Phase != "" {
			phase = p.Phase
		}
		for _, e := range p.Events {
			if e.Reason == ReasonPhaseCompleted {
				pv.phase(e.Phase)
			}
		}
		switch {
		case p.Stall != nil:
			pv.Stalled = p.Stall.Message
			return pv
		case p.Step != nil:
			pp := pv.phase(phase)
			pp.Calls = append(pp.Calls, p.Step.Describe)
			pp.Steps = append(pp.Steps, *p.Step)
			simulate(svc, live, p.Step)
			in.State, _ = complete(p.Next, p.Step, stepOutput{}, nil)
		case p.Wait != nil:
			pv.phase(phase)
			in.State = p.Next
			if assumePromoted(&in.State, in.Now) {
				continue
			}
			in.Now = in.Now.Add(max(p.Wait.For, time.Millisecond))
		default:
			in.State = p.Next
			if !started {
				pv.InSync, pv.Drift = p.InSync, p.Drift
				return pv
			}
			if p.Next.Transition == nil {
				pv.phase(PhaseDone).Note = doneNote(in.State)
				pv.Complete = true
				pv.notes(svc)
				return pv
			}
		}
	}
	pv.Stalled = "the simulation did not finish; this is a bug, please report it"
	return pv
}

func (pv *Preview) phase(ph Phase) *PhasePreview {
	for i := range pv.Phases {
		if pv.Phases[i].Phase == ph {
			return &pv.Phases[i]
		}
	}
	pv.Phases = append(pv.Phases, PhasePreview{Phase: ph})
	return &pv.Phases[len(pv.Phases)-1]
}

// notes says what each phase checks and waits for, with its bounds.
func (pv *Preview) notes(svc *spec.Service) {
	for i := range pv.Phases {
		pp := &pv.Phases[i]
		if pp.Note != "" {
			continue
		}
		none := len(pp.Calls) == 0
		switch pp.Phase {
		case PhasePrepare:
			if none {
				pp.Note = "the target group already runs the version: no deploy"
			}
		case PhaseVerify:
			pp.Note = fmt.Sprintf("check health (%s) and version (%s) of every target instance, up to health.deadline %s", probeText(svc), versionText(svc), svc.Health.Deadline)
		case PhasePreviewRoute:
			pp.Note = previewNote(svc)
		case PhaseSmoke:
			pp.Note = smokeNote(svc)
			pv.Assumes = append(pv.Assumes, "every smoke check passes")
		case PhaseEnable, PhaseDisable:
			if none {
				pp.Note = "no registry: nothing to do"
			} else {
				pp.Note = fmt.Sprintf("wait until Tandem's own subscription shows the change, up to health.deadline %s", svc.Health.Deadline)
			}
		case PhaseShift:
			if none {
				pp.Note = "no traffic bindings: nothing to do"
			} else {
				pp.Note = fmt.Sprintf("per binding: raise the target, wait until the LB reports it healthy (up to verify.lbHealthTimeout %s; otherwise undo the raise and fail), then lower the source; each change is read back; %d failed attempts restore the source group's weights",
					svc.Verify.LBHealthTimeout, MaxShiftFailures)
				if r := rolloutText(svc); r != "" {
					pp.Note += "; " + r
				}
			}
		case PhaseApproval:
			pp.Note = approvalText(svc)
		case PhaseDrain:
			pp.Note = drainText(svc)
		case PhaseWatch:
			pp.Note = fmt.Sprintf("watch the target group for verify.window %s (health is watched from the shift on); %d consecutive failed checks swap back to the warm group", svc.Verify.Window, svc.Verify.FailureThreshold)
			if g := svc.Gates.Analysis; g != nil {
				pp.Note += "; " + analysisNote(g, "swaps back")
			}
		case PhaseAnalysis:
			pp.Note = fmt.Sprintf("for gates.analysis.beforeShift %s, before any traffic moves: %s", svc.Gates.Analysis.BeforeShift, analysisNote(svc.Gates.Analysis, "aborts"))
		}
	}
}

// rolloutText describes a release's rollout: each step's share, its pause
// and hold, and the weights that give the share on each binding (with the
// share they actually give after rounding). A heal or a reverse
// transition moves all traffic at once and has none.
func rolloutText(svc *spec.Service) string {
	steps := rolloutSteps(svc.Rollout)
	if len(steps) < 2 {
		return ""
	}
	nTo, nFrom := len(svc.Groups.Get(svc.Active)), len(svc.Groups.Get(svc.Active.Other()))
	parts := make([]string, len(steps))
	for i, st := range steps {
		var ws []string
		for _, b := range svc.Traffic {
			to, from := shareWeights(b.Weight, nTo, nFrom, st.Share)
			ws = append(ws, fmt.Sprintf("%s %d/%d = %.1f%%", b.Key(), to, from, effectiveShare(to, from, nTo, nFrom)))
		}
		what := ""
		if st.Pause > 0 {
			what += fmt.Sprintf(", pause %s", st.Pause)
		}
		if st.Hold > 0 {
			what += fmt.Sprintf(", hold until both groups are healthy for %s without a break", st.Hold)
		}
		if st.Manual {
			what += fmt.Sprintf(", then pause for approval until someone promotes (next step) or aborts (all traffic back to the source group at once): tandem promote|abort %s, the API, the dashboard or the chat message's links", svc.Name)
		}
		parts[i] = fmt.Sprintf("step %d/%d: %d%%%s", i+1, len(steps), st.Share, what)
		if len(ws) > 0 {
			parts[i] += fmt.Sprintf(" (weights target/source per instance: %s)", strings.Join(ws, ", "))
		}
	}
	return fmt.Sprintf("a release rolls out in %d steps, each raise-then-lower on every binding; %d consecutive failed checks of the target at a step take all traffic back to the source group at once: %s",
		len(steps), svc.Verify.FailureThreshold, strings.Join(parts, "; "))
}

func doneNote(st State) string {
	if a := st.Applied; a != nil {
		return fmt.Sprintf("journal closed; group %s serves %s; the other group stays warm at its version as the rollback target", a.Active, a.Version)
	}
	return "journal closed"
}

func probeText(svc *spec.Service) string {
	if svc.Health.HTTP == nil {
		return "-"
	}
	return "GET " + svc.Health.HTTP.Path
}

func versionText(svc *spec.Service) string {
	if k := svc.Health.Version.NacosMetadata; k != "" {
		return "Nacos metadata " + k
	}
	return "GET " + svc.Health.Version.HTTP
}

func drainText(svc *spec.Service) string {
	d := svc.Drain
	var ev []string
	for _, b := range svc.Traffic {
		if k, ok := b.LBKind(); ok && k.Sessions {
			ev = append(ev, b.Key()+" current sessions")
		}
	}
	if d.Metrics != "" {
		ev = append(ev, "in-flight requests and WebSockets from GET "+d.Metrics)
	}
	if len(ev) == 0 {
		ev = append(ev, "none: only the waits apply")
	}
	return fmt.Sprintf("wait at least drain.propagation %s, then until evidence (%s) stays 0 for drain.quiet %s; at drain.timeout %s close what is left",
		d.Propagation, strings.Join(ev, "; "), d.Quiet, d.Timeout)
}

func describeLive(v view) string {
	var parts []string
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		state := "partly serving"
		switch {
		case v.groupOn(g):
			state = "serving"
		case v.groupOff(g):
			state = "idle"
		}
		ver := "version unknown"
		if v.versionKnown(g) {
			ver = orDash(v.groupVersion(g))
		}
		parts = append(parts, fmt.Sprintf("group %s %s at %s", g, state, ver))
	}
	for _, r := range v.previewRoutes() {
		parts = append(parts, fmt.Sprintf("preview route %s on %s", r.Binding, r.Group))
	}
	return strings.Join(parts, "; ")
}

func cloneLive(l *Live) *Live {
	c := &Live{Probes: map[string]providers.ProbeResult{}, Evidence: map[string]*providers.Evidence{}}
	for _, bl := range l.Bindings {
		c.Bindings = append(c.Bindings, BindingLive{Binding: bl.Binding, Backends: slices.Clone(bl.Backends)})
	}
	if l.Registry != nil {
		r := providers.RegistryView{Visible: slices.Clone(l.Registry.Visible)}
		for _, ri := range l.Registry.Instances {
			md := map[string]string{}
			for k, v := range ri.Metadata {
				md[k] = v
			}
			ri.Metadata = md
			r.Instances = append(r.Instances, ri)
		}
		c.Registry = &r
	}
	for k, v := range l.Probes {
		c.Probes[k] = v
	}
	return c
}

// simulate applies a step to a Live as if it succeeded.
func simulate(svc *spec.Service, l *Live, s *Step) {
	switch s.Action {
	case ActionDeploy:
		for _, in := range s.Instances {
			l.Probes[in.Addr()] = providers.ProbeResult{Healthy: true, Version: s.Version}
			if l.Registry != nil {
				for i := range l.Registry.Instances {
					ri := &l.Registry.Instances[i]
					if ri.IP == in.IP && ri.Port == in.Port && svc.Health.Version.NacosMetadata != "" {
						ri.Metadata[svc.Health.Version.NacosMetadata] = s.Version
					}
				}
			}
		}
	case ActionSetWeights:
		for i := range l.Bindings {
			if l.Bindings[i].Binding.Key() != s.Binding.Key() {
				continue
			}
			for j := range l.Bindings[i].Backends {
				for _, c := range s.Weights {
					if l.Bindings[i].Backends[j].ID == c.ID {
						l.Bindings[i].Backends[j].Weight = c.Weight
					}
				}
			}
		}
	case ActionSetEnabled:
		for _, in := range s.Instances {
			for i := range l.Registry.Instances {
				ri := &l.Registry.Instances[i]
				if ri.IP == in.IP && ri.Port == in.Port {
					ri.Enabled = s.Enabled
				}
			}
		}
		l.Registry.Visible = nil
		for _, ri := range l.Registry.Instances {
			if ri.Enabled && ri.Healthy {
				l.Registry.Visible = append(l.Registry.Visible, providers.Addr{IP: ri.IP, Port: ri.Port})
			}
		}
		if l.Registry.Visible == nil {
			l.Registry.Visible = []providers.Addr{}
		}
	}
	assumeDrained(svc, l)
}

// assumeDrained sets every drain evidence to zero.
func assumeDrained(svc *spec.Service, l *Live) {
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Groups.Get(g) {
			l.Evidence[in.Addr()] = &providers.Evidence{}
		}
	}
	for i := range l.Bindings {
		for j := range l.Bindings[i].Backends {
			if l.Bindings[i].Backends[j].Sessions > 0 {
				l.Bindings[i].Backends[j].Sessions = 0
			}
		}
	}
}

// Render writes previews for people on call: what moves from where to
// where, which calls, which waits and their bounds.
func Render(pvs []Preview) string {
	var b strings.Builder
	for i, pv := range pvs {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s  (%s)\n", pv.Service, pv.Source)
		fmt.Fprintf(&b, "  live:     %s\n", pv.Live)
		fmt.Fprintf(&b, "  desired:  %s\n", pv.Desired)
		switch {
		case pv.Stalled != "":
			fmt.Fprintf(&b, "  STALLED:  %s\n", pv.Stalled)
		case pv.InSync:
			fmt.Fprintf(&b, "  in sync:  nothing to do\n")
		case len(pv.Phases) == 0:
			fmt.Fprintf(&b, "  no action: %s\n", pv.Summary)
		default:
			fmt.Fprintf(&b, "  plan:     %s\n", strings.TrimSuffix(pv.Summary, ", phase "+string(pv.Phases[0].Phase)))
		}
		for _, d := range pv.Drift {
			fmt.Fprintf(&b, "  drift:    %s\n", d)
		}
		for n, pp := range pv.Phases {
			lines := append([]string(nil), pp.Calls...)
			if pp.Note != "" {
				lines = append(lines, pp.Note)
			}
			for j, l := range lines {
				head := fmt.Sprintf("    %d. %-8s", n+1, pp.Phase)
				if j > 0 {
					head = strings.Repeat(" ", len(head))
				}
				fmt.Fprintf(&b, "%s %s\n", head, l)
			}
		}
	}
	return b.String()
}
