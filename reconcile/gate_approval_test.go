package reconcile_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// gatedService is fullService with gates.approval set to gate (YAML flow).
func gatedService(t tb, active spec.Group, version, gate string) *spec.Service {
	t.Helper()
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(fmt.Sprintf(fullService, active, version)+"gates: {approval: "+gate+"}\n"))
	require.NoError(t, ps.Err())
	require.Len(t, svcs, 1)
	return svcs[0]
}

// untilPaused runs passes of svc until its release is paused at the gate,
// and returns the paused transition.
func (e *env) untilPaused(svc *spec.Service) *reconcile.Transition {
	for range 200 {
		_ = e.pass(svc)
		if t := e.state(svc.Name).Transition; t.Paused() {
			return t
		}
	}
	e.t.Errorf("the release of %s never paused at the approval gate", svc.Name)
	panic("unreachable")
}

// decide asks for a decision on whichever pause is open the way the
// daemon does (through the service's next pass).
func (e *env) decide(svc *spec.Service, transition string, action spec.ApprovalDecision, by string) {
	e.decideAt(svc, transition, reconcile.AnyPause, action, by)
}

// decideAt asks for a decision on the pause at step (0 the approval gate,
// n rollout step n).
func (e *env) decideAt(svc *spec.Service, transition string, step int, action spec.ApprovalDecision, by string) {
	e.rec.Request(svc.Name, reconcile.Request{Decisions: []reconcile.ApprovalVerdict{
		{Transition: transition, Step: step, Action: action, By: by, At: e.world.Clock().Now()}}})
}

func (e *env) eventsOf(reason string) []reconcile.Event {
	var out []reconcile.Event
	for _, ev := range e.events {
		if ev.Reason == reason {
			out = append(out, ev)
		}
	}
	return out
}

// lbAndRegistryWrites counts the writes that can touch the serving group.
func (e *env) lbAndRegistryWrites() int {
	c := e.world.Calls()
	return c["set-weights"] + c["set-enabled"] + c["close-sessions"] + c["signal"]
}

func TestApprovalPausesBeforeAnyTrafficUntilPromoted(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := gatedService(t, spec.GroupB, "1.1.0", "{}")
	paused := e.untilPaused(want)
	require.Equal(t, reconcile.PhaseApproval, paused.Phase)
	require.True(t, paused.Approval.Deadline.IsZero(), "no timeout: the pause lasts until someone decides")
	require.Equal(t, 0, e.world.Weight(want.Traffic[0], "i-b1"), "no traffic before the decision")
	require.Equal(t, "1.1.0", e.world.App("10.0.2.11:8080").Version, "the target is deployed and verified")

	pending := e.eventsOf(reconcile.ReasonApprovalPending)
	require.Len(t, pending, 1, "the pause is announced once")
	for _, s := range []string{"user-service", "1.1.0", paused.ID, "tandem promote|abort user-service", "POST /api/v1/services/user-service/promote|abort"} {
		require.Contains(t, pending[0].Message, s)
	}

	// Many passes later (an hour each: the recheck), still paused, still no traffic.
	writes := e.lbAndRegistryWrites()
	for range 5 {
		require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	}
	require.True(t, e.state(want.Name).Transition.Paused())
	require.Equal(t, writes, e.lbAndRegistryWrites())
	st, _ := e.rec.Status(want.Name)
	require.True(t, st.Transition.Paused(), "status shows the pause")

	e.decide(want, paused.ID, spec.ApprovalPromote, "api (token holder)")
	require.NoError(t, e.converge(want, 500))
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-b1"))
	require.Equal(t, 0, e.world.Weight(want.Traffic[0], "i-a1"))
	promoted := e.eventsOf(reconcile.ReasonPromoted)
	require.Len(t, promoted, 1)
	require.Contains(t, promoted[0].Message, "promoted by api (token holder)")
	require.Equal(t, paused.ID, promoted[0].Transition)
	require.Empty(t, e.world.Violations())
}

func TestApprovalAbortLeavesTheServingGroupUntouched(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := gatedService(t, spec.GroupB, "1.1.0", "{}")
	paused := e.untilPaused(want)
	writes := e.lbAndRegistryWrites()

	e.decide(want, "", spec.ApprovalAbort, "cli")
	require.ErrorContains(t, e.converge(want, 500), "release of 1.1.0 to group B failed: aborted at the approval gate by cli")
	require.Equal(t, writes, e.lbAndRegistryWrites(), "no weight or registration changed after the pause")
	for _, id := range []string{"i-a1", "i-a2"} {
		require.Equal(t, 100, e.world.Weight(want.Traffic[0], id))
	}
	require.Equal(t, 0, e.world.Weight(want.Traffic[0], "i-b1"))
	st := e.state(want.Name)
	require.Nil(t, st.Transition)
	require.NotNil(t, st.Failed, "an aborted release is not tried again until Git changes")
	require.Contains(t, st.Failed.Reason, "aborted at the approval gate by cli")
	aborted := e.eventsOf(reconcile.ReasonAborted)
	require.Len(t, aborted, 1)
	require.Equal(t, paused.ID, aborted[0].Transition)
	require.Contains(t, e.reasons(), reconcile.ReasonTransitionAborted)
	require.NotContains(t, e.reasons(), reconcile.ReasonPromoted)
	require.Empty(t, e.world.Violations())
}

func TestApprovalTimeoutDecidesEitherWay(t *testing.T) {
	for _, tc := range []struct {
		onTimeout spec.ApprovalDecision
		serving   string
		reason    string
	}{
		{spec.ApprovalPromote, "i-b1", reconcile.ReasonPromoted},
		{spec.ApprovalAbort, "i-a1", reconcile.ReasonAborted},
	} {
		t.Run(string(tc.onTimeout), func(t *testing.T) {
			e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
			want := gatedService(t, spec.GroupB, "1.1.0", "{timeout: 30m, onTimeout: "+string(tc.onTimeout)+"}")
			paused := e.untilPaused(want)
			require.Equal(t, paused.Approval.Since.Add(30*time.Minute), paused.Approval.Deadline)
			// The pass that paused asked to come back exactly at the deadline.
			require.Equal(t, paused.Approval.Deadline, e.world.Clock().Now())
			err := e.converge(want, 500)
			if tc.onTimeout == spec.ApprovalAbort {
				require.ErrorContains(t, err, "aborted at the approval gate by timeout")
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, 100, e.world.Weight(want.Traffic[0], tc.serving))
			ev := e.eventsOf(tc.reason)
			require.Len(t, ev, 1)
			require.Contains(t, ev[0].Message, "by timeout")
			require.Empty(t, e.world.Violations())
		})
	}
}

func TestARevertCommittedDuringThePauseAbortsAtOnce(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := gatedService(t, spec.GroupB, "1.1.0", "{}")
	e.untilPaused(want)
	writes := e.lbAndRegistryWrites()
	revert := gatedService(t, spec.GroupA, "1.0.0", "{}")
	require.NoError(t, e.converge(revert, 500))
	require.Equal(t, writes, e.lbAndRegistryWrites())
	require.Equal(t, 100, e.world.Weight(revert.Traffic[0], "i-a1"))
	require.Nil(t, e.state(revert.Name).Failed, "Git moved on: nothing is remembered as failed")
	require.NotContains(t, e.reasons(), reconcile.ReasonPromoted)
}

func TestANewReleaseCommittedDuringThePauseAbortsThePausedOne(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	first := e.untilPaused(gatedService(t, spec.GroupB, "1.1.0", "{}"))
	next := gatedService(t, spec.GroupB, "1.2.0", "{}")
	second := e.untilPaused(next)
	require.NotEqual(t, first.ID, second.ID)
	require.Equal(t, "1.2.0", second.Version)
	aborted := e.eventsOf(reconcile.ReasonAborted)
	require.Len(t, aborted, 1)
	require.Contains(t, aborted[0].Message, "by revision rev-1.2.0, which asks for group B at 1.2.0")
	require.Equal(t, 0, e.world.Weight(next.Traffic[0], "i-b1"))

	// A decision made for the first transition does not promote the second.
	e.decide(next, first.ID, spec.ApprovalPromote, "link (nonce n1)")
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(next)))
	require.True(t, e.state(next.Name).Transition.Paused())
	refused := e.eventsOf(reconcile.ReasonApprovalRefused)
	require.Len(t, refused, 1)
	require.Contains(t, refused[0].Message, "promote by link (nonce n1) refused: it was made for transition "+first.ID)
	require.Equal(t, 0, e.world.Weight(next.Traffic[0], "i-b1"))
}

func TestAStaleDecisionInTheJournalIsIgnoredByThePlanner(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := gatedService(t, spec.GroupB, "1.1.0", "{}")
	e.untilPaused(want)
	st := e.state(want.Name)
	st.Transition.Approval.Decision = &reconcile.ApprovalVerdict{Transition: "user-service-older", Action: spec.ApprovalPromote, By: "api"}
	require.NoError(t, e.store.Save(context.Background(), st))
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	require.True(t, e.state(want.Name).Transition.Paused(), "the stale decision is dropped, the pause goes on")
	require.Len(t, e.eventsOf(reconcile.ReasonApprovalRefused), 1)
}

func TestADecisionWithNothingPausedIsRefused(t *testing.T) {
	svc := gatedService(t, spec.GroupA, "1.0.0", "{}")
	e := newEnv(t, svc, spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(svc, 20))
	e.decide(svc, "", spec.ApprovalPromote, "cli")
	require.NoError(t, e.pass(svc))
	refused := e.eventsOf(reconcile.ReasonApprovalRefused)
	require.Len(t, refused, 1)
	require.Contains(t, refused[0].Message, "no transition is in progress")
}

func TestAPausedReleaseSurvivesARestartAndOnlyTheFirstDecisionCounts(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := gatedService(t, spec.GroupB, "1.1.0", "{timeout: 2h, onTimeout: abort}")
	paused := e.untilPaused(want)
	e.rec = e.reconciler() // a restart: only the journal remains
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	again := e.state(want.Name).Transition
	require.Equal(t, paused.Approval, again.Approval, "the pause and its deadline are the journaled ones")
	require.Len(t, e.eventsOf(reconcile.ReasonApprovalPending), 1, "not announced again")

	e.decide(want, paused.ID, spec.ApprovalPromote, "dashboard")
	e.decide(want, paused.ID, spec.ApprovalAbort, "cli")
	require.NoError(t, e.converge(want, 500))
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-b1"))
	require.Len(t, e.eventsOf(reconcile.ReasonApprovalRefused), 1, "the second decision found nothing paused")
}
