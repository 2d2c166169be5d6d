package emulator_test

import (
	"context"
	"testing"
	"time"

	slb "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/alibaba/emulator"
)

// TestSLBTestListenerRoutesToItsOwnVServerGroup: a preview route on CLB is
// a second listener with a vServer group of its own. Each listener's data
// plane forwards to its own group, its health is reported under its own
// port, and a weight changed in one group leaves the other listener's
// traffic alone.
func TestSLBTestListenerRoutesToItsOwnVServerGroup(t *testing.T) {
	v := start(t, emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	hc := &emulator.HealthCheck{Path: "/healthz", HealthyThreshold: 2, UnhealthyThreshold: 2}
	require.NoError(t, v.e.Seed(emulator.State{LoadBalancers: []*emulator.LoadBalancer{{ID: "lb-1", Servers: []*emulator.Server{},
		VServerGroups: []*emulator.VServerGroup{
			{ID: "rsp-main", Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}},
			{ID: "rsp-preview", Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}},
		},
		Listeners: []*emulator.SLBListener{
			{Port: 80, Protocol: "http", VServerGroup: "rsp-main", HealthCheck: hc},
			{Port: 8080, Protocol: "http", VServerGroup: "rsp-preview", HealthCheck: hc},
		}}}}))
	frontend := func(port int) string {
		f, err := v.e.NewSLBListenerFrontend("lb-1", port, time.Minute)
		require.NoError(t, err)
		return serve(t, f)
	}
	main, preview := frontend(80), frontend(8080)
	_, err := v.e.NewSLBListenerFrontend("lb-1", 81, time.Minute)
	require.EqualError(t, err, "slb lb-1 has no listener on port 81")

	// The preview route moves to B, make-before-break; the main one stays.
	require.NoError(t, v.e.SetWeight(emulator.Target{LoadBalancer: "lb-1", VServerGroup: "rsp-preview"}, "i-b", 100))
	health := func(port int32) map[string]string {
		res, err := v.slb(t, "").DescribeHealthStatus(&slb.DescribeHealthStatusRequest{RegionId: tea.String("cn-hangzhou"),
			LoadBalancerId: tea.String("lb-1"), ListenerPort: tea.Int32(port)})
		require.NoError(t, err)
		out := map[string]string{}
		for _, s := range res.Body.BackendServers.BackendServer {
			out[tea.StringValue(s.ServerId)] = tea.StringValue(s.ServerHealthStatus)
		}
		return out
	}
	require.Equal(t, map[string]string{"i-a": "normal", "i-b": "abnormal"}, health(8080), "the raised server is not checked healthy yet")
	require.Equal(t, map[string]string{"i-a": "normal", "i-b": "unavailable"}, health(80))
	v.e.CheckHealth(context.Background())
	v.e.CheckHealth(context.Background())
	require.Equal(t, "normal", health(8080)["i-b"])
	require.NoError(t, v.e.SetWeight(emulator.Target{LoadBalancer: "lb-1", VServerGroup: "rsp-preview"}, "i-a", 0))

	require.Equal(t, map[string]int{"B": 10}, answers(t, preview, 10))
	require.Equal(t, map[string]int{"A": 10}, answers(t, main, 10))
}
