package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// release is the example push service, serving 3.2.0 from group A, with
// Git asking for 3.3.0 on group B, and the events every replica recorded.
type release struct {
	world  *memory.World
	target reconcile.Target
	mu     sync.Mutex
	events map[string][]reconcile.Event // by replica
}

func newRelease(t *testing.T) *release {
	data, err := os.ReadFile("../examples/services/push.yaml")
	require.NoError(t, err)
	svcs, ps := spec.ParseServices("services/push.yaml", data)
	require.NoError(t, ps.Err())
	require.Len(t, svcs, 1)
	svc := svcs[0]
	r := &release{world: memory.New(), events: map[string][]reconcile.Event{}}
	r.world.AddService(svc, spec.GroupA, "3.2.0", "3.2.0")
	svc.Active, svc.Version, svc.After = spec.GroupB, "3.3.0", nil // the commit; no gateway here to wait for
	r.target = reconcile.Target{Service: svc, Revision: reconcile.Revision{Hash: "rev-3.3.0"}}
	return r
}

func (r *release) replicaEvents(who string) []reconcile.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[who]
}

// lead runs reconcile passes while who leads, as the daemon's worker
// would, over the etcd journal and fence, moving the world's fake clock
// through every wait. stop is asked after every pass; when it says so the
// replica reports to stopped and waits, to be crashed. In sync, or failing,
// it reports to done.
func (r *release) lead(who string, stop func(reconcile.State) bool, stopped chan<- string, done chan<- error) func(context.Context, *Leadership) error {
	return func(ctx context.Context, l *Leadership) error {
		rec := &reconcile.Reconciler{Providers: r.world.Set(), Store: l.Store(), Fence: l,
			Recorder: reconcile.RecorderFunc(func(e reconcile.Event) {
				r.mu.Lock()
				defer r.mu.Unlock()
				r.events[who] = append(r.events[who], e)
			})}
		for range 1000 {
			if ctx.Err() != nil {
				return nil
			}
			res, err := rec.Reconcile(ctx, r.target)
			switch class := reconcile.Classify(err); {
			case class == reconcile.ClassWaiting:
				var w *reconcile.WaitingError
				errors.As(err, &w)
				r.world.Clock().Advance(max(w.RequeueAfter, time.Millisecond))
			case class == reconcile.ClassStalled || (err != nil && ctx.Err() == nil):
				done <- fmt.Errorf("%s: %w", who, err)
				return nil
			case err == nil && !res.Requeue:
				r.world.Clock().Advance(time.Second)
			}
			if st, _ := rec.Status(r.target.Service.Name); err == nil && st.InSync {
				done <- nil
				<-ctx.Done()
				return nil
			}
			st, err := l.Store().Load(ctx, r.target.Service.Name)
			if err == nil && stop(st) {
				stopped <- who
				<-ctx.Done()
				return nil
			}
		}
		done <- fmt.Errorf("%s: not in sync after 1000 passes", who)
		return nil
	}
}

// journaled reads a service's journal as an operator would.
func journaled(t *testing.T, cfg spec.HAConfig, service string) reconcile.State {
	resp, err := testRoot.Get(t.Context(), cfg.Prefix+"/journal/"+service)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	var st reconcile.State
	require.NoError(t, json.Unmarshal(resp.Kvs[0].Value, &st))
	return st
}

func TestNewLeaderResumesTheReleaseItsCrashedPredecessorStarted(t *testing.T) {
	phase := func(p reconcile.Phase) func(*reconcile.Transition) bool {
		return func(t *reconcile.Transition) bool { return t.Phase == p }
	}
	for _, tc := range []struct {
		name string
		at   func(*reconcile.Transition) bool
	}{
		{"crash right after the deploy", func(t *reconcile.Transition) bool { return t.Phase == reconcile.PhasePrepare && t.Deploy.Done }},
		{"crash while shifting weights", phase(reconcile.PhaseShift)},
		{"crash while draining", phase(reconcile.PhaseDrain)},
		{"crash while watching", phase(reconcile.PhaseWatch)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := haConfig(t, time.Second)
			r := newRelease(t)
			var crashed atomic.Bool // only the first leader crashes
			stop := func(st reconcile.State) bool {
				return st.Transition != nil && tc.at(st.Transition) && crashed.CompareAndSwap(false, true)
			}
			stopped, done := make(chan string), make(chan error, 2)
			replicas := map[string]*replica{}
			for _, name := range []string{"a", "b"} {
				replicas[name] = startReplica(t, cfg, name, r.lead(name, stop, stopped, done))
			}
			var leader string
			select {
			case leader = <-stopped:
			case err := <-done:
				t.Fatalf("finished before the crash: %v", err)
			}
			before := journaled(t, cfg, "push")
			replicas[leader].crash()

			require.NoError(t, receive(t, done))
			successor := other(leader)
			var started, succeeded []string
			for _, e := range r.replicaEvents(successor) {
				switch e.Reason {
				case reconcile.ReasonTransitionStarted:
					started = append(started, e.Transition)
				case reconcile.ReasonTransitionSucceeded:
					succeeded = append(succeeded, e.Transition)
				}
			}
			require.Empty(t, started, "the successor resumed, it did not start another transition")
			require.Equal(t, []string{before.Transition.ID}, succeeded)
			require.Len(t, r.world.Deploys(), 1)
			require.Empty(t, r.world.Violations())
			svc := r.target.Service
			for _, in := range svc.Instances(spec.GroupB) {
				require.Equal(t, svc.Traffic[0].Weight, r.world.Weight(svc.Traffic[0], in.ID))
				require.Equal(t, "3.3.0", r.world.App(in.Addr()).Version)
			}
			for _, in := range svc.Instances(spec.GroupA) {
				require.Zero(t, r.world.Weight(svc.Traffic[0], in.ID))
			}
			st := journaled(t, cfg, "push")
			require.Nil(t, st.Transition)
			require.Equal(t, spec.GroupB, st.Applied.Active)
			require.Equal(t, "3.3.0", st.Applied.Version)
		})
	}
}
