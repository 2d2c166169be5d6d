package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// TestAReleasePausedForApprovalThroughHAProxyLosesNothing: a service behind
// a real HAProxy, registered in Nacos (the emulator: this test is about the
// gate, not the registry), with gates.approval. Under the suite's load
// through HAProxy and through a Nacos consumer, a release pauses before
// any traffic (the new version answers nothing), is promoted through the
// API and completes; the next one pauses and is aborted through the API,
// and the serving group's weights and registrations never change while it
// is paused and undone. Nothing fails, nothing is lost.
func TestAReleasePausedForApprovalThroughHAProxyLosesNothing(t *testing.T) {
	haproxytest.SkipUnlessInstalled(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Log: log,
		Services: []stage.Service{{Name: service, LB: spec.KindHAProxy, Nacos: true, Approval: "{}"}}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	_, viaLB, viaConsumer := inSyncUnderLoad(t, ctx, s, service)

	// Release 1.1.0: paused; promoted through the API.
	rev, err := s.Release(ctx, service, "1.1.0")
	require.NoError(t, err)
	paused := waitPaused(t, ctx, s, rev)
	requireNotServed(t, viaLB, "1.1.0")
	decide(t, s, "promote", paused.ID)
	_, err = s.WaitInSync(ctx, service, rev)
	require.NoError(t, err)
	waitServed(t, ctx, viaLB, "1.1.0")

	// Release 1.2.0: paused; aborted through the API. Group B serves
	// 1.1.0 throughout, untouched.
	rev2, err := s.Release(ctx, service, "1.2.0")
	require.NoError(t, err)
	paused = waitPaused(t, ctx, s, rev2)
	require.Equal(t, spec.GroupB, paused.From)
	watch := watchServing(t, ctx, s, paused.From)
	decide(t, s, "abort", paused.ID)
	waitReleaseFailed(t, ctx, s, service, rev2)
	changes, samples := watch()
	require.Empty(t, changes, "the serving group's weights and registrations changed")
	require.Greater(t, samples, 1)

	for name, r := range stopUnnoticed(t, viaLB, viaConsumer) {
		for _, p := range r.Timeline {
			require.NotEqual(t, "1.2.0", p.Version, "%s: the aborted version answered", name)
		}
	}
	var deployed []string
	for _, d := range s.Deploys() {
		deployed = append(deployed, string(d.Group)+"@"+d.Version)
	}
	require.Equal(t, []string{"B@1.1.0", "A@1.2.0"}, deployed)
	reasons := map[string][]string{}
	for _, e := range s.Events() {
		reasons[e.Reason] = append(reasons[e.Reason], e.Message)
	}
	require.Len(t, reasons[reconcile.ReasonApprovalPending], 2)
	require.Len(t, reasons[reconcile.ReasonPromoted], 1)
	require.Contains(t, reasons[reconcile.ReasonPromoted][0], "promoted by e2e (API token holder from 127.0.0.1)")
	require.Len(t, reasons[reconcile.ReasonAborted], 1)
}

// waitPaused waits until the service is paused for approval at rev.
func waitPaused(t *testing.T, ctx context.Context, s *stage.Stage, rev string) *reconcile.Transition {
	t.Helper()
	var st reconcile.Status
	require.NoError(t, pollUntil(ctx, func() bool {
		st, _ = s.Daemon().Reconciler().Status(service)
		return st.Revision.Hash == rev && st.Transition.Paused()
	}), "paused at %.12s (last: %s)", rev, st.Summary)
	return st.Transition
}

func pollUntil(ctx context.Context, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// decide posts promote or abort for transition to the daemon's API.
func decide(t *testing.T, s *stage.Stage, action, transition string) {
	t.Helper()
	body := fmt.Sprintf(`{"transition": %q, "by": "e2e"}`, transition)
	resp, err := http.Post("http://"+s.APIAddr()+"/api/v1/services/"+service+"/"+action, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", b)
}

// requireNotServed: while paused, the new version answered no request.
func requireNotServed(t *testing.T, g *loadgen.Generator, version string) {
	t.Helper()
	for _, p := range g.Snapshot().Timeline {
		require.NotEqual(t, version, p.Version, "version %s answered before it was promoted", version)
	}
}

// watchServing samples group g's weights on every binding and its
// registrations through the daemon's own providers until the returned
// function is called, which returns every sample that differed from the
// first, and how many samples were taken.
func watchServing(t *testing.T, ctx context.Context, s *stage.Stage, g spec.Group) func() ([]string, int) {
	svc, _ := s.Service(service)
	snapshot := func() string {
		live, err := reconcile.Observe(ctx, s.Providers(), svc, reconcile.Needs{Probe: map[spec.Group]bool{}, Evidence: map[spec.Group]bool{}})
		if err != nil {
			return "error: " + err.Error()
		}
		var parts []string
		for _, bl := range live.Bindings {
			for _, be := range bl.Backends {
				if slices.ContainsFunc(svc.Instances(g), func(in spec.Instance) bool { return in.ID == be.ID }) {
					parts = append(parts, fmt.Sprintf("%s %s=%d", bl.Binding.Key(), be.ID, be.Weight))
				}
			}
		}
		if live.Registry != nil {
			for _, ri := range live.Registry.Instances {
				if slices.ContainsFunc(svc.Instances(g), func(in spec.Instance) bool { return in.IP == ri.IP && in.Port == ri.Port }) {
					parts = append(parts, fmt.Sprintf("%s:%d enabled=%t", ri.IP, ri.Port, ri.Enabled))
				}
			}
		}
		slices.Sort(parts)
		return strings.Join(parts, "; ")
	}
	first := snapshot()
	require.Contains(t, first, "enabled=true")
	require.NotContains(t, first, "=0;")
	var mu sync.Mutex
	var changes []string
	samples := 1
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			now := snapshot()
			mu.Lock()
			samples++
			if now != first {
				changes = append(changes, now)
			}
			mu.Unlock()
		}
	}()
	return func() ([]string, int) {
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		return changes, samples
	}
}
