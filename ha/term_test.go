package ha

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
)

// working leads as the daemon does: a reconcile worker over the etcd
// journal and fence, whose term is the leadership's. The first deploy
// reports to started and then blocks until its context ends or release is
// closed; what ended it goes to ended.
func working(r *release, started chan<- struct{}, release <-chan struct{}, ended chan<- error) func(context.Context, *Leadership) error {
	first := true
	r.world.SetFaults(memory.Faults{DeployHook: func(ctx context.Context, _ providers.DeployRequest) error {
		if !first {
			return nil
		}
		first = false
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
	return func(ctx context.Context, l *Leadership) error {
		rec := &reconcile.Reconciler{Providers: r.world.Set(), Store: l.Store(), Fence: l}
		q := reconcile.NewQueue()
		q.Add(r.target.Service.Name)
		w := &reconcile.Worker{Queue: q, Reconciler: rec, Concurrency: 1, Resync: time.Hour, Grace: time.Hour,
			Backoff: reconcile.Backoff{Base: time.Hour, Max: time.Hour}, Term: l.Context(),
			Desired: func(string) (reconcile.Target, bool) { return r.target, true }}
		w.Run(ctx)
		return nil
	}
}

// A deposed leader's step stops with its term: the deploy's context is
// cancelled when the lease is lost, however long the shutdown grace is.
func TestLosingTheLeadershipCancelsTheDeployInProgress(t *testing.T) {
	cfg := haConfig(t, time.Second)
	r := newRelease(t)
	started, release, ended := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	defer close(release)
	startReplica(t, cfg, "a", working(r, started, release, ended))
	receive(t, started)

	// The operator revokes the leader's lease, as etcd does when it expires.
	resp, err := testRoot.Get(t.Context(), cfg.Prefix+"/leader/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	_, err = testRoot.Revoke(t.Context(), clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)

	cause := receive(t, ended)
	require.Error(t, cause, "the deploy ended because its context was cancelled, not because it was released")
	require.Contains(t, cause.Error(), "the term to act ended")
	require.True(t, errors.Is(cause, context.Canceled))
	st := journaled(t, cfg, "push")
	require.True(t, st.Transition.DeployStarted)
	require.False(t, st.Transition.DeployDone, "the deposed leader journaled nothing after its term")
}

// A shutdown of a leader that still leads lets the step finish and be
// journaled within the grace: the lease is kept alive until lead returns.
func TestShutdownLetsTheLeadersStepFinishAndBeJournaled(t *testing.T) {
	cfg := haConfig(t, time.Second)
	r := newRelease(t)
	started, release, ended := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	rep := startReplica(t, cfg, "a", working(r, started, release, ended))
	receive(t, started)

	rep.cancel() // SIGTERM
	close(release)
	require.NoError(t, receive(t, ended), "the deploy was not cancelled by the shutdown")
	<-rep.done
	st := journaled(t, cfg, "push")
	require.True(t, st.Transition.DeployDone, "the step's outcome was journaled under the still-valid lease")
}

// A suspension asked of one leader is journaled in etcd: the next leader,
// a new reconciler with nothing in memory, keeps the service suspended.
func TestSuspensionHoldsAcrossALeadershipChange(t *testing.T) {
	cfg := haConfig(t, time.Second)
	r := newRelease(t)
	suspend := true
	type outcome struct {
		st  reconcile.Status
		err error
	}
	results := make(chan outcome, 2)
	lead := func(request bool) func(context.Context, *Leadership) error {
		return func(ctx context.Context, l *Leadership) error {
			rec := &reconcile.Reconciler{Providers: r.world.Set(), Store: l.Store(), Fence: l}
			if request {
				rec.Request(r.target.Service.Name, reconcile.Request{Suspend: &suspend})
			}
			_, err := rec.Reconcile(ctx, r.target)
			st, _ := rec.Status(r.target.Service.Name)
			results <- outcome{st, err}
			<-ctx.Done() // until the test stops this replica
			return nil
		}
	}
	first := startReplica(t, cfg, "a", lead(true))
	got := receive(t, results)
	require.NoError(t, got.err)
	require.True(t, got.st.Suspended)
	first.stop()
	require.NotNil(t, journaled(t, cfg, "push").Suspended)

	startReplica(t, cfg, "b", lead(false))
	got = receive(t, results)
	require.NoError(t, got.err)
	require.True(t, got.st.Suspended, "the new leader read the suspension from the journal")
	require.Empty(t, r.world.Deploys())
	require.Nil(t, journaled(t, cfg, "push").Transition)
}
