package reconcile_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// fullService binds to an ALB, an SLB and a registry, so that every phase
// has work to do.
const fullService = `
service: user-service
active: %s
version: "%s"
groups:
  A:
    instances:
      - {ip: 10.0.1.11, port: 8080, id: i-a1}
      - {ip: 10.0.1.12, port: 8080, id: i-a2}
  B:
    instances:
      - {ip: 10.0.2.11, port: 8080, id: i-b1}
      - {ip: 10.0.2.12, port: 8080, id: i-b2}
traffic:
  - {alb: prod, serverGroup: sgp-1}
  - {slb: prod, loadBalancer: lb-1, vServerGroup: rsp-1}
registry:
  nacos: {provider: prod}
deploy:
  exec: ["./deploy.sh"]
health:
  http: {path: /healthz}
  version: {http: /version}
drain:
  propagation: 30s
  quiet: 5s
  timeout: 2m
  signal: {http: /drain}
  evidence: {preset: demo}
verify: {window: 60s, failureThreshold: 2}
`

// tb is what both *testing.T and *rapid.T provide.
type tb interface {
	require.TestingT
	Helper()
}

func service(t tb, active spec.Group, version string) *spec.Service {
	t.Helper()
	svcs, ps := spec.ParseServices("services/user.yaml", []byte(fmt.Sprintf(fullService, active, version)))
	require.NoError(t, ps.Err())
	require.Len(t, svcs, 1)
	return svcs[0]
}

// env is a reconciler over an in-memory world, driven pass by pass with a
// fake clock: a Waiting result advances the clock by its requeue delay, so
// that minutes of drain take microseconds and nothing sleeps.
type env struct {
	t      tb
	world  *memory.World
	store  reconcile.Store
	rec    *reconcile.Reconciler
	events []reconcile.Event
}

func newEnv(t testing.TB, svc *spec.Service, active spec.Group, activeVersion, idleVersion string) *env {
	e := &env{t: t, world: memory.New()}
	e.world.AddService(svc, active, activeVersion, idleVersion)
	store, err := reconcile.NewFileStore(t.TempDir())
	require.NoError(t, err)
	e.store = store
	e.rec = e.reconciler()
	return e
}

// memStore is a journal in memory, for the property test's many passes.
// Save replaces the whole state at once, as FileStore's rename does.
type memStore struct{ m map[string]reconcile.State }

func (s *memStore) Load(_ context.Context, name string) (reconcile.State, error) {
	if st, ok := s.m[name]; ok {
		return st.Clone(), nil
	}
	return reconcile.State{Service: name}, nil
}

func (s *memStore) Save(_ context.Context, st reconcile.State) error {
	s.m[st.Service] = st.Clone()
	return nil
}

// reconciler builds a fresh reconciler on the same world and journal, as a
// restarted daemon would.
func (e *env) reconciler() *reconcile.Reconciler {
	return &reconcile.Reconciler{
		Providers: e.world.Set(),
		Store:     e.store,
		Recorder:  reconcile.RecorderFunc(func(ev reconcile.Event) { e.events = append(e.events, ev) }),
	}
}

// pass runs one pass and moves the fake clock as the worker would wait.
func (e *env) pass(svc *spec.Service) error {
	res, err := e.rec.Reconcile(context.Background(), reconcile.Target{Service: svc, Revision: reconcile.Revision{Hash: "rev-" + svc.Version}})
	switch reconcile.Classify(err) {
	case reconcile.ClassWaiting:
		var w *reconcile.WaitingError
		require.ErrorAs(e.t, err, &w)
		e.world.Clock().Advance(max(w.RequeueAfter, time.Millisecond))
	case reconcile.ClassTransient:
		e.world.Clock().Advance(time.Second)
	case reconcile.ClassNone:
		if !res.Requeue {
			e.world.Clock().Advance(time.Second)
		}
	}
	return err
}

// converge runs passes until the service is in sync or stalled, or the pass
// budget runs out; it returns the last error.
func (e *env) converge(svc *spec.Service, budget int) error {
	var err error
	for range budget {
		err = e.pass(svc)
		st, _ := e.rec.Status(svc.Name)
		if reconcile.Classify(err) == reconcile.ClassStalled || (err == nil && st.InSync) {
			return err
		}
	}
	return fmt.Errorf("no convergence in %d passes, last error: %v", budget, err)
}

func (e *env) reasons() []string {
	var out []string
	for _, ev := range e.events {
		out = append(out, ev.Reason)
	}
	return out
}

func (e *env) state(name string) reconcile.State {
	st, err := e.store.Load(context.Background(), name)
	require.NoError(e.t, err)
	return st
}
