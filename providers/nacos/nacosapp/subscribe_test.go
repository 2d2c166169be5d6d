package nacosapp_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/nacos"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nacostest.IgnoreSDKGoroutines()...) }

func TestSubscribeSeesWhatConsumersMayCallAndFollowsOfflineAndOnline(t *testing.T) {
	ctx := t.Context()
	_, addrs, cfg := startNacos(t)

	for _, port := range []int{9001, 9002} {
		dereg, err := nacosapp.Register(ctx, cfg, "shop", "127.0.0.1", port, map[string]string{"version": "1.0.0"})
		require.NoError(t, err)
		t.Cleanup(dereg)
	}
	updates := make(chan []string, 16)
	stop, err := nacosapp.Subscribe(ctx, cfg, "shop", func(in []nacosapp.Instance) {
		var got []string
		for _, i := range in {
			got = append(got, fmt.Sprintf("%s:%d@%s", i.IP, i.Port, i.Metadata["version"]))
		}
		slices.Sort(got)
		updates <- got
	})
	require.NoError(t, err)
	t.Cleanup(stop)
	await := func(want ...string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case got := <-updates:
				if slices.Equal(got, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no update listing %v", want)
			}
		}
	}
	await("127.0.0.1:9001@1.0.0", "127.0.0.1:9002@1.0.0")

	// The operator takes 9002 offline and back, as Tandem does.
	reg, err := nacos.New(spec.NacosProvider{Name: "n", Servers: []string{addrs.HTTP}, GRPCPort: addrs.GRPCPort(),
		ContextPath: "/nacos", API: "v1"}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, reg.Close()) })
	ref := spec.NacosRef{Provider: "n", Namespace: "public", Group: "DEFAULT_GROUP", Service: "shop", Cluster: "DEFAULT"}
	off := []providers.Addr{{IP: "127.0.0.1", Port: 9002}}
	require.NoError(t, reg.SetEnabled(ctx, ref, off, false))
	await("127.0.0.1:9001@1.0.0")
	require.NoError(t, reg.SetEnabled(ctx, ref, off, true))
	await("127.0.0.1:9001@1.0.0", "127.0.0.1:9002@1.0.0")
}

func TestSubscribeRefusesAnEmptyServiceName(t *testing.T) {
	_, err := nacosapp.Subscribe(context.Background(), nacosapp.Config{Servers: []string{"127.0.0.1:1"}}, "", func([]nacosapp.Instance) {})
	require.ErrorContains(t, err, "a service name is required")
}

// The SDK crashes the process when clients close at once unless Tandem
// serialises it (nacos-sdk-go issue #861): a fleet's apps stop together.
// The crash is a matter of timing; `go test -race` catches the race
// every time.
func TestAppsDeregisteringTogetherDoNotCrashTheProcess(t *testing.T) {
	ctx := t.Context()
	_, _, cfg := startNacos(t)
	var deregs []func()
	for port := range 8 {
		dereg, err := nacosapp.Register(ctx, cfg, "fleet", "127.0.0.1", 9100+port, nil)
		require.NoError(t, err)
		deregs = append(deregs, dereg)
	}
	var wg sync.WaitGroup
	for _, d := range deregs {
		wg.Go(d)
	}
	wg.Wait()
}
