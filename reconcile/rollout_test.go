package reconcile_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

const stepsRollout = `
rollout:
  steps:
    - {traffic: 10, pause: 30s, hold: 10s}
    - {traffic: 50, pause: 20s}
    - {traffic: 100}
`

// rolloutService is fullService with a rollout section appended.
func rolloutService(t tb, active spec.Group, version, rollout string) *spec.Service {
	t.Helper()
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(fmt.Sprintf(fullService, active, version)+rollout))
	require.NoError(t, ps.Err())
	require.Len(t, svcs, 1)
	return svcs[0]
}

// share is group g's share of binding b in the world, in percent.
func share(e *env, svc *spec.Service, b spec.Binding, g spec.Group) float64 {
	on, total := 0, 0
	for _, h := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Groups.Get(h) {
			w := e.world.Weight(b, in.ID)
			total += w
			if h == g {
				on += w
			}
		}
	}
	if total == 0 {
		return 0
	}
	return 100 * float64(on) / float64(total)
}

// sample is what one pass left live: B's share of each binding, whether A
// and B are enabled in the registry, and the fake clock.
type sample struct {
	shares     []float64
	aOn, bOn   bool
	at         time.Time
	rolloutPos string
}

func (e *env) sample(svc *spec.Service) sample {
	s := sample{at: e.world.Clock().Now()}
	for _, b := range svc.Traffic {
		s.shares = append(s.shares, share(e, svc, b, spec.GroupB))
	}
	ref := *svc.Registry.Nacos
	s.aOn = e.world.Enabled(ref, svc.Groups.A.Instances[0].Addr())
	s.bOn = e.world.Enabled(ref, svc.Groups.B.Instances[0].Addr())
	if tr := e.state(svc.Name).Transition; tr != nil && tr.Rollout != nil {
		s.rolloutPos = tr.Rollout.Position()
	}
	return s
}

func TestRolloutStepsRaiseThenLowerAndHoldEveryStep(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", stepsRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(5) // more checks than the passes of a step: a read below is one more check
	want := rolloutService(t, spec.GroupB, "1.1.0", stepsRollout)

	var samples []sample
	checkedReach := false
	for range 2000 {
		err := e.pass(want)
		require.Empty(t, e.world.Violations())
		samples = append(samples, e.sample(want))
		// The 10% step only raises B: it counts as reached only once the
		// LB reports B healthy on every binding.
		if tr := e.state(want.Name).Transition; !checkedReach && tr != nil && tr.Rollout != nil && !tr.Rollout.Reached.IsZero() {
			checkedReach = true
			for _, b := range want.Traffic {
				backends, err := e.world.LoadBalancer().Backends(context.Background(), b)
				require.NoError(t, err)
				for _, be := range backends {
					if g, _ := want.Groups.GroupOfID(be.ID); g == spec.GroupB {
						require.Equal(t, providers.HealthHealthy, be.Health, "%s on %s when step 1 was reached", be.ID, b.Key())
					}
				}
			}
		}
		if st, _ := e.rec.Status(want.Name); err == nil && st.InSync {
			break
		}
	}
	requireLive(t, e, want)
	require.True(t, checkedReach)

	// Every binding's share of B only rises, A keeps weight until the
	// shift's last lower, and the registry enables B before any weight and
	// disables A only once B carries everything.
	firstAt := map[int]time.Time{} // step share -> when every binding first carried it
	for i, s := range samples {
		for j, sh := range s.shares {
			if i > 0 {
				require.GreaterOrEqual(t, sh, samples[i-1].shares[j], "pass %d: binding %d's share of B fell", i, j)
			}
			if sh > 0 {
				require.True(t, s.bOn, "pass %d: B carries weight before it is enabled in the registry", i)
			}
			if !s.aOn {
				require.Equal(t, 100.0, sh, "pass %d: A disabled in the registry before B carries everything", i)
			}
		}
		for _, step := range []int{10, 50} {
			all := true
			for _, sh := range s.shares {
				all = all && sh >= float64(step)-1 && sh <= float64(step)+1
			}
			if _, seen := firstAt[step]; all && !seen {
				firstAt[step] = s.at
			}
		}
	}
	require.Contains(t, firstAt, 10, "every binding carried 10%% at some pass")
	require.Contains(t, firstAt, 50, "every binding carried 50%% at some pass")
	require.GreaterOrEqual(t, firstAt[50].Sub(firstAt[10]), 30*time.Second, "the 10%% step lasts its pause")

	// Each step is a raise of B followed by a lower of A on each binding:
	// no step both raises and lowers.
	var order []string
	for _, s := range e.steps() {
		if strings.HasPrefix(s, "raise group B") || strings.HasPrefix(s, "lower group A") {
			order = append(order, s[:13]+" "+strings.Fields(s)[4])
		}
	}
	require.Equal(t, []string{
		"raise group B alb:prod/sgp-1", "raise group B slb:prod/lb-1/rsp-1", // 10%: only B rises
		"raise group B alb:prod/sgp-1", "raise group B slb:prod/lb-1/rsp-1", // 50%: only B rises (to the full weight)
		"lower group A alb:prod/sgp-1", "lower group A slb:prod/lb-1/rsp-1", // 100%: A falls to 0
	}, order)
	var reached []string
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonRolloutStep {
			reached = append(reached, ev.Message)
		}
	}
	require.Len(t, reached, 4, "announced, then every step reached: %q", reached)
	require.Contains(t, reached[1], "step 1/3 (10%) reached")
}

func TestRolloutTargetFailingAtAStepTakesAllTrafficBackAtOnce(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", stepsRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", stepsRollout)
	alb := want.Traffic[0]

	e.passUntil(t, want, 500, func() bool {
		tr := e.state(want.Name).Transition
		return tr != nil && tr.Rollout != nil && tr.Rollout.Step == 1 && !tr.Rollout.Reached.IsZero()
	})
	require.InDelta(t, 50, share(e, want, alb, spec.GroupB), 1)
	e.world.UpdateApp("10.0.2.11:8080", func(a *memory.App) { a.Healthy = false })

	var aWeights []int
	err := error(nil)
	for range 500 {
		err = e.pass(want)
		require.Empty(t, e.world.Violations())
		if w := e.world.Weight(alb, "i-a1"); len(aWeights) == 0 || aWeights[len(aWeights)-1] != w {
			aWeights = append(aWeights, w)
		}
		if reconcile.Classify(err) == reconcile.ClassStalled {
			break
		}
	}
	require.Equal(t, reconcile.ClassStalled, reconcile.Classify(err), "the failed release is reported: %v", err)
	require.Equal(t, []int{100}, aWeights, "A kept its full weight at 50%%")
	requireLive(t, e, old)
	st := e.state(want.Name)
	require.NotNil(t, st.Failed)
	require.Contains(t, st.Failed.Reason, "failed 2 consecutive health checks at rollout step 2/3 (50%)")
	require.Contains(t, e.reasons(), reconcile.ReasonAbortStarted)
}

func TestRevertInTheMiddleOfAStepReturnsAllTrafficAtOnce(t *testing.T) {
	const late = `
rollout:
  steps:
    - {traffic: 60, pause: 1m}
    - {traffic: 90, pause: 1m}
`
	old := rolloutService(t, spec.GroupA, "1.0.0", late)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", late)
	alb := want.Traffic[0]

	// Stop between the raise and the lower of step 2 (90%): A is not yet
	// lowered on the ALB.
	e.passUntil(t, want, 500, func() bool {
		tr := e.state(want.Name).Transition
		return tr != nil && tr.Rollout != nil && tr.Rollout.Step == 1 && tr.ShiftWait != nil && e.world.Weight(alb, "i-a1") > 0 && e.world.Weight(alb, "i-a1") < 100
	})
	before := e.steps()
	require.NoError(t, e.converge(old, 500))
	requireLive(t, e, old)
	require.Empty(t, e.world.Violations())
	// The abort raises A back to its full weight in one call per binding,
	// then takes B to 0: no intermediate share.
	var raises []string
	for _, s := range e.steps()[len(before):] {
		if strings.HasPrefix(s, "raise group A") {
			raises = append(raises, s)
			require.Contains(t, s, "->100", s)
		}
	}
	require.Len(t, raises, 2, "one raise of A per binding: %q", e.steps()[len(before):])
}

func TestRampMovesTrafficInBoundedWeightChanges(t *testing.T) {
	const ramp = `
rollout:
  ramp: {duration: 100s, steps: 5}
`
	old := rolloutService(t, spec.GroupA, "1.0.0", ramp)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", ramp)
	before := e.world.Calls()["set-weights"]
	var samples []sample
	for range 2000 {
		err := e.pass(want)
		samples = append(samples, e.sample(want))
		if st, _ := e.rec.Status(want.Name); err == nil && st.InSync {
			break
		}
	}
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())

	// 20, 40, 60, 80, 100 percent, 20s apart.
	var seen []string
	var since []time.Time
	for _, s := range samples {
		if s.rolloutPos != "" && (len(seen) == 0 || s.rolloutPos != seen[len(seen)-1]) {
			seen = append(seen, s.rolloutPos)
			since = append(since, s.at)
		}
	}
	require.Equal(t, []string{"step 1/5 (20%)", "step 2/5 (40%)", "step 3/5 (60%)", "step 4/5 (80%)", "step 5/5 (100%)"}, seen)
	for i := 1; i < len(since); i++ {
		require.GreaterOrEqual(t, since[i].Sub(since[i-1]), 20*time.Second, "a step of the ramp lasts duration/steps")
	}
	// One weight change per binding per step, and one more where the
	// target reaches the full weight and the source starts to fall.
	calls := e.world.Calls()["set-weights"] - before
	require.LessOrEqual(t, calls, (5+1)*len(want.Traffic), "set-weights calls")
}

func TestAJournalFromBeforeRolloutsFinishesItsShiftAtOnce(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", stepsRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", stepsRollout)
	alb := want.Traffic[0]
	// A pre-rollout daemon raised B fully on the ALB and journaled the
	// wait before its lower; the journal has no "rollout".
	e.passUntil(t, want, 500, func() bool { return e.state(want.Name).Transition != nil })
	st := e.state(want.Name)
	tr := st.Transition
	tr.Phase, tr.Rollout = reconcile.PhaseShift, nil
	tr.ShiftWait = &reconcile.ShiftWait{Binding: alb.Key(), Since: e.world.Clock().Now()}
	require.NoError(t, e.store.Save(context.Background(), st))
	e.world.SetWeight(alb, "i-b1", 100)
	e.world.SetWeight(alb, "i-b2", 100)
	e.world.UpdateApp("10.0.2.11:8080", func(a *memory.App) { a.Version = "1.1.0" })
	e.world.UpdateApp("10.0.2.12:8080", func(a *memory.App) { a.Version = "1.1.0" })
	e.rec = e.reconciler()
	require.NoError(t, e.converge(want, 500))
	requireLive(t, e, want)
	for _, ev := range e.events {
		require.NotEqual(t, reconcile.ReasonRolloutStep, ev.Reason, "no rollout starts in the middle of a shift")
	}
}

func TestGuardRefusesAWeightChangeThatRaisesAndLowersAtOnce(t *testing.T) {
	svc := service(t, spec.GroupA, "2.0.0")
	live := &reconcile.Live{
		Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: []providers.Backend{
			{ID: "i-a1", Weight: 100}, {ID: "i-a2", Weight: 100}, {ID: "i-b1", Weight: 11}, {ID: "i-b2", Weight: 11},
		}}},
		Probes: map[string]providers.ProbeResult{"10.0.2.11:8080": {Healthy: true, Version: "2.0.0"}, "10.0.2.12:8080": {Healthy: true, Version: "2.0.0"}},
	}
	step := &reconcile.Step{Action: reconcile.ActionSetWeights, Binding: &svc.Traffic[0], Version: "2.0.0", Describe: "10% to 50% in one call",
		Weights: []providers.WeightChange{{ID: "i-b1", Weight: 100}, {ID: "i-b2", Weight: 100}, {ID: "i-a1", Weight: 50}, {ID: "i-a2", Weight: 50}}}
	err := reconcile.Guard(svc, live, step)
	var inv *reconcile.InvariantError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, 1, inv.Invariant)
	require.Contains(t, inv.Explain, "would raise i-b1 11->100 and lower i-a1 100->50 in one call")

	step.Weights = step.Weights[:2] // the raise alone
	require.NoError(t, reconcile.Guard(svc, live, step))
}

func TestRolloutServingGroupFailingAtAStepEndsTheRolloutOnTheTarget(t *testing.T) {
	old := rolloutService(t, spec.GroupA, "1.0.0", stepsRollout)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	want := rolloutService(t, spec.GroupB, "1.1.0", stepsRollout)
	e.passUntil(t, want, 500, func() bool {
		tr := e.state(want.Name).Transition
		return tr != nil && tr.Rollout != nil && tr.Rollout.Step == 0 && !tr.Rollout.Reached.IsZero()
	})
	e.world.UpdateApp("10.0.1.11:8080", func(a *memory.App) { a.Healthy = false })
	require.NoError(t, e.converge(want, 500))
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())
	require.NotContains(t, e.reasons(), reconcile.ReasonAbortStarted)
	var skipped bool
	for _, ev := range e.events {
		skipped = skipped || (ev.Reason == reconcile.ReasonRolloutStep && strings.Contains(ev.Message, "the rest of the rollout is skipped"))
	}
	require.True(t, skipped, "the skip is announced")
	var reached100 bool
	for _, ev := range e.events {
		reached100 = reached100 || (ev.Reason == reconcile.ReasonRolloutStep && strings.HasPrefix(ev.Message, "rollout step 3/3 (100%) reached"))
	}
	require.True(t, reached100, "the shift itself takes the skipped rollout to 100%%, before the disable")
}

func TestARolloutProbesTheServingGroupWhileItShifts(t *testing.T) {
	svc := rolloutService(t, spec.GroupB, "1.1.0", stepsRollout)
	tr := &reconcile.Transition{Kind: reconcile.KindRelease, From: spec.GroupA, To: spec.GroupB, Phase: reconcile.PhaseShift}
	require.Equal(t, map[spec.Group]bool{spec.GroupB: true}, reconcile.NeedsFor(svc, reconcile.State{Transition: tr}).Probe, "a shift all at once probes the target only")
	tr.Rollout = &reconcile.RolloutProgress{Steps: []reconcile.RolloutStep{{Share: 10}, {Share: 100}}}
	require.Equal(t, map[spec.Group]bool{spec.GroupA: true, spec.GroupB: true}, reconcile.NeedsFor(svc, reconcile.State{Transition: tr}).Probe)
	tr.Phase = reconcile.PhaseDrain
	require.Equal(t, map[spec.Group]bool{spec.GroupB: true}, reconcile.NeedsFor(svc, reconcile.State{Transition: tr}).Probe, "after the shift the source is drained, not probed")
}

// TestAPreviewRouteCarriesTheTargetAloneThroughEveryRolloutStep: phase
// preview moves the preview binding to the target before the rollout; the
// rollout's steps set shares on the main bindings only, so the preview
// route never goes back to a share of the old group.
func TestAPreviewRouteCarriesTheTargetAloneThroughEveryRolloutStep(t *testing.T) {
	svc := func(g spec.Group, version string) *spec.Service {
		text := strings.Replace(fmt.Sprintf(fullService, g, version), "registry:\n", previewBinding+"registry:\n", 1)
		svcs, ps := spec.ParseServices("services/user.yaml", []byte(text+stepsRollout))
		require.NoError(t, ps.Err())
		return svcs[0]
	}
	e := newEnv(t, svc(spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	e.world.ModelLBHealth(2)
	want := svc(spec.GroupB, "1.1.0")
	main, preview := want.Traffic[0], want.Traffic[2]
	require.True(t, preview.Preview)
	var partial bool // seen: a main binding at a share between 0 and 100
	for range 2000 {
		err := e.pass(want)
		require.Empty(t, e.world.Violations())
		if sh := share(e, want, main, spec.GroupB); sh > 0 && sh < 100 {
			partial = true
			require.Equal(t, 100.0, share(e, want, preview, spec.GroupB), "the preview route during a rollout step")
			require.Equal(t, preview.Weight, groupWeight(e, want, preview, spec.GroupB), "the preview route keeps the target at its full weight")
		}
		if st, _ := e.rec.Status(want.Name); err == nil && st.InSync {
			break
		}
	}
	require.True(t, partial, "the rollout went through a partial step")
	requireLive(t, e, want)
}
