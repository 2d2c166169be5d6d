package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/haproxy"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// shiftStage is the reconciler releasing a service whose traffic goes
// through a real HAProxy; the rest of the world (deployer, Tandem's own
// probes) is in memory and always healthy, so only HAProxy's own checks
// can hold the shift back.
type shiftStage struct {
	world  *memory.World
	lb     *haproxy.Provider
	rec    *reconcile.Reconciler
	events []reconcile.Event
}

// newShiftStage starts HAProxy in front of group A (app a, at weight 100)
// and group B (app b, at weight 0), whose /healthz answers with status b.
func newShiftStage(t *testing.T, b int) (*shiftStage, func(active spec.Group, version string) *spec.Service) {
	haproxytest.SkipUnlessInstalled(t)
	serve := func(code int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
		t.Cleanup(s.Close)
		return s
	}
	appA, appB := serve(http.StatusOK), serve(b)
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "web", Servers: []haproxytest.Server{
		{Name: "i-a1", Addr: addr(appA), Weight: 100}, {Name: "i-b1", Addr: addr(appB), Weight: 0},
	}}}})
	svcAt := func(active spec.Group, version string) *spec.Service {
		ipA, portA := hostPort(t, addr(appA))
		ipB, portB := hostPort(t, addr(appB))
		doc := fmt.Sprintf(`
service: web
active: %s
version: "%s"
groups:
  A: {instances: [{ip: %s, port: %s, id: i-a1}]}
  B: {instances: [{ip: %s, port: %s, id: i-b1}]}
traffic: [{haproxy: edge, backend: web}]
deploy: {exec: [./deploy.sh]}
health: {http: {path: /healthz}, version: {http: /version}}
drain: {propagation: 1s, quiet: 1s, timeout: 5s}
verify: {window: 2s, lbHealthTimeout: 20s}
`, active, version, ipA, portA, ipB, portB)
		svcs, ps := spec.ParseServices("services/web.yaml", []byte(doc))
		require.NoError(t, ps.Err())
		return svcs[0]
	}
	s := &shiftStage{world: memory.New(), lb: provider(t, h.Socket)}
	s.world.AddService(svcAt(spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	set := s.world.Set()
	set.LoadBalancers = map[string]providers.LoadBalancer{providers.LBKey(spec.KindHAProxy, "edge"): s.lb}
	store, err := reconcile.NewFileStore(t.TempDir())
	require.NoError(t, err)
	s.rec = &reconcile.Reconciler{Providers: set, Store: store,
		Recorder: reconcile.RecorderFunc(func(ev reconcile.Event) { s.events = append(s.events, ev) })}
	// HAProxy checks weight-0 servers too: wait until it has judged both.
	require.Eventually(t, func() bool {
		m := s.weights(t)
		return m["i-a1"].Health == providers.HealthHealthy && m["i-b1"].Health != providers.HealthInitial
	}, 10*time.Second, 10*time.Millisecond)
	return s, svcAt
}

func hostPort(t *testing.T, addr string) (string, string) {
	i := strings.LastIndex(addr, ":")
	require.Positive(t, i)
	return addr[:i], addr[i+1:]
}

func (s *shiftStage) weights(t *testing.T) map[string]providers.Backend {
	bs, err := s.lb.Backends(context.Background(), binding("web"))
	require.NoError(t, err)
	return byID(bs)
}

// pass runs one pass; a wait moves the world's clock instead of sleeping.
func (s *shiftStage) pass(svc *spec.Service) error {
	_, err := s.rec.Reconcile(context.Background(), reconcile.Target{Service: svc, Revision: reconcile.Revision{Hash: "rev-" + svc.Version}})
	var w *reconcile.WaitingError
	switch {
	case reconcile.Classify(err) == reconcile.ClassWaiting && errors.As(err, &w):
		s.world.Clock().Advance(max(w.RequeueAfter, time.Millisecond))
	default:
		s.world.Clock().Advance(time.Second)
	}
	return err
}

func TestHAProxyCheckThatFailsKeepsTheServingGroupAndFailsTheRelease(t *testing.T) {
	s, svcAt := newShiftStage(t, http.StatusServiceUnavailable)
	want := svcAt(spec.GroupB, "1.1.0")
	var err error
	for range 1000 {
		err = s.pass(want)
		require.Equal(t, 100, s.weights(t)["i-a1"].Weight, "group A must never be lowered")
		if reconcile.Classify(err) == reconcile.ClassStalled {
			break
		}
	}
	var stalled *reconcile.StalledError
	require.ErrorAs(t, err, &stalled)
	require.Equal(t, "ReleaseFailed", stalled.Reason)
	// HAProxy checks weight-0 servers too, so its verdict on group B is
	// known before any raise: verification fails with HAProxy's reason.
	require.Contains(t, err.Error(), "haproxy:edge/web reports i-b1(")
	require.Contains(t, err.Error(), "unhealthy (L7STS")
	require.Equal(t, 0, s.weights(t)["i-b1"].Weight)
	for _, ev := range s.events {
		require.False(t, ev.Reason == reconcile.ReasonStepApplied && strings.HasPrefix(ev.Message, "lower group A"), "group A was lowered: %s", ev.Message)
	}
}

func TestHAProxyCheckThatPassesLetsTheReleaseComplete(t *testing.T) {
	s, svcAt := newShiftStage(t, http.StatusOK)
	want := svcAt(spec.GroupB, "1.1.0")
	for range 1000 {
		if err := s.pass(want); err == nil {
			if st, _ := s.rec.Status("web"); st.InSync {
				break
			}
		}
	}
	m := s.weights(t)
	require.Equal(t, 0, m["i-a1"].Weight)
	require.Equal(t, 100, m["i-b1"].Weight)
	var lowered bool
	for _, ev := range s.events {
		if ev.Reason == reconcile.ReasonStepApplied && strings.HasPrefix(ev.Message, "lower group A on haproxy:edge/web") {
			lowered = true
			require.Contains(t, ev.Message, "the LB reports group B healthy")
		}
	}
	require.True(t, lowered)
}
