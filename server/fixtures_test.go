package server_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/events"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files (and docs/dashboard.png)")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is "now" in the fixtures: 03:00 UTC, the hour pages are read in.
var t0 = time.Date(2025, 3, 1, 3, 0, 0, 0, time.UTC)

const (
	revNew     = "1a2b3c4d5e6f708192a3b4c5d6e7f80910111213"
	revOld     = "0c0ffee00c0ffee00c0ffee00c0ffee00c0ffee0"
	revGateway = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"
)

func inst(ip string, port int, id string) spec.Instance {
	return spec.Instance{IP: ip, Port: port, ID: id}
}

func backends(weights map[string]int, sessions int) []providers.Backend {
	ids := make([]string, 0, len(weights))
	for id := range weights {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]providers.Backend, 0, len(ids))
	for _, id := range ids {
		out = append(out, providers.Backend{ID: id, Weight: weights[id], Health: providers.HealthHealthy, Sessions: sessions})
	}
	return out
}

func conds(ready bool, readyReason, readyMsg string, reconciling bool, recReason, recMsg string, stalled bool, stReason, stMsg string) []reconcile.Condition {
	return []reconcile.Condition{
		{Type: reconcile.ConditionReady, Status: ready, Reason: readyReason, Message: readyMsg, Since: t0.Add(-10 * time.Minute)},
		{Type: reconcile.ConditionReconciling, Status: reconciling, Reason: recReason, Message: recMsg, Since: t0.Add(-3 * time.Minute)},
		{Type: reconcile.ConditionStalled, Status: stalled, Reason: stReason, Message: stMsg, Since: t0.Add(-5 * time.Minute)},
	}
}

// fixtures are four services as a 3 a.m. page finds them: one in sync,
// one releasing (draining the old group), one stalled with drift, one
// suspended.
func fixtures() []reconcile.Status {
	gwGroups := spec.Groups{
		A: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.1.11", 8080, "i-bp1gwa01"), inst("10.0.1.12", 8080, "i-bp1gwa02")}},
		B: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.2.11", 8080, "i-bp1gwb01"), inst("10.0.2.12", 8080, "i-bp1gwb02")}},
	}
	gateway := reconcile.Status{
		Service:  "gateway",
		Revision: reconcile.Revision{Hash: revGateway, Author: "Li Wei", Subject: "gateway: release 1.8.0"}, AppliedRevision: revGateway,
		DesiredActive: spec.GroupA, DesiredVersion: "1.8.0", Groups: gwGroups, LiveActive: reconcile.ActiveA,
		Versions: map[spec.Group]string{spec.GroupA: "1.8.0", spec.GroupB: "1.7.9"},
		Bindings: []reconcile.BindingLive{{
			Binding:  spec.Binding{SLB: "prod-hz", LoadBalancer: "lb-bp1gateway", VServerGroup: "rsp-bp1gateway", Weight: 100},
			Backends: backends(map[string]int{"i-bp1gwa01": 100, "i-bp1gwa02": 100, "i-bp1gwb01": 0, "i-bp1gwb02": 0}, -1),
		}, {
			Binding:  spec.Binding{SLB: "prod-hz", LoadBalancer: "lb-bp1gateway", VServerGroup: "rsp-bp1gwpreview", Weight: 100, Preview: true},
			Backends: backends(map[string]int{"i-bp1gwa01": 100, "i-bp1gwa02": 100, "i-bp1gwb01": 0, "i-bp1gwb02": 0}, -1),
		}},
		Preview:    []reconcile.PreviewRoute{{Binding: "slb:prod-hz/lb-bp1gateway/rsp-bp1gwpreview", Group: reconcile.ActiveA}},
		Summary:    "in sync: group A serves 1.8.0",
		Conditions: conds(true, "InSync", "in sync: group A serves 1.8.0", false, "Idle", "", false, "None", ""),
		LastPass:   t0.Add(-4 * time.Second), InSync: true,
	}

	usGroups := spec.Groups{
		A: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.1.21", 8080, "us-a1"), inst("10.0.1.22", 8080, "us-a2")}},
		B: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.2.21", 8080, "us-b1"), inst("10.0.2.22", 8080, "us-b2")}},
	}
	reg := func(ip string, port int, enabled bool, version string) providers.RegistryInstance {
		return providers.RegistryInstance{IP: ip, Port: port, Cluster: "DEFAULT", Enabled: enabled, Healthy: true, Weight: 1, Ephemeral: true,
			Metadata: map[string]string{"version": version}}
	}
	evidence := "haproxy:edge/user_be sessions=3, in-flight=2 websockets=1"
	userService := reconcile.Status{
		Service:  "user-service",
		Revision: reconcile.Revision{Hash: revNew, Author: "Zhang Min", Subject: "user-service: release 2.4.1"}, AppliedRevision: revOld,
		DesiredActive: spec.GroupB, DesiredVersion: "2.4.1", Groups: usGroups, LiveActive: reconcile.ActiveB,
		Versions: map[spec.Group]string{spec.GroupA: "2.4.0", spec.GroupB: "2.4.1"},
		Bindings: []reconcile.BindingLive{{
			Binding:  spec.Binding{HAProxy: "edge", Backend: "user_be", Weight: 100},
			Backends: backends(map[string]int{"us-a1": 0, "us-a2": 0, "us-b1": 100, "us-b2": 100}, 1),
		}},
		Registry: &providers.RegistryView{
			Instances: []providers.RegistryInstance{reg("10.0.1.21", 8080, false, "2.4.0"), reg("10.0.1.22", 8080, false, "2.4.0"), reg("10.0.2.21", 8080, true, "2.4.1"), reg("10.0.2.22", 8080, true, "2.4.1")},
			Visible:   []providers.Addr{{IP: "10.0.2.21", Port: 8080}, {IP: "10.0.2.22", Port: 8080}},
		},
		Phase: reconcile.PhaseDrain,
		Transition: &reconcile.Transition{
			ID: "user-service-20250301T025700.000000000", Kind: reconcile.KindRelease, From: spec.GroupA, To: spec.GroupB,
			Version: "2.4.1", FromVersion: "2.4.0", Revision: revNew, Author: "Zhang Min", Subject: "user-service: release 2.4.1",
			DesiredActive: spec.GroupB, DesiredVersion: "2.4.1", Phase: reconcile.PhaseDrain,
			Started: t0.Add(-3 * time.Minute), PhaseSince: t0.Add(-42 * time.Second),
			PhaseTimes: map[reconcile.Phase]time.Duration{
				reconcile.PhasePrepare: 110 * time.Second, reconcile.PhaseVerify: 15 * time.Second, reconcile.PhaseEnable: 2 * time.Second,
				reconcile.PhaseShift: time.Second, reconcile.PhaseDisable: 10 * time.Second,
			},
			Deploy: reconcile.DeployProgress{Started: true, StartedAt: t0.Add(-3 * time.Minute), Done: true}, Served: true,
			Drain: reconcile.DrainProgress{Signaled: true},
			Analysis: &reconcile.AnalysisProgress{Phase: reconcile.PhaseAnalysis, LastAt: t0.Add(-70 * time.Second), Measurements: 3,
				Queries: []reconcile.QueryProgress{
					{Name: "error-rate", Successful: 3, Last: reconcile.MeasurementSuccessful, Value: "0.002"},
					{Name: "p99-latency", Successful: 2, Inconclusive: 1, Last: reconcile.MeasurementInconclusive, Value: "NaN",
						Detail: "the value is NaN (e.g. 0/0: no requests in the range)"},
				}},
		},
		Phases: []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhaseAnalysis, reconcile.PhaseEnable,
			reconcile.PhaseShift, reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch},
		Summary: "release 2.4.1: group A -> group B, phase drain",
		Message: evidence, Evidence: evidence,
		Conditions: conds(false, "Progressing", "release 2.4.1: group A -> group B, phase drain",
			true, "Draining", evidence, false, "None", ""),
		LastPass: t0.Add(-time.Second),
	}

	pushGroups := spec.Groups{
		A: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.1.31", 9000, "i-bp1psa01"), inst("10.0.1.32", 9000, "i-bp1psa02")}},
		B: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.2.31", 9000, "i-bp1psb01"), inst("10.0.2.32", 9000, "i-bp1psb02")}},
	}
	stalledMsg := "release of 3.2.0 to group A failed (deploy of 3.2.0 to group A failed: exit status 1); group B serves 3.1.0; fix it, then request a sync with retry"
	push := reconcile.Status{
		Service:  "push",
		Revision: reconcile.Revision{Hash: revNew, Author: "Zhang Min", Subject: "push: release 3.2.0"}, AppliedRevision: revOld,
		DesiredActive: spec.GroupA, DesiredVersion: "3.2.0", Groups: pushGroups, LiveActive: reconcile.ActiveB,
		Versions: map[spec.Group]string{spec.GroupA: "", spec.GroupB: "3.1.0"},
		Bindings: []reconcile.BindingLive{{
			Binding: spec.Binding{ALB: "prod-hz", ServerGroup: "sgp-bp1push", Weight: 100},
			Backends: append(backends(map[string]int{"i-bp1psa01": 0, "i-bp1psa02": 0, "i-bp1psb01": 100, "i-bp1psb02": 50}, -1),
				providers.Backend{ID: "i-bp1rogue", IP: "10.0.9.9", Port: 9000, Weight: 10, Health: providers.HealthHealthy, Sessions: -1}),
		}},
		Summary: "release 3.2.0 failed; group B keeps serving",
		Message: stalledMsg,
		Drift: []string{
			"alb:prod-hz/sgp-bp1push has backend i-bp1rogue (10.0.9.9:9000) that is in neither group",
			"alb:prod-hz/sgp-bp1push: i-bp1psb02 has weight 50, want 100 <b>not markup</b>",
		},
		Conditions: conds(false, "ReleaseFailed", stalledMsg, false, "Idle", "", true, "ReleaseFailed", stalledMsg),
		LastPass:   t0.Add(-2 * time.Second),
	}

	billGroups := spec.Groups{
		A: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.1.41", 8081, "")}},
		B: spec.GroupSpec{Instances: []spec.Instance{inst("10.0.2.41", 8081, "")}},
	}
	billing := reconcile.Status{
		Service:  "billing",
		Revision: reconcile.Revision{Hash: revNew, Author: "Zhang Min", Subject: "billing: suspend for the audit"}, AppliedRevision: revOld,
		DesiredActive: spec.GroupB, DesiredVersion: "5.0.2", Groups: billGroups, LiveActive: reconcile.ActiveB,
		Versions: map[spec.Group]string{spec.GroupA: "5.0.1", spec.GroupB: "5.0.2"},
		Registry: &providers.RegistryView{
			Instances: []providers.RegistryInstance{reg("10.0.2.41", 8081, true, "5.0.2")},
			Visible:   []providers.Addr{{IP: "10.0.2.41", Port: 8081}},
		},
		Summary: "in sync: group B serves 5.0.2", Message: "suspended: in sync: group B serves 5.0.2", Suspended: true,
		Conditions: conds(false, "Suspended", "in sync: group B serves 5.0.2", false, "Idle", "", false, "None", ""),
		LastPass:   t0.Add(-3 * time.Second), InSync: true,
	}
	return []reconcile.Status{billing, gateway, push, userService}
}

func fixtureEvents() []reconcile.Event {
	return []reconcile.Event{
		{Time: t0.Add(-5 * time.Minute), Service: "push", Type: reconcile.EventWarning, Reason: reconcile.ReasonTransitionAborted,
			Message: "group B serves 3.1.0 again after abort: deploy of 3.2.0 to group A failed: exit status 1", Revision: revNew},
		{Time: t0.Add(-3 * time.Minute), Service: "user-service", Type: reconcile.EventNormal, Reason: reconcile.ReasonTransitionStarted,
			Message: "release 2.4.1: move traffic from group A (2.4.0) to group B (2.4.1)", Revision: revNew, Author: "Zhang Min",
			Subject: "user-service: release 2.4.1", Transition: "user-service-20250301T025700.000000000", Phase: reconcile.PhasePrepare},
		{Time: t0.Add(-52 * time.Second), Service: "user-service", Type: reconcile.EventNormal, Reason: reconcile.ReasonPhaseCompleted,
			Message: "phase disable completed", Revision: revNew, Phase: reconcile.PhaseDisable, Duration: 10 * time.Second},
		{Time: t0.Add(-30 * time.Second), Service: "push", Type: reconcile.EventWarning, Reason: reconcile.ReasonDriftDetected,
			Message: "alb:prod-hz/sgp-bp1push has backend i-bp1rogue (10.0.9.9:9000) that is in neither group", Revision: revNew},
	}
}

// fakeStatus is the reconciler's status, settable by the test.
type fakeStatus struct {
	mu   sync.Mutex
	list []reconcile.Status
}

func (f *fakeStatus) Statuses() []reconcile.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.list)
}

func (f *fakeStatus) Status(name string) (reconcile.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.list {
		if s.Service == name {
			return s, true
		}
	}
	return reconcile.Status{}, false
}

func (f *fakeStatus) set(list []reconcile.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = list
}

type call struct {
	Action  string
	Service string
	Flag    bool
}

// fakeActions records what it is asked; it knows the fixture services.
type fakeActions struct {
	mu    sync.Mutex
	calls []call
	err   error // returned for known services when set

	paused    map[string]string // service -> its transition paused for approval
	decisions []decisionCall
}

func (f *fakeActions) do(action, service string, flag bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range fixtures() {
		if s.Service == service {
			f.calls = append(f.calls, call{action, service, flag})
			return f.err
		}
	}
	return fmt.Errorf("%s %s: %w", action, service, server.ErrNotFound)
}

func (f *fakeActions) Sync(_ context.Context, service string, retry bool) error {
	return f.do("sync", service, retry)
}

func (f *fakeActions) Suspend(_ context.Context, service string, suspend bool) error {
	return f.do("suspend", service, suspend)
}

// decisionCall is a Promote or Abort the fake was asked for.
type decisionCall struct {
	Action, Service, Transition, By string
	Step                            int
}

// decide records a decision when paused names service's paused transition.
func (f *fakeActions) decide(action, service, transition string, step int, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	paused, ok := f.paused[service]
	if !ok || (transition != "" && transition != paused) {
		return fmt.Errorf("%s %s: %w", action, service, server.ErrNotPaused)
	}
	delete(f.paused, service) // decided: the pause is over
	f.decisions = append(f.decisions, decisionCall{action, service, transition, by, step})
	return f.err
}

func (f *fakeActions) Promote(_ context.Context, service, transition string, step int, by string) error {
	return f.decide("promote", service, transition, step, by)
}

func (f *fakeActions) Abort(_ context.Context, service, transition string, step int, by string) error {
	return f.decide("abort", service, transition, step, by)
}

func (f *fakeActions) decided() []decisionCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.decisions)
}

func (f *fakeActions) recorded() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type env struct {
	url     string
	client  *http.Client
	status  *fakeStatus
	actions *fakeActions
	events  *events.Log
	srv     *server.Server
}

// start serves fixtures on 127.0.0.1 with a fixed clock; opts may set the
// token, the webhook, Ready and the registry.
func start(t testing.TB, opts server.Options) *env {
	t.Helper()
	log, err := events.Open(filepath.Join(t.TempDir(), "events.jsonl"), 100)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, log.Close()) })
	for _, e := range fixtureEvents() {
		log.Record(e)
	}
	e := &env{status: &fakeStatus{list: fixtures()}, actions: &fakeActions{}, events: log}
	opts.Status, opts.Actions, opts.Events = e.status, e.actions, log
	e.srv = server.New(opts)
	e.srv.SetClock(func() time.Time { return t0 })
	ts := httptest.NewServer(e.srv.Handler())
	t.Cleanup(ts.Close)
	e.url, e.client = ts.URL, ts.Client()
	return e
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./server -update to create it")
	require.Equal(t, string(want), string(got))
}
