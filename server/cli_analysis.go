package server

import (
	"fmt"

	"github.com/tandemhq/tandem/reconcile"
)

// analysisNote is the metric analysis of s's transition for tandem status,
// e.g. "web: analysis during the watch, 4 measurements: error-rate 3 ok/1
// failed/0 inconclusive, last 0.5 (failed: successCondition result < 0.05
// not met)"; "" when there is none.
func analysisNote(s reconcile.Status) string {
	t := s.Transition
	if t == nil || t.Analysis == nil {
		return ""
	}
	a := t.Analysis
	stage := "before the shift"
	if a.Phase == reconcile.PhaseWatch {
		stage = "during the watch"
	}
	return fmt.Sprintf("%s: analysis %s, %d measurements: %s", s.Service, stage, a.Measurements, a.Summary())
}
