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

// plantedRegistry adds metadata to every instance a registry lists, as an
// application that registers its credentials would.
type plantedRegistry struct {
	providers.Registry
	metadata map[string]string
}

func (r plantedRegistry) Instances(ctx context.Context, ref spec.NacosRef) (providers.RegistryView, error) {
	v, err := r.Registry.Instances(ctx, ref)
	for i := range v.Instances {
		md := map[string]string{}
		for k, val := range v.Instances[i].Metadata {
			md[k] = val
		}
		for k, val := range r.metadata {
			md[k] = val
		}
		v.Instances[i].Metadata = md
	}
	return v, err
}

func TestStatusShowsOnlyTheAllowedRegistryMetadata(t *testing.T) {
	svc := service(t, spec.GroupA, "1.0.0")
	svc.Health.Version = spec.VersionSource{NacosMetadata: "app.version"}
	e := newEnv(t, svc, spec.GroupA, "1.0.0", "1.0.0")
	set := e.world.Set()
	for name, r := range set.Registries {
		set.Registries[name] = plantedRegistry{Registry: r, metadata: map[string]string{
			"app.version": "1.0.0", "zone": "cn-hangzhou-h", "db.password": "planted-S3cret"}}
	}
	e.rec.Providers, e.rec.MetadataKeys = set, []string{"zone"}
	_ = e.pass(svc)
	st, ok := e.rec.Status("user-service")
	require.True(t, ok)
	require.NotNil(t, st.Registry)
	require.NotEmpty(t, st.Registry.Instances)
	for _, in := range st.Registry.Instances {
		require.Equal(t, "1.0.0", in.Metadata["app.version"], "the version key is shown")
		require.Equal(t, "cn-hangzhou-h", in.Metadata["zone"], "a key of api.metadataKeys is shown")
		require.Equal(t, "<redacted>", in.Metadata["db.password"], "any other value is not")
		require.Equal(t, "<redacted>", in.Metadata["version"])
	}
}

// TestStatusListsThePhasesOfTheTransition: the status lists the phases a
// transition goes through, the release gates only when the service sets
// them, so that the dashboard shows no step that will not run.
func TestStatusListsThePhasesOfTheTransition(t *testing.T) {
	classic := []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhaseEnable, reconcile.PhaseShift,
		reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch}
	phasesOf := func(old, want *spec.Service) []reconcile.Phase {
		e := newEnv(t, old, spec.GroupA, "1.0.0", "1.0.0")
		_ = e.pass(want)
		st, _ := e.rec.Status(want.Name)
		require.NotNil(t, st.Transition, "the release started")
		return st.Phases
	}
	require.Equal(t, classic, phasesOf(service(t, spec.GroupA, "1.0.0"), service(t, spec.GroupB, "1.1.0")), "no gate: the classic phases")
	require.Equal(t, slices.Insert(slices.Clone(classic), 2, reconcile.PhaseApproval),
		phasesOf(service(t, spec.GroupA, "1.0.0"), gatedService(t, spec.GroupB, "1.1.0", "{}")), "the approval gate")
	require.Equal(t, slices.Insert(slices.Clone(classic), 2, reconcile.PhasePreviewRoute),
		phasesOf(previewService(t, spec.GroupA, "1.0.0"), previewService(t, spec.GroupB, "1.1.0")), "a preview binding")

	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	require.NoError(t, e.converge(service(t, spec.GroupA, "1.0.0"), 20))
	st, _ := e.rec.Status("user-service")
	require.Nil(t, st.Phases, "idle: no phases")
}
