package reconcile

import (
	"fmt"
	"slices"
)

// verdict is what failing steps do to a transition.
type verdict int

const (
	retryStep      verdict = iota // the step is retried (with backoff)
	skipStep                      // the phase goes on without the step
	undoTransition                // the transition is undone
)

// onStepFailure is the one rule for when failing steps end a transition,
// read after t.StepFailures counted the latest failure of step s (stalled:
// the failure was one retrying cannot help). why describes an undo for the
// journal and the events.
//
//   - a deploy that reported failure is not retried: the group is in an
//     unknown state, and the source never stopped serving;
//   - before the shift, MaxStepFailures failures in a row, or one that
//     stalls, undo the transition (nothing has moved yet);
//   - in the shift, MaxShiftFailures failures in a row undo it (the
//     source's weights are restored);
//   - at the drain ceiling, closing sessions that keeps failing is given up
//     (the sessions end with the LB's own timeout) rather than holding the
//     release forever;
//   - any other failure is retried: from the disable on, the target serves
//     and undoing would move traffic again.
func onStepFailure(t *Transition, s *Step, stalled bool, err error) (v verdict, why string) {
	switch {
	case s.Action == ActionDeploy:
		return undoTransition, fmt.Sprintf("deploy of %s to group %s failed: %v", s.Version, s.Group, err)
	case t.Phase.index() < PhaseShift.index() && (t.StepFailures >= MaxStepFailures || stalled):
		return undoTransition, fmt.Sprintf("%s failed: %v", s.Describe, err)
	case t.Phase == PhaseShift && t.StepFailures >= MaxShiftFailures:
		return undoTransition, fmt.Sprintf("shifting weights to group %s failed %d times: %v", t.To, t.StepFailures, err)
	case s.Action == ActionCloseSessions && t.StepFailures >= MaxStepFailures:
		return skipStep, ""
	}
	return retryStep, ""
}

// closeGivenUp reports whether closing sessions on binding key is done or
// given up on.
func closeGivenUp(t *Transition, key string) bool {
	if slices.Contains(t.Drain.ClosedOn, key) {
		return true
	}
	v, _ := onStepFailure(t, &Step{Action: ActionCloseSessions}, false, nil)
	return v == skipStep
}
