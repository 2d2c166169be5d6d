package alb_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alb"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/alibaba/emulator/emutest"
	"github.com/tandemhq/tandem/providers/providertest"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// jobDelay keeps jobs visibly Processing for a moment, so that waiting for
// them is exercised, without slowing the tests.
const jobDelay = 30 * time.Millisecond

type harness struct {
	emutest.Harness
	e *emulator.Emulator
	p *alb.Provider
	n int
}

func newHarness(t *testing.T, opts emulator.Options) *harness {
	e, cfg := emutest.Start(t, "prod-hz", opts)
	p, err := alb.New(cfg, nil)
	require.NoError(t, err)
	return wrap(e, p)
}

func wrap(e *emulator.Emulator, p *alb.Provider) *harness {
	target := func(b spec.Binding) emulator.Target { return emulator.Target{ServerGroup: b.ServerGroup} }
	return &harness{Harness: emutest.Harness{E: e, Target: target}, e: e, p: p}
}

func (h *harness) Provider(*testing.T) providers.LoadBalancer { return h.p }
func (h *harness) Batch() int                                 { return 40 }

func (h *harness) Create(t *testing.T, servers []providertest.Server) spec.Binding {
	h.n++
	g := &emulator.ServerGroup{ID: fmt.Sprintf("sgp-test%03d", h.n)}
	for _, s := range servers {
		g.Servers = append(g.Servers, &emulator.Server{ID: s.ID, IP: s.IP, Port: s.Port, Weight: s.Weight})
	}
	l := &emulator.Listener{ID: fmt.Sprintf("lsn-test%03d", h.n), Port: 80, ServerGroup: g.ID}
	require.NoError(t, h.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{g}, Listeners: []*emulator.Listener{l}}))
	return spec.Binding{ALB: "prod-hz", ServerGroup: g.ID, Listener: l.ID, Weight: 100}
}

func TestConformance(t *testing.T) {
	providertest.TestLoadBalancer(t, newHarness(t, emulator.Options{JobDelay: jobDelay}))
}

func TestConformanceLegacySignature(t *testing.T) {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{JobDelay: jobDelay})
	cfg.SignatureVersion = "v2"
	p, err := alb.New(cfg, nil)
	require.NoError(t, err)
	providertest.TestLoadBalancer(t, wrap(e, p))
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

func TestSetWeightsSwapThatFitsOneBatchIsOneCallAndOneJob(t *testing.T) {
	h := newHarness(t, emulator.Options{JobDelay: jobDelay})
	b, swap := seed(t, h, 20)
	h.e.ResetCalls()
	require.NoError(t, h.p.SetWeights(ctx(t), b, swap))
	calls := h.e.Calls()
	require.Equal(t, 1, calls["UpdateServerGroupServersAttribute"])
	require.GreaterOrEqual(t, calls["ListAsynJobs"], 1, "the job was awaited")
	require.Equal(t, 2, calls["ListServerGroupServers"], "one read before, one read-back after")
}

func TestSetWeightsSplitsIntoBatchesOfForty(t *testing.T) {
	h := newHarness(t, emulator.Options{JobDelay: jobDelay})
	b, swap := seed(t, h, 50) // 100 changes: 50 raises, 50 lowers
	h.e.ResetCalls()
	require.NoError(t, h.p.SetWeights(ctx(t), b, swap))
	require.Equal(t, 4, h.e.Calls()["UpdateServerGroupServersAttribute"], "raises in 2 batches, then lowers in 2")
	low, err := h.e.LowWater(emulator.Target{ServerGroup: b.ServerGroup})
	require.NoError(t, err)
	require.Equal(t, 50*100, low, "no weight was taken before all new weight was in place")
}

func TestSetWeightsRetriesWhileTheGroupIsConfiguring(t *testing.T) {
	h := newHarness(t, emulator.Options{JobDelay: jobDelay})
	b, swap := seed(t, h, 1)
	h.e.Inject("UpdateServerGroupServersAttribute", "IncorrectStatus.serverGroup", 400, 2)
	require.NoError(t, h.p.SetWeights(ctx(t), b, swap))
	require.Equal(t, 3, h.e.Calls()["UpdateServerGroupServersAttribute"])
	require.Equal(t, 100, h.Weights(t, b)["i-b000"])
}

func TestSetWeightsWaitsForAConcurrentJobOfTheSameGroup(t *testing.T) {
	h := newHarness(t, emulator.Options{JobDelay: 200 * time.Millisecond})
	b, swap := seed(t, h, 1)
	first := make(chan error, 1)
	go func() { first <- h.p.SetWeights(ctx(t), b, []providers.WeightChange{{ID: "i-a000", Weight: 50}}) }()
	second := h.p.SetWeights(ctx(t), b, swap)
	require.NoError(t, <-first)
	require.NoError(t, second)
	got := h.Weights(t, b)
	require.Equal(t, 100, got["i-b000"])
}

func TestSetWeightsFailsWhenTheJobFails(t *testing.T) {
	h := newHarness(t, emulator.Options{JobDelay: jobDelay})
	b, swap := seed(t, h, 1)
	h.e.FailJobs(1, "ResourceNotFound.BackendServer")
	err := h.p.SetWeights(ctx(t), b, swap)
	require.Error(t, err)
	require.True(t, providers.IsPermanent(err), "the job's error code is classified: %v", err)
	require.Contains(t, err.Error(), b.Key())
	require.Equal(t, 100, h.Weights(t, b)["i-a000"], "a failed job changes nothing")

	h.e.FailJobs(1, "SystemBusy")
	err = h.p.SetWeights(ctx(t), b, swap)
	require.Error(t, err)
	require.False(t, providers.IsPermanent(err), "a busy failure may pass: %v", err)
	require.NoError(t, h.p.SetWeights(ctx(t), b, swap))
}

func TestSetWeightsGivesUpWhenTheJobOutlastsJobTimeout(t *testing.T) {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{JobDelay: time.Hour})
	cfg.JobTimeout = spec.Duration(300 * time.Millisecond)
	p, err := alb.New(cfg, nil)
	require.NoError(t, err)
	h := wrap(e, p)
	b, swap := seed(t, h, 1)
	err = p.SetWeights(ctx(t), b, swap)
	require.ErrorContains(t, err, "still Processing")
	require.False(t, providers.IsPermanent(err))
}

func TestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		status     int
		permanent  bool
		reason     string
	}{
		{"throttling is retried until it passes", "Throttling.User", 400, false, ""},
		{"a locked group is retried until it passes", "Conflict.Lock", 400, false, ""},
		{"a 5xx is retried until it passes", "ServiceUnavailable", 503, false, ""},
		{"not found stalls at once", "ResourceNotFound.serverGroup", 404, true, "NotFound"},
		{"an illegal parameter stalls at once", "IllegalParam.Servers", 400, true, "InvalidParameter"},
		{"a missing permission stalls at once", "Forbidden.NoPermission", 403, true, "PermissionDenied"},
		{"a bad signature stalls at once", "SignatureDoesNotMatch", 400, true, "InvalidCredentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, emulator.Options{JobDelay: jobDelay})
			b, swap := seed(t, h, 1)
			h.e.Inject("UpdateServerGroupServersAttribute", tc.code, tc.status, 2)
			err := h.p.SetWeights(ctx(t), b, swap)
			if !tc.permanent {
				require.NoError(t, err)
				require.Equal(t, 3, h.e.Calls()["UpdateServerGroupServersAttribute"])
				return
			}
			var perm *providers.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, tc.reason, perm.Reason)
			require.Equal(t, 1, h.e.Calls()["UpdateServerGroupServersAttribute"], "no retry")
			require.Contains(t, err.Error(), "alb:prod-hz/"+b.ServerGroup, "names the binding")
			require.Contains(t, err.Error(), "i-b000", "names the servers")
			require.Contains(t, err.Error(), tc.code)
		})
	}
}

func TestTransientErrorsGiveUpAtRetryTimeout(t *testing.T) {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{})
	cfg.RetryTimeout = spec.Duration(500 * time.Millisecond)
	p, err := alb.New(cfg, nil)
	require.NoError(t, err)
	h := wrap(e, p)
	b, _ := seed(t, h, 1)
	e.Inject("ListServerGroupServers", "SystemBusy", 400, 1000)
	_, err = p.Backends(ctx(t), b)
	require.ErrorContains(t, err, "SystemBusy")
	require.False(t, providers.IsPermanent(err))
}

func TestContextDeadlineStopsRetries(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	b, _ := seed(t, h, 1)
	h.e.Inject("ListServerGroupServers", "Throttling.Api", 400, 1000)
	// Long enough for the first answer to arrive on a loaded machine (the
	// error must name the last API error seen before the deadline).
	c, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := h.p.Backends(c, b)
	require.ErrorContains(t, err, "Throttling.Api")
}

func TestBackendsOfAnUnknownGroupIsNotFound(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	_, err := h.p.Backends(ctx(t), spec.Binding{ALB: "prod-hz", ServerGroup: "sgp-missing"})
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "NotFound", perm.Reason)
	require.Contains(t, err.Error(), "sgp-missing")
}

func TestBindingOfAnotherProviderIsRefused(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	for _, b := range []spec.Binding{
		{ALB: "other", ServerGroup: "sgp-1"},
		{SLB: "prod-hz", LoadBalancer: "lb-1"},
		{ALB: "prod-hz"},
	} {
		_, err := h.p.Backends(ctx(t), b)
		require.True(t, providers.IsPermanent(err), "%s: %v", b.Key(), err)
		require.Empty(t, h.e.Calls(), "refused before any call")
	}
}

func TestHealthIsReadAcrossPagesAndWeightZeroIsUnknown(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	b, _ := seed(t, h, 40) // 40 B servers at weight 0: Unused, beyond one page of 30
	require.NoError(t, h.e.SetHealthy(emulator.Target{ServerGroup: b.ServerGroup}, "i-a039", false))
	got, err := h.p.Backends(ctx(t), b)
	require.NoError(t, err)
	require.Len(t, got, 80)
	for _, be := range got {
		switch {
		case be.ID == "i-a039":
			require.Equal(t, providers.HealthUnhealthy, be.Health)
		case strings.HasPrefix(be.ID, "i-a"):
			require.Equal(t, providers.HealthHealthy, be.Health, be.ID)
		default:
			require.Equal(t, providers.HealthUnknown, be.Health, "%s at weight 0 is Unused", be.ID)
		}
		require.Equal(t, -1, be.Sessions)
		require.Equal(t, "Available", be.Status)
	}
	require.GreaterOrEqual(t, h.e.Calls()["GetListenerHealthStatus"], 2, "paginated")
}

func TestBackendsReadsServersAndHealthAtOnce(t *testing.T) {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{})
	cfg, overlapped := emutest.Overlap(t, e, cfg, "ListServerGroupServers", "GetListenerHealthStatus")
	p, err := alb.New(cfg, nil)
	require.NoError(t, err)
	b, _ := seed(t, wrap(e, p), 2)
	got, err := p.Backends(ctx(t), b)
	require.NoError(t, err)
	require.Len(t, got, 4)
	require.True(t, overlapped(), "the servers were read before the health read started: an idle pass pays both latencies")
}

func TestHealthIsUnknownWithoutListenerOrWithChecksOff(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	b, _ := seed(t, h, 1)
	b.Listener = ""
	got, err := h.p.Backends(ctx(t), b)
	require.NoError(t, err)
	for _, be := range got {
		require.Equal(t, providers.HealthUnknown, be.Health)
	}
	g := &emulator.ServerGroup{ID: "sgp-nocheck", Servers: []*emulator.Server{{ID: "i-1", IP: "10.0.0.1", Port: 80, Weight: 100}}}
	l := &emulator.Listener{ID: "lsn-nocheck", Port: 81, ServerGroup: g.ID, HealthCheckDisabled: true}
	require.NoError(t, h.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{g}, Listeners: []*emulator.Listener{l}}))
	got, err = h.p.Backends(ctx(t), spec.Binding{ALB: "prod-hz", ServerGroup: g.ID, Listener: l.ID})
	require.NoError(t, err)
	require.Equal(t, providers.HealthUnknown, got[0].Health)
}

func TestDryRunValidatesWithoutChanging(t *testing.T) {
	h := newHarness(t, emulator.Options{JobDelay: jobDelay})
	b, swap := seed(t, h, 25) // 50 changes: two dry-run calls
	h.e.ResetCalls()
	require.NoError(t, h.p.DryRun(ctx(t), b, swap))
	require.Equal(t, 2, h.e.Calls()["UpdateServerGroupServersAttribute"])
	require.Zero(t, h.e.Calls()["ListAsynJobs"], "a dry run starts no job")
	require.Equal(t, 100, h.Weights(t, b)["i-a000"])

	err := h.p.DryRun(ctx(t), b, []providers.WeightChange{{ID: "i-nosuch", Weight: 1}})
	require.True(t, providers.IsPermanent(err))

	h.e.Inject("UpdateServerGroupServersAttribute", "IllegalParam.Weight", 400, 1)
	err = h.p.DryRun(ctx(t), b, swap)
	require.ErrorContains(t, err, "IllegalParam.Weight")
}

func TestCredentialsNeverAppearInLogsOrErrors(t *testing.T) {
	var logs bytes.Buffer
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{JobDelay: jobDelay})
	p, err := alb.New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	h := wrap(e, p)
	b, swap := seed(t, h, 1)
	e.Inject("UpdateServerGroupServersAttribute", "Throttling.User", 400, 1)
	require.NoError(t, p.SetWeights(ctx(t), b, swap))
	e.Inject("ListServerGroupServers", "SignatureDoesNotMatch", 400, 1)
	_, err = p.Backends(ctx(t), b)
	require.Error(t, err)
	require.NotEmpty(t, logs.String(), "the retry was logged")
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", p), logs.String()} {
		require.NotContains(t, s, emutest.KeySecret)
		require.NotContains(t, s, emutest.KeyID)
	}

	// A wrong secret is refused by the emulator and stalls, naming neither key.
	t.Setenv(emutest.KeySecretEnv, "wrong-secret-value")
	bad, err := alb.New(cfg, nil)
	require.NoError(t, err)
	_, err = bad.Backends(ctx(t), b)
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "InvalidCredentials", perm.Reason)
	require.NotContains(t, err.Error(), "wrong-secret-value")
	require.NotContains(t, err.Error(), emutest.KeyID)
}

func TestNewNamesAMissingCredentialVariable(t *testing.T) {
	_, cfg := emutest.Start(t, "prod-hz", emulator.Options{})
	cfg.AccessKeySecretEnv = "TANDEM_TEST_UNSET_SECRET"
	_, err := alb.New(cfg, nil)
	require.ErrorContains(t, err, "providers.alb[prod-hz].accessKeySecretEnv: environment variable TANDEM_TEST_UNSET_SECRET is not set")
}

// BenchmarkLargeGroup observes and swaps a server group of 250 servers
// (125 in A, 125 in B) through the SDK and the emulator, jobs finishing at
// once; it reports the API calls each step takes.
func BenchmarkLargeGroup(b *testing.B) {
	e, cfg := emutest.Start(b, "prod-hz", emulator.Options{})
	p, err := alb.New(cfg, nil)
	require.NoError(b, err)
	servers, toB, toA := emutest.Fleet(125)
	g := &emulator.ServerGroup{ID: "sgp-bench", Servers: servers}
	require.NoError(b, e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{g}, Listeners: []*emulator.Listener{{ID: "lsn-bench", Port: 80, ServerGroup: g.ID}}}))
	binding := spec.Binding{ALB: "prod-hz", ServerGroup: g.ID, Listener: "lsn-bench"}
	emutest.Benchmark(b, e, p, binding, toB, toA, "UpdateServerGroupServersAttribute")
}

// TestHealthOfAGroupReachedThroughAForwardingRule: the binding's group is
// used only by a forwarding rule of the listener, so its health is in
// RuleHealthStatus (IncludeRule). A raised server is initial until it passes
// the healthy threshold; one the LB cannot reach becomes unhealthy with
// ALB's reason, named with the rule.
func TestHealthOfAGroupReachedThroughAForwardingRule(t *testing.T) {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{})
	p, err := alb.New(cfg, nil)
	require.NoError(t, err)
	h := wrap(e, p)
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(app.Close)
	blocked := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(blocked.Close)
	server := func(id, url string, weight int) *emulator.Server {
		u, _ := neturl.Parse(url)
		port, _ := strconv.Atoi(u.Port())
		return &emulator.Server{ID: id, IP: u.Hostname(), Port: port, Weight: weight, Health: emulator.StatusInitial}
	}
	def := &emulator.ServerGroup{ID: "sgp-default", Servers: []*emulator.Server{server("i-d", app.URL, 100)}}
	g := &emulator.ServerGroup{ID: "sgp-rule", Servers: []*emulator.Server{server("i-1", app.URL, 100), server("i-2", blocked.URL, 100), server("i-3", app.URL, 0)}}
	l := &emulator.Listener{ID: "lsn-rule", Port: 80, ServerGroup: def.ID}
	rule := &emulator.Rule{ID: "rule-1", Listener: l.ID, Priority: 1,
		Conditions:   []emulator.RuleCondition{{Type: "Header", Key: "x-canary", Values: []string{"1"}}},
		ServerGroups: []emulator.ServerGroupTuple{{ServerGroup: g.ID}}}
	require.NoError(t, h.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{def, g}, Listeners: []*emulator.Listener{l}, Rules: []*emulator.Rule{rule}}))
	h.e.BlockServers(g.Servers[1].IP + ":" + strconv.Itoa(g.Servers[1].Port))
	b := spec.Binding{ALB: "prod-hz", ServerGroup: g.ID, Listener: l.ID, Weight: 100}

	// Each read through a provider of its own: one instance shares a
	// listener's health answer for a short while (providers/alibaba/share.go).
	health := func() map[string]providers.Backend {
		p, err := alb.New(cfg, nil)
		require.NoError(t, err)
		got, err := p.Backends(ctx(t), b)
		require.NoError(t, err)
		out := map[string]providers.Backend{}
		for _, be := range got {
			out[be.ID] = be
		}
		return out
	}
	before := health()
	require.Equal(t, providers.HealthInitial, before["i-1"].Health, "weighted, not yet checked")
	require.Equal(t, providers.HealthUnknown, before["i-3"].Health, "weight 0 is not checked")
	for range 3 { // the default healthy and unhealthy thresholds
		h.e.CheckHealth(ctx(t))
	}
	after := health()
	require.Equal(t, providers.HealthHealthy, after["i-1"].Health)
	require.Equal(t, providers.HealthUnhealthy, after["i-2"].Health)
	require.Equal(t, "CONNECT_TIMEOUT on forwarding rule rule-1", after["i-2"].Reason)
	require.Equal(t, providers.HealthUnknown, after["i-3"].Health)
}

func TestSlowStartIsReadFromTheServerGroup(t *testing.T) {
	h := newHarness(t, emulator.Options{})
	g := &emulator.ServerGroup{ID: "sgp-slow", SlowStart: &emulator.SlowStart{Enabled: true, Duration: 30},
		Servers: []*emulator.Server{{ID: "i-1", IP: "10.0.0.1", Port: 80, Weight: 100}}}
	off := &emulator.ServerGroup{ID: "sgp-fast", Servers: []*emulator.Server{{ID: "i-1", IP: "10.0.0.1", Port: 80, Weight: 100}}}
	require.NoError(t, h.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{g, off}}))
	d, err := h.p.SlowStart(ctx(t), spec.Binding{ALB: "prod-hz", ServerGroup: g.ID})
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, d)
	d, err = h.p.SlowStart(ctx(t), spec.Binding{ALB: "prod-hz", ServerGroup: off.ID})
	require.NoError(t, err)
	require.Zero(t, d)
}
