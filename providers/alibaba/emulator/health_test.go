package emulator_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	alb "github.com/alibabacloud-go/alb-20200616/v2/client"
	slb "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/alibaba/emulator"
)

// app is a backend that names itself in every answer; its health path
// answers with the status code it is given (200 at first).
type app struct {
	name   string
	ip     string
	port   int
	health atomic.Int32
}

func (a *app) addr() string { return net.JoinHostPort(a.ip, strconv.Itoa(a.port)) }

func newApp(t *testing.T, name string) *app {
	a := &app{name: name}
	a.health.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(int(a.health.Load()))
			return
		}
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	host, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	a.ip = host
	a.port, err = strconv.Atoi(p)
	require.NoError(t, err)
	return a
}

func (a *app) server(id string, weight int) *emulator.Server {
	return &emulator.Server{ID: id, IP: a.ip, Port: a.port, Weight: weight}
}

// checks is a health check on /healthz with thresholds of 2.
func checks() *emulator.HealthCheck {
	return &emulator.HealthCheck{Path: "/healthz", Method: "GET", HealthyThreshold: 2, UnhealthyThreshold: 2}
}

func status(t *testing.T, e *emulator.Emulator, group string) map[string]string {
	t.Helper()
	hs, err := e.Health(emulator.Target{ServerGroup: group})
	require.NoError(t, err)
	out := map[string]string{}
	for _, h := range hs {
		out[h.Server.ID] = h.Status
	}
	return out
}

func serve(t *testing.T, f *emulator.Frontend) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return ln.Addr().String()
}

func TestWeightZeroIsUnusedAndNewWeightStartsInitialUntilTheHealthyThreshold(t *testing.T) {
	v := start(t, emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	g := &emulator.ServerGroup{ID: "sgp-1", HealthCheck: checks(), Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}}
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{g}, Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}}}))
	require.Equal(t, map[string]string{"i-a": "Healthy", "i-b": "Unused"}, status(t, v.e, "sgp-1"), "a seeded weighted server has been in service")

	v.e.CheckHealth(context.Background())
	require.Equal(t, "Unused", status(t, v.e, "sgp-1")["i-b"], "weight 0 is not checked")

	require.NoError(t, v.e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", 100))
	require.Equal(t, "Initial", status(t, v.e, "sgp-1")["i-b"])
	nonNormal := func() map[string]string {
		res, err := v.alb(t, "").GetListenerHealthStatus(&alb.GetListenerHealthStatusRequest{ListenerId: tea.String("lsn-1")})
		require.NoError(t, err)
		out := map[string]string{}
		for _, s := range res.Body.ListenerHealthStatus[0].ServerGroupInfos[0].NonNormalServers {
			out[tea.StringValue(s.ServerId)] = tea.StringValue(s.Status)
		}
		return out
	}
	require.Equal(t, map[string]string{"i-b": "Initial"}, nonNormal(), "the SDK reads Initial")
	v.e.CheckHealth(context.Background())
	require.Equal(t, "Initial", status(t, v.e, "sgp-1")["i-b"], "one pass is below the healthy threshold of 2")
	v.e.CheckHealth(context.Background())
	require.Equal(t, "Healthy", status(t, v.e, "sgp-1")["i-b"])
	require.Empty(t, nonNormal(), "healthy servers are not listed")

	require.NoError(t, v.e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", 0))
	require.NoError(t, v.e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", 50))
	require.Equal(t, "Initial", status(t, v.e, "sgp-1")["i-b"], "weight again: the checks start over")
}

func TestFailedChecksMakeAServerUnhealthyWithTheReason(t *testing.T) {
	v := start(t, emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	g := &emulator.ServerGroup{ID: "sgp-1", HealthCheck: checks(), Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 100)}}
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{g}, Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}}}))
	b.health.Store(http.StatusServiceUnavailable)
	v.e.CheckHealth(context.Background())
	require.Equal(t, "Healthy", status(t, v.e, "sgp-1")["i-b"], "one failure is below the unhealthy threshold of 2")
	v.e.CheckHealth(context.Background())
	require.Equal(t, "Unhealthy", status(t, v.e, "sgp-1")["i-b"])

	res, err := v.alb(t, "").GetListenerHealthStatus(&alb.GetListenerHealthStatusRequest{ListenerId: tea.String("lsn-1")})
	require.NoError(t, err)
	servers := res.Body.ListenerHealthStatus[0].ServerGroupInfos[0].NonNormalServers
	require.Len(t, servers, 1)
	require.Equal(t, "Unhealthy", tea.StringValue(servers[0].Status))
	require.Equal(t, "RESPONSE_MISMATCH", tea.StringValue(servers[0].Reason.ReasonCode))
	require.Equal(t, "503", tea.StringValue(servers[0].Reason.ActualResponse))
	require.Equal(t, "HTTP_2xx,HTTP_3xx", tea.StringValue(servers[0].Reason.ExpectedResponse))

	b.health.Store(http.StatusOK)
	v.e.CheckHealth(context.Background())
	v.e.CheckHealth(context.Background())
	require.Equal(t, "Healthy", status(t, v.e, "sgp-1")["i-b"], "recovered after the healthy threshold")
}

func TestConnectFailureAndTCPChecks(t *testing.T) {
	e := emulator.New(emulator.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close()) // nobody listens there now
	a := newApp(t, "A")
	tcp := &emulator.HealthCheck{Protocol: "TCP", HealthyThreshold: 2, UnhealthyThreshold: 2}
	require.NoError(t, e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{
		{ID: "sgp-down", HealthCheck: checks(), Servers: []*emulator.Server{{ID: "i-down", IP: "127.0.0.1", Port: port, Weight: 100}}},
		{ID: "sgp-tcp", HealthCheck: tcp, Servers: []*emulator.Server{{ID: "i-tcp", IP: a.ip, Port: a.port, Weight: 100, Health: "Initial"}}},
	}}))
	a.health.Store(http.StatusInternalServerError) // a TCP check does not look at HTTP
	e.CheckHealth(context.Background())
	e.CheckHealth(context.Background())
	hs, err := e.Health(emulator.Target{ServerGroup: "sgp-down"})
	require.NoError(t, err)
	require.Equal(t, "Unhealthy", hs[0].Status)
	require.Equal(t, "CONNECT_FAILED", hs[0].Reason.ReasonCode)
	require.Equal(t, "Healthy", status(t, e, "sgp-tcp")["i-tcp"])
}

func TestDataPlaneRoutesOnlyToHealthyServersAndToAllWhenNoneIsHealthy(t *testing.T) {
	e := emulator.New(emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	require.NoError(t, e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", HealthCheck: checks(),
		Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}}}}))
	addr := serve(t, e.NewFrontend(emulator.Target{ServerGroup: "sgp-1"}, time.Minute))

	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", 100))
	require.Equal(t, map[string]int{"A": 10}, answers(t, addr, 10), "B is Initial: no requests while A is healthy")
	e.CheckHealth(context.Background())
	e.CheckHealth(context.Background())
	require.Equal(t, map[string]int{"A": 5, "B": 5}, answers(t, addr, 10), "B healthy: both by weight")

	a.health.Store(http.StatusServiceUnavailable)
	e.CheckHealth(context.Background())
	e.CheckHealth(context.Background())
	require.Equal(t, map[string]int{"B": 10}, answers(t, addr, 10), "A unhealthy: no new requests")

	b.health.Store(http.StatusServiceUnavailable)
	e.CheckHealth(context.Background())
	e.CheckHealth(context.Background())
	require.Equal(t, map[string]string{"i-a": "Unhealthy", "i-b": "Unhealthy"}, status(t, e, "sgp-1"))
	require.Equal(t, map[string]int{"A": 5, "B": 5}, answers(t, addr, 10), "none healthy: ALB still routes to all of them")

	// A one-call swap to servers never checked: no weighted server is
	// healthy, so the new ones get the requests (fail-open).
	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-a", 0))
	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", 0))
	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-a", 100))
	require.Equal(t, map[string]int{"A": 4}, answers(t, addr, 4))
}

func TestDisabledHealthChecksReportUnavailableAndRouteByWeight(t *testing.T) {
	v := start(t, emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	off := false
	b.health.Store(http.StatusServiceUnavailable)
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", HealthCheck: &emulator.HealthCheck{Enabled: &off},
		Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}}},
		Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}}}))
	require.NoError(t, v.e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", 100))
	v.e.CheckHealth(context.Background())
	res, err := v.alb(t, "").GetListenerHealthStatus(&alb.GetListenerHealthStatusRequest{ListenerId: tea.String("lsn-1")})
	require.NoError(t, err)
	info := res.Body.ListenerHealthStatus[0].ServerGroupInfos[0]
	require.Equal(t, "off", tea.StringValue(info.HealthCheckEnabled))
	for _, s := range info.NonNormalServers {
		require.Equal(t, "Unavailable", tea.StringValue(s.Status))
	}
	require.Len(t, info.NonNormalServers, 2)
	addr := serve(t, v.e.NewFrontend(emulator.Target{ServerGroup: "sgp-1"}, time.Minute))
	require.Equal(t, map[string]int{"A": 5, "B": 5}, answers(t, addr, 10))
}

func TestRulesRouteByHeaderAndCookieAndReportTheirGroupsHealth(t *testing.T) {
	v := start(t, emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	require.NoError(t, v.e.Seed(emulator.State{
		ServerGroups: []*emulator.ServerGroup{
			{ID: "sgp-main", HealthCheck: checks(), Servers: []*emulator.Server{a.server("i-a", 100)}},
			{ID: "sgp-preview", HealthCheck: checks(), Servers: []*emulator.Server{b.server("i-b", 0)}},
		},
		Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-main"}},
		Rules: []*emulator.Rule{
			{ID: "rule-h", Listener: "lsn-1", Priority: 1, Conditions: []emulator.RuleCondition{{Type: "Header", Key: "X-Preview", Values: []string{"on"}}},
				ServerGroups: []emulator.ServerGroupTuple{{ServerGroup: "sgp-preview"}}},
			{ID: "rule-c", Listener: "lsn-1", Priority: 2, Conditions: []emulator.RuleCondition{{Type: "Cookie", Key: "preview", Values: []string{"1"}}},
				ServerGroups: []emulator.ServerGroupTuple{{ServerGroup: "sgp-preview"}}},
		},
	}))
	require.NoError(t, v.e.SetWeight(emulator.Target{ServerGroup: "sgp-preview"}, "i-b", 100))
	f, err := v.e.NewListenerFrontend("lsn-1", time.Minute)
	require.NoError(t, err)
	addr := serve(t, f)
	send := func(mod func(*http.Request)) string {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		require.NoError(t, err)
		mod(req)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return string(body)
	}
	require.Equal(t, "A", send(func(*http.Request) {}))
	require.Equal(t, "B", send(func(r *http.Request) { r.Header.Set("X-Preview", "on") }))
	require.Equal(t, "A", send(func(r *http.Request) { r.Header.Set("X-Preview", "off") }))
	require.Equal(t, "B", send(func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "preview", Value: "1"}) }))

	health := func(include bool) *alb.GetListenerHealthStatusResponseBody {
		res, err := v.alb(t, "").GetListenerHealthStatus(&alb.GetListenerHealthStatusRequest{ListenerId: tea.String("lsn-1"), IncludeRule: tea.Bool(include)})
		require.NoError(t, err)
		return res.Body
	}
	require.Empty(t, health(false).RuleHealthStatus)
	rules := health(true).RuleHealthStatus
	require.Len(t, rules, 2)
	require.Equal(t, "rule-h", tea.StringValue(rules[0].RuleId))
	info := rules[0].ServerGroupInfos[0]
	require.Equal(t, "sgp-preview", tea.StringValue(info.ServerGroupId))
	require.Equal(t, "Initial", tea.StringValue(info.NonNormalServers[0].Status))
	v.e.CheckHealth(context.Background())
	v.e.CheckHealth(context.Background())
	require.Empty(t, health(true).RuleHealthStatus[0].ServerGroupInfos[0].NonNormalServers, "healthy after the threshold")
}

func TestBlockedServersFailTheLBsChecksAndTrafficButNotDirectConnections(t *testing.T) {
	v := start(t, emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", HealthCheck: checks(),
		Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 100)}}},
		Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}}}))
	addr := serve(t, v.e.NewFrontend(emulator.Target{ServerGroup: "sgp-1"}, time.Minute))

	v.e.BlockServers(b.addr())
	codes := map[int]int{}
	for range 10 {
		code, _ := get(t, addr)
		codes[code]++
	}
	require.Equal(t, map[int]int{200: 5, 504: 5}, codes, "forwarded traffic to the blocked server fails")
	direct, body := get(t, b.addr())
	require.Equal(t, http.StatusOK, direct, "a direct connection still works")
	require.Equal(t, "B", body)

	v.e.CheckHealth(context.Background())
	v.e.CheckHealth(context.Background())
	require.Equal(t, "Unhealthy", status(t, v.e, "sgp-1")["i-b"])
	res, err := v.alb(t, "").GetListenerHealthStatus(&alb.GetListenerHealthStatusRequest{ListenerId: tea.String("lsn-1")})
	require.NoError(t, err)
	require.Equal(t, "CONNECT_TIMEOUT", tea.StringValue(res.Body.ListenerHealthStatus[0].ServerGroupInfos[0].NonNormalServers[0].Reason.ReasonCode))
	require.Equal(t, map[string]int{"A": 10}, answers(t, addr, 10), "the unhealthy server gets no new requests")

	v.e.UnblockServers(b.addr())
	v.e.CheckHealth(context.Background())
	v.e.CheckHealth(context.Background())
	require.Equal(t, "Healthy", status(t, v.e, "sgp-1")["i-b"])
}

func TestRunHealthChecksChecksOnTheInterval(t *testing.T) {
	e := emulator.New(emulator.Options{HealthCheckUnit: 10 * time.Millisecond})
	a, b := newApp(t, "A"), newApp(t, "B")
	require.NoError(t, e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", HealthCheck: checks(),
		Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}}}}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.RunHealthChecks(ctx) })
	defer func() { cancel(); wg.Wait() }()
	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", 100))
	require.Eventually(t, func() bool { return status(t, e, "sgp-1")["i-b"] == "Healthy" }, 10*time.Second, 5*time.Millisecond)
	a.health.Store(http.StatusServiceUnavailable)
	require.Eventually(t, func() bool { return status(t, e, "sgp-1")["i-a"] == "Unhealthy" }, 10*time.Second, 5*time.Millisecond)
}

func TestSLBHealthFollowsTheListenersChecks(t *testing.T) {
	v := start(t, emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	require.NoError(t, v.e.Seed(emulator.State{LoadBalancers: []*emulator.LoadBalancer{{ID: "lb-1", Servers: []*emulator.Server{},
		VServerGroups: []*emulator.VServerGroup{{ID: "rsp-1", Servers: []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}}},
		Listeners: []*emulator.SLBListener{{Port: 80, Protocol: "http", VServerGroup: "rsp-1",
			HealthCheck: &emulator.HealthCheck{Path: "/healthz", HealthyThreshold: 2, UnhealthyThreshold: 2}}}}}}))
	health := func() map[string]string {
		res, err := v.slb(t, "").DescribeHealthStatus(&slb.DescribeHealthStatusRequest{RegionId: tea.String("cn-hangzhou"), LoadBalancerId: tea.String("lb-1")})
		require.NoError(t, err)
		out := map[string]string{}
		for _, s := range res.Body.BackendServers.BackendServer {
			out[tea.StringValue(s.ServerId)] = tea.StringValue(s.ServerHealthStatus)
		}
		return out
	}
	require.Equal(t, map[string]string{"i-a": "normal", "i-b": "unavailable"}, health())
	require.NoError(t, v.e.SetWeight(emulator.Target{LoadBalancer: "lb-1", VServerGroup: "rsp-1"}, "i-b", 100))
	require.Equal(t, "abnormal", health()["i-b"], "not yet declared healthy")
	v.e.CheckHealth(context.Background())
	v.e.CheckHealth(context.Background())
	require.Equal(t, "normal", health()["i-b"])
	_, err := v.slb(t, "").DescribeHealthStatus(&slb.DescribeHealthStatusRequest{RegionId: tea.String("cn-hangzhou"), LoadBalancerId: tea.String("lb-1"), ListenerPort: tea.Int32(81)})
	require.Equal(t, "ListenerNotFound", code(t, err))

	res, err := v.slb(t, "").DescribeLoadBalancerHTTPListenerAttribute(&slb.DescribeLoadBalancerHTTPListenerAttributeRequest{
		RegionId: tea.String("cn-hangzhou"), LoadBalancerId: tea.String("lb-1"), ListenerPort: tea.Int32(80)})
	require.NoError(t, err)
	require.Equal(t, "on", tea.StringValue(res.Body.HealthCheck))
	require.Equal(t, "/healthz", tea.StringValue(res.Body.HealthCheckURI))
	require.Equal(t, int32(2), tea.Int32Value(res.Body.HealthyThreshold))
	require.Equal(t, int32(2), tea.Int32Value(res.Body.HealthCheckInterval))
	require.Equal(t, "rsp-1", tea.StringValue(res.Body.VServerGroupId))

	// The LB checks another port than the app serves: the checks fail.
	require.NoError(t, v.e.SetHealthCheck(emulator.Target{LoadBalancer: "lb-1", VServerGroup: "rsp-1"},
		&emulator.HealthCheck{Path: "/healthz", ConnectPort: 1, HealthyThreshold: 2, UnhealthyThreshold: 2}))
	require.Equal(t, map[string]string{"i-a": "abnormal", "i-b": "abnormal"}, health(), "new settings: the checks start over")
	v.e.CheckHealth(context.Background())
	v.e.CheckHealth(context.Background())
	hs, err := v.e.Health(emulator.Target{LoadBalancer: "lb-1", VServerGroup: "rsp-1"})
	require.NoError(t, err)
	require.Equal(t, emulator.StatusUnhealthy, hs[0].Status)
	require.Equal(t, "CONNECT_FAILED", hs[0].Reason.ReasonCode)
	require.Error(t, v.e.SetHealthCheck(emulator.Target{LoadBalancer: "lb-1", VServerGroup: "rsp-1"}, &emulator.HealthCheck{HealthyThreshold: 1}), "thresholds are 2..10")

	require.NoError(t, v.e.Seed(emulator.State{LoadBalancers: []*emulator.LoadBalancer{{ID: "lb-tcp", Servers: []*emulator.Server{a.server("i-a", 100)},
		Listeners: []*emulator.SLBListener{{Port: 443}}}}}))
	tcp, err := v.slb(t, "").DescribeLoadBalancerTCPListenerAttribute(&slb.DescribeLoadBalancerTCPListenerAttributeRequest{
		RegionId: tea.String("cn-hangzhou"), LoadBalancerId: tea.String("lb-tcp"), ListenerPort: tea.Int32(443)})
	require.NoError(t, err)
	require.Equal(t, "on", tea.StringValue(tcp.Body.HealthCheck))
	require.Equal(t, "tcp", tea.StringValue(tcp.Body.HealthCheckType), "a TCP listener checks by TCP by default")
	require.Equal(t, int32(5), tea.Int32Value(tcp.Body.HealthCheckConnectTimeout))
}

func TestServerGroupHealthCheckConfigIsReadAndUpdatedThroughTheSDK(t *testing.T) {
	v := start(t, emulator.Options{JobDelay: time.Hour})
	a := newApp(t, "A")
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", Servers: []*emulator.Server{a.server("i-a", 100)}}},
		Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}},
		Rules: []*emulator.Rule{{ID: "rule-1", Listener: "lsn-1", Priority: 5, Conditions: []emulator.RuleCondition{{Type: "Header", Key: "X-Preview", Values: []string{"on"}}},
			ServerGroups: []emulator.ServerGroupTuple{{ServerGroup: "sgp-1"}}}}}))
	c := v.alb(t, "")
	list := func() *alb.ListServerGroupsResponseBodyServerGroups {
		res, err := c.ListServerGroups(&alb.ListServerGroupsRequest{ServerGroupIds: []*string{tea.String("sgp-1")}})
		require.NoError(t, err)
		require.Len(t, res.Body.ServerGroups, 1)
		return res.Body.ServerGroups[0]
	}
	g := list()
	hc := g.HealthCheckConfig
	require.True(t, tea.BoolValue(hc.HealthCheckEnabled), "on by default")
	require.Equal(t, "/", tea.StringValue(hc.HealthCheckPath))
	require.Equal(t, int32(2), tea.Int32Value(hc.HealthCheckInterval))
	require.Equal(t, int32(3), tea.Int32Value(hc.HealthyThreshold))
	require.Equal(t, int32(3), tea.Int32Value(hc.UnhealthyThreshold))
	require.Equal(t, int32(5), tea.Int32Value(hc.HealthCheckTimeout))
	require.Equal(t, "HTTP", tea.StringValue(hc.HealthCheckProtocol))
	require.Equal(t, "Available", tea.StringValue(g.ServerGroupStatus))

	res, err := c.UpdateServerGroupAttribute(&alb.UpdateServerGroupAttributeRequest{ServerGroupId: tea.String("sgp-1"),
		HealthCheckConfig: &alb.UpdateServerGroupAttributeRequestHealthCheckConfig{HealthCheckPath: tea.String("/healthz"),
			HealthyThreshold: tea.Int32(4), HealthCheckCodes: []*string{tea.String("http_2xx")}},
		SlowStartConfig: &alb.UpdateServerGroupAttributeRequestSlowStartConfig{SlowStartEnabled: tea.Bool(true), SlowStartDuration: tea.Int32(30)}})
	require.NoError(t, err)
	require.NotEmpty(t, tea.StringValue(res.Body.JobId))
	require.Equal(t, "Configuring", tea.StringValue(list().ServerGroupStatus), "asynchronous, like the weight changes")
	require.Equal(t, "/", tea.StringValue(list().HealthCheckConfig.HealthCheckPath), "applied when the job ends")

	_, err = c.UpdateServerGroupAttribute(&alb.UpdateServerGroupAttributeRequest{ServerGroupId: tea.String("sgp-1"),
		HealthCheckConfig: &alb.UpdateServerGroupAttributeRequestHealthCheckConfig{HealthyThreshold: tea.Int32(11)}})
	require.Equal(t, "IllegalParam.HealthCheckConfig", code(t, err), "thresholds are 2..10")

	v2 := start(t, emulator.Options{})
	require.NoError(t, v2.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", Servers: []*emulator.Server{a.server("i-a", 100)}}}}))
	_, err = v2.alb(t, "").UpdateServerGroupAttribute(&alb.UpdateServerGroupAttributeRequest{ServerGroupId: tea.String("sgp-1"),
		HealthCheckConfig: &alb.UpdateServerGroupAttributeRequestHealthCheckConfig{HealthCheckPath: tea.String("/healthz"), HealthyThreshold: tea.Int32(4)},
		SlowStartConfig:   &alb.UpdateServerGroupAttributeRequestSlowStartConfig{SlowStartEnabled: tea.Bool(true), SlowStartDuration: tea.Int32(30)}})
	require.NoError(t, err)
	res2, err := v2.alb(t, "").ListServerGroups(&alb.ListServerGroupsRequest{})
	require.NoError(t, err)
	g = res2.Body.ServerGroups[0]
	require.Equal(t, "/healthz", tea.StringValue(g.HealthCheckConfig.HealthCheckPath))
	require.Equal(t, int32(4), tea.Int32Value(g.HealthCheckConfig.HealthyThreshold))
	require.Equal(t, int32(3), tea.Int32Value(g.HealthCheckConfig.UnhealthyThreshold), "fields not given keep their value")
	require.True(t, tea.BoolValue(g.SlowStartConfig.SlowStartEnabled))
	require.Equal(t, int32(30), tea.Int32Value(g.SlowStartConfig.SlowStartDuration))
	require.Equal(t, "Initial", status(t, v2.e, "sgp-1")["i-a"], "new settings: the checks start over")

	rules, err := c.ListRules(&alb.ListRulesRequest{ListenerIds: []*string{tea.String("lsn-1")}})
	require.NoError(t, err)
	require.Len(t, rules.Body.Rules, 1)
	rule := rules.Body.Rules[0]
	require.Equal(t, "rule-1", tea.StringValue(rule.RuleId))
	require.Equal(t, int32(5), tea.Int32Value(rule.Priority))
	require.Equal(t, "X-Preview", tea.StringValue(rule.RuleConditions[0].HeaderConfig.Key))
	require.Equal(t, "sgp-1", tea.StringValue(rule.RuleActions[0].ForwardGroupConfig.ServerGroupTuples[0].ServerGroupId))
}

func TestSlowStartRampsANewServerOnlyBesideHealthyOnes(t *testing.T) {
	e := emulator.New(emulator.Options{})
	a, b := newApp(t, "A"), newApp(t, "B")
	target := emulator.Target{ServerGroup: "sgp-1"}
	require.NoError(t, e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", HealthCheck: checks(),
		SlowStart: &emulator.SlowStart{Enabled: true, Duration: 900},
		Servers:   []*emulator.Server{a.server("i-a", 100), b.server("i-b", 0)}}}}))
	weights := func() map[string]int {
		list, err := e.Routable(target)
		require.NoError(t, err)
		out := map[string]int{}
		for _, s := range list {
			out[s.ID] = s.Weight
		}
		return out
	}
	require.NoError(t, e.SetWeight(target, "i-b", 100))
	e.CheckHealth(context.Background())
	e.CheckHealth(context.Background())
	got := weights()
	require.Equal(t, 100, got["i-a"])
	require.Positive(t, got["i-b"])
	require.Less(t, got["i-b"], 100, "B just became healthy beside healthy A: its share ramps up")
	hs, err := e.Health(target)
	require.NoError(t, err)
	require.False(t, hs[1].SlowStartUntil.IsZero())

	// A server that becomes healthy with no other healthy server does not
	// slow-start.
	require.NoError(t, e.SetWeight(target, "i-a", 0))
	require.NoError(t, e.SetWeight(target, "i-b", 0))
	require.NoError(t, e.SetWeight(target, "i-b", 100))
	e.CheckHealth(context.Background())
	e.CheckHealth(context.Background())
	require.Equal(t, map[string]int{"i-b": 100}, weights())
}

func TestControlEndpointBlocksServersAndShowsTheLBsHealthView(t *testing.T) {
	e := emulator.New(emulator.Options{})
	a := newApp(t, "A")
	require.NoError(t, e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", HealthCheck: checks(),
		Servers: []*emulator.Server{a.server("i-a", 100)}}}}))
	ctl := httptest.NewServer(e.ControlHandler())
	t.Cleanup(ctl.Close)
	addr := serve(t, e.NewFrontend(emulator.Target{ServerGroup: "sgp-1"}, time.Minute))
	post := func(path string) int {
		res, err := http.Post(ctl.URL+path, "", nil)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusNoContent, post("/block?server="+a.addr()))
	code, _ := get(t, addr)
	require.Equal(t, http.StatusGatewayTimeout, code)
	e.CheckHealth(context.Background())
	e.CheckHealth(context.Background())
	res, err := http.Get(ctl.URL + "/health?target=alb:sgp-1")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.JSONEq(t, `[{"id":"i-a","ip":"`+a.ip+`","port":`+strconv.Itoa(a.port)+`,"weight":100,"status":"Unhealthy","reason":{"ReasonCode":"CONNECT_TIMEOUT"}}]`, string(body))
	require.Equal(t, http.StatusNoContent, post("/unblock?server="+a.addr()))
	code, _ = get(t, addr)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, http.StatusBadRequest, post("/block"), "a server is required")
	require.Equal(t, http.StatusBadRequest, post("/block?server=nowhere"), "IP:PORT")
	res, err = http.Get(ctl.URL + "/health?target=alb:sgp-nosuch")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusNotFound, res.StatusCode)
}
