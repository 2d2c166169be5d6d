package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

func TestUnhealthyTargetAfterShiftSwapsBack(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	// The new version passes verification, then falls over once it has traffic.
	for range 500 {
		_ = e.pass(want)
		if st := e.state(want.Name); st.Transition != nil && st.Transition.Phase == reconcile.PhaseDrain {
			break
		}
	}
	e.world.UpdateApp("10.0.2.11:8080", func(a *memory.App) { a.Healthy = false })
	err := e.converge(want, 500)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "ReleaseFailed", s.Reason)
	require.Contains(t, e.reasons(), reconcile.ReasonSwappedBack)
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-a1"))
	require.Equal(t, 0, e.world.Weight(want.Traffic[0], "i-b2"))
	require.True(t, e.world.Enabled(*want.Registry.Nacos, "10.0.1.11:8080"))
	require.Empty(t, e.world.Violations())
}

func TestDrainWaitsForEvidenceAndClosesWhatIsLeftAtTheCeiling(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	e.world.UpdateApp("10.0.1.11:8080", func(a *memory.App) { a.InFlight = 3 })
	e.world.SetSessions(want.Traffic[0], "i-a1", 7)
	e.world.SetSessions(want.Traffic[1], "i-a2", 2)
	require.NoError(t, e.converge(want, 2000))
	st := e.state(want.Name)
	require.Equal(t, spec.GroupB, st.Applied.Active)
	require.Contains(t, e.reasons(), reconcile.ReasonDrainCeiling)
	require.Equal(t, 2, e.world.Calls()["close-sessions"], "what was left is closed on every binding that had sessions")
	for _, b := range want.Traffic {
		for _, be := range backends(t, e, b) {
			require.Zero(t, be.Sessions, "%s %s", b.Key(), be.ID)
		}
	}
	var drain time.Duration
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonPhaseCompleted && ev.Phase == reconcile.PhaseDrain {
			drain = ev.Duration
		}
	}
	require.GreaterOrEqual(t, drain, 2*time.Minute, "the drain ran to its ceiling because evidence never reached zero")
}

func TestDrainEndsEarlyOnEvidenceButNotBeforePropagation(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(service(t, spec.GroupB, "1.1.0"), 2000))
	var drain time.Duration
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonPhaseCompleted && ev.Phase == reconcile.PhaseDrain {
			drain = ev.Duration
		}
	}
	require.GreaterOrEqual(t, drain, 30*time.Second)
	require.Less(t, drain, 2*time.Minute)
	require.NotContains(t, e.reasons(), reconcile.ReasonDrainCeiling)
}

// A registry consumer may route a WebSocket that reconnects after the drain
// signal straight back to the old group until its cache has caught up, and
// no second signal would close it there: the signal waits for
// drain.propagation (30s in fullService) after the drain began.
func TestTheDrainSignalWaitsForPropagation(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(service(t, spec.GroupB, "1.1.0"), 500))
	var drainStart, signal time.Time
	for _, ev := range e.events {
		switch {
		case ev.Reason == reconcile.ReasonPhaseCompleted && ev.Phase == reconcile.PhaseDisable:
			drainStart = ev.Time
		case ev.Reason == reconcile.ReasonStepApplied && ev.Phase == reconcile.PhaseDrain:
			require.True(t, signal.IsZero(), "one signal")
			signal = ev.Time
			require.Contains(t, ev.Message, "close long-lived sessions")
		}
	}
	require.False(t, drainStart.IsZero())
	require.False(t, signal.IsZero(), "the old group was signalled")
	require.GreaterOrEqual(t, signal.Sub(drainStart), 30*time.Second)
	require.True(t, e.world.App("10.0.1.11:8080").Signalled)
}

func TestTheDrainSignalIsJournaledAsSentOnlyOnceEveryInstanceWasAsked(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	var during []bool // Signaled as journaled when each signal is sent
	e.world.SetFaults(memory.Faults{Fail: func(op string) error {
		if op == "signal" {
			st, err := e.store.Load(context.Background(), want.Name)
			require.NoError(t, err)
			during = append(during, st.Transition.Drain.Signaled)
		}
		return nil
	}})
	require.NoError(t, e.converge(want, 500))
	// A restart during the step finds it not done, and asks every
	// instance again (a crash after the first signal left the others'
	// WebSockets open until the load balancer cut them).
	require.Equal(t, []bool{false, false}, during)
}
