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
// approval gate on: random releases, reverts, crash-restarts, unhealthy
// instances and injected faults, interleaved with promotes, aborts and
// decisions made for a transition that is not (or no longer) the paused
// one, and with the gate's timeout deciding either way. After every pass
// the world reports no invariant violation and a paused release's target
// group has no weight and is not enabled; a decision only ever ends the
// transition it names; once faults stop and someone promotes what pauses,
// the live state converges to the desired state.
func TestPropertyApprovalPausesPromotesAndAborts(t *testing.T) {
	var stats struct {
		pending, refused int
		decided          map[string]int
	}
	stats.decided = map[string]int{}
	defer func() {
		t.Logf("during the random steps: %d pauses, %d promoted, %d aborted, %d decisions refused",
			stats.pending, stats.decided[reconcile.ReasonPromoted], stats.decided[reconcile.ReasonAborted], stats.refused)
	}()
	rapid.Check(t, func(rt *rapid.T) {
		gate := rapid.SampledFrom([]string{"{}", "{timeout: 30m, onTimeout: promote}", "{timeout: 30m, onTimeout: abort}"}).Draw(rt, "gate")
		svcAt := func(g spec.Group, v string) *spec.Service { return gatedService(rt, g, v, gate) }
		initial := svcAt(spec.GroupA, "1.0.0")
		e := propertyEnv(t, rt, initial)
		desired := initial
		versions := map[spec.Group]string{spec.GroupA: "1.0.0", spec.GroupB: "1.0.0"}
		next := 1
		stopFaults := randomFaults(rt, e, 0.2)
		seen := map[string]bool{} // every transition id seen, for stale decisions

		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
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
				e.decide(desired, id, action, "property")
			default:
				_ = e.pass(desired)
			}
			require.Empty(rt, e.world.Violations())
			st := e.state(desired.Name)
			if t := st.Transition; t != nil {
				seen[t.ID] = true
				if t.Paused() {
					requireUntouchedTarget(rt, e, desired, t.To)
				}
				if d := approvalOf(t); d != nil {
					require.Equal(rt, t.ID, d.Transition, "a journaled decision names its own transition")
				}
			}
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				versions[g] = e.world.App(desired.Groups.Get(g)[0].Addr()).Version
			}
		}
		stats.pending += len(e.eventsOf(reconcile.ReasonApprovalPending))
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
	})
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
