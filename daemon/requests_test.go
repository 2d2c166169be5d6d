package daemon_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// requestWorld is the user service serving 1.0.0 from group A, Git asking
// for active at version (with extra lines of spec), and a daemon over store
// whose source is in force.
type requestWorld struct {
	cfg   *spec.Config
	world *memory.World
	src   *fakeSource
	rec   *recorder
}

func newRequestWorld(t *testing.T, active, version string, extra ...string) *requestWorld {
	cfg := &spec.Config{Git: spec.GitConfig{URL: "https://git.example.com/desired.git"}, StateDir: t.TempDir(),
		Providers: spec.Providers{HAProxy: []spec.HAProxyProvider{{Name: "edge", Socket: "/nonexistent"}},
			Nacos: []spec.NacosProvider{{Name: "prod", Servers: []string{"127.0.0.1:8848"}}}},
		Policy: spec.Policy{Hooks: spec.HookPolicy{Commands: []string{"./deploy.sh"}}}}
	cfg.Default()
	require.NoError(t, cfg.Validate().Err())
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(userSpec(active, version) + strings.Join(extra, ""))}}, "services", cfg)
	require.NoError(t, err)
	svc, _ := set.Get("user")
	world := memory.New()
	world.AddService(svc, spec.GroupA, "1.0.0", "1.0.0")
	rev := &gitsource.Revision{Hash: "rev-" + version, Set: set}
	return &requestWorld{cfg: cfg, world: world, src: &fakeSource{sub: make(chan struct{}), st: gitsource.Status{Good: rev, Head: rev}}, rec: &recorder{}}
}

// daemon starts a daemon (a restart: a new one on the same journal) with
// the revision in force, without running its loop: the test drives passes
// with Once.
func (w *requestWorld) daemon(t *testing.T, store reconcile.Store) *daemon.Daemon {
	d := daemon.New(daemon.Options{Config: w.cfg, Providers: w.world.Set(), Source: w.src, Store: store, Recorder: w.rec})
	_, err := d.Once(t.Context(), 0)
	require.NoError(t, err)
	return d
}

func TestSuspensionThroughTheAPIHoldsAcrossARestart(t *testing.T) {
	w := newRequestWorld(t, "B", "1.1.0")
	store, err := reconcile.NewFileStore(filepath.Join(w.cfg.StateDir, "journal"))
	require.NoError(t, err)
	d := w.daemon(t, store)
	require.NoError(t, d.Suspend(t.Context(), "user", true))
	_, err = d.Once(t.Context(), 1)
	require.NoError(t, err)
	st, err := store.Load(t.Context(), "user")
	require.NoError(t, err)
	require.NotNil(t, st.Suspended, "the suspension is journaled")
	require.Equal(t, 1, count(w.rec, reconcile.ReasonSuspended))

	restarted := w.daemon(t, store)
	statuses, err := restarted.Once(t.Context(), 5)
	require.NoError(t, err)
	require.Len(t, statuses, 1)
	require.True(t, statuses[0].Suspended)
	require.Empty(t, w.world.Deploys(), "a suspended service is not released, after a restart too")

	require.NoError(t, restarted.Suspend(t.Context(), "user", false))
	_, err = restarted.Once(t.Context(), 50)
	require.NoError(t, err)
	st, err = store.Load(t.Context(), "user")
	require.NoError(t, err)
	require.Nil(t, st.Suspended)
	require.Equal(t, 1, count(w.rec, reconcile.ReasonResumed))
	require.Len(t, w.world.Deploys(), 1, "resumed, the release goes on")
}

type callerKey struct{}

// racyStore is a journal on which a Load made with the caller's context
// (marked with callerKey) returns what it read only once a pass journaled
// a transition: the worst interleaving for a caller that would read,
// modify and write the journal outside the service's queue.
type racyStore struct {
	reconcile.Store
	once      sync.Once
	journaled chan struct{}
}

func (s *racyStore) Load(ctx context.Context, name string) (reconcile.State, error) {
	st, err := s.Store.Load(ctx, name)
	if ctx.Value(callerKey{}) != nil {
		<-s.journaled
	}
	return st, err
}

func (s *racyStore) Save(ctx context.Context, st reconcile.State) error {
	err := s.Store.Save(ctx, st)
	if st.Transition != nil {
		s.once.Do(func() { close(s.journaled) })
	}
	return err
}

// A sync with retry requested while the service's pass journals a new
// transition never overwrites it: the worker that owns the service does
// the retry, at the start of a pass.
func TestRetryNeverOverwritesATransitionJournaledMeanwhile(t *testing.T) {
	w := newRequestWorld(t, "B", "1.2.0")
	files, err := reconcile.NewFileStore(filepath.Join(w.cfg.StateDir, "journal"))
	require.NoError(t, err)
	// A release of 1.1.0 failed; Git has moved on to 1.2.0.
	require.NoError(t, files.Save(t.Context(), reconcile.State{Service: "user",
		Failed: &reconcile.Failed{Kind: reconcile.KindRelease, Active: spec.GroupB, Version: "1.1.0", Reason: "deploy failed"}}))
	store := &racyStore{Store: files, journaled: make(chan struct{})}
	d := w.daemon(t, store)

	synced := make(chan error, 1)
	var during *reconcile.Transition
	w.world.SetFaults(memory.Faults{DeployHook: func(ctx context.Context, _ providers.DeployRequest) error {
		if err := receiveWithin(synced); err != nil {
			return err
		}
		st, err := files.Load(ctx, "user")
		during = st.Transition
		return err
	}})
	go func() {
		synced <- d.Sync(context.WithValue(t.Context(), callerKey{}, true), "user", true)
	}()
	_, err = d.Once(t.Context(), 1)
	require.NoError(t, err)
	require.NotNil(t, during, "the transition stayed journaled while its deploy ran")
	st, err := files.Load(t.Context(), "user")
	require.NoError(t, err)
	require.NotNil(t, st.Transition)
	require.True(t, st.Transition.Deploy.Done)
}

// receiveWithin waits for the sync's answer, within a bound.
func receiveWithin(ch <-chan error) error {
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		return context.DeadlineExceeded
	}
}
