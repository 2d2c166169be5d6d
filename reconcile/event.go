package reconcile

import "time"

// Event is one line of the audit trail: what Tandem did or saw, when, and
// for which revision of the desired state.
type Event struct {
	Time       time.Time     `json:"time"`
	Service    string        `json:"service"`
	Type       string        `json:"type"`   // Normal | Warning
	Reason     string        `json:"reason"` // CamelCase, e.g. TransitionStarted, PhaseCompleted, DriftDetected
	Message    string        `json:"message"`
	Revision   string        `json:"revision,omitempty"`
	Author     string        `json:"author,omitempty"`
	Subject    string        `json:"subject,omitempty"`
	Transition string        `json:"transition,omitempty"`
	Phase      Phase         `json:"phase,omitempty"`
	Duration   time.Duration `json:"duration,omitempty"`
	// Deadline, on ApprovalPending, is when the pause ends on its own
	// (zero: never); it bounds the expiry of the chat links.
	Deadline time.Time `json:"deadline,omitzero"`
	// PauseStep, on ApprovalPending, is the rollout step (from 1) whose
	// manual pause it announces; 0 for the approval gate. The chat links
	// are bound to it.
	PauseStep int `json:"pauseStep,omitempty"`
}

// Event types.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Event reasons emitted by the engine.
const (
	ReasonTransitionStarted   = "TransitionStarted"
	ReasonPhaseCompleted      = "PhaseCompleted"
	ReasonStepApplied         = "StepApplied"
	ReasonStepFailed          = "StepFailed"
	ReasonTransitionSucceeded = "TransitionSucceeded"
	ReasonTransitionAborted   = "TransitionAborted"
	ReasonSwappedBack         = "SwappedBack"
	ReasonAbortStarted        = "AbortStarted"
	ReasonSwapBackStarted     = "SwapBackStarted"
	ReasonDrainCeiling        = "DrainCeiling"
	ReasonLBHealthy           = "LBHealthy"   // the LB reports the raised target group healthy on a binding
	ReasonRolloutStep         = "RolloutStep" // a rollout began, reached a step, or skipped its rest
	ReasonDriftDetected       = "DriftDetected"
	ReasonDriftResolved       = "DriftResolved"
	ReasonStalled             = "Stalled"       // a person must act; announced once per stall
	ReasonStallResolved       = "StallResolved" // the stall announced last is over
	ReasonRevisionRejected    = "RevisionRejected"
	ReasonGitFetchFailed      = "GitFetchFailed"    // the daemon: the desired state cannot be fetched
	ReasonGitFetchRecovered   = "GitFetchRecovered" // the daemon: it is fetched again
	ReasonAdopted             = "Adopted"
	ReasonRetryRequested      = "RetryRequested" // the API: a failed release is forgotten
	ReasonSuspended           = "Suspended"      // the API: suspension journaled
	ReasonResumed             = "Resumed"        // the API: suspension lifted
)

// Recorder receives events. Implementations must not block for long.
type Recorder interface {
	Record(Event)
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(Event)

// Record calls f.
func (f RecorderFunc) Record(e Event) { f(e) }
