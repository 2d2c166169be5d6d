package reconcile_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// manualRollout holds step 1 (20%) for 10s, then waits for a decision;
// step 2 (60%) passes on its own after 30s.
const manualRollout = `
rollout:
  steps:
    - {traffic: 20, hold: 10s, pause: manual}
    - {traffic: 60, pause: 30s}
`

// untilStepPaused runs passes until the release of svc waits for a
// decision at a rollout step, and returns the transition and the step.
func (e *env) untilStepPaused(t *testing.T, svc *spec.Service) (*reconcile.Transition, int) {
	t.Helper()
	e.passUntil(t, svc, 1000, func() bool {
		a, step := e.state(svc.Name).Transition.OpenPause()
		return a != nil && step > 0
	})
	tr := e.state(svc.Name).Transition
	_, step := tr.OpenPause()
	return tr, step
}

func TestAManualStepHoldsUntilPromoted(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", manualRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", manualRollout)
	alb := want.Traffic[0]

	paused, step := e.untilStepPaused(t, want)
	require.Equal(t, 1, step)
	r := paused.Rollout
	require.Equal(t, reconcile.PhaseShift, paused.Phase)
	require.False(t, r.Pause.Since.Before(r.Reached.Add(10e9)), "the pause opens once the step's hold is over")
	require.InDelta(t, 20, share(e, want, alb, spec.GroupB), 1)
	pending := e.eventsOf(reconcile.ReasonApprovalPending)
	require.Len(t, pending, 1)
	require.Equal(t, 1, pending[0].PauseStep, "the chat links are bound to the step")
	require.Contains(t, pending[0].Message, "is paused at step 1 (share 20%) for approval")
	st, _ := e.rec.Status(want.Name)
	require.True(t, st.Transition.Paused(), "the status shows the pause")

	// Many passes later: still paused, the health still watched every
	// PollInterval, no weight changed.
	writes := e.lbAndRegistryWrites()
	before := e.world.Clock().Now()
	for range 30 {
		require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	}
	require.Equal(t, 30*reconcile.PollInterval, e.world.Clock().Now().Sub(before))
	require.Equal(t, writes, e.lbAndRegistryWrites())
	require.True(t, e.state(want.Name).Transition.Paused())

	// A decision for the approval gate (a stale link or retry) does not
	// promote the step.
	e.decideAt(want, paused.ID, 0, spec.ApprovalPromote, "link (nonce n0)")
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	refused := e.eventsOf(reconcile.ReasonApprovalRefused)
	require.Len(t, refused, 1)
	require.Contains(t, refused[0].Message, "it was made for the approval gate, and transition "+paused.ID+" is paused at rollout step 1")
	require.Equal(t, writes, e.lbAndRegistryWrites())

	// A restart resumes the same pause, not announced again.
	e.rec = e.reconciler()
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	require.Equal(t, paused.Rollout.Pause, e.state(want.Name).Transition.Rollout.Pause)
	require.Len(t, e.eventsOf(reconcile.ReasonApprovalPending), 1)

	e.decideAt(want, paused.ID, 1, spec.ApprovalPromote, "api (token holder)")
	require.NoError(t, e.converge(want, 1000))
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())
	promoted := e.eventsOf(reconcile.ReasonPromoted)
	require.Len(t, promoted, 1)
	require.Contains(t, promoted[0].Message, "promoted at rollout step 1/3 (20%) by api (token holder)")
	var reached []string
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonRolloutStep && strings.Contains(ev.Message, "reached") {
			reached = append(reached, ev.Message)
		}
	}
	require.Len(t, reached, 3, "every step reached after the promote: %q", reached)
}

func TestAbortAtAManualStepTakesAllTrafficBackAtOnce(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", manualRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", manualRollout)
	paused, _ := e.untilStepPaused(t, want)
	before := len(e.steps())

	e.decide(want, paused.ID, spec.ApprovalAbort, "cli alice@ops")
	err := e.converge(want, 1000)
	require.ErrorContains(t, err, "aborted at rollout step 1/3 (20%) by cli alice@ops; all traffic goes back to group A")
	requireLive(t, e, old)
	require.Empty(t, e.world.Violations())
	st := e.state(want.Name)
	require.NotNil(t, st.Failed, "an aborted release is not tried again until Git changes")
	require.Contains(t, e.reasons(), reconcile.ReasonAbortStarted)
	// A kept its full weight at 20% (the step only raised B): the abort
	// takes B to 0 on each binding, one call per binding.
	var back []string
	for _, s := range e.steps()[before:] {
		if strings.Contains(s, "group") && (strings.HasPrefix(s, "raise") || strings.HasPrefix(s, "lower")) {
			back = append(back, s[:13])
		}
	}
	require.Equal(t, []string{"lower group B", "lower group B"}, back, "%q", e.steps()[before:])
}

func TestARevertOrANewReleaseEndsAManualStepPause(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", manualRollout)
	t.Run("revert", func(t *testing.T) {
		e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
		e.untilStepPaused(t, rolloutService(t, spec.GroupB, "1.1.0", manualRollout))
		require.NoError(t, e.converge(old, 1000))
		requireLive(t, e, old)
		require.Nil(t, e.state(old.Name).Failed, "Git moved on: nothing is remembered as failed")
	})
	t.Run("new release", func(t *testing.T) {
		e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
		e.untilStepPaused(t, rolloutService(t, spec.GroupB, "1.1.0", manualRollout))
		next := rolloutService(t, spec.GroupB, "1.2.0", manualRollout)
		_ = e.pass(next)
		aborted := e.eventsOf(reconcile.ReasonAborted)
		require.Len(t, aborted, 1)
		require.Contains(t, aborted[0].Message, "by revision rev-1.2.0, which asks for group B at 1.2.0")
		require.Empty(t, e.world.Violations())
	})
}

func TestATargetFailingAtAManualStepIsTakenBackWithoutADecision(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", manualRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", manualRollout)
	e.untilStepPaused(t, want)
	e.world.UpdateApp("10.0.2.11:8080", func(a *memory.App) { a.Healthy = false })
	err := e.converge(want, 1000)
	require.ErrorContains(t, err, "failed 2 consecutive health checks at rollout step 1/3 (20%)")
	requireLive(t, e, old)
	require.Empty(t, e.world.Violations())
}

func TestPlanShowsAManualStep(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", manualRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(old, 50))
	want := rolloutService(t, spec.GroupB, "1.1.0", manualRollout)
	live, err := reconcile.Observe(context.Background(), e.world.Set(), want, reconcile.NeedsFor(want, e.state(want.Name)))
	require.NoError(t, err)
	pv := reconcile.PreviewTransition(reconcile.Input{Service: want, Live: live, State: e.state(want.Name), Now: e.world.Clock().Now()})
	require.True(t, pv.Complete, "stalled: %s", pv.Stalled)
	require.Contains(t, pv.Assumes, "someone promotes the release at rollout step 1 (pause: manual)")
	i := slices.IndexFunc(pv.Phases, func(p reconcile.PhasePreview) bool { return p.Phase == reconcile.PhaseShift })
	require.GreaterOrEqual(t, i, 0)
	require.Contains(t, pv.Phases[i].Note, "step 1/3: 20%, hold until both groups are healthy for 10s without a break, then pause for approval until someone promotes (next step) or aborts")
}
