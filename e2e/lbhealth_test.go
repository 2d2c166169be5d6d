package e2e_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// requireLoweredOnlyWhenTheLBReportedTheOtherGroupHealthy reads the weight
// changes the emulated ALB received, each with the health its own checks
// (healthy threshold 2) reported when the change arrived: every change that
// takes a group to 0 came when the LB reported every server of the other
// group healthy, and every raise of a group came while the LB had not
// checked it yet (weight 0 is not checked: Unused), so each lower was
// preceded by the LB's own checks of the raised group. It returns the
// number of lowers.
func requireLoweredOnlyWhenTheLBReportedTheOtherGroupHealthy(t *testing.T, calls []stage.LBCall) (lowers int) {
	t.Helper()
	require.NotEmpty(t, calls)
	weighted := map[spec.Group]bool{spec.GroupA: true} // the stage starts with A serving
	for i, c := range calls {
		var lowered, raisedNow []spec.Group
		for id, w := range c.Weights {
			g := stage.GroupOf(id)
			if w == 0 {
				lowered = append(lowered, g)
			} else {
				raisedNow = append(raisedNow, g)
				require.Equal(t, "Unused", c.Health[id], "call %d: %s raised before the LB checked it", i, id)
			}
		}
		require.False(t, len(lowered) > 0 && len(raisedNow) > 0, "call %d raises and lowers at once: %v", i, c.Weights)
		for _, g := range raisedNow {
			weighted[g] = true
		}
		if len(lowered) == 0 {
			continue
		}
		lowers++
		other := lowered[0].Other()
		require.True(t, weighted[other], "call %d lowers group %s while group %s has no weight", i, lowered[0], other)
		for id, h := range c.Health {
			if stage.GroupOf(id) == other {
				require.Equal(t, "Healthy", h, "call %d lowers group %s while the LB reports %s %s", i, lowered[0], id, h)
			}
		}
		weighted[lowered[0]] = false
	}
	return lowers
}

// TestReleaseTheALBCannotReachFailsWithTheServingGroupNeverLowered: the
// emulated ALB is cut off from group B (its health checks of B fail and it
// cannot forward to B, as with a security group that drops the LB's
// addresses) while Tandem's own probes reach B. The release raises B, the
// LB never reports it healthy, and the release ends failed with B taken
// back to 0: group A never lost its weight, users saw nothing, and the
// message names the servers and the LB's reason.
func TestReleaseTheALBCannotReachFailsWithTheServingGroupNeverLowered(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Services: []stage.Service{{Name: service, LB: spec.KindALB}},
		Timing: stage.Timing{LBHealthTimeout: 3 * time.Second}, Log: log})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	head, err := s.Head()
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, service, head)
	require.NoError(t, err)
	viaLB, err := s.StartTraffic(ctx, s.URL(service), lbRate, lbClients)
	require.NoError(t, err)

	require.NoError(t, s.BlockLB(service, spec.GroupB, true))
	rev, err := s.Release(ctx, service, "1.1.0")
	require.NoError(t, err)
	stalled := waitStalled(t, ctx, s, rev)
	r := viaLB.Stop()
	t.Logf("through the load balancer: %s", r)

	require.Equal(t, "ReleaseFailed", stalled.Reason)
	for _, want := range []string{"did not report group B healthy on alb:stage/sgp-web within verify.lbHealthTimeout 3s",
		"web-b1(", "web-b2(", "unhealthy (CONNECT_TIMEOUT)", "group A was never lowered"} {
		require.Contains(t, stalled.Message, want)
	}
	require.Positive(t, r.Requests)
	require.Zero(t, r.Failed, "failed requests: %s", r)
	require.Zero(t, r.Lost, "lost messages: %s", r)
	require.Equal(t, r.Messages, r.Echoed, "every message echoed: %s", r)
	require.Zero(t, r.Abnormal, "%s", r)
	for _, p := range r.Timeline {
		if p.Requests+p.Echoed > 0 {
			require.Equal(t, spec.GroupA, stage.GroupOf(p.Backend), "answered from %s", p.Backend)
		}
	}
	calls := s.LBCalls()
	for i, c := range calls {
		for id, w := range c.Weights {
			require.False(t, stage.GroupOf(id) == spec.GroupA && w == 0, "call %d lowered %s", i, id)
		}
	}
	require.Equal(t, 1, requireLoweredOnlyWhenTheLBReportedTheOtherGroupHealthy(t, calls), "one lower: B back to 0")
	var warned bool
	for _, e := range s.Events() {
		warned = warned || (e.Reason == reconcile.ReasonAbortStarted && strings.Contains(e.Message, "CONNECT_TIMEOUT"))
	}
	require.True(t, warned, "the abort's event names the LB's reason")
}

// waitStalled polls the daemon's status until revision rev stalls.
func waitStalled(t *testing.T, ctx context.Context, s *stage.Stage, rev string) reconcile.Condition {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, ok := s.Daemon().Reconciler().Status(service)
		if ok && st.Revision.Hash == rev {
			for _, c := range st.Conditions {
				if c.Type == reconcile.ConditionStalled && c.Status {
					return c
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("revision %s did not stall: %s", rev, st.Summary)
		case <-tick.C:
		}
	}
}
