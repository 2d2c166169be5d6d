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

func TestReleaseMovesTrafficToTheUpgradedIdleGroup(t *testing.T) {
	old := service(t, spec.GroupA, "2.4.0")
	e := newEnv(t, old, spec.GroupA, "2.4.0", "2.4.0")
	require.NoError(t, e.converge(old, 20))

	want := service(t, spec.GroupB, "2.5.0")
	require.NoError(t, e.converge(want, 500))

	alb, slb := want.Traffic[0], want.Traffic[1]
	for _, b := range []spec.Binding{alb, slb} {
		require.Equal(t, 100, e.world.Weight(b, "i-b1"))
		require.Equal(t, 100, e.world.Weight(b, "i-b2"))
		require.Equal(t, 0, e.world.Weight(b, "i-a1"))
		require.Equal(t, 0, e.world.Weight(b, "i-a2"))
	}
	ref := *want.Registry.Nacos
	require.True(t, e.world.Enabled(ref, "10.0.2.11:8080"))
	require.False(t, e.world.Enabled(ref, "10.0.1.11:8080"))
	require.Equal(t, "2.5.0", e.world.App("10.0.2.11:8080").Version)
	require.Equal(t, "2.4.0", e.world.App("10.0.1.11:8080").Version, "the old group stays warm at its version")
	require.True(t, e.world.App("10.0.1.11:8080").Signalled, "old group was asked to close WebSockets")
	require.Len(t, e.world.Deploys(), 1)
	require.Empty(t, e.world.Violations())

	st := e.state("user-service")
	require.Nil(t, st.Transition)
	require.Equal(t, &reconcile.Applied{Active: spec.GroupB, Version: "2.5.0", Revision: "rev-2.5.0", At: st.Applied.At}, st.Applied)
	require.Contains(t, e.reasons(), reconcile.ReasonTransitionSucceeded)
}

func TestPhasesRunInDesignOrder(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(service(t, spec.GroupB, "1.1.0"), 500))
	var phases []reconcile.Phase
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonPhaseCompleted {
			phases = append(phases, ev.Phase)
		}
	}
	require.Equal(t, []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhaseEnable, reconcile.PhaseShift,
		reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch}, phases)
}

func TestRevertGoesBackToTheWarmGroupWithoutDeploy(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "2.4.0"), spec.GroupA, "2.4.0", "2.4.0")
	require.NoError(t, e.converge(service(t, spec.GroupB, "2.5.0"), 500))
	require.Len(t, e.world.Deploys(), 1)

	require.NoError(t, e.converge(service(t, spec.GroupA, "2.4.0"), 500))
	require.Len(t, e.world.Deploys(), 1, "a revert to the warm group must not deploy")
	require.Equal(t, 100, e.world.Weight(service(t, spec.GroupA, "2.4.0").Traffic[0], "i-a1"))
	require.Empty(t, e.world.Violations())
}

func TestVersionChangeWithoutFlipStalls(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "2.4.0"), spec.GroupA, "2.4.0", "2.4.0")
	require.NoError(t, e.converge(service(t, spec.GroupA, "2.4.0"), 20))
	err := e.converge(service(t, spec.GroupA, "2.5.0"), 20)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "VersionWithoutFlip", s.Reason)
	require.Contains(t, s.Message, "must flip active to B")
	require.Empty(t, e.world.Deploys())
}

func TestFailedDeployAbortsAndTheSourceKeepsServing(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	e.world.SetFaults(memory.Faults{Fail: func(op string) error {
		if op == "deploy" {
			return memory.ErrInjected
		}
		return nil
	}})
	want := service(t, spec.GroupB, "1.1.0")
	err := e.converge(want, 200)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "ReleaseFailed", s.Reason)
	require.Contains(t, e.reasons(), reconcile.ReasonTransitionAborted)
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-a1"))
	require.Equal(t, 0, e.world.Weight(want.Traffic[0], "i-b1"))
	require.Empty(t, e.world.Violations())

	// A new commit (a fix) is tried; the failed one is not retried meanwhile.
	e.world.SetFaults(memory.Faults{})
	require.NoError(t, e.converge(service(t, spec.GroupB, "1.1.1"), 500))
	require.Equal(t, "1.1.1", e.world.App("10.0.2.11:8080").Version)
}

func TestRestartAfterEveryPassResumesWithoutSecondDeploy(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	for i := range 500 {
		e.rec = e.reconciler() // a new process each pass: only the journal survives
		_ = e.pass(want)
		if st, _ := e.rec.Status(want.Name); st.InSync {
			break
		}
		require.Less(t, i, 499)
	}
	require.Len(t, e.world.Deploys(), 1)
	require.Empty(t, e.world.Violations())
}

func TestDriftIsReportedAndHealed(t *testing.T) {
	svc := service(t, spec.GroupA, "1.0.0")
	e := newEnv(t, svc, spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(svc, 20))

	e.world.SetWeight(svc.Traffic[0], "i-b1", 30) // someone in the console
	require.NoError(t, e.pass(svc))
	st, _ := e.rec.Status(svc.Name)
	require.False(t, st.InSync)
	require.Equal(t, []string{
		"live active group is mixed: A serving, B partly serving",
		"alb:prod/sgp-1: i-b1(10.0.2.11:8080) (group B) has weight 30, want 0",
	}, st.Drift)
	require.Contains(t, e.reasons(), reconcile.ReasonDriftDetected)
	require.Equal(t, 30, e.world.Weight(svc.Traffic[0], "i-b1"), "alert mode changes nothing")

	e.rec.Heal = true
	require.NoError(t, e.converge(svc, 500))
	require.Equal(t, 0, e.world.Weight(svc.Traffic[0], "i-b1"))
	require.Contains(t, e.reasons(), reconcile.ReasonDriftResolved)
	require.Empty(t, e.world.Deploys(), "healing never deploys")
}

func TestGuardRefusesDeployToAServingGroup(t *testing.T) {
	svc := service(t, spec.GroupB, "2.0.0")
	live := &reconcile.Live{Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: []providers.Backend{
		{ID: "i-b1", Weight: 100}, {ID: "i-b2", Weight: 0}, {ID: "i-a1", Weight: 100}, {ID: "i-a2", Weight: 100},
	}}}}
	err := reconcile.Guard(svc, live, &reconcile.Step{Action: reconcile.ActionDeploy, Group: spec.GroupB, Describe: "deploy 2.0.0 to group B"})
	var inv *reconcile.InvariantError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, 3, inv.Invariant)
	require.Contains(t, err.Error(), "i-b1(10.0.2.11:8080) weight 100 on alb:prod/sgp-1")
}

func TestGuardRefusesToZeroTheLastHealthyWeight(t *testing.T) {
	svc := service(t, spec.GroupA, "2.0.0")
	live := &reconcile.Live{
		Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: []providers.Backend{
			{ID: "i-a1", Weight: 100, Health: providers.HealthHealthy}, {ID: "i-a2", Weight: 100, Health: providers.HealthUnhealthy},
			{ID: "i-b1"}, {ID: "i-b2"},
		}}},
	}
	step := &reconcile.Step{Action: reconcile.ActionSetWeights, Binding: &svc.Traffic[0], Describe: "lower i-a1",
		Weights: []providers.WeightChange{{ID: "i-a1", Weight: 0}}}
	err := reconcile.Guard(svc, live, step)
	var inv *reconcile.InvariantError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, 1, inv.Invariant)
}

func TestGuardRefusesWeightForAnUnverifiedInstance(t *testing.T) {
	svc := service(t, spec.GroupA, "2.0.0")
	live := &reconcile.Live{
		Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: []providers.Backend{
			{ID: "i-a1", Weight: 100}, {ID: "i-a2", Weight: 100}, {ID: "i-b1"}, {ID: "i-b2"},
		}}},
		Probes: map[string]providers.ProbeResult{"10.0.2.11:8080": {Healthy: true, Version: "1.9.0"}},
	}
	step := &reconcile.Step{Action: reconcile.ActionSetWeights, Binding: &svc.Traffic[0], Version: "2.0.0", Describe: "raise i-b1",
		Weights: []providers.WeightChange{{ID: "i-b1", Weight: 100}}}
	err := reconcile.Guard(svc, live, step)
	var inv *reconcile.InvariantError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, 4, inv.Invariant)
	require.Contains(t, inv.Explain, "runs 1.9.0, not the verified version 2.0.0")
}

func TestJournalIsWrittenBeforeTheFirstSideEffect(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	var journaled *reconcile.Transition
	e.world.SetFaults(memory.Faults{DeployHook: func(ctx context.Context, req providers.DeployRequest) error {
		st, err := e.store.Load(ctx, want.Name)
		require.NoError(t, err)
		journaled = st.Transition
		return nil
	}})
	require.NoError(t, e.converge(want, 500))
	require.NotNil(t, journaled, "the transition was journaled before the deploy ran")
	require.True(t, journaled.Deploy.Started)
	require.False(t, journaled.Deploy.Done)
}

func TestSuspendedServiceIsObservedButNotChanged(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	want.Suspend = true
	for range 10 {
		require.NoError(t, e.pass(want))
	}
	require.Empty(t, e.world.Deploys())
	st, _ := e.rec.Status(want.Name)
	require.True(t, st.Suspended)
	require.Contains(t, st.Message, "suspended")
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-a1"))
}

func TestHangingDeployTimesOutAndAborts(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	want.Deploy.Timeout = spec.Duration(10 * time.Millisecond)
	e.world.SetFaults(memory.Faults{DeployHook: func(ctx context.Context, _ providers.DeployRequest) error {
		<-ctx.Done()
		return fmt.Errorf("deploy hook: %w", ctx.Err())
	}})
	err := e.converge(want, 200)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "ReleaseFailed", s.Reason)
	require.Contains(t, s.Message, "deadline exceeded")
	require.Empty(t, e.world.Violations())
}

// interruptDeploy makes the first deploy end as a daemon stopped during it
// leaves it: started and journaled, its outcome never recorded, the deploy
// system still at work; then the daemon restarts.
func interruptDeploy(e *env, svc *spec.Service) {
	first := true
	e.world.SetFaults(memory.Faults{DeployHook: func(_ context.Context, req providers.DeployRequest) error {
		if !first {
			return nil
		}
		first = false
		return fmt.Errorf("deploy of %s: %w", req.Version, context.Canceled)
	}})
	for range 50 {
		_ = e.pass(svc)
		if len(e.world.Deploys()) > 0 {
			break
		}
	}
	st := e.state(svc.Name)
	require.True(e.t, st.Transition.Deploy.Started)
	require.False(e.t, st.Transition.Deploy.Done)
	e.rec = e.reconciler() // the restart
}

func TestDeployInterruptedByARestartIsNotStartedAgainAndTheReleaseCompletes(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	interruptDeploy(e, want)
	for range 3 {
		_ = e.pass(want)
	}
	// The deploy system finishes the deploy it was given.
	for _, in := range want.Instances(spec.GroupB) {
		e.world.UpdateApp(in.Addr(), func(a *memory.App) { a.Version = want.Version })
	}
	require.NoError(t, e.converge(want, 500))
	require.Len(t, e.world.Deploys(), 1, "the interrupted deploy is not started a second time")
	requireLive(t, e, want)
	require.Empty(t, e.world.Violations())
}

func TestDeployInterruptedByARestartThatNeverCompletesAbortsAtTheDeployTimeout(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	want.Deploy.Timeout = spec.Duration(5 * time.Second)
	interruptDeploy(e, want)
	err := e.converge(want, 500)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "ReleaseFailed", s.Reason)
	require.Contains(t, s.Message, "was interrupted")
	require.Len(t, e.world.Deploys(), 1, "the interrupted deploy is not started a second time")
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-a1"), "group A still serves")
	require.Empty(t, e.world.Violations())
}

func TestRevertDuringReleaseUndoesItAtOnce(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	for range 500 {
		_ = e.pass(want)
		if st := e.state(want.Name); st.Transition != nil && st.Transition.Phase == reconcile.PhaseDisable {
			break
		}
	}
	revert := service(t, spec.GroupA, "1.0.0")
	require.NoError(t, e.converge(revert, 500))
	require.Contains(t, e.reasons(), reconcile.ReasonSwappedBack)
	require.Equal(t, 100, e.world.Weight(revert.Traffic[0], "i-a1"))
	require.Equal(t, 0, e.world.Weight(revert.Traffic[0], "i-b1"))
	st := e.state(revert.Name)
	require.Nil(t, st.Failed, "the reverted release is not remembered as failed once Git moved on")
	require.Len(t, e.world.Deploys(), 1)
	require.Empty(t, e.world.Violations())
}

// afterPair is a gateway and a user-service that comes after it (after:),
// both on group A at 1.0.0 in one memory world.
func afterPair(t *testing.T) (gateway, user *spec.Service, e *env) {
	t.Helper()
	gateway = service(t, spec.GroupA, "1.0.0")
	gateway.Name = "gateway"
	for i, b := range gateway.Traffic {
		b.ServerGroup, b.VServerGroup = "sgp-gw", "rsp-gw"
		gateway.Traffic[i] = b
	}
	gateway.Registry = nil
	gateway.Health.Version = spec.VersionSource{HTTP: "/version"}
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		insts := gateway.Groups.Get(g)
		for i := range insts {
			insts[i].IP = strings.Replace(insts[i].IP, "10.0.", "10.9.", 1)
			insts[i].ID = "gw-" + insts[i].ID
		}
	}
	user = service(t, spec.GroupA, "1.0.0")
	user.After = []string{"gateway"}
	e = newEnv(t, user, spec.GroupA, "1.0.0", "1.0.0")
	e.world.AddService(gateway, spec.GroupA, "1.0.0", "1.0.0")
	e.rec = e.reconciler()
	return gateway, user, e
}

func TestAfterOrdersTransitionsOfOneCommit(t *testing.T) {
	gateway, user, e := afterPair(t)
	pass := func(svc *spec.Service, rev string) error {
		_, err := e.rec.Reconcile(context.Background(), reconcile.Target{Service: svc, Revision: reconcile.Revision{Hash: rev}})
		return err
	}
	require.NoError(t, pass(gateway, "r1"))
	require.NoError(t, pass(user, "r1"))

	// One commit releases both: the gateway's status is still the old
	// revision's, so user-service must wait for it.
	gw2, user2 := *gateway, *user
	gw2.Active, gw2.Version = spec.GroupB, "1.1.0"
	user2.Active, user2.Version = spec.GroupB, "1.1.0"
	err := pass(&user2, "r2")
	var w *reconcile.WaitingError
	require.ErrorAs(t, err, &w)
	require.Equal(t, "WaitingForDependencies", w.Reason)
	require.Empty(t, e.world.Deploys())

	for range 500 {
		_ = pass(&gw2, "r2")
		e.world.Clock().Advance(time.Second)
		if st, _ := e.rec.Status("gateway"); st.InSync {
			break
		}
	}
	require.Len(t, e.world.Deploys(), 1)
	for range 500 {
		_ = pass(&user2, "r2")
		e.world.Clock().Advance(time.Second)
		if st, _ := e.rec.Status("user-service"); st.InSync {
			break
		}
	}
	require.Len(t, e.world.Deploys(), 2)
	require.Equal(t, "gateway", e.world.Deploys()[0].Service, "the dependency went first")
}

func backends(t *testing.T, e *env, b spec.Binding) []providers.Backend {
	t.Helper()
	got, err := e.world.LoadBalancer().Backends(context.Background(), b)
	require.NoError(t, err)
	return got
}

// The idle group's version and health stay in the status after a release
// (the old group, now warm), and a restarted daemon reads them again on its
// first pass, though quiet passes probe nothing.
func TestStatusShowsTheIdleGroupsVersionAndHealth(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	require.NoError(t, e.converge(want, 500))
	for range 3 {
		require.NoError(t, e.pass(want)) // quiet passes
	}
	check := func() {
		t.Helper()
		st, _ := e.rec.Status(want.Name)
		require.True(t, st.InSync)
		require.Equal(t, map[spec.Group]string{spec.GroupA: "1.0.0", spec.GroupB: "1.1.0"}, st.Versions)
		require.True(t, st.Probed[spec.GroupA].Healthy, "%+v", st.Probed)
		require.Equal(t, "1.0.0", st.Probed[spec.GroupA].Version)
		require.Equal(t, "rev-1.1.0", st.Probed[spec.GroupA].Applied, "read after the release completed")
	}
	check()
	e.rec = e.reconciler() // a restarted daemon
	require.NoError(t, e.pass(want))
	check()
}
