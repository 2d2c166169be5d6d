package reconcile_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// Weight changes that keep failing in the shift undo the release after
// MaxShiftFailures attempts, and the source keeps its traffic.
func TestRepeatedShiftFailuresUndoTheRelease(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	attempts := 0
	for range 200 {
		if st := e.state(want.Name); st.Transition != nil && st.Transition.Phase == reconcile.PhaseShift && attempts == 0 {
			e.world.SetFaults(memory.Faults{Fail: func(op string) error {
				if op == "set-weights" {
					attempts++
					return errors.New("the LB API is down")
				}
				return nil
			}})
		}
		_ = e.pass(want)
		if slices.Contains(e.reasons(), reconcile.ReasonAbortStarted) {
			break
		}
	}
	require.Equal(t, reconcile.MaxShiftFailures, attempts, "undone after MaxShiftFailures failed weight changes: %v", e.reasons())
	e.world.SetFaults(memory.Faults{})
	err := e.converge(want, 500)
	require.True(t, reconcile.Classify(err) == reconcile.ClassStalled, "the failed release stalls until a fix: %v", err)
	for _, in := range want.Groups.Get(spec.GroupA) {
		require.Positive(t, e.world.Weight(want.Traffic[0], in.ID), "group A serves again")
	}
	require.Empty(t, e.world.Violations())
}
