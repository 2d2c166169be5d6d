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

// drainPlan brings a release to its drain and returns what the planner
// needs to plan a drain pass by hand: the service, the journaled state
// and the live state with the registry's push delay set to pushDelay.
func drainPlan(t *testing.T, pushDelay time.Duration, prepare func(*env)) (*spec.Service, reconcile.State, *reconcile.Live) {
	t.Helper()
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	for range 500 {
		_ = e.pass(want)
		if st := e.state(want.Name); st.Transition != nil && st.Transition.Phase == reconcile.PhaseDrain {
			break
		}
	}
	st := e.state(want.Name)
	require.Equal(t, reconcile.PhaseDrain, st.Transition.Phase)
	d := st.Transition.Drain
	require.False(t, d.DisableSent.IsZero(), "the disable's time is journaled")
	require.False(t, d.DisableSent.After(st.Transition.PhaseSince))
	if prepare != nil {
		prepare(e)
	}
	live, err := reconcile.Observe(context.Background(), e.world.Set(), want, reconcile.NeedsFor(want, st))
	require.NoError(t, err)
	live.Registry.PushDelay = pushDelay
	return want, st, live
}

// signalAt follows the planner's waits from `from`, as the worker does,
// to the pass that sends the drain signal, and checks that the last wait
// ended exactly when the signal became due (a pass 1 ms sooner still waits).
func signalAt(t *testing.T, svc *spec.Service, st reconcile.State, live *reconcile.Live, from time.Time) time.Time {
	t.Helper()
	plan := func(now time.Time) reconcile.Plan {
		return reconcile.Compute(reconcile.Input{Service: svc, Live: live, State: st, Now: now})
	}
	now := from
	for range 10 {
		p := plan(now)
		if p.Step != nil {
			require.Equal(t, reconcile.ActionSignalDrain, p.Step.Action)
			require.NotNil(t, plan(now.Add(-time.Millisecond)).Wait, "the signal was due before the wait ended")
			return now
		}
		require.NotNil(t, p.Wait)
		require.Equal(t, "WaitingForPropagation", p.Wait.Reason)
		require.Positive(t, p.Wait.For)
		now = now.Add(p.Wait.For)
	}
	t.Fatal("no drain signal after 10 waits")
	return time.Time{}
}

// drain.propagation (30s in fullService) counts from the disable when the
// registry's push delay is known, and a push that shows late pushes the
// signal back by its lateness: consumers are pushed the change about when
// Tandem's subscription is.
func TestPropagationCountsFromTheDisableAndAPushThatComesLateMovesItBack(t *testing.T) {
	const prop, delay = 30 * time.Second, 500 * time.Millisecond
	for _, c := range []struct {
		name      string
		delay     time.Duration
		pushAfter time.Duration // from the disable to the drain's start (the push seen)
		want      time.Duration // from the disable to the signal
	}{
		{"push delay unknown: from the push seen", 0, delay, delay + prop},
		{"push on time: from the disable", delay, delay, prop},
		{"push merged into an earlier one: from the disable", delay, 100 * time.Millisecond, prop},
		{"push 1.3s late: from the push seen, less the push delay", delay, 1300 * time.Millisecond, 1300*time.Millisecond + prop - delay},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc, st, live := drainPlan(t, c.delay, nil)
			tr := st.Transition
			tr.Drain.DisableSent = tr.PhaseSince.Add(-c.pushAfter)
			require.Equal(t, c.want, signalAt(t, svc, st, live, tr.PhaseSince).Sub(tr.Drain.DisableSent))
		})
	}
}

// A journal written before DisableSent existed (or a drain whose disable
// was not sent in this transition) counts from the drain's start.
func TestPropagationWithoutARecordedDisableCountsFromTheDrain(t *testing.T) {
	svc, st, live := drainPlan(t, 500*time.Millisecond, nil)
	st.Transition.Drain.DisableSent = time.Time{}
	require.Equal(t, 30*time.Second, signalAt(t, svc, st, live, st.Transition.PhaseSince).Sub(st.Transition.PhaseSince))
}

// After the signal the drain samples its evidence every EvidenceFastPoll
// from drain.quiet before the end of propagation until EvidenceFastFor
// after it, and every EvidencePoll otherwise.
func TestTheDrainSamplesEvidenceFastOnlyAroundTheEndOfPropagation(t *testing.T) {
	svc, st, live := drainPlan(t, 0, func(e *env) {
		e.world.UpdateApp("10.0.1.11:8080", func(a *memory.App) { a.InFlight = 1 })
	})
	tr := st.Transition
	tr.Drain.Signaled = true
	propEnd := tr.PhaseSince.Add(svc.Drain.Propagation.D())
	for _, c := range []struct {
		at   time.Time
		want time.Duration
	}{
		{tr.PhaseSince, reconcile.EvidencePoll},
		{propEnd.Add(-svc.Drain.Quiet.D() - time.Millisecond), reconcile.EvidencePoll},
		{propEnd.Add(-svc.Drain.Quiet.D()), reconcile.EvidenceFastPoll},
		{propEnd, reconcile.EvidenceFastPoll},
		{propEnd.Add(reconcile.EvidenceFastFor - time.Millisecond), reconcile.EvidenceFastPoll},
		{propEnd.Add(reconcile.EvidenceFastFor), reconcile.EvidencePoll},
	} {
		p := reconcile.Compute(reconcile.Input{Service: svc, Live: live, State: st, Now: c.at})
		require.NotNil(t, p.Wait, "at %s", c.at.Sub(tr.PhaseSince))
		require.Equal(t, "Draining", p.Wait.Reason)
		require.Equal(t, c.want, p.Wait.For, "at %s after the drain's start", c.at.Sub(tr.PhaseSince))
	}
}
