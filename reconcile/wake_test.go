package reconcile_test

import (
	"context"
	"errors"
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
