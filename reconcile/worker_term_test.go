package reconcile_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// The worker's shutdown grace is for a worker that may still act: when its
// term ends, the step in progress is cancelled at once (the grace here is
// an hour); when only its context ends, the step finishes.
func TestWorkerCancelsTheStepWhenItsTermEndsButNotOnShutdown(t *testing.T) {
	for _, termEnds := range []bool{true, false} {
		e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
		want := service(t, spec.GroupB, "1.1.0")
		started, release, ended := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		e.world.SetFaults(memory.Faults{DeployHook: func(ctx context.Context, _ providers.DeployRequest) error {
			close(started)
			select {
			case <-ctx.Done():
				ended <- context.Cause(ctx)
				return ctx.Err()
			case <-release:
				ended <- nil
				return nil
			}
		}})
		term, endTerm := context.WithCancelCause(context.Background())
		ctx, stop := context.WithCancel(context.Background())
		q := reconcile.NewQueue()
		q.Add(want.Name)
		w := &reconcile.Worker{Queue: q, Reconciler: e.rec, Concurrency: 1, Resync: time.Hour, Grace: time.Hour,
			Backoff: reconcile.Backoff{Base: time.Hour, Max: time.Hour}, Term: term,
			Desired: func(string) (reconcile.Target, bool) { return reconcile.Target{Service: want}, true }}
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		<-started
		if termEnds {
			endTerm(errors.New("lease lost"))
			cause := <-ended
			require.ErrorIs(t, cause, context.Canceled)
			require.Contains(t, cause.Error(), "the term to act ended (lease lost)")
			stop()
		} else {
			stop()
			close(release)
			require.NoError(t, <-ended, "a shutdown does not cut the step")
		}
		<-done
		endTerm(nil)
		require.Equal(t, !termEnds, e.state(want.Name).Transition.DeployDone)
	}
}
