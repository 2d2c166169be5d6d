package reliability_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/promtest"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// upGate analyses the target group before the shift and during the watch
// with a query that always has data: every instance scraped up.
const upGate = `analysis:
  interval: 300ms
  beforeShift: 3s
  queries:
    - name: up
      query: min(up{instance=~"{{.Instances}}"})
      successCondition: result == 1
`

// TestSIGKILLDuringTheAnalysisResumesItsCounts kills `tandem run` twice
// in the analysis before the shift and twice in the watch's analysis,
// against a real Prometheus scraping the apps: after each restart the
// journaled measurements go on from where they were (never counted from 0
// again), the release completes, the invariants held throughout and the
// group was deployed once.
func TestSIGKILLDuringTheAnalysisResumesItsCounts(t *testing.T) {
	prom := promtest.Start(t, promtest.Options{ScrapeInterval: 250 * time.Millisecond})
	e := newEnv(t, envOptions{
		services:      []stage.Service{{Name: "shop", LB: spec.KindALB, Gates: upGate}},
		prometheusURL: prom.URL(),
		timing: stage.Timing{Propagation: 500 * time.Millisecond, Quiet: 100 * time.Millisecond, VerifyWindow: 3 * time.Second,
			HealthDeadline: 20 * time.Second, DeployTimeout: 10 * time.Second, DrainTimeout: 15 * time.Second},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	svc, _ := e.stage.Service("shop")
	var targets []string
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Groups.Get(g) {
			targets = append(targets, in.Addr())
		}
	}
	require.NoError(t, prom.SetTargets(targets))
	require.NoError(t, prom.WaitScraped(ctx, len(targets), 30*time.Second))
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "shop")

	rev, err := e.commit(ctx, "shop", "1.1.0")
	require.NoError(t, err)
	analysis := func() *reconcile.AnalysisProgress {
		st, err := e.daemon.journal("shop")
		if err != nil || st.Transition == nil || st.Transition.Kind != reconcile.KindRelease {
			return nil
		}
		return st.Transition.Analysis
	}
	kills := map[reconcile.Phase]int{}
	for _, phase := range []reconcile.Phase{reconcile.PhaseAnalysis, reconcile.PhaseAnalysis, reconcile.PhaseWatch, reconcile.PhaseWatch} {
		var before reconcile.AnalysisProgress
		require.NoError(t, poll(ctx, 20*time.Millisecond, func() bool {
			a := analysis()
			if a == nil || a.Phase != phase || a.Measurements < kills[phase]+1 {
				return false
			}
			before = *a
			return true
		}), "waiting for a measurement in phase %s", phase)
		e.daemon.kill()
		kills[phase]++
		e.daemon.start()
		// The next measurement adds to the journaled ones.
		require.NoError(t, poll(ctx, 20*time.Millisecond, func() bool {
			a := analysis()
			if a == nil || a.Phase != phase {
				return a != nil // the stage ended meanwhile
			}
			require.GreaterOrEqual(t, a.Measurements, before.Measurements, "the counts resumed, not restarted")
			require.GreaterOrEqual(t, a.Queries[0].Successful, before.Queries[0].Successful)
			return a.Measurements > before.Measurements
		}), "waiting for the next measurement in phase %s after the restart", phase)
	}
	t.Logf("SIGKILLs: %v", kills)
	e.requireOutcome(ctx, "shop", rev, succeeded)
	e.mon.requireNoViolation()
	require.Equal(t, 1, e.deploy.count("shop", spec.GroupB, "1.1.0"), "deployed once")
	require.Empty(t, e.deploy.repeated())
	var passed int
	for _, ev := range e.daemon.eventsFile() {
		if ev.Reason == reconcile.ReasonAnalysisPassed {
			passed++
		}
	}
	require.Equal(t, 1, passed, "one analysis before the shift, passed once")
	e.daemon.stop()
}
