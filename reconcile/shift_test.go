package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// steps lists the descriptions of the steps applied, in order.
func (e *env) steps() []string {
	var out []string
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonStepApplied {
			out = append(out, ev.Message)
		}
	}
	return out
}

// passUntil runs passes until done reports true, checking after every pass
// that the source group's weights were never lowered while check holds.
func (e *env) passUntil(t *testing.T, svc *spec.Service, budget int, done func() bool) {
	t.Helper()
	for range budget {
		_ = e.pass(svc)
		if done() {
			return
		}
	}
	t.Fatalf("condition not reached in %d passes", budget)
}

func TestShiftLowersTheServingGroupOnlyAfterTheLBReportsTheTargetHealthy(t *testing.T) {
	old := service(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(3)
	want := service(t, spec.GroupB, "1.1.0")
	alb := want.Traffic[0]

	// Until group A is lowered on the ALB binding, every pass sees A at
	// full weight; the pass that lowers it must find B healthy to the LB.
	var raisedAt, loweredAt int
	for i := 1; i <= 500 && loweredAt == 0; i++ {
		_ = e.pass(want)
		if raisedAt == 0 && e.world.Weight(alb, "i-b1") == 100 {
			raisedAt = i
			require.Equal(t, 100, e.world.Weight(alb, "i-a1"), "the raise leaves the serving group's weight alone")
		}
		if e.world.Weight(alb, "i-a1") == 0 {
			loweredAt = i
		}
	}
	require.NotZero(t, raisedAt)
	require.NotZero(t, loweredAt)
	require.GreaterOrEqual(t, loweredAt-raisedAt, 3, "three checks (one per read) must pass before the lower")
	require.NoError(t, e.converge(want, 500))
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())

	var raise, lower int = -1, -1
	for i, s := range e.steps() {
		switch {
		case strings.HasPrefix(s, "raise group B on alb:prod/sgp-1"):
			raise = i
		case strings.HasPrefix(s, "lower group A on alb:prod/sgp-1"):
			lower = i
			require.Contains(t, s, "the LB reports group B healthy")
		}
	}
	require.True(t, raise >= 0 && lower > raise, "steps: %q", e.steps())
}

// TestATargetTheLBReportsWithoutHealthIsNotTakenAsUnchecked: where the LB
// reports health for the serving group, a raised target it gives no health
// for yet (a read from before the raise, or CLB's "unavailable" for a
// server just given weight) has not been checked: the serving group keeps
// its weight until the LB reports the target healthy.
func TestATargetTheLBReportsWithoutHealthIsNotTakenAsUnchecked(t *testing.T) {
	old := service(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(3)
	e.world.ReportUncheckedAsUnknown(true)
	want := service(t, spec.GroupB, "1.1.0")
	alb := want.Traffic[0]

	var raisedAt, loweredAt int
	for i := 1; i <= 500 && loweredAt == 0; i++ {
		_ = e.pass(want)
		if raisedAt == 0 && e.world.Weight(alb, "i-b1") == 100 {
			raisedAt = i
		}
		if e.world.Weight(alb, "i-a1") == 0 {
			loweredAt = i
		}
	}
	require.NotZero(t, raisedAt)
	require.NotZero(t, loweredAt)
	require.GreaterOrEqual(t, loweredAt-raisedAt, 3, "three checks (one per read) must pass before the lower")
	require.NoError(t, e.converge(want, 500))
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())
	for _, s := range e.steps() {
		if strings.HasPrefix(s, "lower group A on alb:prod/sgp-1") {
			require.Contains(t, s, "the LB reports group B healthy")
		}
	}
}

func TestTargetTheLBNeverReportsHealthyIsUndoneAndTheReleaseFails(t *testing.T) {
	old := service(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	e.world.CutOffLB("10.0.2.11:8080", true)
	e.world.CutOffLB("10.0.2.12:8080", true)
	want := service(t, spec.GroupB, "1.1.0")

	var err error
	for range 2000 {
		err = e.pass(want)
		for _, b := range want.Traffic {
			require.Equal(t, 100, e.world.Weight(b, "i-a1"), "group A must never be lowered on %s", b.Key())
			require.Equal(t, 100, e.world.Weight(b, "i-a2"), "group A must never be lowered on %s", b.Key())
		}
		if reconcile.Classify(err) == reconcile.ClassStalled {
			break
		}
	}
	var stalled *reconcile.StalledError
	require.ErrorAs(t, err, &stalled)
	require.Equal(t, "ReleaseFailed", stalled.Reason)
	for _, b := range want.Traffic {
		require.Equal(t, 0, e.world.Weight(b, "i-b1"), "the raise is undone on %s", b.Key())
		require.Equal(t, 0, e.world.Weight(b, "i-b2"), "the raise is undone on %s", b.Key())
	}
	require.False(t, e.world.Enabled(*want.Registry.Nacos, "10.0.2.11:8080"), "the target is taken out of the registry again")
	require.Empty(t, e.world.Violations())

	st := e.state("user-service")
	require.NotNil(t, st.Failed)
	for _, s := range []string{"did not report group B healthy on alb:prod/sgp-1 within verify.lbHealthTimeout 2m0s",
		"i-b1(10.0.2.11:8080) unhealthy (CONNECT_TIMEOUT)", "i-b2(10.0.2.12:8080) unhealthy (CONNECT_TIMEOUT)", "group A was never lowered"} {
		require.Contains(t, st.Failed.Reason, s)
	}
	var warned bool
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonAbortStarted {
			warned = true
			require.Equal(t, reconcile.EventWarning, ev.Type)
			require.Contains(t, ev.Message, "i-b1(10.0.2.11:8080) unhealthy (CONNECT_TIMEOUT)")
		}
	}
	require.True(t, warned)
	status, _ := e.rec.Status("user-service")
	var stalledCond bool
	for _, c := range status.Conditions {
		if c.Type == reconcile.ConditionStalled && c.Status {
			stalledCond = true
			require.Contains(t, c.Message, "i-b1(10.0.2.11:8080) unhealthy (CONNECT_TIMEOUT)")
		}
	}
	require.True(t, stalledCond, "conditions: %+v", status.Conditions)
}

func TestRestartBetweenRaiseAndLowerResumesTheWait(t *testing.T) {
	old := service(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(3)
	want := service(t, spec.GroupB, "1.1.0")
	alb := want.Traffic[0]
	e.passUntil(t, want, 500, func() bool { return e.world.Weight(alb, "i-b1") == 100 })
	require.Equal(t, 100, e.world.Weight(alb, "i-a1"))
	st := e.state("user-service")
	require.NotNil(t, st.Transition.ShiftWait, "the raise journals the wait")
	require.Equal(t, "alb:prod/sgp-1", st.Transition.ShiftWait.Binding)

	// A journal written before make-before-break has no ShiftWait: the
	// restarted daemon waits on a fresh clock and still never lowers early.
	st.Transition.ShiftWait = nil
	require.NoError(t, e.store.Save(context.Background(), st))
	e.rec = e.reconciler()
	require.NoError(t, e.converge(want, 500))
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())
}

func TestGuardRefusesALowerThatLeavesNoLBHealthyWeight(t *testing.T) {
	svc := service(t, spec.GroupB, "2.0.0")
	live := &reconcile.Live{Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: []providers.Backend{
		{ID: "i-a1", Weight: 100, Health: providers.HealthHealthy}, {ID: "i-a2", Weight: 100, Health: providers.HealthHealthy},
		{ID: "i-b1", Weight: 100, Health: providers.HealthInitial}, {ID: "i-b2", Weight: 100, Health: providers.HealthUnhealthy, Reason: "CONNECT_TIMEOUT"},
	}}}}
	lower := &reconcile.Step{Action: reconcile.ActionSetWeights, Binding: &svc.Traffic[0], Describe: "lower group A",
		Weights: []providers.WeightChange{{ID: "i-a1", Weight: 0}, {ID: "i-a2", Weight: 0}}}
	err := reconcile.Guard(svc, live, lower)
	var inv *reconcile.InvariantError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, 1, inv.Invariant)
	require.Contains(t, inv.Explain, "i-b1 initial, i-b2 unhealthy (CONNECT_TIMEOUT)")

	// Once the LB reports one target server healthy, the lower may go.
	live.Bindings[0].Backends[2].Health = providers.HealthHealthy
	require.NoError(t, reconcile.Guard(svc, live, lower))

	// Where the LB gives no health at all, the probes alone decide.
	for i := range live.Bindings[0].Backends {
		live.Bindings[0].Backends[i].Health = providers.HealthUnknown
	}
	require.NoError(t, reconcile.Guard(svc, live, lower))
}

// TestSlowStartIsWaitedOutBeforeTheServingGroupIsLowered: with ALB slow
// start, a newly healthy server's share ramps up over the duration; the
// serving group keeps its weight until the ramp is over.
func TestSlowStartIsWaitedOutBeforeTheServingGroupIsLowered(t *testing.T) {
	old := service(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := service(t, spec.GroupB, "1.1.0")
	alb := want.Traffic[0]
	e.world.SetSlowStart(alb, 30*time.Second)

	var healthyAt time.Time
	for range 500 {
		_ = e.pass(want)
		for _, ev := range e.events {
			if ev.Reason == reconcile.ReasonLBHealthy && healthyAt.IsZero() {
				healthyAt = ev.Time
			}
		}
		if e.world.Weight(alb, "i-a1") == 0 {
			break
		}
	}
	require.False(t, healthyAt.IsZero(), "the LB reported group B healthy")
	require.GreaterOrEqual(t, e.world.Clock().Now().Sub(healthyAt), 30*time.Second, "group A was lowered before the slow start was over")
	require.NoError(t, e.converge(want, 500))
	require.Empty(t, e.world.Violations())
}

// TestSwapBackIsMakeBeforeBreak: after the shift the new group falls over;
// the swap-back raises the old group (at weight 0 the LB stopped checking
// it, so it starts over in initial) and lowers the failed one only once
// the LB reports the old group healthy again.
func TestSwapBackIsMakeBeforeBreak(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := service(t, spec.GroupB, "1.1.0")
	e.passUntil(t, want, 500, func() bool {
		st := e.state(want.Name)
		return st.Transition != nil && st.Transition.Phase == reconcile.PhaseDrain
	})
	e.world.UpdateApp("10.0.2.11:8080", func(a *memory.App) { a.Healthy = false })
	err := e.converge(want, 1000)
	var stalled *reconcile.StalledError
	require.ErrorAs(t, err, &stalled)
	require.Equal(t, "ReleaseFailed", stalled.Reason)
	require.Contains(t, e.reasons(), reconcile.ReasonSwappedBack)
	require.Empty(t, e.world.Violations())

	var swapBack []string
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonStepApplied && strings.HasSuffix(ev.Transition, "-swap-back") && ev.Phase == reconcile.PhaseShift {
			swapBack = append(swapBack, ev.Message)
		}
	}
	require.Len(t, swapBack, 4, "raise and lower on each of the two bindings: %q", swapBack)
	for i, prefix := range []string{"raise group A on alb:prod/sgp-1", "lower group B on alb:prod/sgp-1", "raise group A on slb:prod/lb-1/rsp-1", "lower group B on slb:prod/lb-1/rsp-1"} {
		require.True(t, strings.HasPrefix(swapBack[i], prefix), "step %d: %s", i, swapBack[i])
	}
	require.Contains(t, swapBack[1], "the LB reports group A healthy")
}
