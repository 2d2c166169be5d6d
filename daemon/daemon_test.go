package daemon_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/fsnotify/fsnotify.(*inotify).readEvents"))
}

const userYAML = `service: user
active: %ACTIVE%
version: "%VERSION%"
groups:
  A: {instances: [{ip: 10.0.1.1, port: 80, id: i-a1}, {ip: 10.0.1.2, port: 80, id: i-a2}]}
  B: {instances: [{ip: 10.0.2.1, port: 80, id: i-b1}, {ip: 10.0.2.2, port: 80, id: i-b2}]}
traffic: [{haproxy: edge, backend: user}]
registry: {nacos: {provider: prod}}
deploy: {exec: ["./deploy.sh"]}
health: {http: {path: /healthz}, version: {nacosMetadata: version}}
drain: {propagation: 50ms, quiet: 20ms, timeout: 5s}
verify: {window: 100ms}
`

func userSpec(active, version string) string {
	return strings.NewReplacer("%ACTIVE%", active, "%VERSION%", version).Replace(userYAML)
}

type repo struct {
	t   *testing.T
	dir string
}

func (r repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ops", "GIT_AUTHOR_EMAIL=ops@example.com",
		"GIT_COMMITTER_NAME=Ops", "GIT_COMMITTER_EMAIL=ops@example.com")
	out, err := cmd.CombinedOutput()
	require.NoError(r.t, err, "git %v: %s", args, out)
	return strings.TrimSpace(string(out))
}

func (r repo) commit(file, content, msg string) string {
	r.t.Helper()
	require.NoError(r.t, os.WriteFile(filepath.Join(r.dir, file), []byte(content), 0o644))
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

type recorder struct {
	mu     sync.Mutex
	events []reconcile.Event
}

func (r *recorder) Record(e reconcile.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) has(reason, revision string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Reason == reason && e.Revision == revision {
			return true
		}
	}
	return false
}

// eventually polls an observable condition with a deadline; the daemon's
// own loop runs in real time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommitReleasesAndRevertRollsBackToTheWarmGroup(t *testing.T) {
	r := repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	require.NoError(t, os.MkdirAll(filepath.Join(r.dir, "services"), 0o755))
	rev1 := r.commit("services/user.yaml", userSpec("A", "1.0.0"), "user-service at 1.0.0")

	cfg := &spec.Config{Git: spec.GitConfig{URL: r.dir, Interval: spec.Duration(time.Hour)}, StateDir: t.TempDir(),
		Providers: spec.Providers{HAProxy: []spec.HAProxyProvider{{Name: "edge", Socket: "/nonexistent"}},
			Nacos: []spec.NacosProvider{{Name: "prod", Servers: []string{"127.0.0.1:8848"}}}},
		Policy: spec.Policy{Hooks: spec.HookPolicy{Commands: []string{"./deploy.sh"}}}}
	cfg.Default()
	require.NoError(t, cfg.Validate().Err())

	svcs, ps := spec.ParseServices("services/user.yaml", []byte(userSpec("A", "1.0.0")))
	require.NoError(t, ps.Err())
	world := memory.New()
	world.UseRealTime()
	world.AddService(svcs[0], spec.GroupA, "1.0.0", "1.0.0")

	src, err := gitsource.New(cfg.Git, cfg, cfg.StateDir, nil)
	require.NoError(t, err)
	store, err := reconcile.NewFileStore(filepath.Join(cfg.StateDir, "journal"))
	require.NoError(t, err)
	rec := &recorder{}
	d := daemon.New(daemon.Options{Config: cfg, Providers: world.Set(), Source: src, Store: store, Recorder: rec})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	srcDone := make(chan struct{})
	go func() { defer close(srcDone); _ = src.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-srcDone })
	t.Cleanup(func() { cancel(); <-done })

	inSync := func(active spec.Group, version, revision string) func() bool {
		return func() bool {
			st, ok := d.Reconciler().Status("user")
			return ok && st.InSync && st.Revision.Hash == revision && st.LiveActive == reconcile.Active(active) &&
				st.DesiredVersion == version
		}
	}
	eventually(t, "the first revision in sync", inSync(spec.GroupA, "1.0.0", rev1))

	rev2 := r.commit("services/user.yaml", userSpec("B", "1.1.0"), "release user 1.1.0 to group B")
	eventually(t, "the release", inSync(spec.GroupB, "1.1.0", rev2))
	require.Len(t, world.Deploys(), 1)
	require.Equal(t, "1.1.0", world.App("10.0.2.1:80").Version)
	require.True(t, rec.has(reconcile.ReasonTransitionSucceeded, rev2))

	r.git("revert", "--no-edit", "HEAD")
	rev3 := r.git("rev-parse", "HEAD")
	eventually(t, "the revert", inSync(spec.GroupA, "1.0.0", rev3))
	require.Len(t, world.Deploys(), 1, "a revert goes back to the warm group without deploying")

	// An invalid commit changes nothing and is reported with file:line: field.
	rev4 := r.commit("services/user.yaml", strings.Replace(userSpec("B", "1.2.0"), "port: 80, id: i-b1", "port: 0, id: i-b1", 1), "broken")
	eventually(t, "the rejection", func() bool { return rec.has(reconcile.ReasonRevisionRejected, rev4) })
	require.Equal(t, rev3, d.Revision().Hash, "the last good revision stays in force")
	for _, e := range rec.events {
		if e.Reason == reconcile.ReasonRevisionRejected {
			require.Contains(t, e.Message, "services/user.yaml:6: groups.B.instances[0].port: must be 1..65535")
		}
	}
	require.Empty(t, world.Violations())
	require.Len(t, world.Deploys(), 1)

	// A reset and force push back to the release (a downgrade past the
	// revert) is rejected and reported the same way.
	r.git("reset", "-q", "--hard", rev2)
	eventually(t, "the non-fast-forward rejection", func() bool { return rec.has(reconcile.ReasonRevisionRejected, rev2) })
	require.Equal(t, rev3, d.Revision().Hash, "the revision in force stays")
	for _, e := range rec.events {
		if e.Reason == reconcile.ReasonRevisionRejected && e.Revision == rev2 {
			require.Contains(t, e.Message, "(NonFastForward)")
			require.Contains(t, e.Message, "does not descend from "+rev3[:12])
		}
	}
	require.Len(t, world.Deploys(), 1)
}

// fakeSource is a desired-state source whose status the test sets.
type fakeSource struct {
	mu  sync.Mutex
	st  gitsource.Status
	sub chan struct{}
}

func (f *fakeSource) Trigger()                   {}
func (f *fakeSource) Subscribe() <-chan struct{} { return f.sub }
func (f *fakeSource) Current() gitsource.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeSource) set(change func(*gitsource.Status)) {
	f.mu.Lock()
	change(&f.st)
	f.mu.Unlock()
	f.sub <- struct{}{}
}

func TestAGitOutageIsAnnouncedOnceAndItsEndToo(t *testing.T) {
	cfg := &spec.Config{Git: spec.GitConfig{URL: "https://git.example.com/desired.git"}, StateDir: t.TempDir()}
	cfg.Default()
	store, err := reconcile.NewFileStore(filepath.Join(cfg.StateDir, "journal"))
	require.NoError(t, err)
	src := &fakeSource{sub: make(chan struct{})}
	rec := &recorder{}
	d := daemon.New(daemon.Options{Config: cfg, Providers: memory.New().Set(), Source: src, Store: store, Recorder: rec})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	fetchErr := errors.New("fetching branch main from https://git.example.com/desired.git: connection refused")
	for range 3 { // every failed retry changes the status; one announcement
		src.set(func(st *gitsource.Status) { st.FetchErr, st.Failures = fetchErr, st.Failures+1 })
	}
	src.set(func(st *gitsource.Status) { st.FetchErr, st.LastFetch = nil, time.Now() })
	eventually(t, "the recovery", func() bool { return count(rec, reconcile.ReasonGitFetchRecovered) == 1 })
	src.set(func(st *gitsource.Status) { st.FetchErr = fetchErr })
	eventually(t, "the second outage", func() bool { return count(rec, reconcile.ReasonGitFetchFailed) == 2 })
	require.Equal(t, 1, count(rec, reconcile.ReasonGitFetchRecovered))
	for _, e := range rec.events {
		if e.Reason == reconcile.ReasonGitFetchFailed {
			require.Equal(t, reconcile.EventWarning, e.Type)
			require.Contains(t, e.Message, "revision none yet stays in force")
			require.Contains(t, e.Message, "connection refused")
		}
	}
}

func count(r *recorder, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Reason == reason {
			n++
		}
	}
	return n
}
