package reliability_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// envOptions describe an environment.
type envOptions struct {
	services       []stage.Service
	timing         stage.Timing
	warmUp         time.Duration // how long deployed apps fail their health check
	nacosPassword  spec.Secret
	deployTokenEnv string
	nacosMetadata  map[string]string // added to every app's registration
	prometheusURL  string            // a Prometheus for analysis gates ("" none)
	// config edits the daemon's configuration before it is written.
	config func(*stage.Stage, *spec.Config)
}

// env is a stage without a daemon of its own, the test's deploy system, the
// monitor, and `tandem run` as a subprocess.
type env struct {
	t      *testing.T
	dir    string
	stage  *stage.Stage
	deploy *deploySystem
	mon    *monitor
	daemon *daemon

	commitMu sync.Mutex     // the stage's repository takes one commit at a time
	commits  map[string]int // commit -> its rank in the branch's history

	nacosOutage outage // a Nacos restart (faults)
	hookPIDFile string // where an exec deploy hook writes its PID (faults)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	deploys := startDeploySystem(t, o.warmUp)
	s, err := stage.Start(t.Context(), stage.Options{Dir: dir, Services: o.services, Timing: o.timing, Manual: true,
		DeployURL: deploys.url, DeployTokenEnv: o.deployTokenEnv, NacosPassword: o.nacosPassword, NacosMetadata: o.nacosMetadata,
		PrometheusURL: o.prometheusURL, Log: slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		deploys.close()
	}
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	t.Cleanup(deploys.close) // before the stage closes: its jobs restart the stage's apps
	var names []string
	for _, svc := range o.services {
		names = append(names, svc.Name)
	}
	head, err := s.Head()
	require.NoError(t, err)
	e := &env{t: t, dir: dir, stage: s, deploy: deploys, mon: startMonitor(t, s, names...), commits: map[string]int{head: 0}}
	deploys.stage, deploys.mon = s, e.mon
	cfg := *s.Config()
	if o.config != nil {
		o.config(s, &cfg)
	}
	e.daemon = newDaemon(t, dir, &cfg)
	return e
}

// commit makes a release (version != "") or reverts the last release of a
// service, tells the monitor what Git now asks for, and returns the commit.
func (e *env) commit(ctx context.Context, service, version string) (string, error) {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	var rev string
	var err error
	if version != "" {
		rev, err = e.stage.Release(ctx, service, version)
	} else {
		rev, err = e.stage.Revert(ctx, service)
	}
	if err != nil {
		return "", err
	}
	set, err := spec.Load(os.DirFS(e.stage.RepoDir()), "services", e.stage.Config())
	if err != nil {
		return "", err
	}
	svc, _ := set.Get(service)
	e.mon.committed(service, svc.Active, svc.Version)
	e.commits[rev] = len(e.commits)
	return rev, nil
}

// atOrAfter reports whether revision rev is commit or a later one.
func (e *env) atOrAfter(rev, commit string) bool {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	r, ok := e.commits[rev]
	return ok && r >= e.commits[commit]
}

// transitionLimit bounds the wait for one transition to end.
const transitionLimit = 90 * time.Second

// outcome is how a transition asked for by a commit ended.
type outcome string

const (
	succeeded outcome = "succeeded" // in sync at the revision
	aborted   outcome = "aborted"   // a clean, reported abort: stalled with ReleaseFailed at the revision
)

// awaitOutcome polls the daemon's API (tolerating a daemon that is down)
// until the service is in sync at rev (or a later commit, which changed
// other services) or stalled there with ReleaseFailed.
func (e *env) awaitOutcome(ctx context.Context, service, rev string) (outcome, reconcile.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, transitionLimit)
	defer cancel()
	var st reconcile.Status
	var res outcome
	err := poll(ctx, 20*time.Millisecond, func() bool {
		s, err := e.daemon.status(service)
		if err != nil || !e.atOrAfter(s.Revision.Hash, rev) {
			return false
		}
		st = s
		if s.InSync && s.Ready() {
			res = succeeded
			return true
		}
		if c, ok := condition(s, reconcile.ConditionStalled); ok && c.Status && c.Reason == "ReleaseFailed" {
			res = aborted
			return true
		}
		return false
	})
	if err != nil {
		return "", st, fmt.Errorf("%s at %.12s ended neither in sync nor in a clean abort (last: %s, %+v): %w", service, rev, st.Summary, st.Conditions, err)
	}
	return res, st, nil
}

// requireOutcome waits for the outcome of a commit and asserts it.
func (e *env) requireOutcome(ctx context.Context, service, rev string, want outcome) reconcile.Status {
	e.t.Helper()
	res, st, err := e.awaitOutcome(ctx, service, rev)
	require.NoError(e.t, err)
	require.Equal(e.t, want, res, "%s at %.12s: %s %+v", service, rev, st.Summary, st.Conditions)
	return st
}

// requireInSyncAtHead waits until the services are in sync at the
// repository's head.
func (e *env) requireInSyncAtHead(ctx context.Context, services ...string) {
	e.t.Helper()
	head, err := e.stage.Head()
	require.NoError(e.t, err)
	for _, svc := range services {
		e.requireOutcome(ctx, svc, head, succeeded)
	}
}

func condition(st reconcile.Status, typ string) (reconcile.Condition, bool) {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c, true
		}
	}
	return reconcile.Condition{}, false
}

// requireLiveIs asserts, from the monitor's sample, that group active of a
// service carries all the traffic at version and the other group none.
func (e *env) requireLiveIs(service string, active spec.Group, version string) {
	e.t.Helper()
	svc, _ := e.stage.Service(service)
	live := e.mon.live(service)
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Instances(g) {
			il := live[in.Addr()]
			for _, b := range svc.Traffic {
				want := 0
				if g == active {
					want = b.Weight
				}
				require.Equal(e.t, want, il.weights[b.Key()], "%s %s weight on %s", service, in, b.Key())
			}
			if svc.Registry != nil {
				require.Equal(e.t, g == active, il.enabled, "%s %s enabled", service, in)
			}
			if g == active {
				require.Equal(e.t, version, il.version, "%s %s version", service, in)
				require.True(e.t, il.healthy, "%s %s healthy", service, in)
			}
		}
	}
}

// startTraffic sends users' requests and WebSocket messages to a service.
func (e *env) startTraffic(url string, rate, websockets int) *loadgen.Generator {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	g, err := e.stage.StartTraffic(ctx, url, rate, websockets)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { g.Stop() })
	return g
}

// outage is a Nacos restart: how the daemon reported it, and from when
// until Nacos had every instance back (plus what consumers need to see it).
type outage struct {
	report   string
	from, to time.Time
}

// requireUnnoticed asserts that users noticed nothing: no failed request,
// no lost or misordered message, every close orderly and followed by a
// reconnect.
func requireUnnoticed(t testing.TB, name string, r loadgen.Report) {
	t.Helper()
	require.Positive(t, r.Requests, name)
	require.Zero(t, r.Failed, "%s: failed requests: %s", name, r)
	require.Zero(t, r.Lost, "%s: lost messages: %s", name, r)
	require.Zero(t, r.OutOfOrder, "%s: %s", name, r)
	require.Zero(t, r.DialFailures, "%s: failed reconnects: %s", name, r)
	require.Zero(t, r.Abnormal, "%s: %s", name, r)
	closes := 0
	for code, n := range r.Closes {
		require.Contains(t, []int{1000, 1001}, code, "%s: close code %d: %s", name, code, r)
		closes += n
	}
	require.Equal(t, closes, r.Reconnects, "%s: every close was followed by a reconnect: %s", name, r)
}

// reasons lists the reasons of events, for messages.
func reasons(evs []reconcile.Event) string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Reason)
	}
	return strings.Join(out, " ")
}
