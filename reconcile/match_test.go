package reconcile_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// An LB server is an instance only when both its id and its ip:port match:
// otherwise a serving machine under a mistyped id, or a list that came
// back empty, would look idle and be deployed to.
func TestGuardRefusesDeployWhenABindingDoesNotListTheGroup(t *testing.T) {
	svc := service(t, spec.GroupB, "2.0.0")
	deploy := &reconcile.Step{Action: reconcile.ActionDeploy, Group: spec.GroupB, Describe: "deploy 2.0.0 to group B"}
	for _, tc := range []struct {
		name     string
		backends []providers.Backend
		want     string
	}{
		{"the spec's id is mistyped: the machine serves under its real id", []providers.Backend{
			{ID: "i-a1", IP: "10.0.1.11", Port: 8080}, {ID: "i-a2", IP: "10.0.1.12", Port: 8080},
			{ID: "i-b1-real", IP: "10.0.2.11", Port: 8080, Weight: 100}, {ID: "i-b2", IP: "10.0.2.12", Port: 8080},
		}, "alb:prod/sgp-1 lists 10.0.2.11:8080 as server i-b1-real, but the spec names it i-b1"},
		{"the spec's id is at another address", []providers.Backend{
			{ID: "i-a1", IP: "10.0.1.11", Port: 8080}, {ID: "i-a2", IP: "10.0.1.12", Port: 8080},
			{ID: "i-b1", IP: "10.0.2.99", Port: 8080, Weight: 100}, {ID: "i-b2", IP: "10.0.2.12", Port: 8080},
		}, "alb:prod/sgp-1 lists server i-b1 at 10.0.2.99:8080, but the spec has i-b1 at 10.0.2.11:8080"},
		{"the list came back empty", nil,
			"alb:prod/sgp-1 answered with an empty server list, which has no i-b1(10.0.2.11:8080)"},
		{"the group is not in the list", []providers.Backend{
			{ID: "i-a1", IP: "10.0.1.11", Port: 8080, Weight: 100}, {ID: "i-a2", IP: "10.0.1.12", Port: 8080, Weight: 100},
		}, "alb:prod/sgp-1 has no server i-b1(10.0.2.11:8080)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := &reconcile.Live{Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: tc.backends}}}
			err := reconcile.Guard(svc, live, deploy)
			var inv *reconcile.InvariantError
			require.ErrorAs(t, err, &inv)
			require.Equal(t, 3, inv.Invariant)
			require.Equal(t, reconcile.ClassStalled, reconcile.Classify(err))
			require.Contains(t, err.Error(), "cannot tell whether group B carries traffic")
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestGuardAllowsDeployWhenEveryBindingListsTheIdleGroup(t *testing.T) {
	svc := service(t, spec.GroupB, "2.0.0")
	live := &reconcile.Live{Bindings: []reconcile.BindingLive{{Binding: svc.Traffic[0], Backends: []providers.Backend{
		{ID: "i-a1", IP: "10.0.1.11", Port: 8080, Weight: 100}, {ID: "i-a2", IP: "10.0.1.12", Port: 8080, Weight: 100},
		{ID: "i-b1", IP: "10.0.2.11", Port: 8080}, {ID: "i-b2"}, // an LB that does not report addresses matches by id
	}}}}
	require.NoError(t, reconcile.Guard(svc, live, &reconcile.Step{Action: reconcile.ActionDeploy, Group: spec.GroupB, Describe: "deploy"}))
}

// End to end: the binding's list loses group B (a server group emptied by
// hand, an API answering an empty page): the release stalls before the
// deploy, naming binding and instance, and nothing is deployed.
func TestReleaseStallsInsteadOfDeployingWhenTheTargetIsNotListed(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	var keep []providers.Backend
	for _, b := range backends(t, e, want.Traffic[0]) {
		if b.ID != "i-b2" {
			keep = append(keep, b)
		}
	}
	e.world.AddBackends(want.Traffic[0], keep)
	err := e.converge(want, 50)
	require.Equal(t, reconcile.ClassStalled, reconcile.Classify(err), "%v", err)
	require.Equal(t, "Invariant3Refused", reconcile.Reason(err))
	require.Contains(t, err.Error(), "alb:prod/sgp-1 has no server i-b2(10.0.2.12:8080)")
	require.Empty(t, e.world.Deploys())
	st, _ := e.rec.Status(want.Name)
	require.False(t, st.Ready())
	stalled := condition(st, reconcile.ConditionStalled)
	require.True(t, stalled.Status)
	require.Contains(t, stalled.Message, "alb:prod/sgp-1 has no server i-b2(10.0.2.12:8080)")
}

func condition(st reconcile.Status, typ string) reconcile.Condition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return reconcile.Condition{}
}

// A server whose id matches but whose address does not is reported in the
// Ready condition and as drift.
func TestServerMismatchIsReportedInStatus(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	svc := service(t, spec.GroupA, "1.0.0")
	var moved []providers.Backend
	for _, b := range backends(t, e, svc.Traffic[0]) {
		if b.ID == "i-b2" {
			b.IP = "10.0.2.99"
		}
		moved = append(moved, b)
	}
	e.world.AddBackends(svc.Traffic[0], moved)
	require.NoError(t, e.pass(svc))
	st, _ := e.rec.Status(svc.Name)
	ready := condition(st, reconcile.ConditionReady)
	require.False(t, ready.Status)
	require.Equal(t, "ServerMismatch", ready.Reason)
	require.Contains(t, ready.Message, "alb:prod/sgp-1 lists server i-b2 at 10.0.2.99:8080, but the spec has i-b2 at 10.0.2.12:8080")
	require.Contains(t, st.Drift, "alb:prod/sgp-1 lists server i-b2 at 10.0.2.99:8080, but the spec has i-b2 at 10.0.2.12:8080 (group B)")
}
