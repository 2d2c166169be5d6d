package server

import (
	"fmt"

	"github.com/tandemhq/tandem/reconcile"
)

// maxSmokeNotes bounds the failed checks tandem status lists per service.
const maxSmokeNotes = 5

// smokeNotes are tandem status's lines about the smoke tests of a service:
// the run of the transition in progress, or a last run that failed.
func smokeNotes(s reconcile.Status) []string {
	sm := s.Smoke
	if sm == nil {
		return nil
	}
	failed := sm.Failed()
	if s.Transition == nil && len(failed) == 0 {
		return nil // a passed run of a finished release is no news
	}
	head := fmt.Sprintf("%s: smoke tests of group %s at %s", s.Service, sm.Group, sm.Version)
	switch {
	case !sm.Done:
		return []string{fmt.Sprintf("%s: running (run %d)", head, sm.Runs)}
	case len(failed) == 0:
		return []string{fmt.Sprintf("%s: all %d checks passed", head, len(sm.Results))}
	}
	notes := []string{fmt.Sprintf("%s: %d of %d checks failed", head, len(failed), len(sm.Results))}
	for i, r := range failed {
		if i == maxSmokeNotes {
			notes = append(notes, fmt.Sprintf("  ... and %d more", len(failed)-i))
			break
		}
		line := fmt.Sprintf("  %s", r.Check)
		if r.Instance != "" {
			line += " on " + r.Instance
		}
		line += ": " + r.Error
		if r.Body != "" {
			line += fmt.Sprintf("\nanswer: %q", r.Body)
		}
		notes = append(notes, line)
	}
	return notes
}
