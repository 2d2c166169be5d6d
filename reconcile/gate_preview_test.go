package reconcile_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// previewBinding is the preview route that previewService adds: an ALB
// server group reached by a header forwarding rule of its own.
const previewBinding = "  - {alb: prod, serverGroup: sgp-preview, preview: true}\n"

// previewService is fullService with a preview route.
func previewService(t tb, active spec.Group, version string) *spec.Service {
	t.Helper()
	text := strings.Replace(fmt.Sprintf(fullService, active, version), "registry:\n", previewBinding+"registry:\n", 1)
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(text))
	require.NoError(t, ps.Err())
	require.Len(t, svcs, 1)
	require.True(t, svcs[0].Traffic[2].Preview)
	return svcs[0]
}

// groupWeight is the weight every instance of g has on b, -1 when they
// differ.
func groupWeight(e *env, svc *spec.Service, b spec.Binding, g spec.Group) int {
	w := -2
	for _, in := range svc.Groups.Get(g) {
		switch got := e.world.Weight(b, in.ID); {
		case w == -2:
			w = got
		case got != w:
			return -1
		}
	}
	return w
}

// TestPreviewRouteCarriesTheTargetBeforeTheMainShift: during a release the
// preview route carries the new version (make-before-break, confirmed by
// the LB's checks) while the main bindings still carry the old one; the
// main shift finds it done; afterwards it follows the serving group.
func TestPreviewRouteCarriesTheTargetBeforeTheMainShift(t *testing.T) {
	old := previewService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := previewService(t, spec.GroupB, "1.1.0")
	alb, slb, preview := want.Traffic[0], want.Traffic[1], want.Traffic[2]

	var previewOnly, shown bool // seen: preview on B alone, main bindings on A alone; and so in the status
	for range 1000 {
		err := e.pass(want)
		require.Empty(t, e.world.Violations())
		if groupWeight(e, want, alb, spec.GroupB) != 0 || groupWeight(e, want, slb, spec.GroupB) != 0 {
			require.Equal(t, 0, groupWeight(e, want, preview, spec.GroupA), "the preview route is on the target before the main shift")
			require.Equal(t, 100, groupWeight(e, want, preview, spec.GroupB))
		}
		previewOnly = previewOnly || groupWeight(e, want, preview, spec.GroupB) == 100 && groupWeight(e, want, preview, spec.GroupA) == 0 &&
			groupWeight(e, want, alb, spec.GroupA) == 100 && groupWeight(e, want, alb, spec.GroupB) == 0
		// The status shows the live state the pass observed.
		st, _ := e.rec.Status(want.Name)
		if slices.Equal(st.Preview, []reconcile.PreviewRoute{{Binding: "alb:prod/sgp-preview", Group: reconcile.ActiveB}}) && st.LiveActive == reconcile.ActiveA {
			shown = true
			require.NotNil(t, st.Transition, "the preview route carries group B only during a release")
		}
		if err == nil && st.InSync {
			break
		}
	}
	require.True(t, shown, "the status showed the preview route on group B while group A served")
	require.True(t, previewOnly, "the preview route carried group B while the main bindings carried group A")
	requireLive(t, e, want)
	st, _ := e.rec.Status(want.Name)
	require.Equal(t, []reconcile.PreviewRoute{{Binding: "alb:prod/sgp-preview", Group: reconcile.ActiveB}}, st.Preview)

	steps := e.steps()
	idx := func(prefix string) int {
		return slices.IndexFunc(steps, func(s string) bool { return strings.HasPrefix(s, prefix) })
	}
	raise, lower, main := idx("raise group B on alb:prod/sgp-preview"), idx("lower group A on alb:prod/sgp-preview"), idx("raise group B on alb:prod/sgp-1")
	require.True(t, raise >= 0 && lower > raise && main > lower, "steps: %q", steps)
	require.Contains(t, steps[lower], "the LB reports group B healthy")
	require.Equal(t, -1, slices.IndexFunc(steps[main:], func(s string) bool { return strings.Contains(s, "sgp-preview") }),
		"the main shift skips the preview route: %q", steps)
	require.Contains(t, e.reasons(), reconcile.ReasonPreviewRouted)
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonPhaseCompleted && ev.Phase == reconcile.PhasePreviewRoute {
			return
		}
	}
	t.Fatalf("no PhaseCompleted event for the preview phase: %q", e.reasons())
}

// TestRevertDuringThePreviewTakesThePreviewRouteBack: a revert committed
// while testers use the preview route undoes the release; the preview
// route returns to the serving group, make-before-break.
func TestRevertDuringThePreviewTakesThePreviewRouteBack(t *testing.T) {
	old := previewService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := previewService(t, spec.GroupB, "1.1.0")
	preview := want.Traffic[2]
	e.passUntil(t, want, 500, func() bool {
		st := e.state(want.Name)
		return st.Transition != nil && !slices.Contains([]reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhasePreviewRoute}, st.Transition.Phase)
	})
	require.Equal(t, 100, groupWeight(e, want, preview, spec.GroupB))
	require.Equal(t, 0, groupWeight(e, want, preview, spec.GroupA))

	require.NoError(t, e.converge(old, 1000))
	requireLive(t, e, old)
	require.Empty(t, e.world.Violations())
	require.Contains(t, e.reasons(), reconcile.ReasonAbortStarted)
	var back []string
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonStepApplied && strings.HasSuffix(ev.Transition, "-abort") && strings.Contains(ev.Message, "sgp-preview") {
			back = append(back, ev.Message)
		}
	}
	require.Len(t, back, 2, "raise A, then lower B on the preview route: %q", back)
	require.True(t, strings.HasPrefix(back[0], "raise group A on alb:prod/sgp-preview"), back[0])
	require.True(t, strings.HasPrefix(back[1], "lower group B on alb:prod/sgp-preview"), back[1])
}

// TestDriftOnThePreviewRouteIsReported: when idle, the preview route must
// carry the serving group; a weight changed by hand on it is drift, and
// heal mode repairs it through the safe steps.
func TestDriftOnThePreviewRouteIsReported(t *testing.T) {
	svc := previewService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, svc, spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(svc, 50))
	preview := svc.Traffic[2]
	e.world.SetWeight(preview, "i-b1", 100)
	e.world.SetWeight(preview, "i-a1", 0)
	_ = e.pass(svc)
	st, _ := e.rec.Status(svc.Name)
	require.False(t, st.InSync)
	require.Equal(t, reconcile.ActiveA, st.LiveActive)
	require.Contains(t, st.Drift, "alb:prod/sgp-preview: i-a1(10.0.1.11:8080) (group A) has weight 0, want 100")
	require.Contains(t, st.Drift, "alb:prod/sgp-preview: i-b1(10.0.2.11:8080) (group B) has weight 100, want 0")
	require.Equal(t, []reconcile.PreviewRoute{{Binding: "alb:prod/sgp-preview", Group: reconcile.ActiveMixed}}, st.Preview)

	e.rec.Heal = true
	require.NoError(t, e.converge(svc, 500))
	requireLive(t, e, svc)
	require.Empty(t, e.world.Violations())
}

// TestAPreviewRouteLeftOnTheIdleGroupIsMovedBeforeTheDeploy: a preview
// route pointed at the idle group by hand must be taken off it before that
// group is deployed, without leaving the route with no weight: the serving
// group is raised on it first.
func TestAPreviewRouteLeftOnTheIdleGroupIsMovedBeforeTheDeploy(t *testing.T) {
	old := previewService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	preview := old.Traffic[2]
	for _, id := range []string{"i-a1", "i-a2"} {
		e.world.SetWeight(preview, id, 0)
	}
	for _, id := range []string{"i-b1", "i-b2"} {
		e.world.SetWeight(preview, id, 100)
	}
	want := previewService(t, spec.GroupB, "1.1.0")
	require.NoError(t, e.converge(want, 1000))
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())
	steps := e.steps()
	require.True(t, strings.HasPrefix(steps[0], "raise group A on alb:prod/sgp-preview first"), "steps: %q", steps)
	require.True(t, strings.HasPrefix(steps[1], "take group B (idle) back to weight 0 on alb:prod/sgp-preview"), "steps: %q", steps)
	require.True(t, strings.HasPrefix(steps[2], "deploy 1.1.0 to group B"), "steps: %q", steps)
}

// TestGuardKeepsThePreviewRouteServing: invariant 1 holds on a preview
// binding as on any: lowering the serving group there before the target
// carries weight is refused, even though the main bindings serve.
func TestGuardKeepsThePreviewRouteServing(t *testing.T) {
	svc := previewService(t, spec.GroupB, "2.0.0")
	serving := func(b spec.Binding) reconcile.BindingLive {
		return reconcile.BindingLive{Binding: b, Backends: []providers.Backend{
			{ID: "i-a1", Weight: 100, Health: providers.HealthHealthy}, {ID: "i-a2", Weight: 100, Health: providers.HealthHealthy},
			{ID: "i-b1", Weight: 0, Health: providers.HealthUnknown}, {ID: "i-b2", Weight: 0, Health: providers.HealthUnknown},
		}}
	}
	live := &reconcile.Live{Bindings: []reconcile.BindingLive{serving(svc.Traffic[0]), serving(svc.Traffic[1]), serving(svc.Traffic[2])}}
	lower := &reconcile.Step{Action: reconcile.ActionSetWeights, Binding: &svc.Traffic[2], Describe: "lower group A on the preview route",
		Weights: []providers.WeightChange{{ID: "i-a1", Weight: 0}, {ID: "i-a2", Weight: 0}}}
	var inv *reconcile.InvariantError
	require.ErrorAs(t, reconcile.Guard(svc, live, lower), &inv)
	require.Equal(t, 1, inv.Invariant)
	require.Contains(t, inv.Explain, "alb:prod/sgp-preview would have no weight on a healthy instance")
}

// TestATargetTheLBCannotReachFailsAtThePreviewRoute: when the LB never
// reports the target healthy on the preview route, the release fails
// there: the preview route goes back to the serving group, and the main
// bindings never carried the target.
func TestATargetTheLBCannotReachFailsAtThePreviewRoute(t *testing.T) {
	old := previewService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	e.world.CutOffLB("10.0.2.11:8080", true)
	want := previewService(t, spec.GroupB, "1.1.0")
	var err error
	for range 2000 {
		err = e.pass(want)
		for _, b := range want.Traffic[:2] {
			require.Equal(t, 0, groupWeight(e, want, b, spec.GroupB), "the main binding %s never carries the target", b.Key())
		}
		if reconcile.Classify(err) == reconcile.ClassStalled {
			break
		}
	}
	var stalled *reconcile.StalledError
	require.ErrorAs(t, err, &stalled)
	require.Equal(t, "ReleaseFailed", stalled.Reason)
	requireLive(t, e, old)
	require.Empty(t, e.world.Violations())
	st := e.state(want.Name)
	require.Contains(t, st.Failed.Reason, "did not report group B healthy on alb:prod/sgp-preview")
	require.Contains(t, st.Failed.Reason, "i-b1(10.0.2.11:8080) unhealthy")
}

// previewGatedService is previewService with the approval gate.
func previewGatedService(t tb, active spec.Group, version string) *spec.Service {
	t.Helper()
	text := strings.Replace(fmt.Sprintf(fullService, active, version), "registry:\n", previewBinding+"registry:\n", 1)
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(text+"gates: {approval: {}}\n"))
	require.NoError(t, ps.Err())
	return svcs[0]
}

// TestAReleasePausedForApprovalServesThePreviewRouteFromTheTarget: while a
// release waits at the approval gate, testers reach the target through the
// preview route and everyone else the serving group through the main
// bindings; an abort takes the preview route back.
func TestAReleasePausedForApprovalServesThePreviewRouteFromTheTarget(t *testing.T) {
	old := previewGatedService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := previewGatedService(t, spec.GroupB, "1.1.0")
	alb, slb, preview := want.Traffic[0], want.Traffic[1], want.Traffic[2]
	paused := e.untilPaused(want)
	require.Equal(t, reconcile.PhaseApproval, paused.Phase)
	require.Equal(t, 100, groupWeight(e, want, preview, spec.GroupB), "testers reach the target while it waits")
	require.Equal(t, 0, groupWeight(e, want, preview, spec.GroupA))
	for _, b := range []spec.Binding{alb, slb} {
		require.Equal(t, 100, groupWeight(e, want, b, spec.GroupA), "%s stays on the serving group", b.Key())
		require.Equal(t, 0, groupWeight(e, want, b, spec.GroupB), b.Key())
	}
	for _, in := range want.Groups.B.Instances {
		require.False(t, e.world.Enabled(*want.Registry.Nacos, in.Addr()), "the target is not enabled in the registry before the decision")
	}

	e.decide(want, paused.ID, spec.ApprovalAbort, "cli")
	require.ErrorContains(t, e.converge(want, 1000), "aborted at the approval gate by cli")
	requireLive(t, e, old)
	require.Equal(t, 100, groupWeight(e, want, preview, spec.GroupA), "the preview route follows the serving group again")
	require.Equal(t, 0, groupWeight(e, want, preview, spec.GroupB))
	require.Empty(t, e.world.Violations())
}

// TestATargetFailingBehindThePreviewRouteAbortsTheRelease: between phase
// preview and the shift the preview route carries testers' traffic to the
// target, so its health is watched (every PollInterval, even during the
// approval pause); verify.failureThreshold failed checks in a row abort the
// release, and the main bindings never moved.
func TestATargetFailingBehindThePreviewRouteAbortsTheRelease(t *testing.T) {
	old := previewGatedService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := previewGatedService(t, spec.GroupB, "1.1.0")
	alb, preview := want.Traffic[0], want.Traffic[2]
	e.untilPaused(want)
	before := e.world.Clock().Now()
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	require.Equal(t, reconcile.PollInterval, e.world.Clock().Now().Sub(before), "the pause samples the target's health every PollInterval")

	e.world.UpdateApp("10.0.2.12:8080", func(a *memory.App) { a.Healthy = false })
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)), "one failed check holds the phase")
	require.Equal(t, 1, e.state(want.Name).Transition.PreviewFailures)
	err := e.converge(want, 1000)
	require.ErrorContains(t, err, "group B failed 2 consecutive health checks while the preview route alb:prod/sgp-preview carried it (phase approval)")
	require.ErrorContains(t, err, "the main traffic never left group A")
	requireLive(t, e, old)
	require.Equal(t, 100, groupWeight(e, want, preview, spec.GroupA))
	require.Empty(t, e.world.Violations())
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonStepApplied && strings.Contains(ev.Message, alb.Key()) {
			t.Fatalf("the main binding was touched: %s", ev.Message)
		}
	}
	require.NotContains(t, e.reasons(), reconcile.ReasonPromoted)
}

// TestAFailedCheckBehindThePreviewRouteThatRecoversDoesNotAbort: the count
// is of consecutive failures.
func TestAFailedCheckBehindThePreviewRouteThatRecoversDoesNotAbort(t *testing.T) {
	old := previewGatedService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := previewGatedService(t, spec.GroupB, "1.1.0")
	paused := e.untilPaused(want)
	e.world.UpdateApp("10.0.2.12:8080", func(a *memory.App) { a.Healthy = false })
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	e.world.UpdateApp("10.0.2.12:8080", func(a *memory.App) { a.Healthy = true })
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(e.pass(want)))
	require.Equal(t, 0, e.state(want.Name).Transition.PreviewFailures)
	e.decide(want, paused.ID, spec.ApprovalPromote, "cli")
	require.NoError(t, e.converge(want, 1000))
	requireLive(t, e, want)
}
