package reconcile

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Condition types, after Flux and Kubernetes.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// Condition is one observed aspect of a service.
type Condition struct {
	Type    string    `json:"type"`
	Status  bool      `json:"status"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}

// Status is what the last pass saw and decided for one service.
type Status struct {
	Service         string                  `json:"service"`
	Revision        Revision                `json:"revision"`        // desired revision
	AppliedRevision string                  `json:"appliedRevision"` // revision of the last completed transition
	DesiredActive   spec.Group              `json:"desiredActive"`
	DesiredVersion  string                  `json:"desiredVersion"`
	Groups          spec.Groups             `json:"groups"` // desired membership, to tell the groups apart in Bindings and Registry
	LiveActive      Active                  `json:"liveActive,omitempty"`
	Versions        map[spec.Group]string   `json:"versions,omitempty"` // "" when unknown or mixed
	Bindings        []BindingLive           `json:"bindings,omitempty"`
	Preview         []PreviewRoute          `json:"preview,omitempty"` // the group each preview binding carries
	Registry        *providers.RegistryView `json:"registry,omitempty"`
	Phase           Phase                   `json:"phase,omitempty"`
	Transition      *Transition             `json:"transition,omitempty"`
	Phases          []Phase                 `json:"phases,omitempty"` // of the transition, in order, done left out (transitionPhases)
	Summary         string                  `json:"summary"`
	Step            string                  `json:"step,omitempty"`
	Message         string                  `json:"message,omitempty"`
	Evidence        string                  `json:"evidence,omitempty"` // drain evidence of the source group
	// Probed is the last probe of each group, also of the idle one, which
	// a quiet pass does not probe: it is read at start and after each
	// transition.
	Probed     map[spec.Group]GroupProbe `json:"probed,omitempty"`
	Drift      []string                  `json:"drift,omitempty"`
	Suspended  bool                      `json:"suspended,omitempty"`
	Conditions []Condition               `json:"conditions"`
	LastPass   time.Time                 `json:"lastPass"`
	InSync     bool                      `json:"inSync"`

	// Smoke is the run of gates.smoke of the transition, or the last one.
	Smoke *SmokeProgress `json:"smoke,omitempty"`

	mismatches []string // servers whose id and ip:port disagree with the spec
}

// Ready reports the Ready condition.
func (s *Status) Ready() bool {
	for _, c := range s.Conditions {
		if c.Type == ConditionReady {
			return c.Status
		}
	}
	return false
}

func (s *Status) observed(svc *spec.Service, live *Live, metadataKeys []string) {
	v := view{svc: svc, live: live}
	s.Groups = svc.Groups
	s.LiveActive = v.active()
	s.Bindings = live.Bindings
	s.Preview = v.previewRoutes()
	s.Registry = shownRegistry(live.Registry, svc.Health.Version.NacosMetadata, metadataKeys)
	s.mismatches = v.mismatches()
	s.Versions = map[spec.Group]string{}
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		if v.versionKnown(g) {
			s.Versions[g] = v.groupVersion(g)
		}
	}
}

// GroupProbe is what the last probe of every instance of a group said.
type GroupProbe struct {
	Version string    `json:"version"` // "" when unknown or mixed
	Healthy bool      `json:"healthy"` // every instance healthy
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
	// Applied is the revision of the last completed transition when the
	// group was probed; a newer one makes the next quiet pass probe it again.
	Applied string `json:"applied,omitempty"`
}

// needs is NeedsFor, plus a probe of each group that was not probed since
// the daemon started or since the last transition completed, so that the
// status shows the idle group's version and health too.
func (r *Reconciler) needs(svc *spec.Service, st State) Needs {
	n := NeedsFor(svc, st)
	n.Analysis = AnalysisDue(svc, st, r.now())
	if st.Transition != nil {
		return n
	}
	r.statusMu.RLock()
	defer r.statusMu.RUnlock()
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		if p, ok := r.probed[svc.Name][g]; !ok || p.Applied != appliedRevision(st) {
			n.Probe[g] = true
		}
	}
	return n
}

func appliedRevision(st State) string {
	if st.Applied == nil {
		return ""
	}
	return st.Applied.Revision
}

// rememberProbes keeps the probe of every group this pass probed whole and
// returns the last one of each group.
func (r *Reconciler) rememberProbes(svc *spec.Service, st State, live *Live, now time.Time) map[spec.Group]GroupProbe {
	v := view{svc: svc, live: live}
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if r.probed == nil {
		r.probed = map[string]map[spec.Group]GroupProbe{}
	}
	seen := r.probed[svc.Name]
	if seen == nil {
		seen = map[spec.Group]GroupProbe{}
		r.probed[svc.Name] = seen
	}
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		gp := GroupProbe{Healthy: true, At: now, Applied: appliedRevision(st)}
		whole := len(svc.Groups.Get(g)) > 0
		for _, in := range svc.Groups.Get(g) {
			p, ok := live.Probes[in.Addr()]
			if !ok {
				whole = false
				break
			}
			if !p.Healthy && gp.Healthy {
				gp.Healthy, gp.Detail = false, fmt.Sprintf("%s: %s", in, p.Detail)
			}
		}
		if !whole {
			continue
		}
		if v.versionKnown(g) {
			gp.Version = v.groupVersion(g)
		}
		seen[g] = gp
	}
	out := make(map[spec.Group]GroupProbe, len(seen))
	for g, p := range seen {
		out[g] = p
	}
	return out
}

// probesHold marks the probes a pass made at time at as probes of the
// applied revision applied, so that the next pass does not probe again.
func (r *Reconciler) probesHold(service string, at time.Time, applied string) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	for g, p := range r.probed[service] {
		if p.At.Equal(at) {
			p.Applied = applied
			r.probed[service][g] = p
		}
	}
}

func (s *Status) planned(svc *spec.Service, p Plan) {
	s.Summary = p.Summary
	s.Drift = p.Drift
	s.InSync = p.InSync
	s.Transition = p.Next.Transition
	s.Phases = transitionPhases(svc, p.Next.Transition)
	s.Smoke = shownSmoke(p.Next)
	s.Phase = p.Phase
	if p.Step != nil {
		s.Step = p.Step.Describe
	}
	if p.Wait != nil {
		s.Message = p.Wait.Message
		if p.Wait.Reason == "Draining" {
			s.Evidence = p.Wait.Message
		}
	}
	if p.Next.Applied != nil {
		s.AppliedRevision = p.Next.Applied.Revision
	}
}

// transitionPhases lists the phases t goes through, in order, done left
// out: a release gate only when t is a release and svc sets the gate (the
// preview route with a preview binding, the analysis phase with
// gates.analysis.beforeShift); the others pass unseen (gates.go). Nil
// without a transition.
func transitionPhases(svc *spec.Service, t *Transition) []Phase {
	if t == nil {
		return nil
	}
	g := svc.Gates
	applies := map[Phase]bool{
		PhasePreviewRoute: hasPreview(svc),
		PhaseSmoke:        g.Smoke != nil,
		PhaseAnalysis:     g.Analysis != nil && g.Analysis.BeforeShift > 0,
		PhaseApproval:     g.Approval != nil,
	}
	out := make([]Phase, 0, len(Phases))
	for _, ph := range Phases {
		if gate, ok := applies[ph]; ph == PhaseDone || ok && (!gate || !gated(t)) {
			continue
		}
		out = append(out, ph)
	}
	return out
}

// setStatus stores the status of a pass with its conditions, keeping the
// time each condition last changed.
func (r *Reconciler) setStatus(s *Status, st State, err error) {
	ready := Condition{Type: ConditionReady, Status: s.InSync && err == nil, Reason: "InSync", Message: s.Summary}
	reconciling := Condition{Type: ConditionReconciling, Reason: "Idle"}
	stalled := Condition{Type: ConditionStalled, Reason: "None"}
	if a := st.Applied; a != nil {
		if s.AppliedRevision == "" {
			s.AppliedRevision = a.Revision
		}
		// A quiet pass does not probe: the group Tandem brought live runs
		// the version it verified, unless a probe said otherwise.
		if _, seen := s.Versions[a.Active]; !seen && s.LiveActive == Active(a.Active) && s.Versions != nil {
			s.Versions[a.Active] = a.Version
		}
	}
	// The idle group runs what it ran when last probed: nothing but a
	// deploy, which Tandem makes itself, changes it.
	for g, p := range s.Probed {
		if _, seen := s.Versions[g]; !seen && s.Versions != nil && p.Version != "" {
			s.Versions[g] = p.Version
		}
	}
	switch {
	case s.Suspended:
		ready.Reason = "Suspended"
	case len(s.mismatches) > 0:
		ready.Reason, ready.Message = "ServerMismatch", strings.Join(s.mismatches, "; ")
	case len(s.Drift) > 0 && s.Transition == nil:
		ready.Reason, ready.Message = "Drift", s.Summary
	case !ready.Status:
		ready.Reason = "Progressing"
	}
	if s.Transition != nil {
		reconciling = Condition{Type: ConditionReconciling, Status: true, Reason: string(s.Transition.Kind), Message: s.Summary}
	}
	switch Classify(err) {
	case ClassStalled:
		stalled = Condition{Type: ConditionStalled, Status: true, Reason: Reason(err), Message: err.Error()}
		ready.Reason, ready.Message = Reason(err), err.Error()
		s.Message = err.Error()
	case ClassWaiting:
		var w *WaitingError
		if errors.As(err, &w) {
			reconciling.Status, reconciling.Reason, reconciling.Message = true, w.Reason, w.Message
		}
	case ClassTransient:
		ready.Reason, ready.Message = "TransientError", err.Error()
		reconciling.Status, reconciling.Reason, reconciling.Message = true, "Retrying", err.Error()
		s.Message = err.Error()
	}
	now := s.LastPass
	r.statusMu.Lock()
	if r.status == nil {
		r.status = map[string]*Status{}
	}
	prev := r.status[s.Service]
	s.Conditions = []Condition{ready, reconciling, stalled}
	for i := range s.Conditions {
		c := &s.Conditions[i]
		c.Since = now
		if prev != nil {
			for _, pc := range prev.Conditions {
				if pc.Type == c.Type && pc.Status == c.Status {
					c.Since = pc.Since
				}
			}
		}
	}
	r.status[s.Service] = s
	e := r.stallChange(s, err)
	r.statusMu.Unlock()
	if e != nil {
		r.record(*e)
	}
}

// stallChange returns the event that announces a new stall of s (once per
// stall reason, not every pass) or the end of one, or nil. A transient
// error says nothing about a stall: it neither starts nor ends one. The
// caller holds statusMu.
func (r *Reconciler) stallChange(s *Status, err error) *Event {
	if r.stalls == nil {
		r.stalls = map[string]string{}
	}
	prev, was := r.stalls[s.Service]
	e := &Event{Time: s.LastPass, Service: s.Service, Revision: s.Revision.Hash, Author: s.Revision.Author, Subject: s.Revision.Subject}
	if t := s.Transition; t != nil {
		e.Transition, e.Phase = t.ID, t.Phase
	}
	switch class := Classify(err); {
	case class == ClassStalled && (!was || prev != Reason(err)):
		r.stalls[s.Service] = Reason(err)
		e.Type, e.Reason, e.Message = EventWarning, ReasonStalled, err.Error()
	case was && (class == ClassNone || class == ClassWaiting):
		delete(r.stalls, s.Service)
		e.Type, e.Reason, e.Message = EventNormal, ReasonStallResolved, fmt.Sprintf("no longer stalled (%s): %s", prev, s.Summary)
	default:
		return nil
	}
	return e
}

// Status returns the last status of a service.
func (r *Reconciler) Status(service string) (Status, bool) {
	r.statusMu.RLock()
	defer r.statusMu.RUnlock()
	s, ok := r.status[service]
	if !ok {
		return Status{}, false
	}
	return *s, true
}

// Statuses returns the last status of every service, by name.
func (r *Reconciler) Statuses() []Status {
	r.statusMu.RLock()
	defer r.statusMu.RUnlock()
	out := make([]Status, 0, len(r.status))
	for _, s := range r.status {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// Forget drops the status of a service that left the desired state.
func (r *Reconciler) Forget(service string) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	delete(r.status, service)
	delete(r.drift, service)
	delete(r.stalls, service)
}

// redactedValue replaces a registry metadata value that status does not
// show.
const redactedValue = "<redacted>"

// shownRegistry is the registry view as status shows it: a copy in which
// only the metadata values of the version key and of keys are kept; the
// other keys stay, with their values redacted. Applications register what
// they like as metadata (credentials included), and status is served.
func shownRegistry(v *providers.RegistryView, versionKey string, keys []string) *providers.RegistryView {
	if v == nil {
		return nil
	}
	out := &providers.RegistryView{Instances: slices.Clone(v.Instances), Visible: v.Visible}
	for i, in := range out.Instances {
		if in.Metadata != nil {
			md := make(map[string]string, len(in.Metadata))
			for k, val := range in.Metadata {
				if k != versionKey && !slices.Contains(keys, k) {
					val = redactedValue
				}
				md[k] = val
			}
			in.Metadata = md
		}
		out.Instances[i] = in
	}
	return out
}
