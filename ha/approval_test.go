package ha

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// TestAPauseHoldsAcrossALeadershipChangeAndTheNewLeaderTakesTheDecision: a
// release paused at its approval gate under one leader is still paused,
// from the etcd journal, under the next one (not announced again); a
// decision taken by the new leader for that transition completes it.
func TestAPauseHoldsAcrossALeadershipChangeAndTheNewLeaderTakesTheDecision(t *testing.T) {
	cfg := haConfig(t, time.Second)
	r := newRelease(t)
	r.target.Service.Gates.Approval = &spec.ApprovalGate{}
	stopped, done := make(chan string, 1), make(chan error, 2)
	first := startReplica(t, cfg, "a", r.lead("a", func(st reconcile.State) bool { return st.Transition.Paused() }, stopped, done))
	require.Equal(t, "a", receive(t, stopped))
	first.stop()
	paused := journaled(t, cfg, "push").Transition
	require.True(t, paused.Paused())

	type seen struct {
		paused *reconcile.Transition
		err    error
	}
	sawPause := make(chan seen, 1)
	startReplica(t, cfg, "b", func(ctx context.Context, l *Leadership) error {
		var events []reconcile.Event
		rec := &reconcile.Reconciler{Providers: r.world.Set(), Store: l.Store(), Fence: l,
			Recorder: reconcile.RecorderFunc(func(e reconcile.Event) { events = append(events, e) })}
		_, err := rec.Reconcile(ctx, r.target)
		st, _ := rec.Status(r.target.Service.Name)
		sawPause <- seen{st.Transition, err}
		rec.Request(r.target.Service.Name, reconcile.Request{Decisions: []reconcile.ApprovalVerdict{
			{Transition: paused.ID, Action: spec.ApprovalPromote, By: "api on b", At: r.world.Clock().Now()}}})
		for range 500 {
			res, err := rec.Reconcile(ctx, r.target)
			var w *reconcile.WaitingError
			switch {
			case errors.As(err, &w):
				r.world.Clock().Advance(max(w.RequeueAfter, time.Millisecond))
			case err != nil:
				done <- err
				return nil
			case !res.Requeue:
				r.world.Clock().Advance(time.Second)
			}
			if st, _ := rec.Status(r.target.Service.Name); err == nil && st.InSync {
				for _, e := range events {
					if e.Reason == reconcile.ReasonApprovalPending {
						done <- errors.New("the pause was announced again by the new leader")
						return nil
					}
				}
				done <- nil
				<-ctx.Done()
				return nil
			}
		}
		done <- errors.New("not in sync after 500 passes")
		return nil
	})
	got := receive(t, sawPause)
	require.Equal(t, reconcile.ClassWaiting, reconcile.Classify(got.err))
	require.True(t, got.paused.Paused(), "the new leader finds the release paused")
	require.Equal(t, paused.ID, got.paused.ID)
	require.NoError(t, receive(t, done))
	require.Nil(t, journaled(t, cfg, "push").Transition)
	require.Equal(t, "3.3.0", journaled(t, cfg, "push").Applied.Version)
	require.Len(t, r.world.Deploys(), 1, "deployed once, by the first leader")
	require.Empty(t, r.world.Violations())
}
