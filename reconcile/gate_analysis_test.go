package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// analysisGate is appended to fullService: one error-rate query on the
// target group, measured every 10s; beforeShift is set per test.
const analysisGate = `gates:
  analysis:
    prometheus: prom
    interval: 10s
    beforeShift: %s
    failureLimit: %d
    inconclusiveLimit: 1
    queries:
      - name: errors
        query: 'sum(rate(req{instance=~"{{.Instances}}",code=~"5.."}[1m])) / sum(rate(req{instance=~"{{.Instances}}"}[1m]))'
        successCondition: result < 0.05
`

func analysedService(t tb, active spec.Group, version, beforeShift string, failureLimit int) *spec.Service {
	t.Helper()
	text := strings.Replace(fullService, "%s", string(active), 1)
	text = strings.Replace(text, "%s", version, 1)
	gate := strings.Replace(analysisGate, "%s", beforeShift, 1)
	gate = strings.Replace(gate, "%d", strconv.Itoa(failureLimit), 1)
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(text+gate))
	require.NoError(t, ps.Err())
	return svcs[0]
}

// fakeProm answers every query with answer(query), and records the
// queries with the phase the journal was in.
type fakeProm struct {
	mu      sync.Mutex
	answer  func(query string) (providers.MetricValue, error)
	queries []string
}

func (f *fakeProm) Query(_ context.Context, q string) (providers.MetricValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return f.answer(q)
}

func (f *fakeProm) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queries)
}

func withProm(e *env, f *fakeProm) {
	e.rec.Providers.Metrics = map[string]providers.MetricsQuerier{"prom": f}
}

func value(v float64) func(string) (providers.MetricValue, error) {
	return func(string) (providers.MetricValue, error) { return providers.MetricValue{Value: v, Series: 1}, nil }
}

// releaseWithAnalysis sets up group A serving 1.0.0 and returns the
// release of 1.1.0 to group B.
func releaseWithAnalysis(t *testing.T, beforeShift string, failureLimit int, f *fakeProm) (*env, *spec.Service) {
	old := analysedService(t, spec.GroupA, "1.0.0", beforeShift, failureLimit)
	e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
	withProm(e, f)
	require.NoError(t, e.converge(old, 20))
	require.Zero(t, f.count(), "no transition, no analysis")
	return e, analysedService(t, spec.GroupB, "1.1.0", beforeShift, failureLimit)
}

func TestAGoodVersionPassesTheAnalysisBeforeAndAfterTheShift(t *testing.T) {
	f := &fakeProm{answer: value(0.01)}
	e, want := releaseWithAnalysis(t, "30s", 0, f)
	require.NoError(t, e.converge(want, 500))

	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-b1"))
	require.Contains(t, e.reasons(), reconcile.ReasonAnalysisPassed)
	require.NotContains(t, e.reasons(), reconcile.ReasonAnalysisMeasurement)
	var phases []reconcile.Phase
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonPhaseCompleted {
			phases = append(phases, ev.Phase)
		}
	}
	require.Contains(t, phases, reconcile.PhaseAnalysis, "the analysis phase shows once it has work")
	// 30s before the shift at 10s: 3 measurements; the 60s watch: 6 or 7.
	require.GreaterOrEqual(t, f.count(), 3+6)
	require.LessOrEqual(t, f.count(), 3+7)
	require.Contains(t, f.queries[0], `instance=~"10\\.0\\.2\\.11:8080|10\\.0\\.2\\.12:8080"`, "the target group, escaped for PromQL")
}

func TestAFailingAnalysisDuringTheWatchSwapsBack(t *testing.T) {
	f := &fakeProm{answer: value(0.5)}
	e, want := releaseWithAnalysis(t, "0s", 0, f)
	err := e.converge(want, 500)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Equal(t, "ReleaseFailed", s.Reason)
	require.Contains(t, e.reasons(), reconcile.ReasonSwapBackStarted)
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-a1"), "group A serves again")
	require.Equal(t, 0, e.world.Weight(want.Traffic[0], "i-b1"))
	require.Equal(t, 1, f.count(), "no analysis before the shift (beforeShift 0); the first failure in the watch swaps back")
	st := e.state("user-service")
	require.Contains(t, st.Failed.Reason, "analysis query errors failed 1 times (failureLimit 0): value 0.5, successCondition result < 0.05 not met")
	require.Empty(t, e.world.Violations())
}

func TestAFailingAnalysisBeforeTheShiftAbortsWithoutMovingTraffic(t *testing.T) {
	f := &fakeProm{answer: value(0.5)}
	e, want := releaseWithAnalysis(t, "30s", 1, f)
	err := e.converge(want, 500)
	var s *reconcile.StalledError
	require.ErrorAs(t, err, &s)
	require.Contains(t, e.reasons(), reconcile.ReasonAbortStarted)
	require.NotContains(t, e.reasons(), reconcile.ReasonSwapBackStarted)
	require.Equal(t, 2, f.count(), "failureLimit 1: the second failure aborts")
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonStepApplied {
			require.NotEqual(t, reconcile.PhaseShift, ev.Phase, "no weight moved: %s", ev.Message)
			require.NotEqual(t, reconcile.PhaseEnable, ev.Phase, "group B was never enabled: %s", ev.Message)
		}
	}
	require.Equal(t, 100, e.world.Weight(want.Traffic[0], "i-a1"))
	st := e.state("user-service")
	require.Contains(t, st.Failed.Reason, "analysis query errors failed 2 times (failureLimit 1)")
}

func TestInconclusiveMeasurementsFailTheAnalysisPastTheLimit(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer func(string) (providers.MetricValue, error)
		detail string
	}{
		{"no data", func(string) (providers.MetricValue, error) { return providers.MetricValue{}, nil }, "no data: the query selects no series"},
		{"several series", func(string) (providers.MetricValue, error) { return providers.MetricValue{Series: 2}, nil }, "2 series, want one"},
		{"NaN", value(math.NaN()), "the value is NaN"},
		{"error", func(string) (providers.MetricValue, error) {
			return providers.MetricValue{}, errors.New("prometheus prom: bad_data: parse error")
		}, "prometheus prom: bad_data: parse error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeProm{answer: c.answer}
			e, want := releaseWithAnalysis(t, "0s", 0, f)
			err := e.converge(want, 500)
			require.Error(t, err)
			require.Equal(t, 2, f.count(), "inconclusiveLimit 1: the second inconclusive measurement fails")
			st := e.state("user-service")
			require.Contains(t, st.Failed.Reason, "analysis query errors was inconclusive 2 times (inconclusiveLimit 1): "+c.detail)
			require.Contains(t, e.reasons(), reconcile.ReasonSwappedBack)
		})
	}
}

func TestAnalysisCountsSurviveARestart(t *testing.T) {
	answers := []float64{0.01, 0.5}
	f := &fakeProm{}
	f.answer = func(string) (providers.MetricValue, error) {
		v := answers[min(len(f.queries)-1, len(answers)-1)]
		return providers.MetricValue{Value: v, Series: 1}, nil
	}
	e, want := releaseWithAnalysis(t, "0s", 1, f)
	// Run until the watch has counted one failure, restarting after every pass.
	for range 500 {
		if st := e.state("user-service"); st.Transition != nil && st.Transition.Analysis != nil &&
			len(st.Transition.Analysis.Queries) == 1 && st.Transition.Analysis.Queries[0].Failed == 1 {
			break
		}
		_ = e.pass(want)
		e.rec = e.reconciler()
		withProm(e, f)
	}
	a := e.state("user-service").Transition.Analysis
	require.Equal(t, reconcile.PhaseWatch, a.Phase)
	require.Equal(t, reconcile.QueryProgress{Name: "errors", Successful: 1, Failed: 1, Last: reconcile.MeasurementFailed, Value: "0.5",
		Detail: "successCondition result < 0.05 not met"}, a.Queries[0])
	// After the restart, the journaled failure counts: the next one is the second, past failureLimit 1.
	err := e.converge(want, 500)
	require.Error(t, err)
	require.Equal(t, 3, f.count())
	require.Contains(t, e.state("user-service").Failed.Reason, "analysis query errors failed 2 times (failureLimit 1)")
}

func TestPlanShowsTheAnalysisBeforeTheShiftAndDuringTheWatch(t *testing.T) {
	f := &fakeProm{answer: value(0.01)}
	e, want := releaseWithAnalysis(t, "30s", 0, f)
	live, err := reconcile.Observe(context.Background(), e.rec.Providers, want, reconcile.NeedsFor(want, reconcile.State{}))
	require.NoError(t, err)
	pv := reconcile.PreviewTransition(reconcile.Input{Service: want, Live: live, State: e.state("user-service"), Now: e.world.Clock().Now()})
	require.True(t, pv.Complete, pv.Stalled)
	require.Zero(t, f.count(), "the plan queries nothing")
	require.Contains(t, pv.Assumes, "every measurement of the analysis gate is successful")
	notes := map[reconcile.Phase]string{}
	var phases []reconcile.Phase
	for _, ph := range pv.Phases {
		notes[ph.Phase] = ph.Note
		phases = append(phases, ph.Phase)
	}
	require.Equal(t, []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhaseAnalysis, reconcile.PhaseEnable,
		reconcile.PhaseShift, reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch, reconcile.PhaseDone}, phases)
	require.Equal(t, "for gates.analysis.beforeShift 30s, before any traffic moves: query Prometheus prom every 10s: errors (success if result < 0.05); more than failureLimit 0 failed or inconclusiveLimit 1 inconclusive measurements of a query aborts",
		notes[reconcile.PhaseAnalysis])
	require.Contains(t, notes[reconcile.PhaseWatch], "; query Prometheus prom every 10s: errors (success if result < 0.05); more than failureLimit 0 failed or inconclusiveLimit 1 inconclusive measurements of a query swaps back")
}

// TestPropertyAnalysisKeepsTheInvariantsAndConverges: releases and reverts
// of a service with an analysis gate (before the shift or not, random
// limits), whose queries answer at random (good, bad, no data, errors), with
// crash-restarts between passes. After every pass the world reports no
// invariant violation; a release whose analysis failed before the shift
// never gave its group weight; once the answers are good, the desired state
// is reached (after a failed release: by the next release).
func TestPropertyAnalysisKeepsTheInvariantsAndConverges(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		beforeShift := rapid.SampledFrom([]string{"0s", "30s"}).Draw(rt, "beforeShift")
		limit := rapid.IntRange(0, 2).Draw(rt, "failureLimit")
		svc := func(g spec.Group, v string) *spec.Service { return analysedService(rt, g, v, beforeShift, limit) }
		initial := svc(spec.GroupA, "1.0.0")
		e := propertyEnv(t, rt, initial)
		rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 2))
		good := false
		f := &fakeProm{answer: func(string) (providers.MetricValue, error) {
			// Called under f.mu: rng is never used concurrently.
			switch n := rng.IntN(4); {
			case good || n == 0:
				return providers.MetricValue{Value: 0.01, Series: 1}, nil
			case n == 1:
				return providers.MetricValue{Value: 0.5, Series: 1}, nil
			case n == 2:
				return providers.MetricValue{}, nil
			}
			return providers.MetricValue{}, errors.New("unreachable")
		}}
		restart := func() {
			e.rec = e.reconciler()
			withProm(e, f)
		}
		restart()
		desired, next := initial, 1
		steps := rapid.IntRange(1, 80).Draw(rt, "steps")
		for i := range steps {
			switch rapid.IntRange(0, 5).Draw(rt, fmt.Sprintf("action%d", i)) {
			case 0:
				next++
				desired = svc(desired.Active.Other(), fmt.Sprintf("1.%d.0", next))
			case 1:
				restart()
			default:
				_ = e.pass(desired)
			}
			require.Empty(rt, e.world.Violations())
			if st := e.state("user-service"); st.Transition != nil && st.Transition.Kind == reconcile.KindAbort &&
				st.Transition.Analysis != nil && st.Transition.Analysis.Phase == reconcile.PhaseAnalysis {
				for _, in := range desired.Groups.Get(st.Transition.From) {
					require.Zero(rt, e.world.Weight(desired.Traffic[0], in.ID), "aborted by the analysis before the shift, yet %s has weight", in)
				}
			}
		}
		good = true
		restart()
		settle(rt, e, desired, next, svc, e.converge, "ReleaseFailed", "VersionWithoutFlip")
	})
}
