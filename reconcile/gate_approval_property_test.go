package reconcile_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// TestPropertyApprovalPausesPromotesAndAborts is the property test with the
// approval gate on, manual rollout steps (pause: manual), or both: random
// releases, reverts, crash-restarts, unhealthy
// instances and injected faults, interleaved with promotes, aborts and
// decisions made for a transition that is not (or no longer) the paused
// one, and with the gate's timeout deciding either way. After every pass
// the world reports no invariant violation, a release paused at the gate
// has its target without weight and not enabled, one paused at a step has
// every binding at the step's share; a decision only ever ends the
// transition and the pause it names; once faults stop and someone promotes what pauses,
// the live state converges to the desired state.
func TestPropertyApprovalPausesPromotesAndAborts(t *testing.T) {
	var stats struct {
		pending, atStep, atStepAfter, refused int
		decided                               map[string]int
	}
	stats.decided = map[string]int{}
	defer func() {
		t.Logf("during the random steps: %d pauses (%d at a rollout step), %d promoted, %d aborted, %d decisions refused; then %d step pauses promoted while converging",
			stats.pending, stats.atStep, stats.decided[reconcile.ReasonPromoted], stats.decided[reconcile.ReasonAborted], stats.refused, stats.atStepAfter)
	}()
	rapid.Check(t, func(rt *rapid.T) {
		gate := rapid.SampledFrom([]string{"{}", "{timeout: 30m, onTimeout: promote}", "{timeout: 30m, onTimeout: abort}", ""}).Draw(rt, "gate")
		// Rollout steps with manual pauses (pause: manual), decided by the
		// same promotes and aborts.
		rollout := rapid.SampledFrom([]string{"", manualRollout, manualSteps}).Draw(rt, "rollout")
		if gate == "" && rollout == "" {
			rollout = manualSteps
		}
		svcAt := func(g spec.Group, v string) *spec.Service { return pausedService(rt, g, v, gate, rollout) }
		initial := svcAt(spec.GroupA, "1.0.0")
		e := propertyEnv(t, rt, initial)
		desired := initial
		versions := map[spec.Group]string{spec.GroupA: "1.0.0", spec.GroupB: "1.0.0"}
		next := 1
		stopFaults := randomFaults(rt, e, 0.2)
		seen := map[string]bool{} // every transition id seen, for stale decisions

		most := 60
		if rollout != "" {
			most = 150 // the passes to reach a rollout step
		}
		steps := rapid.IntRange(1, most).Draw(rt, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 9).Draw(rt, fmt.Sprintf("action%d", i)) {
			case 0:
				next++
				desired = svcAt(desired.Active.Other(), fmt.Sprintf("1.%d.0", next))
			case 1:
				desired = svcAt(desired.Active.Other(), versions[desired.Active.Other()])
			case 2:
				e.rec = e.reconciler()
			case 3:
				addr := rapid.SampledFrom([]string{"10.0.1.11:8080", "10.0.2.11:8080"}).Draw(rt, "addr")
				healthy := rapid.Bool().Draw(rt, "healthy")
				e.world.UpdateApp(addr, func(a *memory.App) { a.Healthy = healthy })
			case 4, 5: // promote or abort: the paused transition, whichever is paused, or a stale one
				action := spec.ApprovalPromote
				if rapid.Bool().Draw(rt, "abort") {
					action = spec.ApprovalAbort
				}
				id := ""
				if t := e.state(desired.Name).Transition; t != nil && rapid.Bool().Draw(rt, "named") {
					id = t.ID
				}
				if len(seen) > 0 && rapid.IntRange(0, 3).Draw(rt, "stale") == 0 {
					id = rapid.SampledFrom(sortedIDs(seen)).Draw(rt, "staleID")
				}
				// whichever pause is open, the gate's, or a step's (maybe
				// not the open one)
				step := rapid.IntRange(reconcile.AnyPause, 3).Draw(rt, "step")
				e.decideAt(desired, id, step, action, "property")
			default:
				_ = e.pass(desired)
			}
			require.Empty(rt, e.world.Violations())
			st := e.state(desired.Name)
			if t := st.Transition; t != nil {
				seen[t.ID] = true
				if a, step := t.OpenPause(); a != nil && step == 0 {
					requireUntouchedTarget(rt, e, desired, t.To)
				} else if a != nil {
					requireStepShares(rt, e, desired, t)
				}
				if d := approvalOf(t); d != nil {
					require.Equal(rt, t.ID, d.Transition, "a journaled decision names its own transition")
					require.Equal(rt, 0, d.Step, "the gate's decision is the gate's")
				}
				if r := t.Rollout; r != nil && r.Pause != nil && r.Pause.Decision != nil {
					require.Equal(rt, t.ID, r.Pause.Decision.Transition, "a journaled decision names its own transition")
					require.Equal(rt, r.Step+1, r.Pause.Decision.Step, "a step's decision is its step's")
				}
			}
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				versions[g] = e.world.App(desired.Groups.Get(g)[0].Addr()).Version
			}
		}
		for _, ev := range e.eventsOf(reconcile.ReasonApprovalPending) {
			stats.pending++
			if ev.PauseStep > 0 {
				stats.atStep++
			}
		}
		nEvents := len(e.events)
		stats.refused += len(e.eventsOf(reconcile.ReasonApprovalRefused))
		for _, ev := range e.events {
			if ev.Reason == reconcile.ReasonPromoted || ev.Reason == reconcile.ReasonAborted {
				require.True(rt, seen[ev.Transition], "a decision for a transition never seen: %+v", ev)
				stats.decided[ev.Reason]++
			}
		}

		stopFaults()
		for _, addr := range []string{"10.0.1.11:8080", "10.0.1.12:8080", "10.0.2.11:8080", "10.0.2.12:8080"} {
			e.world.UpdateApp(addr, func(a *memory.App) { a.Healthy = true })
		}
		e.rec = e.reconciler()
		e.rec.Heal = true
		settle(rt, e, desired, next, svcAt, e.convergePromoting, "ReleaseFailed", "VersionWithoutFlip", "HealFailed")
		for _, ev := range e.events[nEvents:] {
			if ev.Reason == reconcile.ReasonApprovalPending && ev.PauseStep > 0 {
				stats.atStepAfter++
			}
		}
	})
}

// manualSteps pauses for a decision at both partial steps.
const manualSteps = `
rollout:
  steps:
    - {traffic: 30, pause: manual}
    - {traffic: 70, hold: 5s, pause: manual}
`

// pausedService is fullService with gates.approval set to gate (YAML
// flow; "" for none) and rollout appended.
func pausedService(t tb, active spec.Group, version, gate, rollout string) *spec.Service {
	t.Helper()
	text := fmt.Sprintf(fullService, active, version) + rollout
	if gate != "" {
		text += "gates: {approval: " + gate + "}\n"
	}
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(text))
	require.NoError(t, ps.Err())
	require.Len(t, svcs, 1)
	return svcs[0]
}

// requireStepShares: a release paused at a manual step has the target
// enabled, the serving group still enabled, and every binding at the
// step's share.
func requireStepShares(t require.TestingT, e *env, svc *spec.Service, tr *reconcile.Transition) {
	want := float64(tr.Rollout.Current().Share)
	for _, b := range svc.Traffic {
		require.InDelta(t, want, share(e, svc, b, tr.To), 1, "paused at %s: %s", tr.Rollout.Position(), b.Key())
	}
	for _, g := range []spec.Group{tr.From, tr.To} {
		for _, in := range svc.Groups.Get(g) {
			require.True(t, e.world.Enabled(*svc.Registry.Nacos, in.Addr()), "paused at %s: %s is not enabled", tr.Rollout.Position(), in)
		}
	}
}

func approvalOf(t *reconcile.Transition) *reconcile.ApprovalVerdict {
	if t.Approval == nil {
		return nil
	}
	return t.Approval.Decision
}

// requireUntouchedTarget: a paused release's target has no weight on any
// binding and is not enabled in the registry.
func requireUntouchedTarget(t require.TestingT, e *env, svc *spec.Service, to spec.Group) {
	for _, b := range svc.Traffic {
		for _, in := range svc.Groups.Get(to) {
			require.Equal(t, 0, e.world.Weight(b, in.ID), "paused: %s %s has weight", b.Key(), in)
		}
	}
	for _, in := range svc.Groups.Get(to) {
		require.False(t, e.world.Enabled(*svc.Registry.Nacos, in.Addr()), "paused: %s is enabled", in)
	}
}

// convergePromoting is converge with a person who promotes every pause.
func (e *env) convergePromoting(svc *spec.Service, budget int) error {
	var err error
	for range budget {
		if t := e.state(svc.Name).Transition; t.Paused() {
			if _, step := t.OpenPause(); step > 0 {
				requireStepShares(e.t, e, svc, t)
			}
			e.decide(svc, t.ID, spec.ApprovalPromote, "on call")
		}
		err = e.pass(svc)
		st, _ := e.rec.Status(svc.Name)
		if reconcile.Classify(err) == reconcile.ClassStalled || (err == nil && st.InSync) {
			return err
		}
	}
	return fmt.Errorf("no convergence in %d passes, last error: %v", budget, err)
}

func sortedIDs(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
