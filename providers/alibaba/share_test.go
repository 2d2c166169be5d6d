package alibaba

import (
	"context"
	"sync"
	"testing"
	"time"

	albapi "github.com/alibabacloud-go/alb-20200616/v2/client"
	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	slbapi "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/alibaba/emulator/emutest"
	"github.com/tandemhq/tandem/spec"
)

// budgetWorld is an emulator with two ALB listeners and one SLB listener,
// and the SDK configuration of one provider instance pointed at it.
func budgetWorld(t *testing.T, limit spec.RateLimit) (*emulator.Emulator, *openapi.Config) {
	e, p := emutest.Start(t, "prod-hz", emulator.Options{})
	require.NoError(t, e.Seed(emulator.State{
		ServerGroups: []*emulator.ServerGroup{
			{ID: "sgp-1", Servers: []*emulator.Server{{ID: "i-1", IP: "10.0.0.1", Port: 80, Weight: 100}}},
			{ID: "sgp-2", Servers: []*emulator.Server{{ID: "i-2", IP: "10.0.0.2", Port: 80, Weight: 100}}},
		},
		Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}, {ID: "lsn-2", Port: 81, ServerGroup: "sgp-2"}},
		LoadBalancers: []*emulator.LoadBalancer{{
			ID:        "lb-1",
			Servers:   []*emulator.Server{{ID: "i-3", IP: "10.0.0.3", Weight: 100}},
			Listeners: []*emulator.SLBListener{{Port: 80}},
		}},
	}))
	p.RateLimit = limit
	cfg, err := Config(spec.KindALB, p)
	require.NoError(t, err)
	return e, cfg
}

func albHealth(ctx context.Context, cfg *openapi.Config, listener string) error {
	c, err := albapi.NewClient(cfg)
	if err != nil {
		return err
	}
	_, err = c.GetListenerHealthStatusWithContext(ctx, &albapi.GetListenerHealthStatusRequest{ListenerId: tea.String(listener)}, &dara.RuntimeOptions{})
	return err
}

func albServers(ctx context.Context, cfg *openapi.Config, group string) error {
	c, err := albapi.NewClient(cfg)
	if err != nil {
		return err
	}
	_, err = c.ListServerGroupServersWithContext(ctx, &albapi.ListServerGroupServersRequest{ServerGroupId: tea.String(group)}, &dara.RuntimeOptions{})
	return err
}

func slbHealth(ctx context.Context, cfg *openapi.Config, port int32) error {
	c, err := slbapi.NewClient(cfg)
	if err != nil {
		return err
	}
	_, err = c.DescribeHealthStatusWithContext(ctx, &slbapi.DescribeHealthStatusRequest{RegionId: tea.String("cn-hangzhou"), LoadBalancerId: tea.String("lb-1"), ListenerPort: tea.Int32(port)}, &dara.RuntimeOptions{})
	return err
}

func TestHealthOfAListenerIsReadOncePerTTL(t *testing.T) {
	e, cfg := budgetWorld(t, spec.RateLimit{})
	h := cfg.HttpClient.(*httpClient)
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	h.shared.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	// Twenty bindings of one listener read its health at once: one call.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { require.NoError(t, albHealth(t.Context(), cfg, "lsn-1")) })
	}
	wg.Wait()
	require.Equal(t, 1, e.Calls()["GetListenerHealthStatus"], "concurrent reads of one listener share one call")

	require.NoError(t, albHealth(t.Context(), cfg, "lsn-1"))
	require.Equal(t, 1, e.Calls()["GetListenerHealthStatus"], "within the TTL the answer is reused")
	require.NoError(t, albHealth(t.Context(), cfg, "lsn-2"))
	require.Equal(t, 2, e.Calls()["GetListenerHealthStatus"], "another listener is another read")

	mu.Lock()
	now = now.Add(healthShareTTL)
	mu.Unlock()
	require.NoError(t, albHealth(t.Context(), cfg, "lsn-1"))
	require.Equal(t, 3, e.Calls()["GetListenerHealthStatus"], "after the TTL the listener is read again")

	for range 3 {
		require.NoError(t, slbHealth(t.Context(), cfg, 80))
	}
	require.Equal(t, 1, e.Calls()["DescribeHealthStatus"], "SLB health of a listener port is shared the same way")

	for range 3 {
		require.NoError(t, albServers(t.Context(), cfg, "sgp-1"))
	}
	require.Equal(t, 3, e.Calls()["ListServerGroupServers"], "server lists (read back after writes) are never shared")

	// An error answer is not kept: the next read asks again.
	e.Inject("GetListenerHealthStatus", "SystemBusy", 400, 1)
	mu.Lock()
	now = now.Add(healthShareTTL)
	mu.Unlock()
	require.Error(t, albHealth(t.Context(), cfg, "lsn-2"))
	require.NoError(t, albHealth(t.Context(), cfg, "lsn-2"))
	require.Equal(t, 5, e.Calls()["GetListenerHealthStatus"])
}

// A health read that predates a write of the same instance is not shared
// after the write: right after a raise, the shift must see the raised
// servers as the LB sees them now, not as unused (weight 0).
func TestAWriteEndsTheSharingOfEarlierHealthReads(t *testing.T) {
	e, cfg := budgetWorld(t, spec.RateLimit{})
	require.NoError(t, albHealth(t.Context(), cfg, "lsn-1"))
	require.NoError(t, albHealth(t.Context(), cfg, "lsn-1"))
	require.Equal(t, 1, e.Calls()["GetListenerHealthStatus"], "within the TTL the answer is reused")

	c, err := albapi.NewClient(cfg)
	require.NoError(t, err)
	_, err = c.UpdateServerGroupServersAttributeWithContext(t.Context(), &albapi.UpdateServerGroupServersAttributeRequest{
		ServerGroupId: tea.String("sgp-1"),
		Servers: []*albapi.UpdateServerGroupServersAttributeRequestServers{{
			ServerId: tea.String("i-1"), ServerIp: tea.String("10.0.0.1"), ServerType: tea.String("Ecs"), Port: tea.Int32(80), Weight: tea.Int32(50)}},
	}, &dara.RuntimeOptions{})
	require.NoError(t, err)

	require.NoError(t, albHealth(t.Context(), cfg, "lsn-1"))
	require.Equal(t, 2, e.Calls()["GetListenerHealthStatus"], "after a write the listener is read again")
	require.NoError(t, albHealth(t.Context(), cfg, "lsn-1"))
	require.Equal(t, 2, e.Calls()["GetListenerHealthStatus"], "and that newer answer is shared again")
}

func TestRateLimitMakesCallsWaitNotFail(t *testing.T) {
	e, cfg := budgetWorld(t, spec.RateLimit{CallsPerSecond: 1000, Burst: 1})
	r := Retry{Timeout: 10 * time.Second}
	for range 20 {
		require.NoError(t, r.Do(t.Context(), "ListServerGroupServers", func(ctx context.Context) error { return albServers(ctx, cfg, "sgp-1") }),
			"a call beyond the burst waits for its token and then runs")
	}
	require.Equal(t, 20, e.Calls()["ListServerGroupServers"])

	// A bucket that refills once an hour: the burst of 2 passes; the next
	// call would wait past its context's deadline, so it is not sent.
	e, cfg = budgetWorld(t, spec.RateLimit{CallsPerSecond: 1.0 / 3600, Burst: 2})
	for range 2 {
		require.NoError(t, albServers(t.Context(), cfg, "sgp-1"))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r = Retry{Base: time.Millisecond, Timeout: 50 * time.Millisecond}
	err := r.Do(ctx, "ListServerGroupServers", func(ctx context.Context) error { return albServers(ctx, cfg, "sgp-1") })
	require.ErrorContains(t, err, "providers.alb[prod-hz]: waiting for the API rate limit (rateLimit)")
	require.False(t, providers.IsPermanent(err), "a call that found no token in time is retried later, not stalled")
	require.Equal(t, 2, e.Calls()["ListServerGroupServers"], "the call without a token never reached the service")
}
