package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// smokeGates is gates.smoke for fullService: two checks and an exec hook.
const smokeGates = `gates:
  smoke:
    http:
      - {name: user, path: /api/users/1, expect: {status: [200], bodyContains: '"id"'}}
      - {method: POST, path: /api/orders, body: '{}'}
    exec: {command: [./smoke.sh]}
`

func smokeService(t tb, active spec.Group, version string) *spec.Service {
	t.Helper()
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(fmt.Sprintf(fullService, active, version)+smokeGates))
	require.NoError(t, ps.Err())
	return svcs[0]
}

func completedPhases(e *env) []reconcile.Phase {
	var phases []reconcile.Phase
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonPhaseCompleted {
			phases = append(phases, ev.Phase)
		}
	}
	return phases
}

func TestSmokeTestsThatPassLetTheReleaseGoOn(t *testing.T) {
	e := newEnv(t, smokeService(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := smokeService(t, spec.GroupB, "1.1.0")
	require.NoError(t, e.converge(want, 500))
	requireLive(t, e, want)
	require.Equal(t, []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhaseSmoke, reconcile.PhaseEnable,
		reconcile.PhaseShift, reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch}, completedPhases(e))
	require.Equal(t, 1, e.world.Calls()["smoke"], "the checks ran once")

	st := e.state(want.Name)
	require.NotNil(t, st.LastSmoke, "the results outlive the transition")
	require.Equal(t, spec.GroupB, st.LastSmoke.Group)
	require.Equal(t, "1.1.0", st.LastSmoke.Version)
	require.Len(t, st.LastSmoke.Results, 5, "2 checks on 2 instances and the exec hook")
	require.Empty(t, st.LastSmoke.Failed())
	status, _ := e.rec.Status(want.Name)
	require.Equal(t, st.LastSmoke, status.Smoke)

	var applied []string
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonStepApplied && ev.Phase == reconcile.PhaseSmoke {
			applied = append(applied, ev.Message)
		}
	}
	require.Equal(t, []string{"smoke-test group B at 1.1.0 (i-b1(10.0.2.11:8080), i-b2(10.0.2.12:8080)): " +
		`user (GET /api/users/1) -> status 200, body containing "\"id\""; POST /api/orders -> status 2xx; exec ./smoke.sh -> exit 0, at most 2m15s` +
		"\nall 5 smoke checks passed"}, applied)
	require.Empty(t, e.world.Violations())
}

func TestAFailingSmokeCheckAbortsWithTheCheckAndTheAnswerAndTheSourceKeepsServing(t *testing.T) {
	old := smokeService(t, spec.GroupA, "1.0.0")
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(old, 20))
	// 1.1.0 is healthy but answers its API with errors on one instance.
	e.world.UpdateApp("10.0.2.12:8080", func(a *memory.App) { a.SmokeAnswer = "NullPointerException at UserController.java:42" })
	calls := e.world.Calls()

	want := smokeService(t, spec.GroupB, "1.1.0")
	err := e.converge(want, 500)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "ReleaseFailed", s.Reason)
	why := `smoke check "user" failed on 10.0.2.12:8080: GET http://10.0.2.12:8080/api/users/1: status 500 (want status 200, body containing "\"id\""); ` +
		`answer: "NullPointerException at UserController.java:42" (3 of 5 checks failed)`
	require.Contains(t, s.Message, why)
	var aborted []string
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonAbortStarted || ev.Reason == reconcile.ReasonTransitionAborted {
			aborted = append(aborted, ev.Reason)
			require.Contains(t, ev.Message, why, "the events and the notifications made of them name the check and the answer")
		}
	}
	require.Equal(t, []string{reconcile.ReasonAbortStarted, reconcile.ReasonTransitionAborted}, aborted)

	// The target group never got traffic: no weight and no registry change
	// was ever made; group A serves as before.
	after := e.world.Calls()
	require.Equal(t, calls["set-weights"], after["set-weights"])
	require.Equal(t, calls["set-enabled"], after["set-enabled"])
	requireLive(t, e, old)
	st := e.state(want.Name)
	require.Equal(t, why, st.Failed.Reason)
	require.Len(t, st.LastSmoke.Failed(), 3)
	status, _ := e.rec.Status(want.Name)
	require.Len(t, status.Smoke.Failed(), 3, "the status shows the failed run after the abort")
	require.Empty(t, e.world.Violations())
}

// A daemon that stops while the checks run has journaled the run as
// started but not its results: the next daemon runs every check again
// (smoke checks must be safe to repeat). Results that were journaled are
// judged, never run again.
func TestARestartDuringTheSmokeRunRunsTheChecksAgainButNeverJournaledResults(t *testing.T) {
	e := newEnv(t, smokeService(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := smokeService(t, spec.GroupB, "1.1.0")
	e.world.SetFaults(memory.Faults{Fail: func(op string) error {
		if op == "smoke" {
			return context.Canceled // the daemon is shutting down during the run
		}
		return nil
	}})
	for range 50 {
		_ = e.pass(want)
		if e.world.Calls()["smoke"] > 0 {
			break
		}
	}
	st := e.state(want.Name)
	require.Equal(t, reconcile.PhaseSmoke, st.Transition.Phase)
	require.Equal(t, 1, st.Transition.Smoke.Runs)
	require.False(t, st.Transition.Smoke.Done)

	e.world.SetFaults(memory.Faults{})
	e.rec = e.reconciler() // the next daemon
	require.NoError(t, e.pass(want))
	st = e.state(want.Name)
	require.Equal(t, 2, st.Transition.Smoke.Runs, "run again")
	require.True(t, st.Transition.Smoke.Done)
	require.Equal(t, 2, e.world.Calls()["smoke"])

	e.rec = e.reconciler() // stopped right after journaling the results
	require.NoError(t, e.converge(want, 500))
	require.Equal(t, 2, e.world.Calls()["smoke"], "journaled results are not run again")
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())
}

func TestASmokeRunThatCannotRunAbortsTheRelease(t *testing.T) {
	e := newEnv(t, smokeService(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	e.world.SetFaults(memory.Faults{Fail: func(op string) error {
		if op == "smoke" {
			return providers.Permanentf("PolicyRefused", `gates.smoke.exec.command[0]: "./smoke.sh" is not one of the commands policy.hooks.commands of the daemon config allows`)
		}
		return nil
	}})
	err := e.converge(smokeService(t, spec.GroupB, "1.1.0"), 500)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "ReleaseFailed", s.Reason)
	require.Contains(t, s.Message, `is not one of the commands policy.hooks.commands`)
	require.Equal(t, 1, e.world.Calls()["smoke"], "a permanent failure is not retried")
	requireLive(t, e, smokeService(t, spec.GroupA, "1.0.0"))
}

func TestARevertRunsTheSmokeTestsAndAnAbortSkipsThem(t *testing.T) {
	e := newEnv(t, smokeService(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(smokeService(t, spec.GroupB, "1.1.0"), 500))
	require.NoError(t, e.converge(smokeService(t, spec.GroupA, "1.0.0"), 500))
	require.Equal(t, 2, e.world.Calls()["smoke"], "a release back to the warm group is a release: its smoke tests run")

	// An abort goes straight back: the checks do not stand between a failed
	// release and the group that served.
	e.world.UpdateApp("10.0.2.11:8080", func(a *memory.App) { a.SmokeAnswer = "broken" })
	_ = e.converge(smokeService(t, spec.GroupB, "1.2.0"), 500)
	require.Equal(t, 3, e.world.Calls()["smoke"])
	requireLive(t, e, smokeService(t, spec.GroupA, "1.0.0"))
}

func TestGuardRefusesSmokeTestsOnAServingGroup(t *testing.T) {
	svc := smokeService(t, spec.GroupA, "2.0.0")
	live := &reconcile.Live{Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: []providers.Backend{
		{ID: "i-b1", Weight: 100}, {ID: "i-b2", Weight: 0}, {ID: "i-a1", Weight: 100}, {ID: "i-a2", Weight: 100},
	}}}}
	err := reconcile.Guard(svc, live, &reconcile.Step{Action: reconcile.ActionSmoke, Group: spec.GroupB, Describe: "smoke-test group B"})
	var inv *reconcile.InvariantError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, 3, inv.Invariant)
}

func TestPlanShowsTheSmokePhaseWithItsChecks(t *testing.T) {
	world := memory.New()
	world.AddService(smokeService(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := smokeService(t, spec.GroupB, "1.1.0")
	live, err := reconcile.Observe(context.Background(), world.Set(), want, reconcile.NeedsFor(want, reconcile.State{}))
	require.NoError(t, err)
	pv := reconcile.PreviewTransition(reconcile.Input{Service: want, Live: live, Now: world.Clock().Now()})
	require.True(t, pv.Complete, "%+v", pv)
	out := reconcile.Render([]reconcile.Preview{pv})
	require.Contains(t, out, "    3. smoke    smoke-test group B at 1.1.0 (i-b1(10.0.2.11:8080), i-b2(10.0.2.12:8080)): "+
		`user (GET /api/users/1) -> status 200, body containing "\"id\""; POST /api/orders -> status 2xx; exec ./smoke.sh -> exit 0, at most 2m15s`+"\n"+
		"                2 HTTP checks on each of the 2 target instances, then exec once within gates.smoke.exec.timeout 2m0s; "+
		"the group has no traffic yet; a failed check aborts the release and the serving group keeps serving\n", out)
	require.Contains(t, pv.Assumes, "every smoke check passes")
}

// TestPropertyABuildThatFailsItsSmokeTestsNeverServes drives random
// releases (some of builds that fail their smoke tests), reverts, injected
// faults (the smoke runner's too) and crash-restarts. After every pass no
// invariant is broken and no instance running a broken build has weight or
// is enabled; once faults stop, the desired state is reached or the
// release is cleanly aborted.
func TestPropertyABuildThatFailsItsSmokeTestsNeverServes(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		initial := smokeService(rt, spec.GroupA, "1.0.0")
		e := propertyEnv(t, rt, initial)
		broken := map[string]bool{}
		rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 2))
		faultRate := rapid.Float64Range(0, 0.2).Draw(rt, "faultRate")
		faults := true
		e.world.SetFaults(memory.Faults{
			Fail: func(op string) error {
				// Probes run concurrently: faulting them would make the
				// draws of rng depend on the schedule.
				if faults && op != "probe" && op != "evidence" && rng.Float64() < faultRate {
					return fmt.Errorf("%s: %w", op, memory.ErrInjected)
				}
				return nil
			},
			DeployHook: func(_ context.Context, req providers.DeployRequest) error {
				for _, in := range req.Instances {
					e.world.UpdateApp(in.Addr(), func(a *memory.App) {
						a.SmokeAnswer = ""
						if broken[req.Version] {
							a.SmokeAnswer = "broken build " + req.Version
						}
					})
				}
				return nil
			},
		})
		desired, next := initial, 0
		neverServesBroken := func() {
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				for _, in := range desired.Groups.Get(g) {
					if app := e.world.App(in.Addr()); app.SmokeAnswer != "" {
						require.False(rt, e.world.Enabled(*desired.Registry.Nacos, in.Addr()), "%s runs a broken build %s", in, app.Version)
						for _, b := range desired.Traffic {
							require.Zero(rt, e.world.Weight(b, in.ID), "%s runs a broken build %s", in, app.Version)
						}
					}
				}
			}
		}
		for i := range rapid.IntRange(1, 40).Draw(rt, "steps") {
			switch rapid.IntRange(0, 5).Draw(rt, fmt.Sprintf("action%d", i)) {
			case 0: // a release, of a broken build or not
				next++
				v := fmt.Sprintf("1.%d.0", next)
				broken[v] = rapid.Bool().Draw(rt, "broken")
				desired = smokeService(rt, desired.Active.Other(), v)
			case 1: // git revert: back to the other group at what it runs
				other := desired.Active.Other()
				desired = smokeService(rt, other, e.world.App(desired.Groups.Get(other)[0].Addr()).Version)
			case 2:
				e.rec = e.reconciler()
			default:
				_ = e.pass(desired)
			}
			require.Empty(rt, e.world.Violations())
			neverServesBroken()
		}
		faults = false
		e.rec = e.reconciler()
		err := e.converge(desired, 3000)
		var stalled *reconcile.StalledError
		if errors.As(err, &stalled) {
			require.Contains(rt, []string{"ReleaseFailed", "VersionWithoutFlip"}, stalled.Reason, "unexpected stall: %v", err)
		} else {
			require.NoError(rt, err)
			requireLive(rt, e, desired)
		}
		require.Empty(rt, e.world.Violations())
		neverServesBroken()
	})
}

// TestGuardLetsSmokeTestsReachAGroupOnlyThePreviewRouteCarries: phase
// preview comes before smoke, so the target may already carry the preview
// route (testers' traffic); smoke checks may run, and still not once a main
// binding carries it.
func TestGuardLetsSmokeTestsReachAGroupOnlyThePreviewRouteCarries(t *testing.T) {
	svc := previewService(t, spec.GroupB, "1.1.0")
	live := func(mainB int) *reconcile.Live {
		l := &reconcile.Live{}
		for _, b := range svc.Traffic {
			bl := reconcile.BindingLive{Binding: b}
			wA, wB := 100, mainB
			if b.Preview {
				wA, wB = 0, 100
			}
			for _, in := range svc.Instances(spec.GroupA) {
				bl.Backends = append(bl.Backends, providers.Backend{ID: in.ID, Weight: wA})
			}
			for _, in := range svc.Instances(spec.GroupB) {
				bl.Backends = append(bl.Backends, providers.Backend{ID: in.ID, Weight: wB})
			}
			l.Bindings = append(l.Bindings, bl)
		}
		return l
	}
	smoke := &reconcile.Step{Action: reconcile.ActionSmoke, Group: spec.GroupB, Describe: "smoke-test group B"}
	require.NoError(t, reconcile.Guard(svc, live(0), smoke))

	err := reconcile.Guard(svc, live(100), smoke)
	var inv *reconcile.InvariantError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, 3, inv.Invariant)
	require.NotContains(t, err.Error(), "sgp-preview", "the preview route is not counted")
}

// TestSmokeTestsRunWhileThePreviewRouteCarriesTheTarget: phase preview moves
// the preview route to the target before the smoke tests; the smoke phase
// must not take it back (it did, and the release stalled on invariant 4).
func TestSmokeTestsRunWhileThePreviewRouteCarriesTheTarget(t *testing.T) {
	svc := func(active spec.Group, version string) *spec.Service {
		text := strings.Replace(fmt.Sprintf(fullService, active, version), "registry:\n", previewBinding+"registry:\n", 1) + smokeGates
		svcs, ps := spec.ParseServices("services/user.yaml", []byte(text))
		require.NoError(t, ps.Err())
		return svcs[0]
	}
	e := newEnv(t, svc(spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := svc(spec.GroupB, "1.1.0")
	require.NoError(t, e.converge(want, 500))
	requireLive(t, e, want)
	require.Equal(t, []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhasePreviewRoute, reconcile.PhaseSmoke,
		reconcile.PhaseEnable, reconcile.PhaseShift, reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch}, completedPhases(e))
	require.Equal(t, 1, e.world.Calls()["smoke"])
}
