package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func events(rev string) []reconcile.Event {
	return []reconcile.Event{
		{Time: at(0), Revision: rev, Reason: reconcile.ReasonTransitionStarted},
		{Time: at(300), Revision: rev, Reason: reconcile.ReasonStepApplied, Phase: reconcile.PhasePrepare, Message: "deploy 1.1.0 to group B", Duration: 250 * time.Millisecond},
		{Time: at(300), Revision: rev, Reason: reconcile.ReasonPhaseCompleted, Phase: reconcile.PhasePrepare, Duration: 300 * time.Millisecond},
		{Time: at(400), Revision: rev, Reason: reconcile.ReasonPhaseCompleted, Phase: reconcile.PhaseShift, Duration: 100 * time.Millisecond},
		{Time: at(3000), Revision: rev, Reason: reconcile.ReasonPhaseCompleted, Phase: reconcile.PhaseDrain, Duration: 2600 * time.Millisecond},
		{Time: at(4000), Revision: rev, Reason: reconcile.ReasonTransitionSucceeded, Duration: 4 * time.Second},
		{Time: at(4000), Revision: "other", Reason: reconcile.ReasonPhaseCompleted, Phase: reconcile.PhaseShift, Duration: time.Hour},
	}
}

func TestTransitionOfReadsItsOwnRevisionsTimings(t *testing.T) {
	tr := transitionOf(events("r1"), "r1")
	require.Equal(t, at(0), tr.Started)
	require.Equal(t, 4*time.Second, tr.Total)
	require.Equal(t, 250*time.Millisecond, tr.Deploy)
	require.Equal(t, 100*time.Millisecond, tr.Phases[reconcile.PhaseShift])
	require.Equal(t, 850*time.Millisecond, tr.overhead(2900*time.Millisecond))
}

func TestZeroAfterIsWhenTheOldGroupsEvidenceReachedZeroForGood(t *testing.T) {
	sm := &sampler{}
	for ms, n := range map[int]int{200: 9, 500: 3, 800: 0, 1100: 2, 1400: 0, 1700: 0, 3500: 5} {
		sm.samples = append(sm.samples, sample{at: at(ms), evidence: map[spec.Group]int{spec.GroupA: n}})
	}
	// The sampler appends in time order.
	slices.SortFunc(sm.samples, func(a, b sample) int { return a.at.Compare(b.at) })
	require.Equal(t, time.Second, sm.zeroAfter(events("r1"), "r1", spec.GroupA), "zero from 1400 ms; 400 ms is the shift")
	require.Equal(t, time.Duration(-1), sm.zeroAfter(events("r1"), "r2", spec.GroupA), "no such transition")
}

func TestByGroupCountsAnswersPerGroupAndFailuresPer100ms(t *testing.T) {
	r := loadgen.Report{Timeline: []loadgen.Point{
		{At: 0, Backend: "web-a1", Requests: 3}, {At: 0, Backend: "web-a2", Requests: 2},
		{At: 200 * time.Millisecond, Backend: "web-b1", Requests: 4}, {At: 200 * time.Millisecond, Failed: 1},
	}}
	var b strings.Builder
	require.NoError(t, byGroup(&b, r))
	require.Equal(t, "0.0 5 0 0\n0.1 0 0 0\n0.2 0 4 1\n", b.String())
}

func TestRolloutMarksAndStepCountsFollowTheEvents(t *testing.T) {
	evs := []reconcile.Event{
		{Time: at(0), Revision: "r1", Reason: reconcile.ReasonRolloutStep, Message: "rollout of group B in 3 steps: 10%, 50%, 100%"},
		{Time: at(100), Revision: "r1", Reason: reconcile.ReasonRolloutStep, Message: "rollout step 1/3 (10%) reached: group B carries 10% of every binding"},
		{Time: at(1000), Revision: "r1", Reason: reconcile.ReasonStepApplied, Phase: reconcile.PhaseShift, Duration: 100 * time.Millisecond},
		{Time: at(1200), Revision: "r1", Reason: reconcile.ReasonRolloutStep, Message: "rollout step 2/3 (50%) reached: group B carries 50% of every binding"},
		{Time: at(2100), Revision: "r1", Reason: reconcile.ReasonStepApplied, Phase: reconcile.PhaseShift, Duration: 100 * time.Millisecond},
		{Time: at(2300), Revision: "r1", Reason: reconcile.ReasonRolloutStep, Message: "rollout step 3/3 (100%) reached: group B carries 100% of every binding"},
		{Time: at(2400), Revision: "r2", Reason: reconcile.ReasonRolloutStep, Message: "rollout step 1/3 (10%) reached: another transition"},
	}
	marks := rolloutMarks(evs, "r1", spec.GroupB, 0)
	require.Len(t, marks, 3)
	require.Equal(t, stepMark{Step: 1, Steps: 3, Share: 10, To: spec.GroupB, At: at(100), End: at(900)}, marks[0])
	require.Equal(t, at(2000), marks[1].End)
	require.True(t, marks[2].End.IsZero(), "the last step has no end")

	// 100 ms buckets from t0: 9 of 90 by B in step 1 (100..900 ms), 50 of
	// 100 in step 2; a bucket across a step's end is left out.
	var tl []loadgen.Point
	for ms := 100; ms < 900; ms += 100 {
		tl = append(tl, loadgen.Point{At: time.Duration(ms) * time.Millisecond, Backend: "web-a1", Requests: 10})
	}
	tl = append(tl, loadgen.Point{At: 100 * time.Millisecond, Backend: "web-b1", Requests: 9},
		loadgen.Point{At: 850 * time.Millisecond, Backend: "web-b1", Requests: 99},
		loadgen.Point{At: 1200 * time.Millisecond, Backend: "web-b1", Requests: 50}, loadgen.Point{At: 1200 * time.Millisecond, Backend: "web-a2", Requests: 50})
	counts := countSteps(loadgen.Report{Timeline: tl}, t0, marks)
	require.Len(t, counts, 2)
	require.Equal(t, [2]int{89, 9}, [2]int{counts[0].requests, counts[0].toGroup})
	require.Equal(t, [2]int{100, 50}, [2]int{counts[1].requests, counts[1].toGroup})
	require.Equal(t, map[string]int{"web-a2": 50, "web-b1": 50}, counts[1].byBackend)
	require.InDelta(t, 16.0, tolerance(50, 100), 0.01, "3 x 5 points + 1")
}
