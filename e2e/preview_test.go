package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// pauseAt holds the daemon's worker inside the pass that records the first
// event with reason, until released. Events are recorded before the pass
// applies its step (reconcile.Reconciler.Reconcile), so the live state
// stays as the event found it: a test hook, through the stage's Recorder.
type pauseAt struct {
	reason  string
	reached chan reconcile.Event
	resume  chan struct{}
	once    sync.Once
	release sync.Once
}

func newPauseAt(reason string) *pauseAt {
	return &pauseAt{reason: reason, reached: make(chan reconcile.Event, 1), resume: make(chan struct{})}
}

func (p *pauseAt) Record(e reconcile.Event) {
	if e.Reason != p.reason {
		return
	}
	p.once.Do(func() {
		p.reached <- e
		<-p.resume
	})
}

func (p *pauseAt) Release() { p.release.Do(func() { close(p.resume) }) }

// TestPreviewRouteServesTheTargetDuringTheRelease, on each kind of load
// balancer: while the release is held just after the preview phase,
// requests through the preview route (HAProxy: a header ACL to a backend of
// its own; ALB: a header forwarding rule to a server group of its own; SLB:
// a test listener with a vServer group of its own) reach the new version on
// the target group and requests through the main route the old version on
// the serving group; once the release is done, the preview route follows
// the serving group, and a weight changed on it by hand is reported as
// drift.
func TestPreviewRouteServesTheTargetDuringTheRelease(t *testing.T) {
	for _, lb := range []string{spec.KindHAProxy, spec.KindALB, spec.KindSLB} {
		t.Run(lb, func(t *testing.T) {
			if lb == spec.KindHAProxy {
				haproxytest.SkipUnlessInstalled(t)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			pause := newPauseAt(reconcile.ReasonPreviewRouted)
			log := slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
			s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Services: []stage.Service{{Name: service, LB: lb, Preview: true}},
				Recorder: pause, Log: log})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			t.Cleanup(pause.Release) // runs first: a failed test must not leave the worker held

			head, err := s.Head()
			require.NoError(t, err)
			_, err = s.WaitInSync(ctx, service, head)
			require.NoError(t, err)
			main, preview := s.URL(service), s.PreviewURL(service)
			require.Equal(t, map[string]int{"A@1.0.0": 10}, answered(t, preview, true, 10), "idle: the preview route follows the serving group")

			rev, err := s.Release(ctx, service, "1.1.0")
			require.NoError(t, err)
			select {
			case e := <-pause.reached:
				t.Logf("held at: %s", e.Message)
			case <-ctx.Done():
				t.Fatalf("the preview phase did not complete: %v", ctx.Err())
			}
			require.Equal(t, map[string]int{"B@1.1.0": 20}, answered(t, preview, true, 20), "the preview route reaches the target")
			require.Equal(t, map[string]int{"A@1.0.0": 20}, answered(t, main, false, 20), "the main route still reaches the serving group")

			pause.Release()
			_, err = s.WaitInSync(ctx, service, rev)
			require.NoError(t, err)
			require.Equal(t, map[string]int{"B@1.1.0": 10}, answered(t, preview, true, 10), "after the release the preview route follows the serving group")
			require.Equal(t, map[string]int{"B@1.1.0": 10}, answered(t, main, false, 10))
			for _, e := range s.Events() {
				require.NotContains(t, []string{reconcile.ReasonAbortStarted, reconcile.ReasonStepFailed, reconcile.ReasonStalled}, e.Reason, e.Message)
			}
			requirePreviewDriftReported(t, ctx, s)
		})
	}
}

// answered sends n requests to url (with the preview header when preview)
// and counts the answers by group@version.
func answered(t *testing.T, url string, preview bool, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for range n {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/version", nil)
		require.NoError(t, err)
		if preview {
			req.Header.Set(stage.PreviewHeader, stage.PreviewHeaderValue)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		out[res.Header.Get("X-Group")+"@"+res.Header.Get("X-Version")]++
	}
	return out
}

// requirePreviewDriftReported changes a weight of the preview route by
// hand, through the load balancer's own API (as a console would), and
// waits until the daemon reports it as drift, with the preview route
// carrying both groups in the status.
func requirePreviewDriftReported(t *testing.T, ctx context.Context, s *stage.Stage) {
	t.Helper()
	svc, ok := s.Service(service)
	require.True(t, ok)
	i := slices.IndexFunc(svc.Traffic, func(b spec.Binding) bool { return b.Preview })
	require.GreaterOrEqual(t, i, 0)
	pb, in := svc.Traffic[i], svc.Groups.Get(spec.GroupA)[0]
	rec := s.Daemon().Reconciler()
	lb := rec.Providers.LoadBalancers[providers.LBKey(pb.Kind(), pb.Provider())]
	require.NoError(t, lb.SetWeights(ctx, pb, []providers.WeightChange{{ID: in.ID, IP: in.IP, Port: in.Port, Weight: pb.Weight}}))
	require.NoError(t, s.Daemon().Sync(ctx, service, false))
	want := fmt.Sprintf("%s: %s (group A) has weight %d, want 0", pb.Key(), in, pb.Weight)
	var st reconcile.Status
	require.Eventually(t, func() bool {
		st, _ = rec.Status(service)
		return slices.Contains(st.Drift, want)
	}, time.Minute, 20*time.Millisecond, "drift on the preview route: want %q, last status %s %q", want, st.Summary, st.Drift)
	require.Equal(t, []reconcile.PreviewRoute{{Binding: pb.Key(), Group: reconcile.ActiveMixed}}, st.Preview)
	require.Equal(t, reconcile.ActiveB, st.LiveActive, "drift on the preview route does not change the live active group")
}
