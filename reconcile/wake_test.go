package reconcile_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// phaseTimes returns how long each phase of the first transition took, from
// its PhaseCompleted events.
func phaseTimes(events []reconcile.Event) map[reconcile.Phase]time.Duration {
	out := map[reconcile.Phase]time.Duration{}
	for _, ev := range events {
		if _, seen := out[ev.Phase]; ev.Reason == reconcile.ReasonPhaseCompleted && !seen {
			out[ev.Phase] = ev.Duration
		}
	}
	return out
}

// The fake clock moves only by what each wait asks for, so a phase bounded
// by a duration of the spec lasts exactly that duration: the pass that ends
// the wait comes when its time is up, not at the next tick after it.
func TestWaitsWakeExactlyWhenTheirTimeIsUp(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(service(t, spec.GroupB, "1.1.0"), 500))
	times := phaseTimes(e.events)
	// The signal after drain.propagation 30s, then the evidence at 0 for
	// drain.quiet 5s; verify.window 60s.
	require.Equal(t, 35*time.Second, times[reconcile.PhaseDrain])
	require.Equal(t, 60*time.Second, times[reconcile.PhaseWatch])
}

// A wait for the registry to show a change is ended by the registry's push
// when the registry pushes (RegistryWatcher): the pass asks to come back
// only at the wait's bound. A registry that does not push is sampled.
func TestARegistryWaitIsEndedByThePushOrSampled(t *testing.T) {
	for _, pushes := range []bool{false, true} {
		e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
		var reg providers.Registry = &lagging{Registry: e.rec.Providers.Registries["prod"], hide: map[string]bool{"10.0.2.11:8080": true}}
		if pushes {
			reg = watching{reg.(*lagging)}
		}
		e.rec.Providers.Registries["prod"] = reg
		want := service(t, spec.GroupB, "1.1.0")
		var wait *reconcile.WaitingError
		for range 100 {
			err := e.pass(want)
			if errors.As(err, &wait) && wait.Reason == "WaitingForRegistry" {
				break
			}
			wait = nil
		}
		require.NotNil(t, wait, "the enable phase waits for the subscription")
		st := e.state(want.Name)
		if pushes {
			// e.pass moved the clock by what the wait asked for.
			require.Equal(t, st.Transition.PhaseSince.Add(want.Health.Deadline.D()), e.world.Clock().Now(), "back at health.deadline unless pushed")
		} else {
			require.Equal(t, reconcile.EvidencePoll, wait.RequeueAfter)
		}
	}
}

// lagging is a registry whose subscription does not (yet) list some
// instances.
type lagging struct {
	providers.Registry
	hide map[string]bool
}

func (l *lagging) Instances(ctx context.Context, ref spec.NacosRef) (providers.RegistryView, error) {
	v, err := l.Registry.Instances(ctx, ref)
	if err != nil {
		return v, err
	}
	vis := v.Visible[:0:0]
	for _, a := range v.Visible {
		if !l.hide[spec.Instance{IP: a.IP, Port: a.Port}.Addr()] {
			vis = append(vis, a)
		}
	}
	v.Visible = vis
	return v, nil
}

// watching is a lagging registry that pushes changes.
type watching struct{ *lagging }

func (watching) Watch(ctx context.Context, _ spec.NacosRef, _ func()) error {
	<-ctx.Done()
	return nil
}

// A service waiting for its dependencies (after:) is woken by the end of a
// dependency's pass, the only thing that changes what it waits for, not by
// a sample interval: here the wait's own time (DependencyBackstop) is never
// reached before the test's deadline.
func TestAWaitForADependencyIsEndedByTheDependencysPass(t *testing.T) {
	gateway, user, e := afterPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), reconcile.DependencyBackstop/2)
	defer cancel()
	revs := map[string]string{"gateway": "r1", "user-service": "r2"}
	var mu sync.Mutex
	svcs := map[string]*spec.Service{"gateway": gateway, "user-service": user}
	passes := make(chan string, 100)
	q := reconcile.NewQueue()
	w := &reconcile.Worker{
		Queue: q, Reconciler: e.rec, Concurrency: 2, Resync: time.Hour,
		Desired: func(name string) (reconcile.Target, bool) {
			mu.Lock()
			defer mu.Unlock()
			return reconcile.Target{Service: svcs[name], Revision: reconcile.Revision{Hash: revs[name]}}, true
		},
		OnPass: func(name string, class reconcile.Class, _ time.Duration) {
			select {
			case passes <- fmt.Sprintf("%s %s", name, cmp.Or(class, "none")):
			default: // the transition's later passes are not looked at
			}
		},
	}
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	next := func() string {
		select {
		case p := <-passes:
			return p
		case <-ctx.Done():
			t.Fatal("no pass before the deadline")
			return ""
		}
	}
	q.Add("gateway")
	require.Equal(t, "gateway none", next()) // in sync at r1
	require.Equal(t, "gateway none", next()) // the live state adopted as applied: once more
	// user-service at r2 (a change) waits: its dependency is at r1.
	user2 := *user
	user2.Active, user2.Version = spec.GroupB, "1.1.0"
	mu.Lock()
	svcs["user-service"] = &user2
	mu.Unlock()
	q.Add("user-service")
	require.Equal(t, "user-service waiting", next())
	// The gateway reaches r2 with nothing to change: its pass wakes user-service.
	mu.Lock()
	revs["gateway"] = "r2"
	mu.Unlock()
	q.Add("gateway")
	require.Equal(t, "gateway none", next())
	require.Equal(t, "user-service none", next(), "user-service starts its transition (a step was applied)")
	cancel()
	<-done
}
