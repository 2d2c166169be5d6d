package daemon_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

// passes runs passes of d, moving the world's clock a second between them,
// until cond holds of the user service's status.
func (w *requestWorld) passes(t *testing.T, d *daemon.Daemon, cond func(reconcile.Status) bool) reconcile.Status {
	for range 300 {
		statuses, err := d.Once(t.Context(), 1)
		require.NoError(t, err)
		if cond(statuses[0]) {
			return statuses[0]
		}
		w.world.Clock().Advance(time.Second)
	}
	t.Fatal("the condition never held")
	return reconcile.Status{}
}

func TestAPauseHoldsAcrossARestartAndOnlyItsOwnDecisionEndsIt(t *testing.T) {
	w := newRequestWorld(t, "B", "1.1.0", "gates: {approval: {}}\n")
	store, err := reconcile.NewFileStore(filepath.Join(w.cfg.StateDir, "journal"))
	require.NoError(t, err)
	d := w.daemon(t, store)
	require.ErrorIs(t, d.Decide(t.Context(), "user", "", reconcile.AnyPause, spec.ApprovalPromote, "cli"), server.ErrNotPaused, "nothing is paused yet")
	require.ErrorIs(t, d.Decide(t.Context(), "nope", "", reconcile.AnyPause, spec.ApprovalPromote, "cli"), daemon.ErrNotFound)

	paused := w.passes(t, d, func(s reconcile.Status) bool { return s.Transition.Paused() })
	id := paused.Transition.ID
	require.Equal(t, 1, count(w.rec, reconcile.ReasonApprovalPending))

	restarted := w.daemon(t, store)
	st := w.passes(t, restarted, func(reconcile.Status) bool { return true })
	require.True(t, st.Transition.Paused(), "still paused after a restart")
	require.Equal(t, id, st.Transition.ID)
	require.Equal(t, 1, count(w.rec, reconcile.ReasonApprovalPending), "not announced again")

	err = restarted.Decide(t.Context(), "user", "user-older", reconcile.AnyPause, spec.ApprovalPromote, "cli")
	require.ErrorIs(t, err, server.ErrNotPaused)
	require.ErrorContains(t, err, "transition "+id+" is paused, not user-older")

	require.NoError(t, restarted.Decide(t.Context(), "user", id, reconcile.AnyPause, spec.ApprovalPromote, "cli alice@ops"))
	done := w.passes(t, restarted, func(s reconcile.Status) bool { return s.InSync })
	require.Nil(t, done.Transition)
	require.Equal(t, 1, count(w.rec, reconcile.ReasonPromoted))
	w.rec.mu.Lock()
	events := append([]reconcile.Event(nil), w.rec.events...)
	w.rec.mu.Unlock()
	for _, e := range events {
		if e.Reason == reconcile.ReasonPromoted {
			require.Contains(t, e.Message, "promoted by cli alice@ops")
			require.Equal(t, id, e.Transition)
		}
	}
	require.ErrorIs(t, restarted.Decide(t.Context(), "user", id, reconcile.AnyPause, spec.ApprovalAbort, "cli"), server.ErrNotPaused, "the pause is over")
}
