package e2e_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// The rollouts of the progressive-traffic e2e: weight steps 10/50/100 and
// a warm-up ramp, with sub-second pauses; the revert lands while the 50%
// step is held (its pause is long enough to be caught).
const (
	stepsRollout  = "{steps: [{traffic: 10, pause: 700ms, hold: 300ms}, {traffic: 50, pause: 700ms}, {traffic: 100}]}"
	rampRollout   = "{ramp: {duration: 2s, steps: 4}}"
	revertRollout = "{steps: [{traffic: 10, pause: 300ms}, {traffic: 50, pause: 30s}, {traffic: 100}]}"
)

// Weight steps, a ramp and a revert in the middle of a step (runRollouts).
// The names are short: HAProxy's admin socket path, under the test's
// temporary directory, has at most 97 characters.
func TestRolloutsThroughHAProxyLoseNothing(t *testing.T) {
	haproxytest.SkipUnlessInstalled(t)
	runRollouts(t, stage.Service{Name: service, LB: spec.KindHAProxy, Nacos: true, Rollout: stepsRollout})
}

func TestRolloutsThroughTheALBEmulatorLoseNothing(t *testing.T) {
	runRollouts(t, stage.Service{Name: service, LB: spec.KindALB, Nacos: true, Rollout: stepsRollout})
}

// runRollouts releases and reverts with weight steps, then with a ramp,
// then reverts a release while its 50% step is held, under the suite's
// load through the load balancer and the Nacos consumer: users must notice
// nothing, every step must have been reached in order, and the revert
// must take all traffic back at once.
func runRollouts(t *testing.T, svc stage.Service) {
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Services: []stage.Service{svc}, Log: log})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	_, viaLB, viaConsumer := inSyncUnderLoad(t, ctx, s, service)

	inSync := func(rev string, what string) {
		t.Helper()
		_, err := s.WaitInSync(ctx, service, rev)
		require.NoError(t, err, what)
	}
	// Weight steps, both ways: the revert of a finished release is a
	// release back to the warm group, and rolls out too.
	rev, err := s.Release(ctx, service, "1.1.0")
	require.NoError(t, err)
	inSync(rev, "release 1.1.0 in steps")
	waitServed(t, ctx, viaLB, "1.1.0")
	requireStepsReached(t, s.Events(), rev, "step 1/3 (10%)", "step 2/3 (50%)", "step 3/3 (100%)")
	rev, err = s.Revert(ctx, service)
	require.NoError(t, err)
	inSync(rev, "revert of 1.1.0 in steps")
	requireStepsReached(t, s.Events(), rev, "step 1/3 (10%)", "step 2/3 (50%)", "step 3/3 (100%)")

	// The ramp.
	rev, err = s.SetRollout(service, rampRollout)
	require.NoError(t, err)
	inSync(rev, "the ramp committed")
	callsBefore := len(s.LBCalls())
	rev, err = s.Release(ctx, service, "1.2.0")
	require.NoError(t, err)
	inSync(rev, "release 1.2.0 in a ramp")
	if svc.LB == spec.KindALB {
		// The ramp's 4 steps on one binding: one weight change each, plus
		// one where the new group reaches its full weight and the old one
		// starts to fall; none both raises and lowers.
		calls := s.LBCalls()
		require.LessOrEqual(t, len(calls)-callsBefore, 4+1, "ALB weight changes of the ramp: %v", calls[callsBefore:])
		requireNoCallRaisesAndLowers(t, calls)
	}
	waitServed(t, ctx, viaLB, "1.2.0")
	requireStepsReached(t, s.Events(), rev, "step 1/4 (25%)", "step 2/4 (50%)", "step 3/4 (75%)", "step 4/4 (100%)")
	rev, err = s.Revert(ctx, service)
	require.NoError(t, err)
	inSync(rev, "revert of 1.2.0 in a ramp")

	// A revert while the 50% step is held: all traffic back at once.
	rev, err = s.SetRollout(service, revertRollout)
	require.NoError(t, err)
	inSync(rev, "the long step committed")
	release, err := s.Release(ctx, service, "1.3.0")
	require.NoError(t, err)
	require.NoError(t, pollJournal(ctx, s, func(tr *reconcile.Transition) bool {
		return tr != nil && tr.Rollout != nil && tr.Rollout.Step == 1 && !tr.Rollout.Reached.IsZero()
	}), "the release reaches its 50%% step")
	rev, err = s.Revert(ctx, service)
	require.NoError(t, err)
	inSync(rev, "revert in the middle of the 50% step")
	var aborted bool
	for _, e := range s.Events() {
		aborted = aborted || (e.Reason == reconcile.ReasonAbortStarted && e.Revision == release)
		require.NotContains(t, []string{reconcile.ReasonStepFailed, reconcile.ReasonDrainCeiling, reconcile.ReasonSwapBackStarted}, e.Reason, "%s: %s", e.Reason, e.Message)
	}
	require.True(t, aborted, "the release in its 50%% step was undone")

	stopUnnoticed(t, viaLB, viaConsumer)
}

// requireStepsReached asserts that the transition of revision rev reached
// exactly these rollout positions, in order.
func requireStepsReached(t *testing.T, events []reconcile.Event, rev string, positions ...string) {
	t.Helper()
	var got []string
	for _, e := range events {
		if e.Reason == reconcile.ReasonRolloutStep && e.Revision == rev {
			for _, p := range positions {
				if strings.HasPrefix(e.Message, "rollout "+p+" reached") {
					got = append(got, p)
				}
			}
		}
	}
	require.Equal(t, positions, got, "rollout steps reached by %s", rev)
}

// pollJournal waits (bounded) until the service's journaled transition
// satisfies cond.
func pollJournal(ctx context.Context, s *stage.Stage, cond func(*reconcile.Transition) bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if st, err := s.Journal(ctx, service); err == nil && cond(st.Transition) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// requireNoCallRaisesAndLowers asserts make-before-break call by call: no
// weight change to the ALB raises one server and lowers another. The stage
// starts with group A at 100 and group B at 0.
func requireNoCallRaisesAndLowers(t *testing.T, calls []stage.LBCall) {
	t.Helper()
	weights := map[string]int{}
	for i, c := range calls {
		var up, down bool
		for id, w := range c.Weights {
			old, seen := weights[id]
			if !seen && stage.GroupOf(id) == spec.GroupA {
				old = 100
			}
			up, down = up || w > old, down || w < old
			weights[id] = w
		}
		require.False(t, up && down, "call %d raises and lowers at once: %v", i, c.Weights)
	}
}
