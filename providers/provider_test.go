package providers_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// listOnly is a registry whose list is all it knows.
type listOnly struct{ view providers.RegistryView }

func (r *listOnly) Instances(context.Context, spec.NacosRef) (providers.RegistryView, error) {
	return r.view, nil
}

func (r *listOnly) SetEnabled(context.Context, spec.NacosRef, []providers.Addr, bool) error {
	return nil
}

// expecting also looks up the expected addresses, and records them.
type expecting struct {
	listOnly
	expected []providers.Addr
}

func (r *expecting) InstancesExpecting(_ context.Context, _ spec.NacosRef, expect []providers.Addr) (providers.RegistryView, error) {
	r.expected = expect
	v := r.view
	for _, a := range expect {
		v.Instances = append(v.Instances, providers.RegistryInstance{IP: a.IP, Port: a.Port})
	}
	return v, nil
}

var (
	ref    = spec.NacosRef{Provider: "prod", Namespace: "public", Group: "DEFAULT_GROUP", Service: "user", Cluster: "DEFAULT"}
	listed = providers.RegistryInstance{IP: "10.0.1.1", Port: 8080, Enabled: true}
	hidden = providers.Addr{IP: "10.0.2.1", Port: 8080}
)

func TestReadRegistryPassesExpectedAddressesToRegistriesThatTakeThem(t *testing.T) {
	r := &expecting{listOnly: listOnly{view: providers.RegistryView{Instances: []providers.RegistryInstance{listed}}}}
	v, err := providers.ReadRegistry(t.Context(), r, ref, []providers.Addr{hidden})
	require.NoError(t, err)
	require.Equal(t, []providers.Addr{hidden}, r.expected)
	require.Equal(t, []providers.RegistryInstance{listed, {IP: hidden.IP, Port: hidden.Port}}, v.Instances)
}

func TestReadRegistryReadsTheListOfOtherRegistries(t *testing.T) {
	r := &listOnly{view: providers.RegistryView{Instances: []providers.RegistryInstance{listed}}}
	v, err := providers.ReadRegistry(t.Context(), r, ref, []providers.Addr{hidden})
	require.NoError(t, err)
	require.Equal(t, []providers.RegistryInstance{listed}, v.Instances)
}

func TestInstrumentedRegistriesKeepTakingExpectedAddressesAndReportTheCall(t *testing.T) {
	inner := &expecting{}
	var ops []string
	set := providers.Instrument(&providers.Set{Registries: map[string]providers.Registry{"prod": inner}},
		func(provider, op string, _ time.Duration, err error) {
			require.NoError(t, err)
			ops = append(ops, provider+" "+op)
		})
	v, err := providers.ReadRegistry(t.Context(), set.Registries["prod"], ref, []providers.Addr{hidden})
	require.NoError(t, err)
	require.Equal(t, []providers.Addr{hidden}, inner.expected)
	require.Len(t, v.Instances, 1)
	require.Equal(t, []string{"nacos/prod instances"}, ops)
}
