package slb_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/alibaba/emulator/emutest"
	"github.com/tandemhq/tandem/providers/providertest"
	"github.com/tandemhq/tandem/providers/slb"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// busy keeps a load balancer locked briefly after each write, so that
// consecutive batches meet BackendServer.configuring and retry.
const busy = 50 * time.Millisecond

type harness struct {
	emutest.Harness
	e       *emulator.Emulator
	p       *slb.Provider
	n       int
	vserver bool // bind vServer groups; otherwise default server groups
}

func newHarness(t *testing.T, vserver bool, opts emulator.Options) *harness {
	e, cfg := emutest.Start(t, "prod-hz", opts)
	p, err := slb.New(cfg, nil)
	require.NoError(t, err)
	return wrap(e, p, vserver)
}

func wrap(e *emulator.Emulator, p *slb.Provider, vserver bool) *harness {
	return &harness{Harness: emutest.Harness{E: e, Target: target}, e: e, p: p, vserver: vserver}
}

func (h *harness) Provider(*testing.T) providers.LoadBalancer { return h.p }
func (h *harness) Batch() int                                 { return 20 }

func (h *harness) Create(t *testing.T, servers []providertest.Server) spec.Binding {
	h.n++
	lb := &emulator.LoadBalancer{ID: fmt.Sprintf("lb-test%03d", h.n)}
	b := spec.Binding{SLB: "prod-hz", LoadBalancer: lb.ID, ListenerPort: 80, Weight: 100}
	var list []*emulator.Server
	for _, s := range servers {
		list = append(list, &emulator.Server{ID: s.ID, IP: s.IP, Port: s.Port, Weight: s.Weight})
	}
	if h.vserver {
		vg := &emulator.VServerGroup{ID: fmt.Sprintf("rsp-test%03d", h.n), Servers: list}
		lb.VServerGroups = []*emulator.VServerGroup{vg}
		lb.Listeners = []*emulator.SLBListener{{Port: 80, VServerGroup: vg.ID}}
		b.VServerGroup = vg.ID
	} else {
		for _, s := range list {
			s.Port = 0 // the default server group has no ports
		}
		lb.Servers = list
		lb.Listeners = []*emulator.SLBListener{{Port: 80}}
	}
	require.NoError(t, h.e.Seed(emulator.State{LoadBalancers: []*emulator.LoadBalancer{lb}}))
	return b
}

func target(b spec.Binding) emulator.Target {
	return emulator.Target{LoadBalancer: b.LoadBalancer, VServerGroup: b.VServerGroup}
}

func TestConformanceVServerGroup(t *testing.T) {
	providertest.TestLoadBalancer(t, newHarness(t, true, emulator.Options{SLBBusy: busy}))
}

func TestConformanceDefaultServerGroup(t *testing.T) {
	providertest.TestLoadBalancer(t, newHarness(t, false, emulator.Options{SLBBusy: busy}))
}

func TestConformanceLegacySignature(t *testing.T) {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{SLBBusy: busy})
	cfg.SignatureVersion = "v2"
	p, err := slb.New(cfg, nil)
	require.NoError(t, err)
	providertest.TestLoadBalancer(t, wrap(e, p, true))
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func seed(t *testing.T, h *harness, n int) (spec.Binding, []providers.WeightChange) {
	servers, toB, _ := providertest.Fleet(n)
	return h.Create(t, servers), toB
}

func TestSetWeightsSplitsIntoBatchesOfTwentyRaisingFirst(t *testing.T) {
	for _, vserver := range []bool{true, false} {
		t.Run(fmt.Sprintf("vserver=%v", vserver), func(t *testing.T) {
			h := newHarness(t, vserver, emulator.Options{SLBBusy: busy})
			b, swap := seed(t, h, 30) // 60 changes: 30 raises, 30 lowers
			h.e.ResetCalls()
			require.NoError(t, h.p.SetWeights(ctx(t), b, swap))
			action := "SetBackendServers"
			if vserver {
				action = "SetVServerGroupAttribute"
			}
			calls := h.e.Calls()
			require.GreaterOrEqual(t, calls[action], 4, "raises in 2 batches, lowers in 2 (plus busy retries)")
			low, err := h.e.LowWater(target(b))
			require.NoError(t, err)
			require.Equal(t, 30*100, low, "no weight was taken before all new weight was in place")
		})
	}
}

func TestSetWeightsRetriesWhileTheLoadBalancerIsConfiguring(t *testing.T) {
	h := newHarness(t, true, emulator.Options{})
	b, swap := seed(t, h, 1)
	h.e.Inject("SetVServerGroupAttribute", "BackendServer.configuring", 400, 2)
	require.NoError(t, h.p.SetWeights(ctx(t), b, swap))
	require.Equal(t, 3, h.e.Calls()["SetVServerGroupAttribute"])
	require.Equal(t, 100, h.Weights(t, b)["i-b000"])
}

func TestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		status     int
		reason     string // "" for transient
	}{
		{"throttling is retried until it passes", "Throttling", 400, ""},
		{"a busy service is retried until it passes", "ServiceIsConfiguring", 400, ""},
		{"an internal error is retried until it passes", "InternalError", 500, ""},
		{"an unknown load balancer stalls at once", "InvalidLoadBalancerId.NotFound", 404, "NotFound"},
		{"an invalid parameter stalls at once", "InvalidParameter", 400, "InvalidParameter"},
		{"a missing permission stalls at once", "Forbidden.RAM", 403, "PermissionDenied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false, emulator.Options{})
			b, swap := seed(t, h, 1)
			h.e.Inject("SetBackendServers", tc.code, tc.status, 2)
			err := h.p.SetWeights(ctx(t), b, swap)
			if tc.reason == "" {
				require.NoError(t, err)
				require.Equal(t, 3, h.e.Calls()["SetBackendServers"])
				return
			}
			var perm *providers.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, tc.reason, perm.Reason)
			require.Equal(t, 1, h.e.Calls()["SetBackendServers"], "no retry")
			require.Contains(t, err.Error(), "slb:prod-hz/"+b.LoadBalancer+"/default", "names the binding")
			require.Contains(t, err.Error(), "i-b000", "names the servers")
		})
	}
}

func TestUnknownResourcesStallWithAClearMessage(t *testing.T) {
	h := newHarness(t, true, emulator.Options{})
	b, _ := seed(t, h, 1)
	for _, tc := range []struct {
		name    string
		binding spec.Binding
		want    string
	}{
		{"an unknown load balancer", spec.Binding{SLB: "prod-hz", LoadBalancer: "lb-missing"}, "InvalidLoadBalancerId.NotFound"},
		{"an unknown vserver group", spec.Binding{SLB: "prod-hz", LoadBalancer: b.LoadBalancer, VServerGroup: "rsp-missing"}, "does not exist"},
		{"a vserver group of another load balancer", spec.Binding{SLB: "prod-hz", LoadBalancer: "lb-other", VServerGroup: b.VServerGroup}, "belongs to load balancer " + b.LoadBalancer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.p.Backends(ctx(t), tc.binding)
			require.True(t, providers.IsPermanent(err), "%v", err)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, tc.binding.Key())
		})
	}
}

func TestBackendsReadsServersAndHealthAtOnce(t *testing.T) {
	for _, tc := range []struct {
		vserver bool
		read    string
	}{{true, "DescribeVServerGroupAttribute"}, {false, "DescribeLoadBalancerAttribute"}} {
		t.Run(tc.read, func(t *testing.T) {
			e, cfg := emutest.Start(t, "prod-hz", emulator.Options{})
			cfg, overlapped := emutest.Overlap(t, e, cfg, tc.read, "DescribeHealthStatus")
			p, err := slb.New(cfg, nil)
			require.NoError(t, err)
			b, _ := seed(t, wrap(e, p, tc.vserver), 2)
			got, err := p.Backends(ctx(t), b)
			require.NoError(t, err)
			require.Len(t, got, 4)
			require.True(t, overlapped(), "the servers were read before the health read started: an idle pass pays both latencies")
		})
	}
}

func TestHealthFollowsTheListener(t *testing.T) {
	h := newHarness(t, true, emulator.Options{})
	b, _ := seed(t, h, 2)
	require.NoError(t, h.e.SetHealthy(target(b), "i-a001", false))
	got, err := h.p.Backends(ctx(t), b)
	require.NoError(t, err)
	for _, be := range got {
		want := providers.HealthHealthy
		switch {
		case be.ID == "i-a001":
			want = providers.HealthUnhealthy
		case be.Weight == 0:
			want = providers.HealthUnknown // not checked: "unavailable"
		}
		require.Equal(t, want, be.Health, be.ID)
		require.Equal(t, -1, be.Sessions)
	}
	b.ListenerPort = 0
	got, err = h.p.Backends(ctx(t), b)
	require.NoError(t, err)
	for _, be := range got {
		require.Equal(t, providers.HealthUnknown, be.Health, "no listener, no health")
	}
}

// BenchmarkLargeGroup observes and swaps a vServer group of 250 servers
// (125 in A, 125 in B) through the SDK and the emulator; it reports the API
// calls each step takes.
func BenchmarkLargeGroup(b *testing.B) {
	e, cfg := emutest.Start(b, "prod-hz", emulator.Options{})
	p, err := slb.New(cfg, nil)
	require.NoError(b, err)
	servers, toB, toA := emutest.Fleet(125)
	vg := &emulator.VServerGroup{ID: "rsp-bench", Servers: servers}
	lb := &emulator.LoadBalancer{ID: "lb-bench", VServerGroups: []*emulator.VServerGroup{vg}, Listeners: []*emulator.SLBListener{{Port: 80, VServerGroup: vg.ID}}}
	require.NoError(b, e.Seed(emulator.State{LoadBalancers: []*emulator.LoadBalancer{lb}}))
	binding := spec.Binding{SLB: "prod-hz", LoadBalancer: lb.ID, VServerGroup: vg.ID, ListenerPort: 80}
	emutest.Benchmark(b, e, p, binding, toB, toA, "SetVServerGroupAttribute")
}

// TestListenerNotFoundGivesNoHealthInsteadOfStalling: a listenerPort that
// names no listener is answered ListenerNotFound (or
// CheckedListenerNotFound) by DescribeHealthStatus; the binding is then
// read without health, as one without listenerPort, not failed.
func TestListenerNotFoundGivesNoHealthInsteadOfStalling(t *testing.T) {
	for _, code := range []string{"ListenerNotFound", "CheckedListenerNotFound"} {
		t.Run(code, func(t *testing.T) {
			h := newHarness(t, true, emulator.Options{})
			b, _ := seed(t, h, 2)
			h.e.Inject("DescribeHealthStatus", code, http.StatusNotFound, 1)
			got, err := h.p.Backends(ctx(t), b)
			require.NoError(t, err)
			require.Len(t, got, 4)
			for _, be := range got {
				require.Equal(t, providers.HealthUnknown, be.Health, be.ID)
			}
			require.Equal(t, 1, h.e.Calls()["DescribeHealthStatus"], "not retried")
		})
	}
}

func TestAbnormalCarriesTheListenerAsReason(t *testing.T) {
	h := newHarness(t, true, emulator.Options{})
	b, _ := seed(t, h, 1)
	require.NoError(t, h.e.SetHealthy(target(b), "i-a000", false))
	got, err := h.p.Backends(ctx(t), b)
	require.NoError(t, err)
	for _, be := range got {
		if be.ID == "i-a000" {
			require.Equal(t, providers.HealthUnhealthy, be.Health)
			require.Contains(t, be.Reason, "abnormal on listener")
		}
	}
}
