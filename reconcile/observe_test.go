package reconcile_test

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// hidesDisabled is a registry whose list leaves disabled instances out, as
// r-nacos' does; with lookup it also shows them when asked by address.
type hidesDisabled struct {
	providers.Registry
	lookup bool
}

func (h hidesDisabled) Instances(ctx context.Context, ref spec.NacosRef) (providers.RegistryView, error) {
	return h.read(ctx, ref, nil)
}

func (h hidesDisabled) InstancesExpecting(ctx context.Context, ref spec.NacosRef, expect []providers.Addr) (providers.RegistryView, error) {
	if !h.lookup {
		expect = nil
	}
	return h.read(ctx, ref, expect)
}

func (h hidesDisabled) read(ctx context.Context, ref spec.NacosRef, expect []providers.Addr) (providers.RegistryView, error) {
	v, err := h.Registry.Instances(ctx, ref)
	v.Instances = slices.DeleteFunc(v.Instances, func(in providers.RegistryInstance) bool {
		return !in.Enabled && !slices.Contains(expect, providers.Addr{IP: in.IP, Port: in.Port})
	})
	return v, err
}

func TestRegisteredButDisabledTargetGroupIsVerifiedWhenTheRegistryLooksUpExpectedAddresses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lookup bool
		reason string // of the event that ends the release
		detail string // in its message
	}{
		{"looked up by address, the release succeeds", true, reconcile.ReasonTransitionSucceeded, "group B serves 2.5.0"},
		{"left out of the list, the release is undone", false, reconcile.ReasonAbortStarted, "i-b1(10.0.2.11:8080) is not registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := service(t, spec.GroupA, "2.4.0")
			e := newEnv(t, old, spec.GroupA, "2.4.0", "2.4.0")
			ps := e.world.Set()
			for name, r := range ps.Registries {
				ps.Registries[name] = hidesDisabled{Registry: r, lookup: tc.lookup}
			}
			e.rec.Providers = ps
			require.NoError(t, e.converge(old, 20))
			_ = e.converge(service(t, spec.GroupB, "2.5.0"), 500)
			i := slices.IndexFunc(e.events, func(ev reconcile.Event) bool {
				return ev.Reason == reconcile.ReasonTransitionSucceeded || ev.Reason == reconcile.ReasonAbortStarted
			})
			require.GreaterOrEqual(t, i, 0, "the release ended: %v", e.reasons())
			require.Equal(t, tc.reason, e.events[i].Reason)
			require.Contains(t, e.events[i].Message, tc.detail)
		})
	}
}
