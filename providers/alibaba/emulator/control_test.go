package emulator_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	alb "github.com/alibabacloud-go/alb-20200616/v2/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
)

// TestNegativeControlOneCallSwapToServersTheLBCannotReachLosesRequests is
// the emulator's side of the make-before-break shift: with the LB cut off
// from group B (BlockServers, as a security group that drops the LB's
// health-check addresses), raising B while A keeps its weight loses
// nothing — B never becomes healthy, so ALB never routes to it — while the
// one-call swap (A to 0 and B to 100 in one UpdateServerGroupServersAttribute)
// loses requests: no weighted server is healthy, ALB fails open to B, and
// B cannot be reached. Tandem's own probes of B still pass. If this test
// stops seeing the loss, the emulator has stopped modelling it.
func TestNegativeControlOneCallSwapToServersTheLBCannotReachLosesRequests(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v := start(t, emulator.Options{JobDelay: 50 * time.Millisecond, HealthCheckUnit: 10 * time.Millisecond})
	apps := map[string]*demoapp.App{}
	var servers []*emulator.Server
	for _, id := range []string{"a1", "a2", "b1", "b2"} {
		a, err := demoapp.Start(ctx, demoapp.Options{Name: id, Version: "1.0.0", Group: id[:1], Listen: "127.0.0.1:0"})
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Stop() })
		apps[id] = a
		in := a.Instance()
		weight := 0
		if id[0] == 'a' {
			weight = 100
		}
		servers = append(servers, &emulator.Server{ID: id, IP: in.IP, Port: in.Port, Weight: weight})
	}
	target := emulator.Target{ServerGroup: "sgp-web"}
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-web", Servers: servers, HealthCheck: checks()}},
		Listeners: []*emulator.Listener{{ID: "lsn-web", Port: 80, ServerGroup: "sgp-web"}}}))
	done := make(chan struct{})
	go func() { defer close(done); v.e.RunHealthChecks(ctx) }()
	defer func() { cancel(); <-done }()
	addr := serve(t, v.e.NewFrontend(target, time.Minute))

	load, err := loadgen.Start(ctx, loadgen.Config{URL: "http://" + addr, Rate: 100, Duration: 5 * time.Minute})
	require.NoError(t, err)
	defer load.Stop()
	// more waits until the load has sent n more requests.
	more := func(n int) loadgen.Report {
		from := load.Snapshot().Requests
		require.Eventually(t, func() bool { return load.Snapshot().Requests >= from+n }, time.Minute, 5*time.Millisecond)
		return load.Snapshot()
	}
	c := v.alb(t, "")
	setWeights := func(weights map[string]int) {
		req := &alb.UpdateServerGroupServersAttributeRequest{ServerGroupId: tea.String("sgp-web")}
		for id, w := range weights {
			req.Servers = append(req.Servers, &alb.UpdateServerGroupServersAttributeRequestServers{
				ServerId: tea.String(id), ServerType: tea.String("Ecs"), Weight: tea.Int32(int32(w))})
		}
		_, err := c.UpdateServerGroupServersAttribute(req)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			list, err := v.e.Servers(target)
			require.NoError(t, err)
			for _, s := range list {
				if w, ok := weights[s.ID]; ok && s.Weight != w {
					return false
				}
			}
			return true
		}, time.Minute, 5*time.Millisecond, "the job applies the weights")
	}
	b1, b2 := apps["b1"].Addr(), apps["b2"].Addr()
	v.e.BlockServers(b1, b2)

	// Make before break: B raised, A keeps its weight. B never passes a
	// check, so no request goes to it.
	more(20)
	setWeights(map[string]int{"b1": 100, "b2": 100})
	require.Eventually(t, func() bool {
		hs, err := v.e.Health(target)
		require.NoError(t, err)
		return hs[2].Status == emulator.StatusUnhealthy && hs[3].Status == emulator.StatusUnhealthy
	}, time.Minute, 5*time.Millisecond, "the LB declares B unhealthy")
	hs, err := v.e.Health(target)
	require.NoError(t, err)
	require.Equal(t, "CONNECT_TIMEOUT", hs[2].Reason.ReasonCode)
	r := more(50)
	require.Zero(t, r.Failed, "raise-then-wait loses nothing: %s", r)
	setWeights(map[string]int{"b1": 0, "b2": 0}) // undo the raise

	// Tandem's own probe reaches B directly.
	res, err := http.Get("http://" + b1 + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	// The one-call swap.
	setWeights(map[string]int{"a1": 0, "a2": 0, "b1": 100, "b2": 100})
	r = more(50)
	report := load.Stop()
	t.Logf("one-call swap to unreachable servers: %s", report)
	require.Positive(t, r.Failed, "the one-call swap to servers the LB cannot reach must lose requests")
}
