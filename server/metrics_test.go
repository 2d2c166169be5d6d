package server_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
)

func newRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	server.NewMetrics(reg)
	return reg
}

// scrape returns the tandem_ sample lines of /metrics.
func scrape(t *testing.T, e *env) []string {
	t.Helper()
	code, _, body := e.do(t, "GET", "/metrics", "", nil)
	require.Equal(t, 200, code)
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "tandem_") && !strings.Contains(line, "_bucket{") {
			out = append(out, line)
		}
	}
	return out
}

func TestMetricsAreServedFromTheInjectedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := server.NewMetrics(reg)
	e := start(t, server.Options{Registry: reg})

	for _, s := range fixtures() {
		m.ObserveStatus(s)
	}
	m.ObservePass("push", reconcile.ClassStalled, 30*time.Millisecond)
	m.ObservePass("gateway", reconcile.ClassNone, 10*time.Millisecond)
	m.ObservePass("gateway", reconcile.ClassNone, 20*time.Millisecond)
	m.Record(reconcile.Event{Service: "user-service", Reason: reconcile.ReasonPhaseCompleted, Phase: reconcile.PhaseDisable, Duration: 10 * time.Second})
	m.Record(reconcile.Event{Service: "user-service", Reason: reconcile.ReasonTransitionSucceeded})
	m.Record(reconcile.Event{Service: "push", Reason: reconcile.ReasonTransitionAborted})
	m.Record(reconcile.Event{Service: "push", Reason: reconcile.ReasonDriftDetected})
	m.SetRevision("0c0ffee")
	m.SetRevision(revNew)
	m.GitLastFetchSuccess.Set(float64(t0.Unix()))
	m.ObserveProviderRequest("alb/prod-hz", "SetWeights", 200*time.Millisecond, nil)
	m.ObserveProviderRequest("alb/prod-hz", "SetWeights", time.Second, errors.New("Throttling"))

	got := scrape(t, e)
	for _, want := range []string{
		`tandem_binding_weight{binding="alb:prod-hz/sgp-bp1push",group="A",service="push"} 0`,
		`tandem_binding_weight{binding="alb:prod-hz/sgp-bp1push",group="B",service="push"} 150`,
		`tandem_binding_weight{binding="haproxy:edge/user_be",group="B",service="user-service"} 200`,
		`tandem_binding_weight{binding="slb:prod-hz/lb-bp1gateway/rsp-bp1gateway",group="A",service="gateway"} 200`,
		`tandem_binding_weight{binding="slb:prod-hz/lb-bp1gateway/rsp-bp1gateway",group="B",service="gateway"} 0`,
		`tandem_git_last_fetch_success_timestamp_seconds 1.740798e+09`,
		`tandem_git_revision_info{revision="` + revNew + `"} 1`,
		`tandem_phase_duration_seconds_sum{phase="disable"} 10`,
		`tandem_phase_duration_seconds_count{phase="disable"} 1`,
		`tandem_provider_request_duration_seconds_count{op="SetWeights",provider="alb/prod-hz"} 2`,
		`tandem_provider_requests_total{op="SetWeights",provider="alb/prod-hz",result="error"} 1`,
		`tandem_provider_requests_total{op="SetWeights",provider="alb/prod-hz",result="success"} 1`,
		`tandem_reconcile_duration_seconds_count 3`,
		`tandem_reconcile_total{result="stalled",service="push"} 1`,
		`tandem_reconcile_total{result="success",service="gateway"} 2`,
		`tandem_service_drift{service="gateway"} 0`,
		`tandem_service_drift{service="push"} 2`,
		`tandem_service_ready{service="gateway"} 1`,
		`tandem_service_ready{service="push"} 0`,
		`tandem_service_stalled{service="gateway"} 0`,
		`tandem_service_stalled{service="push"} 1`,
		`tandem_transitions_total{kind="release",outcome="succeeded",service="user-service"} 1`,
		`tandem_transitions_total{kind="unknown",outcome="aborted",service="push"} 1`,
	} {
		require.Contains(t, got, want)
	}
	require.NotContains(t, strings.Join(got, "\n"), `revision="0c0ffee"`, "only the revision in force is marked")

	m.Forget("push")
	got = scrape(t, e)
	for _, line := range got {
		if strings.HasPrefix(line, "tandem_service_") || strings.HasPrefix(line, "tandem_binding_weight") {
			require.NotContains(t, line, `service="push"`)
		}
	}

	def, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, mf := range def {
		require.False(t, strings.HasPrefix(mf.GetName(), "tandem_"), "%s is registered globally", mf.GetName())
	}
}

func TestBindingWeightsFollowTheLastStatus(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := server.NewMetrics(reg)
	e := start(t, server.Options{Registry: reg})
	s := fixtures()[1] // gateway
	m.ObserveStatus(s)
	s.Bindings = nil // the binding left the spec
	m.ObserveStatus(s)
	for _, line := range scrape(t, e) {
		require.NotContains(t, line, "tandem_binding_weight{", "a binding that is gone has no weight series")
	}
}

func TestNoMetricsRouteWithoutARegistry(t *testing.T) {
	e := start(t, server.Options{})
	code, _, _ := e.do(t, "GET", "/metrics", "", nil)
	require.Equal(t, 404, code)
}

func TestAChangedBindingReplacesOnlyItsOwnServicesWeightSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := server.NewMetrics(reg)
	e := start(t, server.Options{Registry: reg})
	var push, gateway reconcile.Status
	for _, s := range fixtures() {
		switch s.Service {
		case "push":
			push = s
		case "gateway":
			gateway = s
		}
	}
	m.ObserveStatus(push)
	m.ObserveStatus(gateway)
	moved := gateway
	moved.Bindings = slices.Clone(gateway.Bindings)
	moved.Bindings[0].Binding.VServerGroup = "rsp-bp1moved" // the service now binds another vServer group
	m.ObserveStatus(moved)

	got := strings.Join(scrape(t, e), "\n")
	require.NotContains(t, got, `binding="slb:prod-hz/lb-bp1gateway/rsp-bp1gateway"`, "the old binding's series are gone")
	require.Contains(t, got, `tandem_binding_weight{binding="slb:prod-hz/lb-bp1gateway/rsp-bp1moved",group="A",service="gateway"} 200`)
	require.Contains(t, got, `tandem_binding_weight{binding="alb:prod-hz/sgp-bp1push",group="B",service="push"} 150`, "another service's series stay")
}

// BenchmarkObserveStatus measures the metrics' share of a pass when the
// daemon has 1,000 services, each with one binding.
//
//	go test ./server -run '^$' -bench ObserveStatus
func BenchmarkObserveStatus(b *testing.B) {
	m := server.NewMetrics(prometheus.NewRegistry())
	var all []reconcile.Status
	for i := range 1000 {
		s := fixtures()[1]
		s.Service = fmt.Sprintf("svc-%04d", i)
		m.ObserveStatus(s)
		all = append(all, s)
	}
	b.ResetTimer()
	for i := range b.N {
		m.ObserveStatus(all[i%len(all)])
	}
}
