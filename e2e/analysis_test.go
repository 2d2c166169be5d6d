package e2e_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/promtest"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// Metric analysis against a real Prometheus (the Debian package) scraping
// the demo apps every 500ms, behind a real HAProxy, with users' traffic
// through it. The versions that misbehave keep /healthz green: only their
// metrics tell.

const analysed = "shop"

// errorRate is the share of 5xx answers on /echo; "or vector(0)" makes a
// group without any 5xx series read 0 rather than no data.
const errorRate = `(sum(rate(tandem_demo_http_requests_total{instance=~"{{.Instances}}",version="{{.Version}}",route="/echo",code=~"5.."}[3s])) or vector(0))
          / sum(rate(tandem_demo_http_requests_total{instance=~"{{.Instances}}",version="{{.Version}}",route="/echo"}[3s]))`

// watchGate analyses the watch only: every second, the error rate and
// the 90th percentile latency of /echo.
const watchGate = `analysis:
  interval: 1s
  failureLimit: 1
  inconclusiveLimit: 3
  queries:
    - name: error-rate
      query: |
        ` + errorRate + `
      successCondition: result < 0.05
    - name: p90-latency
      query: histogram_quantile(0.9, sum by (le) (rate(tandem_demo_http_request_duration_seconds_bucket{instance=~"{{.Instances}}",version="{{.Version}}",route="/echo"}[3s])))
      failureCondition: result > 0.2
`

// preShiftGate analyses the target group for 3s before any traffic moves.
const preShiftGate = `analysis:
  interval: 500ms
  beforeShift: 3s
  inconclusiveLimit: 2
  queries:
    - name: error-rate
      query: |
        ` + errorRate + `
      successCondition: result < 0.05
`

var faults = map[string]demoapp.Fault{
	"2.0.0": {Status: http.StatusInternalServerError}, // /echo fails
	"2.1.0": {Delay: 300 * time.Millisecond},          // /echo is slow
	"3.1.0": {Status: http.StatusInternalServerError},
}

// analysisStage starts Prometheus, then the stage with gates, then points
// Prometheus at every app of the stage.
func analysisStage(t *testing.T, ctx context.Context, gates string) (*stage.Stage, *promtest.Server) {
	haproxytest.SkipUnlessInstalled(t)
	prom := promtest.Start(t, promtest.Options{})
	v, err := prom.Version(ctx)
	require.NoError(t, err)
	t.Logf("Prometheus %s at %s", v, prom.URL())
	log := slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Log: log, PrometheusURL: prom.URL(), Faults: faults,
		Timing:   stage.Timing{VerifyWindow: 6 * time.Second},
		Services: []stage.Service{{Name: analysed, LB: spec.KindHAProxy, Gates: gates}}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	svc, _ := s.Service(analysed)
	var targets []string
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Groups.Get(g) {
			targets = append(targets, in.Addr())
		}
	}
	require.NoError(t, prom.SetTargets(targets))
	require.NoError(t, prom.WaitScraped(ctx, len(targets), 30*time.Second))
	head, err := s.Head()
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, analysed, head)
	require.NoError(t, err)
	return s, prom
}

// waitReleaseFailed waits until the release committed as rev has failed
// and been undone, and returns why.
func waitReleaseFailed(t *testing.T, ctx context.Context, s *stage.Stage, svc, rev string) string {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		st, ok := s.Daemon().Reconciler().Status(svc)
		if ok && st.Revision.Hash == rev && st.Transition == nil {
			if j, err := s.Journal(ctx, svc); err == nil && j.Failed != nil && j.Failed.Revision == rev {
				return j.Failed.Reason
			}
			require.False(t, st.InSync, "the release at %s succeeded: %s", rev, st.Summary)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("release %s did not fail: %v", rev, ctx.Err())
		case <-tick.C:
		}
	}
}

// revert commits the revert of the failed release and waits until group A
// is in force again.
func revert(t *testing.T, ctx context.Context, s *stage.Stage) {
	t.Helper()
	rev, err := s.Revert(ctx, analysed)
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, analysed, rev)
	require.NoError(t, err)
}

// served counts the answers of version in a load report.
func served(r loadgen.Report, version string) int {
	n := 0
	for _, p := range r.Timeline {
		if p.Version == version {
			n += p.Requests
		}
	}
	return n
}

func requireHealthy(t *testing.T, s *stage.Stage, g spec.Group) {
	t.Helper()
	svc, _ := s.Service(analysed)
	for _, in := range svc.Groups.Get(g) {
		resp, err := http.Get("http://" + in.Addr() + "/healthz")
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s /healthz stays green", in.Addr())
	}
}

func TestWatchAnalysisSwapsBackBadVersionsPromotesGood(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	s, _ := analysisStage(t, ctx, watchGate)
	load, err := s.StartTraffic(ctx, s.URL(analysed), 50, 0)
	require.NoError(t, err)

	for _, c := range []struct{ version, want string }{
		{"2.0.0", "analysis query error-rate failed 2 times (failureLimit 1): value 1, successCondition result < 0.05 not met"},
		{"2.1.0", "analysis query p90-latency failed 2 times (failureLimit 1)"},
	} {
		before := load.Snapshot()
		rev, err := s.Release(ctx, analysed, c.version)
		require.NoError(t, err)
		why := waitReleaseFailed(t, ctx, s, analysed, rev)
		t.Logf("%s: %s", c.version, why)
		require.Contains(t, why, c.want)
		require.NotContains(t, why, "health check")
		requireHealthy(t, s, spec.GroupB)
		st, _ := s.Daemon().Reconciler().Status(analysed)
		require.Equal(t, reconcile.ActiveA, st.LiveActive, "group A serves again")
		// It took users' traffic (the 5xx answers count as failed, with no
		// version) before the analysis caught it.
		after := load.Snapshot()
		require.Positive(t, served(after, c.version)+after.Failed-before.Failed, "%s took no traffic", c.version)
		revert(t, ctx, s)
	}

	rev, err := s.Release(ctx, analysed, "2.2.0")
	require.NoError(t, err)
	st, err := s.WaitInSync(ctx, analysed, rev)
	require.NoError(t, err)
	require.Equal(t, reconcile.ActiveB, st.LiveActive)
	var passed []reconcile.Event
	for _, e := range s.Events() {
		if e.Revision == rev && e.Reason == reconcile.ReasonAnalysisMeasurement && strings.Contains(e.Message, "failed") {
			passed = append(passed, e)
		}
	}
	require.Empty(t, passed, "no measurement of the good version failed")
	r := load.Stop()
	t.Logf("through HAProxy: %s", r)
	require.Positive(t, served(r, "2.2.0"))
}

func TestPreShiftAnalysisAbortsInconclusiveAndFailing(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	s, _ := analysisStage(t, ctx, preShiftGate)
	load, err := s.StartTraffic(ctx, s.URL(analysed), 50, 0)
	require.NoError(t, err)

	// Nothing is sent to the idle group: the query selects no series.
	rev, err := s.Release(ctx, analysed, "3.0.0")
	require.NoError(t, err)
	why := waitReleaseFailed(t, ctx, s, analysed, rev)
	require.Contains(t, why, "analysis query error-rate was inconclusive 3 times (inconclusiveLimit 2): no data: the query selects no series")
	revert(t, ctx, s)

	// Synthetic traffic straight to the idle group's instances (as a team's
	// smoke or mirrored traffic would be) shows the new version failing.
	svc, _ := s.Service(analysed)
	for _, in := range svc.Groups.Get(spec.GroupB) {
		g, err := s.StartTraffic(ctx, "http://"+in.Addr(), 20, 0)
		require.NoError(t, err)
		t.Cleanup(func() { g.Stop() })
	}
	rev, err = s.Release(ctx, analysed, "3.1.0")
	require.NoError(t, err)
	why = waitReleaseFailed(t, ctx, s, analysed, rev)
	require.Contains(t, why, "analysis query error-rate failed 1 times (failureLimit 0): value 1")
	requireHealthy(t, s, spec.GroupB)

	for _, e := range s.Events() {
		if e.Revision == rev && e.Reason == reconcile.ReasonAnalysisMeasurement {
			require.Equal(t, reconcile.PhaseAnalysis, e.Phase, "measured before the shift")
		}
		if e.Revision == rev && e.Reason == reconcile.ReasonStepApplied {
			require.NotContains(t, []reconcile.Phase{reconcile.PhaseEnable, reconcile.PhaseShift}, e.Phase, "no traffic moved: %s", e.Message)
		}
	}
	r := load.Stop()
	t.Logf("through HAProxy: %s", r)
	require.Zero(t, served(r, "3.0.0")+served(r, "3.1.0"), "users never reached the versions analysed before the shift")
	require.Zero(t, r.Failed, "users noticed nothing: %s", r)
}
