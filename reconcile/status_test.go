package reconcile_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
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
