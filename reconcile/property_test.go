package reconcile_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// TestPropertyInvariantsHoldAndStateConverges drives random sequences of
// desired-state changes (releases, reverts, drift by hand, on a service with
// or without a preview route), injected provider
// faults, unhealthy instances, servers the LB's own health checks cannot
// reach (with LB health modelled: weighted servers start initial and become
// healthy after a threshold of checks) and crash-restarts from the journal against the
// in-memory world. After every pass the world must report no invariant
// violation; once faults stop, Tandem must bring the live state to the
// desired state (or to a clean, reported abort of a failed release, after
// which a new release must succeed).
func TestPropertyInvariantsHoldAndStateConverges(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		// The service shifts all at once, in weight steps, or in a ramp;
		// with or without a preview route (it carries the target from the
		// preview phase on, and invariant 1 holds on it as on every binding).
		rollout := rapid.SampledFrom(propertyRollouts).Draw(rt, "rollout")
		preview := rapid.Bool().Draw(rt, "previewRoute")
		svc := func(g spec.Group, version string) *spec.Service {
			text := fmt.Sprintf(fullService, g, version)
			if preview {
				text = strings.Replace(text, "registry:\n", previewBinding+"registry:\n", 1)
			}
			svcs, ps := spec.ParseServices("services/user.yaml", []byte(text+rollout))
			require.NoError(rt, ps.Err())
			return svcs[0]
		}
		initial := svc(spec.GroupA, "1.0.0")
		e := propertyEnv(t, rt, initial)
		// The LB checks its servers itself (0: it mirrors app health).
		e.world.ModelLBHealth(rapid.IntRange(0, 3).Draw(rt, "lbHealthyThreshold"))
		desired := initial
		versions := map[spec.Group]string{spec.GroupA: "1.0.0", spec.GroupB: "1.0.0"}
		next := 1
		stopFaults := randomFaults(rt, e, 0.3)

		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("action%d", i)) {
			case 0: // a release: new version on the other group
				next++
				to := desired.Active.Other()
				v := fmt.Sprintf("1.%d.0", next)
				desired = svc(to, v)
			case 1: // git revert: back to the other group at the version it runs
				desired = svc(desired.Active.Other(), versions[desired.Active.Other()])
			case 2: // crash and restart
				e.rec = e.reconciler()
			case 3: // an instance falls over, or comes back
				addr := rapid.SampledFrom([]string{"10.0.1.11:8080", "10.0.1.12:8080", "10.0.2.11:8080", "10.0.2.12:8080"}).Draw(rt, "addr")
				healthy := rapid.Bool().Draw(rt, "healthy")
				e.world.UpdateApp(addr, func(a *memory.App) { a.Healthy = healthy })
			case 8: // the LB is cut off from an instance (a security group), or no longer
				addr := rapid.SampledFrom([]string{"10.0.1.11:8080", "10.0.1.12:8080", "10.0.2.11:8080", "10.0.2.12:8080"}).Draw(rt, "lbAddr")
				e.world.CutOffLB(addr, rapid.Bool().Draw(rt, "cut"))
			case 4: // drift: a console weight change
				id := rapid.SampledFrom([]string{"i-a1", "i-b2"}).Draw(rt, "id")
				b := rapid.SampledFrom(desired.Traffic).Draw(rt, "binding")
				e.world.SetWeight(b, id, rapid.IntRange(0, 100).Draw(rt, "w"))
			default:
				_ = e.pass(desired)
			}
			require.Empty(rt, e.world.Violations())
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				versions[g] = e.world.App(desired.Groups.Get(g)[0].Addr()).Version
			}
		}

		// Faults stop and instances recover; drift is healed.
		stopFaults()
		for _, addr := range []string{"10.0.1.11:8080", "10.0.1.12:8080", "10.0.2.11:8080", "10.0.2.12:8080"} {
			e.world.UpdateApp(addr, func(a *memory.App) { a.Healthy = true })
			e.world.CutOffLB(addr, false)
		}
		e.rec = e.reconciler()
		e.rec.Heal = true
		// Two clean ways to refuse: a release that failed and was undone, or
		// commits that skipped a release (a version change on the serving
		// group). Either is reported, and a proper release goes through. A
		// drift repair that cannot complete (the desired group does not run
		// the desired version) stalls too, until a person fixes the live
		// state by hand.
		settle(rt, e, desired, next, svc, e.converge, "ReleaseFailed", "VersionWithoutFlip", "HealFailed")
	})
}

// propertyEnv is newEnv for a property test: group A serves 1.0.0 of
// initial, the journal is kept in memory, failures go to rt.
func propertyEnv(t *testing.T, rt *rapid.T, initial *spec.Service) *env {
	e := newEnv(t, initial, spec.GroupA, "1.0.0", "1.0.0")
	e.t = rt
	e.store = &memStore{m: map[string]reconcile.State{}}
	e.rec = e.reconciler()
	return e
}

// randomFaults makes a share of the world's calls (drawn up to maxRate)
// fail until stop is called. Faults are decided by a PRNG seeded from
// rapid: probes run concurrently, and rapid must only be drawn from the
// test's goroutine.
func randomFaults(rt *rapid.T, e *env, maxRate float64) (stop func()) {
	faultRate := rapid.Float64Range(0, maxRate).Draw(rt, "faultRate")
	rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 1))
	faults := true
	e.world.SetFaults(memory.Faults{Fail: func(op string) error {
		// Called with the world locked: rng is never used concurrently.
		if faults && rng.Float64() < faultRate {
			return fmt.Errorf("%s: %w", op, memory.ErrInjected)
		}
		return nil
	}})
	return func() { faults = false }
}

// settle converges to desired with converge once the faults have stopped.
// A stall is one of reasons, and the person on call puts it right: group
// A back in charge by hand and a new release to group B (at builds it, of
// the version after 1.next.0), which goes through. Then the live state is
// the desired one and no invariant was broken.
func settle(rt *rapid.T, e *env, desired *spec.Service, next int, at func(spec.Group, string) *spec.Service,
	converge func(*spec.Service, int) error, reasons ...string) {
	err := converge(desired, 3000)
	var stalled *reconcile.StalledError
	if errors.As(err, &stalled) {
		require.Contains(rt, reasons, stalled.Reason, "unexpected stall: %v", err)
		e.world.ServeOnly(desired, spec.GroupA)
		desired = at(spec.GroupB, fmt.Sprintf("1.%d.0", next+1))
		err = converge(desired, 3000)
	}
	require.NoError(rt, err)
	requireLive(rt, e, desired)
	require.Empty(rt, e.world.Violations())
}

// propertyRollouts are the rollouts the property test draws from: none,
// weight steps (one that only raises the target, one that raises and
// lowers), and a ramp.
var propertyRollouts = []string{"",
	"\nrollout: {steps: [{traffic: 10, pause: 5s, hold: 2s}, {traffic: 60, pause: 3s}]}\n",
	"\nrollout: {ramp: {duration: 30s, steps: 3, from: 10}}\n",
}

// requireLive asserts that the world is exactly the desired state.
func requireLive(t require.TestingT, e *env, svc *spec.Service) {
	y, x := svc.Active, svc.Active.Other()
	for _, b := range svc.Traffic {
		for _, in := range svc.Groups.Get(y) {
			require.Equal(t, b.Weight, e.world.Weight(b, in.ID), "%s %s", b.Key(), in)
		}
		for _, in := range svc.Groups.Get(x) {
			require.Equal(t, 0, e.world.Weight(b, in.ID), "%s %s", b.Key(), in)
		}
	}
	for _, in := range svc.Groups.Get(y) {
		require.Equal(t, svc.Version, e.world.App(in.Addr()).Version)
		require.True(t, e.world.Enabled(*svc.Registry.Nacos, in.Addr()))
	}
	for _, in := range svc.Groups.Get(x) {
		require.False(t, e.world.Enabled(*svc.Registry.Nacos, in.Addr()))
	}
}
