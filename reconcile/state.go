package reconcile

import (
	"slices"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// Phase is a step of the drain-and-swap transition (README, "The transition").
type Phase string

const (
	PhasePrepare Phase = "prepare" // deploy the target group if it does not run the version
	PhaseVerify  Phase = "verify"  // health and version of every target instance
	// The release gates, between verify and the first traffic (gates.go):
	// each passes at once, unseen, when the service does not configure it or
	// the transition is not a release.
	PhasePreviewRoute Phase = "preview"  // the preview route's binding follows the target group
	PhaseSmoke        Phase = "smoke"    // smoke tests against every target instance
	PhaseAnalysis     Phase = "analysis" // metric analysis before the shift
	PhaseApproval     Phase = "approval" // paused until promoted or aborted
	PhaseEnable       Phase = "enable"   // registry: target enabled and visible
	PhaseShift        Phase = "shift"    // every binding: target raised, confirmed healthy by the LB, then source to 0
	PhaseDisable      Phase = "disable"  // registry: source disabled and gone from the subscription
	PhaseDrain        Phase = "drain"    // source's in-flight evidence at 0, within bounds
	PhaseWatch        Phase = "watch"    // target keeps healthy for the verify window
	PhaseDone         Phase = "done"
)

// Phases in order.
var Phases = []Phase{PhasePrepare, PhaseVerify, PhasePreviewRoute, PhaseSmoke, PhaseAnalysis, PhaseApproval, PhaseEnable, PhaseShift, PhaseDisable, PhaseDrain, PhaseWatch, PhaseDone}

func (p Phase) index() int {
	for i, q := range Phases {
		if q == p {
			return i
		}
	}
	return -1
}

// Kind is why a transition runs.
type Kind string

const (
	KindRelease  Kind = "release"   // a new desired active group (deploys it when needed)
	KindHeal     Kind = "heal"      // drift repair towards the desired, already-serving group
	KindAbort    Kind = "abort"     // back to the source after a failure before traffic settled
	KindSwapBack Kind = "swap-back" // back to the still-warm source after the watch failed
)

// reverse reports whether the transition undoes a failed one.
func (k Kind) reverse() bool { return k == KindAbort || k == KindSwapBack }

// State is everything Tandem remembers about one service between passes. It
// is journaled (atomically, before any side effect) so that a restart at any
// point resumes to the same end state (invariant 5).
type State struct {
	Service    string      `json:"service"`
	Transition *Transition `json:"transition,omitempty"` // in progress; nil when idle
	Applied    *Applied    `json:"applied,omitempty"`    // what Tandem last brought live
	Failed     *Failed     `json:"failed,omitempty"`     // a desired state that failed and is not retried
	// Suspended is a suspension asked for through the API. It is journaled
	// with the rest, so that it holds across a restart and, under HA, a
	// change of leader; the spec's own suspend is read from Git instead.
	Suspended *Suspension `json:"suspended,omitempty"`
	// LastSmoke is the last judged run of gates.smoke, kept for the status
	// once its transition has ended.
	LastSmoke *SmokeProgress `json:"lastSmoke,omitempty"`
}

// Suspension records when reconciliation was suspended through the API.
type Suspension struct {
	At time.Time `json:"at"`
}

// Applied is the last state a transition completed.
type Applied struct {
	Active   spec.Group `json:"active"`
	Version  string     `json:"version"`
	Revision string     `json:"revision,omitempty"`
	At       time.Time  `json:"at"`
}

// Failed is a desired (active, version) whose transition failed. It is not
// retried until the desired state changes or a sync with retry is requested.
type Failed struct {
	Kind     Kind       `json:"kind"` // release or heal
	Active   spec.Group `json:"active"`
	Version  string     `json:"version"`
	Revision string     `json:"revision,omitempty"`
	Reason   string     `json:"reason"`
	At       time.Time  `json:"at"`
}

// Transition is one drain-and-swap in progress.
type Transition struct {
	ID          string     `json:"id"`
	Kind        Kind       `json:"kind"`
	From        spec.Group `json:"from"`
	To          spec.Group `json:"to"`
	Version     string     `json:"version"`     // version To must run
	FromVersion string     `json:"fromVersion"` // version From ran when the transition began (the rollback target)
	Revision    string     `json:"revision,omitempty"`
	Author      string     `json:"author,omitempty"`
	Subject     string     `json:"subject,omitempty"`
	Reason      string     `json:"reason,omitempty"` // for abort and swap-back: what failed
	// Desired is the (active, version) that asked for the transition; a
	// reverse transition keeps the failed one to record it when it ends.
	DesiredActive  spec.Group `json:"desiredActive"`
	DesiredVersion string     `json:"desiredVersion"`

	Phase      Phase                   `json:"phase"`
	Started    time.Time               `json:"started"`
	PhaseSince time.Time               `json:"phaseSince"`
	PhaseTimes map[Phase]time.Duration `json:"phaseTimes,omitempty"` // finished phases

	// Deploy is the deploy of the target group (prepare).
	Deploy DeployProgress `json:"deploy,omitzero"`
	// Served is set once the target group may have received traffic (it was
	// enabled or weighted); a reverse transition must then drain it.
	Served       bool `json:"served,omitempty"`
	StepFailures int  `json:"stepFailures,omitempty"` // consecutive failed steps in this phase
	// Drain is the drain of the source group (disable and drain).
	Drain         DrainProgress `json:"drain,omitzero"`
	WatchFailures int           `json:"watchFailures,omitempty"`
	// PreviewFailures counts the target's consecutive failed health checks
	// while the preview route carries it before the shift (gate_preview.go).
	PreviewFailures int `json:"previewFailures,omitempty"`
	// ShiftWait is set between the raise and the lower of a binding (see
	// shift.go); absent in journals written before make-before-break.
	ShiftWait *ShiftWait `json:"shiftWait,omitempty"`
	// Rollout is the position of a release that shifts in steps (see
	// rollout.go); absent for a shift all at once and in older journals.
	Rollout *RolloutProgress `json:"rollout,omitempty"`
	// Smoke is the run of gates.smoke on the target group (gate_smoke.go).
	Smoke *SmokeProgress `json:"smoke,omitempty"`
	// Failure is set when a step up to the shift failed for good (see
	// onStepFailure), or a revert superseded the release; the next pass
	// undoes the transition.
	Failure string `json:"failure,omitempty"`
	// Analysis is the metric analysis of the current stage (before the
	// shift, or the watch), see gate_analysis.go; a reverse transition
	// keeps the one that failed, to show it.
	Analysis *AnalysisProgress `json:"analysis,omitempty"`
	// Approval is the pause of the approval gate (gate_approval.go); set
	// once the release reaches the gate.
	Approval *ApprovalProgress `json:"approval,omitempty"`
}

// Limits of the engine. They bound retries that are not covered by a
// duration in the spec.
const (
	MaxShiftFailures = 5  // then the source's weights are restored
	MaxStepFailures  = 10 // enable/verify failures before the transition aborts
	// PollInterval is how often a wait samples the apps' probes, their
	// versions and the LB's health (each sample costs requests to the apps
	// or the LB's API); such a wait also ends exactly at its bound. It is
	// the cadence of the checks that count towards verify.failureThreshold.
	PollInterval = time.Second
	// EvidencePoll is how often a drain samples its evidence, and a wait on
	// a registry that does not push its changes samples the registry: the
	// wait ends at most this long after the evidence allows it.
	EvidencePoll = 250 * time.Millisecond
	// EvidenceFastPoll is how often a drain samples its evidence while the
	// evidence may end it, for EvidenceFastFor after drain.propagation
	// (evidenceInterval): sessions close within a few hundred milliseconds
	// of the drain signal, and each sample costs the reads of one pass.
	EvidenceFastPoll = 50 * time.Millisecond
	EvidenceFastFor  = time.Second
	// DependencyBackstop is when a service waiting for its dependencies
	// (after:) looks again if no pass of theirs woke it first.
	DependencyBackstop = 30 * time.Second
)

// advance moves t to phase p at now, recording how long the last phase took.
func (t *Transition) advance(p Phase, now time.Time) {
	if t.PhaseTimes == nil {
		t.PhaseTimes = map[Phase]time.Duration{}
	}
	t.PhaseTimes[t.Phase] += now.Sub(t.PhaseSince)
	t.Phase = p
	t.PhaseSince = now
	t.StepFailures = 0
}

func (t *Transition) clone() *Transition {
	if t == nil {
		return nil
	}
	c := *t
	c.Drain.ClosedOn = slices.Clone(t.Drain.ClosedOn)
	if t.ShiftWait != nil {
		w := *t.ShiftWait
		c.ShiftWait = &w
	}
	c.Rollout = t.Rollout.clone()
	c.Analysis = t.Analysis.clone()
	c.Approval = t.Approval.clone()
	c.Smoke = t.Smoke.clone()
	if t.PhaseTimes != nil {
		c.PhaseTimes = make(map[Phase]time.Duration, len(t.PhaseTimes))
		for k, v := range t.PhaseTimes {
			c.PhaseTimes[k] = v
		}
	}
	return &c
}

// Clone returns a deep copy.
func (s State) Clone() State {
	c := s
	c.Transition = s.Transition.clone()
	if s.Applied != nil {
		a := *s.Applied
		c.Applied = &a
	}
	if s.Failed != nil {
		f := *s.Failed
		c.Failed = &f
	}
	if s.Suspended != nil {
		p := *s.Suspended
		c.Suspended = &p
	}
	c.LastSmoke = s.LastSmoke.clone()
	return c
}
