// Package e2e_test proves "users notice nothing" end to end: the daemon,
// following a real Git repository, releases and reverts a service ten times
// each under continuous non-idempotent POSTs and numbered WebSocket
// messages, through a real HAProxy and through the Alibaba ALB emulator's
// data plane, with the service registered in Nacos (through HAProxy: the
// real Nacos 3 server, its running version read from the apps' Nacos
// metadata; through the ALB emulator: the Nacos emulator); users' traffic
// enters through the load balancer and through a Nacos consumer.
package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(nacostest.IgnoreSDKGoroutines(),
		goleak.IgnoreTopFunction("github.com/fsnotify/fsnotify.(*inotify).readEvents"))...)
}

// The traffic of item 5: at least 300 POST/s and 50 WebSocket clients
// through the load balancer, plus some through the Nacos consumer.
const (
	lbRate, lbClients             = 320, 50
	consumerRate, consumerClients = 50, 10
	releases                      = 10
	service                       = "web"
)

func TestTenReleasesAndRevertsThroughHAProxyAndNacosLoseNothing(t *testing.T) {
	haproxytest.SkipUnlessInstalled(t)
	nacos := realNacos(t)
	// The version is read from the registry, as examples/services/user-service.yaml
	// does: a redeployed group must show its new version while still
	// disabled, or verify never passes.
	run(t, stage.Service{Name: service, LB: spec.KindHAProxy, Nacos: true, VersionFromNacos: true}, nacos)
}

func TestTenReleasesAndRevertsThroughTheALBEmulatorLoseNothing(t *testing.T) {
	run(t, stage.Service{Name: service, LB: spec.KindALB, Nacos: true}, nil)
}

// realNacos starts the real Nacos 3 server (installed by
// scripts/nacos/install-nacos3.sh, which make test runs). Only when it is
// not installed, and TANDEM_REQUIRE_REAL_NACOS=1 does not ask for it, does
// the Nacos emulator stand in, and the log says so.
func realNacos(t *testing.T) *stage.NacosServer {
	if err := nacostest.Installed(nacostest.KindNacos3); err != nil && os.Getenv(nacostest.RequireEnv) != "1" {
		t.Logf("Nacos: the in-process emulator stands in for a real server: %v", err)
		return nil
	}
	srv := nacostest.Start(t, nacostest.KindNacos3, nacostest.Options{})
	t.Logf("Nacos: real Nacos 3 at %s (API %s)", srv.HTTPAddr, srv.API)
	return &stage.NacosServer{Name: "Nacos 3 (real)", Addr: srv.HTTPAddr, GRPCPort: srv.GRPCPort, API: srv.API}
}

func run(t *testing.T, svc stage.Service, nacos *stage.NacosServer) {
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Services: []stage.Service{svc}, Nacos: nacos, Log: log})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	t.Logf("stage: %s load balancer, Nacos %s; users enter at %s and through the Nacos consumer at %s",
		svc.LB, s.NacosName(), s.URL(service), s.ConsumerURL(service))

	head, viaLB, viaConsumer := inSyncUnderLoad(t, ctx, s, service)

	revisions := []string{head}
	for i := 1; i <= releases; i++ {
		version := fmt.Sprintf("1.%d.0", i)
		rev, err := s.Release(ctx, service, version)
		require.NoError(t, err)
		_, err = s.WaitInSync(ctx, service, rev)
		require.NoError(t, err, "release %s", version)
		waitServed(t, ctx, viaLB, version)
		rev2, err := s.Revert(ctx, service)
		require.NoError(t, err)
		_, err = s.WaitInSync(ctx, service, rev2)
		require.NoError(t, err, "revert of %s", version)
		revisions = append(revisions, rev, rev2)
	}
	stopUnnoticed(t, viaLB, viaConsumer)

	var deployed []string
	for _, d := range s.Deploys() {
		require.Equal(t, spec.GroupB, d.Group, "every release goes to the idle group B")
		deployed = append(deployed, d.Version)
	}
	want := make([]string, releases)
	for i := range want {
		want[i] = fmt.Sprintf("1.%d.0", i+1)
	}
	require.Equal(t, want, deployed, "one deploy per release, none for a revert")
	requireTransitionsSucceeded(t, ctx, s, service, revisions)
	if svc.LB == spec.KindALB {
		// The emulated ALB checks its servers (healthy threshold 2): every
		// release and revert lowered the serving group only once the LB
		// itself reported the raised group healthy.
		require.Equal(t, 2*releases, requireLoweredOnlyWhenTheLBReportedTheOtherGroupHealthy(t, s.LBCalls()))
	}
}

// requireUnnoticed asserts item 5: no failed request, no lost or
// misordered message, and every WebSocket close a 1000/1001 followed by a
// successful reconnect.
// inSyncUnderLoad waits until service is in sync at the stage's head, then
// starts the suite's load through the load balancer and through the Nacos
// consumer; it returns the head.
func inSyncUnderLoad(t *testing.T, ctx context.Context, s *stage.Stage, service string) (head string, viaLB, viaConsumer *loadgen.Generator) {
	t.Helper()
	head, err := s.Head()
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, service, head)
	require.NoError(t, err)
	viaLB, err = s.StartTraffic(ctx, s.URL(service), lbRate, lbClients)
	require.NoError(t, err)
	viaConsumer, err = s.StartTraffic(ctx, s.ConsumerURL(service), consumerRate, consumerClients)
	require.NoError(t, err)
	return head, viaLB, viaConsumer
}

// stopUnnoticed stops the load of inSyncUnderLoad and asserts that users
// noticed nothing and each version answered from its own group; it returns
// the reports by entry, for further checks.
func stopUnnoticed(t *testing.T, viaLB, viaConsumer *loadgen.Generator) map[string]loadgen.Report {
	t.Helper()
	reports := map[string]loadgen.Report{"load balancer": viaLB.Stop(), "nacos consumer": viaConsumer.Stop()}
	for name, r := range reports {
		t.Logf("through the %s: %s", name, r)
		requireUnnoticed(t, name, r)
		requireEachVersionOnItsGroup(t, name, r)
	}
	return reports
}

func requireUnnoticed(t *testing.T, name string, r loadgen.Report) {
	t.Helper()
	require.Positive(t, r.Requests, name)
	require.Zero(t, r.Failed, "%s: failed requests: %s", name, r)
	require.Zero(t, r.Lost, "%s: lost messages: %s", name, r)
	require.Equal(t, r.Messages, r.Echoed, "%s: every message echoed: %s", name, r)
	require.Zero(t, r.OutOfOrder, "%s: %s", name, r)
	require.Zero(t, r.DialFailures, "%s: failed reconnects: %s", name, r)
	require.Zero(t, r.Abnormal, "%s: %s", name, r)
	closes := 0
	for code, n := range r.Closes {
		require.Contains(t, []int{1000, 1001}, code, "%s: close code %d: %s", name, code, r)
		closes += n
	}
	require.Positive(t, closes, "%s: the drains moved WebSockets: %s", name, r)
	require.Equal(t, closes, r.Reconnects, "%s: every close was followed by a successful reconnect: %s", name, r)
	require.True(t, r.Clean(), r.String())
}

// requireEachVersionOnItsGroup asserts that 1.0.0 only ever answered from
// group A and every released version only from group B: no request
// reached a group that was being deployed.
func requireEachVersionOnItsGroup(t *testing.T, name string, r loadgen.Report) {
	t.Helper()
	for _, p := range r.Timeline {
		if p.Requests+p.Echoed == 0 {
			continue
		}
		want := spec.GroupB
		if p.Version == "1.0.0" {
			want = spec.GroupA
		}
		require.Equal(t, want, stage.GroupOf(p.Backend), "%s: version %s answered from %s", name, p.Version, p.Backend)
	}
}

// requireTransitionsSucceeded reads the events and the journal: a
// successful transition for every revision, and nothing aborted, swapped
// back, failed or cut short by a drain ceiling.
func requireTransitionsSucceeded(t *testing.T, ctx context.Context, s *stage.Stage, service string, revisions []string) {
	t.Helper()
	succeeded := map[string]int{}
	for _, e := range s.Events() {
		switch e.Reason {
		case reconcile.ReasonTransitionSucceeded:
			succeeded[e.Revision]++
		case reconcile.ReasonTransitionAborted, reconcile.ReasonSwappedBack, reconcile.ReasonAbortStarted,
			reconcile.ReasonSwapBackStarted, reconcile.ReasonStepFailed, reconcile.ReasonDrainCeiling, reconcile.ReasonStalled:
			t.Fatalf("%s at %s: %s", e.Reason, e.Revision, e.Message)
		}
	}
	for _, rev := range revisions[1:] {
		require.Equal(t, 1, succeeded[rev], "one successful transition for revision %s", rev)
	}
	st, err := s.Journal(ctx, service)
	require.NoError(t, err)
	require.Nil(t, st.Transition)
	require.Nil(t, st.Failed)
	require.Equal(t, revisions[len(revisions)-1], st.Applied.Revision)
	require.Equal(t, spec.GroupA, st.Applied.Active)
}

// waitServed waits (bounded) until version has answered some requests, so
// that every version carried traffic before it is reverted.
func waitServed(t *testing.T, ctx context.Context, g *loadgen.Generator, version string) {
	t.Helper()
	served := func() int {
		n := 0
		for _, p := range g.Snapshot().Timeline {
			if p.Version == version {
				n += p.Requests
			}
		}
		return n
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for served() < lbRate/2 {
		select {
		case <-ctx.Done():
			t.Fatalf("version %s did not serve %d requests", version, lbRate/2)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
