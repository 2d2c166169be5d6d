package nacosapp_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/nacos"
	"github.com/tandemhq/tandem/providers/nacos/emulator"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/spec"
)

// startNacos starts an emulator until the test ends.
func startNacos(t *testing.T) (*emulator.Emulator, emulator.Addrs, nacosapp.Config) {
	t.Helper()
	emu := emulator.New(emulator.Options{})
	addrs, err := emu.Start(t.Context(), "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, emu.Close()) })
	return emu, addrs, nacosapp.Config{Servers: []string{addrs.HTTP}, GRPCPort: addrs.GRPCPort()}
}

func TestOnePublisherRegistersOneInstanceOfEachServiceUntilItCloses(t *testing.T) {
	ctx := t.Context()
	emu, addrs, cfg := startNacos(t)
	reg, err := nacos.New(spec.NacosProvider{Name: "n", Servers: []string{addrs.HTTP}, GRPCPort: addrs.GRPCPort(),
		ContextPath: "/nacos", API: "v1"}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, reg.Close()) })
	listed := func(service string) []string {
		t.Helper()
		v, err := reg.Instances(ctx, spec.NacosRef{Provider: "n", Namespace: "public", Group: "DEFAULT_GROUP", Service: service, Cluster: "DEFAULT"})
		require.NoError(t, err)
		var out []string
		for _, in := range v.Instances {
			out = append(out, in.IP+"@"+in.Metadata["version"])
		}
		return out
	}

	p, err := nacosapp.NewPublisher(cfg)
	require.NoError(t, err)
	emu.ResetCalls()
	require.NoError(t, p.Publish("cart", "127.0.0.1", 9001, map[string]string{"version": "1"}))
	require.NoError(t, p.Publish("shop", "127.0.0.2", 9001, map[string]string{"version": "2"}))
	require.Equal(t, []string{"127.0.0.1@1"}, listed("cart"))
	require.Equal(t, []string{"127.0.0.2@2"}, listed("shop"))
	// The emulator counts what it answers: one operator list per read, and
	// at least one gRPC request per registration (the SDK may send one
	// again when its connection event arrives after the registration: its
	// redo of registered instances).
	calls := emu.Calls()
	require.Equal(t, 2, calls["GET /nacos/v1/ns/catalog/instances"])
	require.GreaterOrEqual(t, calls["InstanceRequest"], 2)

	// A second instance of the same service on the same connection
	// replaces the first (one instance per service and connection).
	require.NoError(t, p.Publish("shop", "127.0.0.3", 9001, map[string]string{"version": "3"}))
	require.Equal(t, []string{"127.0.0.3@3"}, listed("shop"))

	p.Close()
	require.Eventually(t, func() bool { return len(listed("cart")) == 0 && len(listed("shop")) == 0 },
		10*time.Second, 20*time.Millisecond, "instances outlived their publisher's connection")
}

func TestPublishRefusesAnInstanceWithoutAddress(t *testing.T) {
	_, _, cfg := startNacos(t)
	p, err := nacosapp.NewPublisher(cfg)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	require.ErrorContains(t, p.Publish("cart", "127.0.0.1", 0, nil), `registering "cart" 127.0.0.1:0 in nacos: service, ip and a port 1..65535 are required`)
}
